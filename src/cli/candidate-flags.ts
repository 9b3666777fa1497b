// The execution-guided candidate flags shared by `generate`, `eval` and `serve`: their help text
// and the integer checks that name the flag (--threads too, with the bound `train` uses).
import { checkThreads } from "../engine/system.js";
import { DEFAULT_QUERY_TIMEOUT_MS, MAX_CANDIDATES } from "../serve/candidates.js";
import { DEFAULT_QUERY_MAX_BYTES, MAX_QUERY_MAX_BYTES } from "../sql/query-process.js";

export const CANDIDATES_HELP =
  `decode n SQL candidates (the greedy one + n-1 sampled at temperature 1, fixed seeds; at most ${MAX_CANDIDATES}), ` +
  "run each read-only on the database with a timeout, drop those that fail, answer with the result most of them share " +
  "(ties: the greedy one's, else the most likely)";

export const QUERY_TIMEOUT_HELP = `wall-clock limit per candidate query in ms; a query past it is killed (default ${DEFAULT_QUERY_TIMEOUT_MS})`;

export const QUERY_MAX_BYTES_HELP =
  `byte cap of one query's result, counted as its rows stream (strings by UTF-8 length, blobs by length, other values 8); ` +
  `a result past it fails alone as "result too large" (default ${DEFAULT_QUERY_MAX_BYTES}, at most ${MAX_QUERY_MAX_BYTES})`;

/** --query-max-bytes's value, checked (undefined: the default). */
export function queryMaxBytesFlag(v: string | undefined): number | undefined {
  return v === undefined ? undefined : intFlag("--query-max-bytes", v, 1, MAX_QUERY_MAX_BYTES);
}

/** An integer flag value in [min, max], or an error naming the flag and what arrived. */
export function intFlag(flag: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!/^\s*-?\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new Error(`${flag}: expected an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(v)}`);
  }
  return n;
}

/** A --threads value: an integer >= min, within the engine's bound (checkThreads), checked before anything loads. */
export function threadsFlag(v: string, min = 0): number {
  return checkThreads("--threads", intFlag("--threads", v, min));
}
