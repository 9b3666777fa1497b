// GRPO's greedy eval_ex, train_ex and its best_model/: every train.eval_every steps (and at steps
// 0 and the last) the current adapter is saved to eval_adapter/ in both formats, the eval rows with
// a database and a fixed seeded sample of the training rows (train_ex) are decoded greedily by the
// decoder hook in one decode and run read-only as eval_execution runs them (exec-eval.ts); when eval_ex beats the best so far, eval_adapter/ becomes best_model/ (swapped in
// by SFT's promoteBest), else it is removed. GRPO has no eval loss, so a tie in eval_ex keeps the
// earlier step. The best so far is in each checkpoint's grpo_state.json; on resume, best_model/
// is checked against it as SFT checks it (resumeBest).
import fs from "node:fs";
import path from "node:path";
import type { AdapterRecord } from "../adapters/folder.js";
import { saveAdapterFolder } from "../adapters/save-load.js";
import type { LoraEngine } from "../engine/engine.js";
import { removeAtomic } from "../util/atomic.js";
import type { TrainConfig } from "./config.js";
import type { Example } from "./data.js";
import { betterByEx, execLimits, executionAccuracy, promoteBest, resumeBest, type EvalDecoder } from "./exec-eval.js";
import { EVAL_ADAPTER } from "./loop.js";

/** best_model/'s evaluation: its GRPO step and eval_ex. */
export interface GrpoBest {
  step: number;
  ex: number;
}

/** What an evaluation needs of the GRPO run (GrpoRun has it). */
export interface GrpoEvalRun {
  cfg: TrainConfig;
  engine: LoraEngine;
  hooks: { decodeSql?: EvalDecoder; onLog?: (m: string) => void };
  record: Omit<AdapterRecord, "steps">;
  evalRows: (Example & { db: string })[];
  /** the fixed sample of training rows train_ex is measured on (seededSample) */
  trainExRows: (Example & { db: string })[];
  best: GrpoBest | null;
}

/** Whether `a` beats `b`: a higher eval_ex. There is no eval loss in GRPO: a tie keeps the earlier (b). */
function beats(a: GrpoBest, b: GrpoBest | null): boolean {
  // betterByEx breaks ties by the lower eval loss: equal losses make a tie keep b, the earlier step
  return betterByEx({ ...a, loss: 0 }, b && { ...b, loss: 0 });
}

/**
 * Greedy eval_ex after `step` GRPO steps on the eval rows with a database, and train_ex on
 * run.trainExRows, through the decoder hook in one decode (each undefined without the hook or
 * without its rows); best_model/ and run.best follow eval_ex.
 */
export async function grpoEvalEx(run: GrpoEvalRun, step: number): Promise<{ eval_ex?: number; train_ex?: number }> {
  const all = [...run.evalRows, ...run.trainExRows];
  if (!run.hooks.decodeSql || all.length === 0) return {};
  const out = run.cfg.output.dir;
  const cand = path.join(out, EVAL_ADAPTER);
  await saveAdapterFolder(run.engine, cand, { ...run.record, steps: step });
  const n = run.evalRows.length;
  let ex: { eval_ex?: number; train_ex?: number };
  try {
    const preds = await run.hooks.decodeSql(
      cand,
      all.map((r) => ({ question: r.question, schema: r.schema, evidence: r.evidence })),
      { maxTokens: run.cfg.rl.max_new_tokens },
    );
    const o = { keepDistinct: run.cfg.train.keep_distinct, ...execLimits(run.cfg) };
    ex = {
      eval_ex: n ? await executionAccuracy(run.evalRows, preds.slice(0, n), o) : undefined,
      train_ex: run.trainExRows.length ? await executionAccuracy(run.trainExRows, preds.slice(n), o) : undefined,
    };
  } catch (err) {
    removeAtomic(cand);
    throw err;
  }
  if (ex.eval_ex !== undefined && beats({ step, ex: ex.eval_ex }, run.best)) {
    promoteBest(out, cand);
    run.best = { step, ex: ex.eval_ex };
  } else removeAtomic(cand);
  return ex;
}

/**
 * The best so far on resume from checkpoint `dir`: its grpo_state.json's `best`, with best_model/
 * checked to hold that step's adapter (else removed and said; best_model/ is then chosen again
 * from the evaluations after the resume). A checkpoint without `best` (written before GRPO kept
 * best_model/) is said.
 */
export function resumeGrpoBest(out: string, dir: string, state: { best?: GrpoBest | null }, log: (m: string) => void): GrpoBest | null {
  if (state.best === undefined) log(`resume: ${dir}/grpo_state.json has no best eval_ex; best_model/ is chosen from the evaluations after the resume`);
  const kept = state.best ? [{ ...state.best, loss: 0 }] : [];
  const r = resumeBest(out, kept, log).best;
  return r && { step: r.step, ex: r.ex };
}

/** An eval_adapter/ a run that stopped during an evaluation left, removed and said. */
export function removeLeftEvalAdapter(out: string, log: (m: string) => void): void {
  const dir = path.join(out, EVAL_ADAPTER);
  if (!fs.existsSync(dir)) return;
  removeAtomic(dir);
  log(`output: removed ${dir}, an evaluation's adapter left by a run that stopped during it`);
}
