// The training loop: optimizer steps over the epochs' shuffled examples, each step its micro-batches
// accumulated then one AdamW step; evaluation every eval_every steps (with train.eval_execution also
// eval_ex, see exec-eval.ts, and best_model/), a checkpoint every save_every,
// metrics.jsonl as it goes, and on abort a checkpoint of the state before the unfinished step. A
// non-finite loss or gradient norm stops the run before anything of its step is saved.
import fs from "node:fs";
import path from "node:path";
import type { AdapterRecord } from "../adapters/folder.js";
import { saveAdapterFolder } from "../adapters/save-load.js";
import { makeBatch, type LoraEngine } from "../engine/engine.js";
import { removeAtomic, writeFileAtomic } from "../util/atomic.js";
import { checkpointDirs, saveCheckpoint, type Position, type TensorList } from "./checkpoints.js";
import type { TrainConfig } from "./config.js";
import { betterByEx, describeFailures, execLimits, executionScores, promoteBest, type EvalDecoder, type ExecRows, type ExecScore } from "./exec-eval.js";
import type { Series } from "./plot.js";
import type { Encoded } from "./prompt.js";
import { epochOrder, examplesPerStep, lrAt } from "./schedule.js";
import type { EvalEvent, StepEvent, TrainHooks } from "./hooks.js";

/** metrics.jsonl, and the loss curves so far for loss.svg. */
export interface Metrics {
  history: { train: Series; eval: Series; evalEx: Series };
  write(m: object): void;
}

/** What the loop works with; set up once per session. */
export interface Run {
  cfg: TrainConfig;
  engine: LoraEngine;
  data: { train: Encoded[]; eval: Encoded[] };
  hooks: TrainHooks;
  record: Omit<AdapterRecord, "steps">; // written with the adapter of each checkpoint and of the final model
  tensors: TensorList;
  totalSteps: number;
  startStep: number; // the step this session started from (the checkpoint's, on resume)
  metrics: Metrics;
  /** train.eval_execution: the rows, the decoder, and the best score so far (best_model/'s) */
  exec?: { rows: ExecRows; decode: EvalDecoder; best: ExecScore | null };
}

/** The eval_adapter/ folder each evaluation with eval_execution saves and decodes from. */
export const EVAL_ADAPTER = "eval_adapter";

/** A session of the loop: where it is, and the counters the step events and the summary report. */
export interface Session {
  pos: Position;
  order: number[]; // the current epoch's example order
  interrupted: boolean;
  lastLoss: number;
  recent: number[]; // losses of the last 10 steps
  lastEval: EvalEvent | null;
  tokensSeen: number;
  trainSeconds: number; // time in accumulate/step only: evaluation and checkpoints excluded
  loopStart: number; // for the wall time and the ETA, evaluations included
}

/**
 * The entries of metrics.jsonl up to step `upTo`. A last line a crash cut is dropped with a
 * warning; any other line that does not parse is an error naming the file and the line.
 */
function readMetrics(
  file: string,
  upTo: number,
  log: (m: string) => void,
): { line: string; m: { type?: string; step: number; loss: number; eval_ex?: number } }[] {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  while (lines.length && !lines[lines.length - 1].trim()) lines.pop();
  const kept = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    let m;
    try {
      m = JSON.parse(lines[i]);
    } catch (e) {
      if (i === lines.length - 1) {
        log(`metrics: warning: ${file}:${i + 1}: dropped the last line, cut by a crash (${(e as Error).message})`);
        break;
      }
      throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`, { cause: e });
    }
    if (typeof m !== "object" || m === null || typeof m.step !== "number") throw new Error(`${file}:${i + 1}: expected a metrics object with a step`);
    if (m.step <= upTo) kept.push({ line: lines[i], m });
  }
  return kept;
}

/** Opens metrics.jsonl in `out`; on resume from step `resumedAt`, drops what came after it. */
export function openMetrics(out: string, resumedAt: number | null, log: (m: string) => void = () => {}): Metrics {
  const file = path.join(out, "metrics.jsonl");
  const history: Metrics["history"] = { train: [], eval: [], evalEx: [] };
  const kept = resumedAt !== null && fs.existsSync(file) ? readMetrics(file, resumedAt, log) : [];
  for (const { m } of kept) {
    if (m.type === "train") history.train.push([m.step, m.loss]);
    if (m.type === "eval") history.eval.push([m.step, m.loss]);
    if (m.type === "eval" && typeof m.eval_ex === "number") history.evalEx.push([m.step, m.eval_ex]);
  }
  writeFileAtomic(file, kept.map((k) => k.line + "\n").join(""));
  return { history, write: (m) => fs.appendFileSync(file, JSON.stringify(m) + "\n") };
}

/** Evaluates the eval split (token-weighted loss and accuracy) after `step` steps; stops on abort. */
async function evaluate(run: Run, s: Session, step: number): Promise<void> {
  const { data, hooks } = run;
  const bs = run.cfg.train.batch_size;
  if (data.eval.length === 0) return;
  const t0 = performance.now();
  let lossSum = 0,
    n = 0,
    correct = 0;
  for (let i = 0; i < data.eval.length; i += bs) {
    const st = await run.engine.evaluate(makeBatch(data.eval.slice(i, i + bs)));
    lossSum += st.lossSum;
    n += st.nTokens;
    correct += st.nCorrect;
    hooks.onEvalProgress?.(Math.min(i + bs, data.eval.length), data.eval.length, step);
    if (hooks.signal?.aborted) return;
  }
  s.lastEval = { step, loss: lossSum / n, accuracy: correct / n, tokens: n };
  if (run.exec) {
    hooks.onEvalProgress?.(0, run.exec.rows.rows.length, step, "execution");
    s.lastEval.eval_ex = await evalExecution(run, step, s.lastEval.loss);
    run.metrics.history.evalEx.push([step, s.lastEval.eval_ex]);
    s.lastEval.best_step = run.exec.best?.step;
  }
  run.metrics.history.eval.push([step, s.lastEval.loss]);
  run.metrics.write({ type: "eval", ...s.lastEval, seconds: (performance.now() - t0) / 1000 });
  hooks.onEval?.(s.lastEval);
}

/**
 * eval_ex of the adapter after `step` steps: saved to eval_adapter/, decoded greedily by the
 * hook, run read-only on the rows' databases; when it beats the best so far (ties: the lower eval
 * loss) the folder becomes best_model/, else it is removed.
 */
async function evalExecution(run: Run, step: number, loss: number): Promise<number> {
  const x = run.exec!;
  const out = run.cfg.output.dir;
  const cand = path.join(out, EVAL_ADAPTER);
  await saveAdapterFolder(run.engine, cand, { ...run.record, steps: step });
  const rows = x.rows.rows;
  const preds = await x.decode(
    cand,
    rows.map((r) => ({ question: r.question, schema: r.schema, evidence: r.evidence })),
    { maxTokens: run.cfg.data.max_seq_len },
  );
  if (preds.length !== rows.length) throw new Error(`eval_execution: the decoder answered ${preds.length} of ${rows.length} rows`);
  const scores = await executionScores(rows, preds, { ...execLimits(run.cfg), keepDistinct: run.cfg.train.keep_distinct });
  const ex = scores.filter((r) => r.match).length / rows.length;
  const failed = describeFailures(scores);
  if (failed) run.hooks.onLog?.(`eval_execution: step ${step}: ${failed}; each scores 0`);
  const score = { step, ex, loss };
  if (betterByEx(score, x.best)) {
    promoteBest(out, cand);
    x.best = score;
  } else {
    removeAtomic(cand);
  }
  return ex;
}

/** Accumulates the gradients of one step's examples, micro-batch by micro-batch; on abort it stops after the current one. */
async function accumulate(run: Run, exs: Encoded[]) {
  const bs = run.cfg.train.batch_size;
  const divisor = exs.reduce((n, e) => n + e.mask.reduce((a, b) => a + b, 0), 0); // targets in the whole step
  let lossSum = 0,
    tokens = 0;
  for (let i = 0; i < exs.length; i += bs) {
    const mb = exs.slice(i, i + bs);
    const st = await run.engine.accumulate(makeBatch(mb), divisor);
    lossSum += st.lossSum;
    tokens += mb.reduce((n, e) => n + e.tokens.length, 0);
    if (run.hooks.signal?.aborted) return { aborted: true, loss: NaN, tokens };
  }
  return { aborted: false, loss: lossSum / divisor, tokens };
}

/** Leaves the unfinished step undone: its gradients are dropped, the checkpoint is the state before it. */
async function interrupt(run: Run, s: Session, before: Position, dropoutCalls: number): Promise<void> {
  const tc = run.cfg.train;
  await run.engine.zeroGrad();
  const dir = await saveCheckpoint(run.engine, run.cfg.output.dir, before, run.tensors, tc.keep_checkpoints, run.record, dropoutCalls);
  run.hooks.onLog?.(`interrupted: checkpoint saved to ${dir}`);
  s.pos = before;
  s.interrupted = true;
}

/** Counts a finished step into the session, writes its metrics line, and emits its StepEvent. */
function report(run: Run, s: Session, step: { loss: number; lr: number; gradNorm: number; tokens: number; seconds: number }) {
  const { pos } = s;
  s.tokensSeen += step.tokens;
  s.trainSeconds += step.seconds;
  s.lastLoss = step.loss;
  s.recent.push(step.loss);
  if (s.recent.length > 10) s.recent.shift();
  const elapsedS = (performance.now() - s.loopStart) / 1000;
  const ev: StepEvent = {
    step: pos.step,
    totalSteps: run.totalSteps,
    epoch: pos.epoch + pos.offset / run.data.train.length,
    loss: step.loss,
    lr: step.lr,
    gradNorm: step.gradNorm,
    tokens: step.tokens,
    tokensPerS: s.tokensSeen / s.trainSeconds,
    elapsedS,
    etaS: (elapsedS / (pos.step - run.startStep)) * (run.totalSteps - pos.step),
  };
  run.metrics.history.train.push([ev.step, ev.loss]);
  run.metrics.write({
    type: "train",
    step: ev.step,
    epoch: ev.epoch,
    loss: ev.loss,
    lr: ev.lr,
    gradNorm: ev.gradNorm,
    tokens: ev.tokens,
    tokensPerS: ev.tokensPerS,
    elapsedS,
  });
  run.hooks.onStep?.(ev);
}

/** The error that stops a run whose loss or gradient norm is not finite: nothing of the step is saved. */
function nonFinite(run: Run, what: string, value: number, step: number): Error {
  const last = checkpointDirs(run.cfg.output.dir).pop();
  return new Error(
    `train: the ${what} of step ${step} is ${value}; stopped before saving anything of it ` +
      `(${last ? `the last checkpoint, ${last.dir}, is intact` : "no checkpoint was saved yet"}). ` +
      "Lower train.lr, set train.max_grad_norm, or check the data and the model's weights",
  );
}

/** One optimizer step, then its evaluation and checkpoint when due. Resolves to false when aborted. */
async function trainStep(run: Run, s: Session): Promise<boolean> {
  const tc = run.cfg.train;
  const pos = s.pos;
  const before = { ...pos };
  if (pos.offset >= s.order.length) {
    pos.epoch++;
    pos.offset = 0;
    s.order = epochOrder(run.data.train, pos.epoch, tc, run.cfg.data.group_by_length);
  }
  const t0 = performance.now();
  const exs = s.order.slice(pos.offset, pos.offset + examplesPerStep(tc)).map((i) => run.data.train[i]);
  const dropoutAtStart = run.engine.counters().dropoutCalls; // an interrupted step is wound back to here
  const acc = await accumulate(run, exs);
  if (acc.aborted) {
    await interrupt(run, s, before, dropoutAtStart);
    return false;
  }
  if (!Number.isFinite(acc.loss)) throw nonFinite(run, "loss", acc.loss, pos.step + 1);
  const lr = lrAt(pos.step, run.totalSteps, tc);
  const gradNorm = await run.engine.step({ lr, beta1: tc.beta1, beta2: tc.beta2, eps: tc.eps, weightDecay: tc.weight_decay, maxGradNorm: tc.max_grad_norm });
  if (!Number.isFinite(gradNorm)) throw nonFinite(run, "gradient norm", gradNorm, pos.step + 1);
  pos.offset += exs.length;
  pos.step++;
  report(run, s, { loss: acc.loss, lr, gradNorm, tokens: acc.tokens, seconds: (performance.now() - t0) / 1000 });
  const due = (every: number) => every > 0 && pos.step % every === 0 && pos.step !== run.totalSteps;
  if (due(tc.eval_every)) await evaluate(run, s, pos.step);
  if (due(tc.save_every)) await saveCheckpoint(run.engine, run.cfg.output.dir, pos, run.tensors, tc.keep_checkpoints, run.record);
  return true;
}

/**
 * Trains from `start` to run.totalSteps, or until aborted: evaluates first (a fresh run) and last
 * (unless interrupted). Resolves to the session, for the summary.
 */
export async function trainLoop(run: Run, start: Position): Promise<Session> {
  // a resumed run's "last 10 steps" start with the steps before the checkpoint, as an uninterrupted run's would
  const recent = run.metrics.history.train.slice(-10).map(([, loss]) => loss);
  const s: Session = {
    pos: start,
    order: [],
    interrupted: false,
    lastLoss: recent.length ? recent[recent.length - 1] : NaN,
    recent,
    lastEval: null,
    tokensSeen: 0,
    trainSeconds: 0,
    loopStart: 0,
  };
  if (start.step === 0 && !run.metrics.history.eval.some((e) => e[0] === 0)) await evaluate(run, s, 0);
  s.order = epochOrder(run.data.train, start.epoch, run.cfg.train, run.cfg.data.group_by_length);
  s.loopStart = performance.now();
  while (s.pos.step < run.totalSteps && (await trainStep(run, s)));
  if (!s.interrupted) await evaluate(run, s, s.pos.step);
  return s;
}
