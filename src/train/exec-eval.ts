// Execution accuracy while training (train.eval_execution): which eval rows are decoded (all, or a
// fixed seeded sample), the gold queries checked once on their databases (a row whose gold fails
// is said with its line and left out), the decoded SQL run read-only through the query sandbox
// (src/sql/query-process.ts) and compared as `eval` does, and the choice of best_model/: the best
// EX, ties to the lower eval loss, then the earlier step. Decoding itself is a hook (EvalDecoder)
// that the layer above passes in: generation lives in src/serve/, above this layer.
import fs from "node:fs";
import path from "node:path";
import { ADAPTER_RECORD } from "../adapters/folder.js";
import { executionMatch, GoldQueryError } from "../sql/exec-metrics.js";
import { runReadOnly } from "../sql/query-process.js";
import { isSingleReadQuery, removeDistinct } from "../sql/sql-text.js";
import { removeAtomic } from "../util/atomic.js";
import type { TrainConfig } from "./config.js";
import { shuffled, type Example } from "./data.js";

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
  const n = cfg.train.eval_execution_rows;
  let picked = withDb;
  if (n !== null && n < withDb.length) {
    const keep = new Set(shuffled(withDb, cfg.train.seed).slice(0, n));
    picked = picked.filter((r) => keep.has(r));
  }
  const rows: (Example & { db: string })[] = [];
  for (const r of picked) {
    const res = await runReadOnly(r.db, cfg.train.keep_distinct ? r.sql : removeDistinct(r.sql));
    if (res.ok) rows.push(r);
    else log(`eval_execution: ${r.source}: the gold query fails on ${r.db} (${res.category}: ${res.error}); the row is left out of eval_ex`);
  }
  if (rows.length === 0) throw new Error("train.eval_execution: no eval row's gold query runs on its database (see the lines above)");
  return { rows, goldFailed: picked.length - rows.length, notSampled: withDb.length - picked.length, noDatabase: evalRows.length - withDb.length };
}

/** The share of `preds` whose result matches their row's gold query on the row's database. */
export async function executionAccuracy(rows: ExecRows["rows"], preds: string[], o: { keepDistinct: boolean; timeoutMs?: number }): Promise<number> {
  let hits = 0;
  for (const [i, r] of rows.entries()) {
    if (!isSingleReadQuery(preds[i]).ok) continue;
    try {
      if ((await executionMatch(r.db, r.sql, preds[i], { keepDistinct: o.keepDistinct, timeoutMs: o.timeoutMs ?? 5000 })).match) hits++;
    } catch (err) {
      // checked to run before training; a gold query that fails now (a changed database) is said, and scores 0
      if (!(err instanceof GoldQueryError)) throw err;
    }
  }
  return hits / rows.length;
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
