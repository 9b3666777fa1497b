// Execution-guided candidates: for one question, decode N SQL candidates (the greedy one, then N-1
// sampled with fixed seeds; node-llama-cpp 3.21 has no beam search; under the schema's grammar when
// constrained, as generate() decodes), run each read-only on the
// database with a timeout (query-process.ts: a killable child, `readonly` + `query_only`, one
// SELECT/WITH only), drop those that fail, and answer with the SQL whose result most candidates
// share. Ties go to the result of the greedy candidate, else to the result of the most likely
// sampled candidate (highest total log-probability). What happened is returned, never hidden.
import fs from "node:fs";
import path from "node:path";
import type { CandidateReport, GenerateOptions, GenerateResult } from "./generate-types.js";
import { readUserFileHead } from "../util/user-file.js";
import { DEFAULT_QUERY_MAX_BYTES, MAX_QUERY_MAX_BYTES, runReadOnly, type RunResult } from "../sql/query-process.js";
import { sameResult, schemaFromSqlite } from "../sql/exec-metrics.js";
import { hasOrderBy } from "../sql/sql-text.js";

export type { CandidateReport } from "./generate-types.js";

/** The most candidates one question may ask for. */
export const MAX_CANDIDATES = 32;
/** Temperature of the sampled candidates when none is given: the fine-tuned model's own distribution. */
export const DEFAULT_CANDIDATE_TEMPERATURE = 1;
/** Seed of the first sampled candidate when none is given (candidate i uses seed + i - 1): the same question gets the same answer. */
export const DEFAULT_CANDIDATE_SEED = 1;
/** Wall-clock limit per candidate query when none is given. */
export const DEFAULT_QUERY_TIMEOUT_MS = 2000;
/** A candidate result with more rows than this counts as failed (the rows are held for the vote). */
export const CANDIDATE_MAX_ROWS = 100_000;

/** One decoded candidate. */
export interface DecodedCandidate {
  sql: string;
  /** generated tokens */
  tokens: number;
  /** the greedy candidate (always the first) */
  greedy: boolean;
  /** total log-probability of its tokens under the distribution it was sampled from (null for the greedy one) */
  logprob: number | null;
  /** the sampler's seed (sampled candidates) */
  seed?: number;
  /** decoded under the schema's grammar */
  constrained?: boolean;
  /** the token budget ran out first (see GenerateResult.truncated); `note` says what was answered */
  truncated?: "budget" | "time";
  note?: string;
  /** false: constrained, but no prefix within the budget was a complete statement */
  complete?: boolean;
}

/** What to decode: n candidates for one question; under the schema's grammar when `constrain` (and a schema) is given. */
export interface CandidateDecodeOptions {
  question: string;
  schema?: string;
  evidence?: string;
  n: number;
  temperature: number;
  seed: number;
  maxTokens: number;
  constrain: boolean;
  /** wall-clock limit for decoding all the candidates (see GenerateOptions.decodeTimeoutMs) */
  decodeTimeoutMs?: number;
}

/** What candidate decoding needs from SqlGenerator (kept as an interface: generate.ts imports this module). */
export interface CandidateDecoder {
  decodeCandidates(o: CandidateDecodeOptions): Promise<DecodedCandidate[]>;
}

function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw new TypeError(`${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

/** A database for candidates: an existing regular file that starts with SQLite's header. */
export function checkDatabaseFile(file: string, label = "db"): string {
  if (typeof file !== "string" || !file) throw new TypeError(`${label}: expected the path of a SQLite file, got ${JSON.stringify(file)}`);
  const head = readUserFileHead(file, 16, label);
  if (head.toString("latin1") !== "SQLite format 3\0") throw new Error(`${label}: ${file} is not a SQLite database (no SQLite header)`);
  return path.resolve(file);
}

const schemas = new Map<string, { mtimeMs: number; size: number; schema: string }>();

/** The database's CREATE TABLE text (schemaFromSqlite), cached while the file is unchanged. */
export function databaseSchema(file: string): string {
  const st = fs.statSync(file);
  const hit = schemas.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.schema;
  const schema = schemaFromSqlite(file);
  schemas.set(file, { mtimeMs: st.mtimeMs, size: st.size, schema });
  return schema;
}

type Ok = Extract<RunResult, { ok: true }>;
interface Group {
  members: number[];
  rows: unknown[][];
  ordered: boolean;
}

/** A candidate's log-probability for ranking (none or not a number ranks last). */
const likelihood = (c: DecodedCandidate) => (typeof c.logprob === "number" && !Number.isNaN(c.logprob) ? c.logprob : -Infinity);

/** The member that speaks for a group: the greedy candidate if present, else the highest log-probability (earliest on ties). */
function representative(g: Group, cands: DecodedCandidate[]): number {
  let best = g.members[0];
  for (const i of g.members) {
    if (cands[i].greedy) return i;
    if (likelihood(cands[i]) > likelihood(cands[best])) best = i;
  }
  return best;
}

/** Orders groups: most votes; then the greedy candidate's; then the most likely representative. */
function compareGroups(a: Group, b: Group, cands: DecodedCandidate[]): number {
  if (a.members.length !== b.members.length) return b.members.length - a.members.length;
  const ra = cands[representative(a, cands)];
  const rb = cands[representative(b, cands)];
  if (ra.greedy !== rb.greedy) return ra.greedy ? -1 : 1;
  const la = likelihood(ra);
  const lb = likelihood(rb);
  return la > lb ? -1 : la < lb ? 1 : 0;
}

/**
 * Runs every distinct candidate once, read-only with a timeout, and votes: candidates whose
 * results are the same (row multisets, in order when both have a top-level ORDER BY, columns in
 * any order) share a vote. Returns the winning candidate, or the greedy one with `error` set when
 * every candidate failed.
 */
export async function voteOnCandidates(
  db: string,
  cands: DecodedCandidate[],
  opts: { timeoutMs: number; maxRows?: number; maxBytes?: number; temperature: number; seed: number },
): Promise<{ best: DecodedCandidate; ok: boolean; error?: string; report: CandidateReport }> {
  if (cands.length === 0) throw new Error("candidates: nothing was decoded");
  const outcomes = new Map<string, RunResult>();
  for (const c of cands) {
    if (!outcomes.has(c.sql))
      outcomes.set(c.sql, await runReadOnly(db, c.sql, { timeoutMs: opts.timeoutMs, maxRows: opts.maxRows ?? CANDIDATE_MAX_ROWS, maxBytes: opts.maxBytes }));
  }
  const groups: Group[] = [];
  const groupOf = new Map<number, Group>();
  const errors: Record<string, number> = {};
  let failed = 0;
  cands.forEach((c, i) => {
    const r = outcomes.get(c.sql)!;
    if (!r.ok) {
      failed++;
      errors[r.category] = (errors[r.category] ?? 0) + 1;
      return;
    }
    const ordered = hasOrderBy(c.sql);
    const g = groups.find((x) => sameResult(x.rows, (r as Ok).rows, { ordered: x.ordered && ordered }));
    if (g) g.members.push(i);
    else groups.push({ members: [i], rows: (r as Ok).rows, ordered });
    groupOf.set(i, g ?? groups[groups.length - 1]);
  });
  groups.sort((a, b) => compareGroups(a, b, cands));
  const greedy = cands.find((c) => c.greedy) ?? cands[0];
  const bestIndex = groups.length ? representative(groups[0], cands) : cands.indexOf(greedy);
  const best = cands[bestIndex];
  const report: CandidateReport = {
    db,
    n: cands.length,
    distinct: outcomes.size,
    failed,
    timedOut: errors.timeout ?? 0,
    killed: [...outcomes.values()].filter((r) => !r.ok && r.category === "timeout").length,
    errors,
    votes: groups.map((g) => {
      const rep = cands[representative(g, cands)];
      return { votes: g.members.length, sql: rep.sql, rows: g.rows.length, greedy: g.members.some((i) => cands[i].greedy) };
    }),
    greedySql: greedy.sql,
    changed: groups.length > 0 && !groups[0].members.some((i) => cands[i].greedy),
    temperature: opts.temperature,
    seed: opts.seed,
    timeoutMs: opts.timeoutMs,
    list: cands.map((c, i) => {
      const r = outcomes.get(c.sql)!;
      const g = groupOf.get(i);
      return {
        sql: c.sql,
        greedy: c.greedy,
        logprob: c.logprob,
        ok: r.ok,
        ...(g ? { vote: groups.indexOf(g) } : {}),
        ...(r.ok ? {} : { category: r.category, error: r.error }),
        ...(c.truncated ? { truncated: c.truncated } : {}),
      };
    }),
  };
  if (groups.length) return { best, ok: true, report };
  const why = Object.entries(errors)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  const first = outcomes.get(greedy.sql) as Extract<RunResult, { ok: false }>;
  return { best, ok: false, error: `every candidate failed (${why}); the greedy one: ${first.error}`, report };
}

/** A one-line account of the candidates, for logs: counts, failures, votes and whether the vote changed the greedy answer. */
export function describeCandidates(r: CandidateReport): string {
  const errs = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`);
  const votes = r.votes.map((v) => `${v.votes}${v.greedy ? " (greedy)" : ""}`).join(" / ");
  return (
    `${r.n} candidates (${r.distinct} distinct) on ${path.basename(r.db)}: ${r.failed} failed${errs.length ? ` (${errs.join(", ")})` : ""}` +
    `${r.killed ? `; ${r.killed} ${r.killed === 1 ? "query" : "queries"} killed at the ${r.timeoutMs} ms timeout` : ""}; ` +
    (r.votes.length ? `votes per result ${votes}; ${r.changed ? "the vote overrode the greedy answer" : "the greedy answer won"}` : "no candidate ran")
  );
}

/**
 * generate() with a database: N candidates decoded on one decoder, run, voted on. The schema
 * defaults to the database's own (for schema-aware templates and the grammar); decoding is
 * constrained to it unless `constrain` is false; `valid` says whether the answer ran.
 */
export async function generateWithCandidates(g: CandidateDecoder, o: GenerateOptions): Promise<GenerateResult> {
  const n = checkInt("candidates", o.candidates ?? 1, 1, MAX_CANDIDATES);
  if (o.db === undefined) throw new TypeError("candidates: running candidates needs a database (db), whose results they vote with");
  const db = checkDatabaseFile(o.db);
  if (n > 1 && o.temperature !== undefined && !(o.temperature > 0)) {
    throw new TypeError(
      `temperature: the sampled candidates need a temperature > 0, got ${o.temperature} (leave it unset for ${DEFAULT_CANDIDATE_TEMPERATURE})`,
    );
  }
  const temperature = o.temperature ?? DEFAULT_CANDIDATE_TEMPERATURE;
  const seed = checkInt("seed", o.seed ?? DEFAULT_CANDIDATE_SEED, 0, 2 ** 31);
  const timeoutMs = checkInt("queryTimeoutMs", o.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS, 1, 600_000);
  const maxBytes = checkInt("queryMaxBytes", o.queryMaxBytes ?? DEFAULT_QUERY_MAX_BYTES, 1, MAX_QUERY_MAX_BYTES);
  if (o.constrain !== undefined && typeof o.constrain !== "boolean")
    throw new TypeError(`constrain: expected true or false, got ${JSON.stringify(o.constrain)}`);
  const t0 = performance.now();
  const schema = o.schema ?? databaseSchema(db);
  const constrain = o.constrain !== false;
  const cands = await g.decodeCandidates({
    question: o.question.trim(),
    schema,
    evidence: o.evidence,
    n,
    temperature,
    seed,
    maxTokens: o.maxTokens ?? 256,
    constrain,
    decodeTimeoutMs: o.decodeTimeoutMs,
  });
  const v = await voteOnCandidates(db, cands, { timeoutMs, maxBytes, temperature, seed });
  return {
    sql: v.best.sql,
    tokens: cands.reduce((s, c) => s + c.tokens, 0),
    ms: performance.now() - t0,
    ...(cands.some((c) => c.constrained) ? { constrained: true } : {}),
    valid: v.ok,
    ...(v.error ? { error: v.error } : {}),
    ...(v.best.truncated ? { truncated: v.best.truncated, note: v.best.note } : {}),
    candidates: v.report,
  };
}

/** A database name a request may use: letters, digits, `_`, `.`, `-` (never a path). */
export const DATABASE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * The databases a server offers, by name, fixed at startup: each `files` entry under its file name
 * without the extension, and each `<dir>/<name>/<name>.sqlite` of `dir` (Spider's layout). A
 * request can only pick one of these names; it never names a path.
 */
export function listDatabases(files: string[] = [], dir?: string, log: (line: string) => void = () => undefined): Map<string, string> {
  const out = new Map<string, string>();
  const add = (name: string, file: string, label: string) => {
    if (!DATABASE_NAME.test(name)) throw new Error(`${label}: ${file}: the name ${JSON.stringify(name)} may hold only letters, digits, _ . - (128 at most)`);
    const prev = out.get(name);
    if (prev) throw new Error(`${label}: two databases are named ${JSON.stringify(name)}: ${prev} and ${file}`);
    out.set(name, fs.realpathSync(checkDatabaseFile(file, label)));
  };
  for (const f of files) add(path.basename(f).replace(/\.(sqlite3?|db)$/i, ""), f, "--db");
  if (dir !== undefined) {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`--db-dir: not a directory: ${dir}`);
    let skipped = 0;
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const file = path.join(dir, e.name, `${e.name}.sqlite`);
      if (e.isDirectory() && DATABASE_NAME.test(e.name) && fs.existsSync(file)) add(e.name, file, "--db-dir");
      else skipped++;
    }
    if (skipped) log(`  --db-dir: ${skipped} entries of ${dir} are not <name>/<name>.sqlite with a plain name; skipped`);
    if (out.size === 0) throw new Error(`--db-dir: no <name>/<name>.sqlite databases in ${dir}`);
  }
  return out;
}

/** The part of a CandidateReport an HTTP answer carries (no file paths). */
export function candidateAnswer(
  r: CandidateReport,
): Pick<CandidateReport, "n" | "distinct" | "failed" | "timedOut" | "killed" | "errors" | "votes" | "changed"> {
  return { n: r.n, distinct: r.distinct, failed: r.failed, timedOut: r.timedOut, killed: r.killed, errors: r.errors, votes: r.votes, changed: r.changed };
}
