// Execution accuracy while training (train.eval_execution): which eval rows are decoded (all, or a
// fixed seeded sample), the gold queries checked once on their databases (a row whose gold fails
// is said with its line and left out), the decoded SQL run read-only through the bounded runner
// (src/sql/query-process.ts: read-only, bounded in time, rows and bytes, in a memory-bounded
// child) and compared as `eval` does, and the choice of best_model/: the best EX, ties to the
// lower eval loss, then the earlier step. Decoding itself is a hook (EvalDecoder) that the layer
// above passes in: generation lives in src/serve/, above this layer.
//
// executionScores(rows, preds, limits) is the per-row API that eval_execution and the GRPO
// rewards share: one ExecMatch per row, in order; a decoded query that fails (syntax, timeout, a
// result too large, not a query) is { match: false, category, error } and never ends the run; a
// gold query that fails now is { match: false, category: "gold_failed" }. execLimits(cfg) gives
// the limits of train.eval_execution_timeout_ms / _max_bytes.
import fs from "node:fs";
import path from "node:path";
import { ADAPTER_RECORD } from "../adapters/folder.js";
import { executionMatch, GoldQueryError, type ExecMatch } from "../sql/exec-metrics.js";
import { runReadOnly, type RunOptions } from "../sql/query-process.js";
import { isSingleReadQuery, removeDistinct } from "../sql/sql-text.js";
import { removeAtomic } from "../util/atomic.js";
import type { TrainConfig } from "./config.js";
import { seededSample, type Example } from "./data.js";

/** The folder of the adapter with the best eval_ex, in output.dir. */
export const BEST_MODEL = "best_model";

/** A question to decode: what the prompt template takes. */
export interface DecodeRow {
  question: string;
  schema?: string;
  evidence?: string;
}

/**
 * Greedy-decodes every row with the adapter folder `adapterDir` (its adapter.gguf over its
 * recorded base model, with its recorded template) and resolves to one SQL per row, in order.
 */
export type EvalDecoder = (adapterDir: string, rows: DecodeRow[], o: { maxTokens: number }) => Promise<string[]>;

/** The eval rows execution accuracy is measured on, and what was left out. */
export interface ExecRows {
  rows: (Example & { db: string })[];
  /** eval rows whose gold query fails on their database: left out (each said once) */
  goldFailed: number;
  /** eval rows not in the sample (train.eval_execution_rows) */
  notSampled: number;
  /** eval rows without a database (a Spider db_id whose database is not in the folder found by default): left out, said */
  noDatabase: number;
}

/**
 * The eval rows for eval_execution: those with a database (none is an error naming the option;
 * the rows without one are said and counted); train.eval_execution_rows takes a fixed sample (seeded by
 * train.seed, in file order); a row whose gold query fails on its database is logged with its
 * line and left out.
 */
export async function execRows(cfg: TrainConfig, evalRows: Example[], log: (m: string) => void): Promise<ExecRows> {
  if (evalRows.length === 0) {
    throw new Error("train.eval_execution: there are no eval rows (set data.split's eval fraction above 0, or data.eval_path)");
  }
  const withDb = evalRows.filter((r): r is Example & { db: string } => !!r.db);
  if (withDb.length === 0) {
    throw new Error(
      `train.eval_execution: no eval row has a database (the first is ${evalRows[0].source}); give the rows one (a CSV/JSONL '${cfg.data.columns.db}' column, ` +
        "data.db, or Spider/BIRD JSON with data.db_dir), or set train.eval_execution: false",
    );
  }
  if (withDb.length < evalRows.length) {
    const first = evalRows.find((r) => !r.db)!;
    log(`eval_execution: ${evalRows.length - withDb.length} eval rows have no database (the first: ${first.source}); they are left out of eval_ex`);
  }
  const picked = seededSample(withDb, cfg.train.eval_execution_rows, cfg.train.seed);
  const rows: (Example & { db: string })[] = [];
  const limits = execLimits(cfg);
  for (const r of picked) {
    const res = await runReadOnly(r.db, cfg.train.keep_distinct ? r.sql : removeDistinct(r.sql), limits);
    if (res.ok) rows.push(r);
    else log(`eval_execution: ${r.source}: the gold query fails on ${r.db} (${res.category}: ${res.error}); the row is left out of eval_ex`);
  }
  if (rows.length === 0) throw new Error("train.eval_execution: no eval row's gold query runs on its database (see the lines above)");
  return { rows, goldFailed: picked.length - rows.length, notSampled: withDb.length - picked.length, noDatabase: evalRows.length - withDb.length };
}

/** The limits of every eval_execution query (train.eval_execution_timeout_ms, train.eval_execution_max_bytes). */
export function execLimits(cfg: TrainConfig): Required<Pick<RunOptions, "timeoutMs" | "maxBytes">> {
  return { timeoutMs: cfg.train.eval_execution_timeout_ms, maxBytes: cfg.train.eval_execution_max_bytes };
}

/** What executionScores says of a row: an execution match, or a gold query that failed now. */
export type RowScore = ExecMatch | { match: false; category: "gold_failed"; error: string };

/**
 * Each pred run read-only on its row's database against the row's gold query, in order. One
 * query's failure (a non-query, a syntax error, a timeout, a result too large) is that row's
 * { match: false, category, error }; it never throws for a query (only for a missing better-sqlite3).
 */
export async function executionScores(
  rows: readonly { db: string; sql: string }[],
  preds: readonly string[],
  o: RunOptions & { keepDistinct: boolean },
): Promise<RowScore[]> {
  if (preds.length !== rows.length) throw new Error(`executionScores: ${preds.length} predictions for ${rows.length} rows`);
  const out: RowScore[] = [];
  for (const [i, r] of rows.entries()) {
    const q = isSingleReadQuery(preds[i]);
    if (!q.ok) {
      out.push({ match: false, category: "not_a_query", error: q.why ?? "not a single read-only query" });
      continue;
    }
    try {
      out.push(await executionMatch(r.db, r.sql, preds[i], o));
    } catch (err) {
      // checked to run before training; a gold query that fails now (a changed database) scores 0
      if (!(err instanceof GoldQueryError)) throw err;
      out.push({ match: false, category: "gold_failed", error: err.message });
    }
  }
  return out;
}

/** The share of `preds` whose result matches their row's gold query on the row's database. */
export async function executionAccuracy(rows: ExecRows["rows"], preds: string[], o: RunOptions & { keepDistinct: boolean }): Promise<number> {
  const scores = await executionScores(rows, preds, o);
  return scores.filter((s) => s.match).length / rows.length;
}

/** "2 of 8 decoded queries failed (timeout 1, too_large 1)", or "" when none failed. */
export function describeFailures(scores: readonly RowScore[]): string {
  const by: Record<string, number> = {};
  for (const s of scores) if (!s.match && s.category && s.category !== "wrong" && s.category !== "empty") by[s.category] = (by[s.category] ?? 0) + 1;
  const n = Object.values(by).reduce((a, b) => a + b, 0);
  if (n === 0) return "";
  const list = Object.entries(by)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return `${n} of ${scores.length} decoded queries failed (${list})`;
}

export interface ExecScore {
  step: number;
  ex: number;
  loss: number;
}

/** Whether `a` beats `b` for best_model/: a higher EX, or the same EX and a lower eval loss (a full tie keeps the earlier). */
export function betterByEx(a: ExecScore, b: ExecScore | null): boolean {
  if (!b) return true;
  if (a.ex !== b.ex) return a.ex > b.ex;
  return a.loss < b.loss;
}

/** The best of the scores in step order, by betterByEx. */
export function bestByEx(scores: readonly ExecScore[]): ExecScore | null {
  let best: ExecScore | null = null;
  for (const s of scores) if (betterByEx(s, best)) best = s;
  return best;
}

/**
 * On resume: the best of the evaluations kept in metrics.jsonl. best_model/ must hold that step's
 * adapter; one from another step (an evaluation after the checkpoint the run resumes from) is
 * removed, said, and best_model/ is then chosen again from the evaluations after the resume.
 */
export function resumeBest(out: string, scores: readonly ExecScore[], log: (m: string) => void): { best: ExecScore | null; folder: boolean } {
  const best = bestByEx(scores);
  const dir = path.join(out, BEST_MODEL);
  if (!fs.existsSync(dir)) {
    if (best) log(`resume: ${dir} is missing; ${BEST_MODEL}/ is chosen again from the evaluations after the resume`);
    return { best: null, folder: false };
  }
  let step: unknown;
  try {
    step = (JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_RECORD), "utf8")) as { steps?: unknown }).steps;
  } catch {
    step = undefined;
  }
  if (best && step === best.step) return { best, folder: true };
  removeAtomic(dir);
  log(
    `resume: removed ${dir} (step ${String(step)}), which is not the best evaluation kept in metrics.jsonl` +
      (best ? ` (step ${best.step}, eval_ex ${best.ex})` : "") +
      `; ${BEST_MODEL}/ is chosen again from the evaluations after the resume`,
  );
  return { best: null, folder: false };
}

/** Moves the freshly evaluated adapter folder `cand` into place as best_model/ (the old one renamed away first). */
export function promoteBest(out: string, cand: string): void {
  const dir = path.join(out, BEST_MODEL);
  const old = `${dir}.old-${process.pid}`;
  const had = fs.existsSync(dir);
  if (had) fs.renameSync(dir, old);
  fs.renameSync(cand, dir);
  if (had) fs.rmSync(old, { recursive: true, force: true });
}
