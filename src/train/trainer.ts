// The SFT trainer: trainSft reads as setup (config, model, data, engine, resume) -> the loop
// (loop.ts) -> the summary. The trainer owns the schedule (schedule.ts: epochs or max_steps, the
// learning rate), evaluation (with train.eval_execution also execution accuracy and best_model/,
// exec-eval.ts), checkpoints and resuming (checkpoints.ts); the native engine only
// accumulates and steps. The output folder must be new or empty unless the run resumes or
// overwrites it; every file and folder it writes is written whole (../util/atomic.ts; metrics.jsonl
// is appended to, and a line a crash cut is dropped on resume). prepareData is also
// the dry run of `text2sql data`.
import fs from "node:fs";
import path from "node:path";
import { baseModelName, FINAL_MODEL, GGUF_ADAPTER } from "../adapters/folder.js";
import { loadAdapterInto, saveAdapterFolder } from "../adapters/save-load.js";
import { LoraEngine } from "../engine/engine.js";
import { resolveModelPath } from "../models/model-path.js";
import { closeAll } from "../sql/query-process.js";
import { cleanLeftovers, removeAtomic, writeFileAtomic } from "../util/atomic.js";
import { checkpointDirs, resumeNewest, type Position } from "./checkpoints.js";
import { configToYaml, loadConfig, type TrainConfig } from "./config.js";
import { loadDataset, type DatasetReport, type Example } from "./data.js";
import { BEST_MODEL, execRows, resumeBest, type EvalDecoder, type ExecRows } from "./exec-eval.js";
import { EVAL_ADAPTER, openMetrics, trainLoop, type Metrics, type Run, type Session } from "./loop.js";
import type { RunSummary, TrainHooks, TrainOptions } from "./hooks.js";
import { lossCurveSvg } from "./plot.js";
import { encodeExample, Tokenizer, type Encoded, type EncodeOptions } from "./prompt.js";
import { totalSteps } from "./schedule.js";

export type { EvalEvent, StepEvent, TrainHooks, TrainOptions } from "./hooks.js";

export interface LengthStats {
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

export interface DataSummary extends DatasetReport {
  skippedTooLong: number;
  truncated: number;
  promptTokens: LengthStats;
  completionTokens: LengthStats;
  totalTokens: LengthStats;
  overMaxSeqLen: number;
  maxSeqLen: number;
  /** schemas that lost tables to fit max_seq_len, and the tables dropped in all */
  schemasShortened: number;
  tablesDropped: number;
  /** examples (all splits) over 1,024 and 2,048 tokens, as the template makes them */
  over1024: number;
  over2048: number;
}

export interface TrainSummary extends RunSummary {
  epochs: number;
  trainLoss: number;
  evalLoss: number | null;
  evalAccuracy: number | null;
  /** train.eval_execution: the last evaluation's execution accuracy */
  evalEx: number | null;
  /** train.eval_execution: best_model/, the adapter of the evaluation with the best eval_ex (ties: the lower eval loss) */
  bestModel: { dir: string; step: number; evalEx: number; evalLoss: number } | null;
  /** train.eval_execution: the rows scored, the rows left out (gold fails on its database, not in the sample), the DISTINCT rule */
  evalExecution: { rows: number; goldFailed: number; notSampled: number; noDatabase: number; keepDistinct: boolean } | null;
  wallS: number;
  tokensPerS: number;
  peakRssBytes: number;
  trainableParams: number;
  memory: {
    baseWeights: number;
    /** of baseWeights: quantized matrices (Q8_0, Q4_K, ...) */
    quantizedWeights: number;
    transposedCopies: number;
    lora: number;
    gradients: number;
    optimizer: number;
    computeBuffer: number;
    /** of computeBuffer: the largest Wᵀ made per layer from a quantized weight (one at a time) */
    perLayerTransposed: number;
    other: number;
  };
  data: DataSummary;
}

function stats(xs: number[]): LengthStats {
  if (xs.length === 0) return { p50: 0, p95: 0, max: 0, mean: 0 };
  const s = xs.slice().sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { p50: q(0.5), p95: q(0.95), max: s[s.length - 1], mean: s.reduce((a, b) => a + b, 0) / s.length };
}

/** Token lengths and counts over the examples as they are encoded, for the summary and the warning. */
interface Tally {
  prompts: number[];
  completions: number[];
  totals: number[];
  over: number; // of which longer than max_seq_len
  skipped: number;
  truncated: number;
  schemasShortened: number;
  tablesDropped: number;
}

/** Encodes rows with `opts`, counting into `t`; rows too long to keep are left out. */
function encodeRows(tok: Tokenizer, rows: Example[], opts: EncodeOptions, t: Tally): Encoded[] {
  const out: Encoded[] = [];
  for (const ex of rows) {
    // lengths as the template makes them, before any cut
    const full = encodeExample(tok, ex, { ...opts, maxSeqLen: Number.MAX_SAFE_INTEGER });
    t.prompts.push(full!.promptLen - 1);
    t.completions.push(full!.completionLen - 1);
    t.totals.push(full!.tokens.length);
    if (full!.tokens.length > opts.maxSeqLen) t.over++;
    const e = encodeExample(tok, ex, opts);
    if (!e) t.skipped++;
    else {
      if (e.truncated) t.truncated++;
      if (e.tablesDropped) {
        t.schemasShortened++;
        t.tablesDropped += e.tablesDropped;
      }
      out.push(e);
    }
  }
  return out;
}

/** What happened to the rows longer than max_seq_len. */
function tooLongWarning(t: Tally, opts: EncodeOptions): string {
  const how =
    opts.tooLong === "skip"
      ? `${t.skipped} skipped`
      : `${t.truncated} shortened` +
        (t.schemasShortened
          ? ` (${t.schemasShortened} by dropping ${t.tablesDropped} CREATE TABLE statements least related to the question from their schema, ${t.truncated - t.schemasShortened} by cutting the prompt from the left)`
          : " by cutting the prompt from the left") +
        (t.skipped ? `, ${t.skipped} skipped (the SQL alone is too long)` : "");
  return `data: warning: ${t.over} rows are longer than ${opts.maxSeqLen} tokens: ${how}`;
}

/** Reads, splits and tokenizes the data; the dry run of `text2sql data` and the first phase of training. */
export async function prepareData(cfg: TrainConfig, modelPath: string, log: (m: string) => void = () => {}) {
  const ds = await loadDataset(cfg.data);
  log(
    `data: ${ds.report.rows} rows from ${ds.report.files.join(", ")}; split ${ds.report.split.train} / ${ds.report.split.eval} / ${ds.report.split.test}` +
      (ds.report.duplicates ? `; ${ds.report.duplicates} duplicate rows (kept)` : ""),
  );
  const tok = await Tokenizer.load(modelPath);
  const opts = { template: cfg.data.template, maxSeqLen: cfg.data.max_seq_len, tooLong: cfg.data.too_long, lossOn: cfg.data.loss_on };
  const t: Tally = { prompts: [], completions: [], totals: [], over: 0, skipped: 0, truncated: 0, schemasShortened: 0, tablesDropped: 0 };
  const train = encodeRows(tok, ds.train, opts, t);
  const evalSet = encodeRows(tok, ds.eval, opts, t);
  encodeRows(tok, ds.test, opts, t);
  await tok.dispose();
  if (t.over) log(tooLongWarning(t, opts));
  if (train.length === 0) throw new Error("data: no training examples left after tokenizing");
  const summary: DataSummary = {
    ...ds.report,
    skippedTooLong: t.skipped,
    truncated: t.truncated,
    promptTokens: stats(t.prompts),
    completionTokens: stats(t.completions),
    totalTokens: stats(t.totals),
    overMaxSeqLen: t.over,
    maxSeqLen: opts.maxSeqLen,
    schemasShortened: t.schemasShortened,
    tablesDropped: t.tablesDropped,
    over1024: t.totals.filter((n) => n > 1024).length,
    over2048: t.totals.filter((n) => n > 2048).length,
  };
  return { train, eval: evalSet, evalRows: ds.eval, summary };
}

function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

/**
 * Fine-tunes a LoRA adapter on question/SQL pairs. Resolves to a summary of the run.
 *
 *   await trainSft({ config: "configs/quickstart.yaml", train: { max_steps: 50 } }, { onStep: (e) => console.log(e.loss) })
 */
export async function trainSft(options: TrainOptions | TrainConfig, hooks: TrainHooks = {}): Promise<TrainSummary> {
  const { config: file, ...object } = options as TrainOptions;
  const cfg = loadConfig({ file, object });
  if (cfg.method === "grpo") throw new Error("method: grpo is trained by trainGrpo (or `text2sql train --method grpo`), not trainSft");
  const log = hooks.onLog ?? (() => {});
  const t0 = performance.now();
  const out = cfg.output.dir;
  checkOutputDir(out, hooks);
  for (const dir of [out, path.join(out, "checkpoints")]) cleanLeftovers(dir).forEach((m) => log(`output: ${m}`));
  if (hooks.resume && checkpointDirs(out).length === 0) throw new Error(`--resume: no checkpoint in ${path.join(out, "checkpoints")}`);

  const modelPath = await resolveModelPath(cfg.model.path, { log, dtype: cfg.model.dtype, signal: hooks.signal });
  const data = await prepareData(cfg, modelPath, log);
  const exec = cfg.train.eval_execution ? await execSetup(cfg, data.evalRows, hooks, log) : undefined;
  const engine = await openEngine(cfg, modelPath);
  try {
    const { run, start } = await startRun(cfg, engine, modelPath, data, hooks);
    if (exec) run.exec = { ...exec, best: hooks.resume ? resumeBest(out, execScores(run.metrics), log).best : null };
    const session = await trainLoop(run, start);
    return await finish(run, session, data.summary, t0);
  } finally {
    await engine.dispose();
    if (exec) await closeAll();
  }
}

/** train.eval_execution: its decoder and rows (gold queries checked on their databases), said in the log. */
async function execSetup(cfg: TrainConfig, evalRows: Example[], hooks: TrainHooks, log: (m: string) => void): Promise<{ rows: ExecRows; decode: EvalDecoder }> {
  if (!hooks.decodeSql) {
    throw new Error(
      "train.eval_execution: this trainSft has no decoder (hooks.decodeSql); use trainSft from the package's entry point or `text2sql train`, which pass node-llama-cpp's",
    );
  }
  const rows = await execRows(cfg, evalRows, log);
  log(
    `eval_execution: ${rows.rows.length} eval rows decoded greedily and run on their databases at every evaluation` +
      (rows.notSampled ? ` (a sample of ${cfg.train.eval_execution_rows}, seed train.seed ${cfg.train.seed})` : "") +
      (rows.goldFailed ? `; ${rows.goldFailed} left out: their gold query fails on their database` : "") +
      (rows.noDatabase ? `; ${rows.noDatabase} left out: no database` : "") +
      `; DISTINCT ${cfg.train.keep_distinct ? "kept as written (train.keep_distinct)" : "taken out of both queries (the official evaluator's default)"}`,
  );
  return { rows, decode: hooks.decodeSql };
}

/** The (step, eval_ex, eval loss) of every evaluation in the metrics that has an eval_ex. */
function execScores(m: Metrics): { step: number; ex: number; loss: number }[] {
  const loss = new Map(m.history.eval.map(([step, l]) => [step, l]));
  return m.history.evalEx.filter(([step]) => loss.has(step)).map(([step, ex]) => ({ step, ex, loss: loss.get(step)! }));
}

/** Refuses a non-empty output folder unless the run resumes or replaces what it holds. */
function checkOutputDir(out: string, hooks: TrainHooks): void {
  if (hooks.resume && hooks.overwrite)
    throw new Error("--resume and --overwrite exclude each other: resume continues the run in output.dir, overwrite replaces it");
  if (!fs.existsSync(out)) return;
  if (!fs.statSync(out).isDirectory()) throw new Error(`output.dir: ${out} is not a folder`);
  const held = fs.readdirSync(out);
  if (held.length === 0 || hooks.resume || hooks.overwrite) return;
  throw new Error(
    `output.dir: ${out} is not empty (it holds ${held.slice(0, 4).join(", ")}${held.length > 4 ? ", ..." : ""}); ` +
      "continue its run with --resume, replace it with --overwrite, or choose another output.dir",
  );
}

/**
 * The run is known to start: opens metrics.jsonl (on resume, checked and cut back to step
 * `resumedAt`), writes config.yaml and, with overwrite, removes the products of the run the folder
 * held (its checkpoints, final model, loss curve and summary).
 */
function beginOutput(cfg: TrainConfig, hooks: TrainHooks, resumedAt: number | null): Metrics {
  const out = cfg.output.dir;
  fs.mkdirSync(out, { recursive: true });
  const metrics = openMetrics(out, resumedAt, hooks.onLog);
  if (hooks.overwrite) for (const f of ["checkpoints", FINAL_MODEL, BEST_MODEL, "loss.svg", "summary.json"]) removeAtomic(path.join(out, f));
  if (fs.existsSync(path.join(out, EVAL_ADAPTER))) {
    removeAtomic(path.join(out, EVAL_ADAPTER));
    hooks.onLog?.(`output: removed ${path.join(out, EVAL_ADAPTER)}, an evaluation's adapter left by a run that stopped during it`);
  }
  writeFileAtomic(path.join(out, "config.yaml"), configToYaml(cfg));
  return metrics;
}

/** The training engine of a config (SFT's, and GRPO's with dropout 0). */
export function openEngine(cfg: TrainConfig, modelPath: string, dropout = cfg.lora.dropout): Promise<LoraEngine> {
  const tc = cfg.train;
  return LoraEngine.create({
    model: modelPath,
    device: tc.device,
    threads: tc.threads,
    memory: tc.memory,
    checkpointing: tc.gradient_checkpointing === "auto" ? tc.memory === "lean" : tc.gradient_checkpointing === "on",
    lora: {
      r: cfg.lora.r,
      alpha: cfg.lora.alpha,
      dropout,
      rslora: cfg.lora.use_rslora,
      targetModules: cfg.lora.target_modules,
      seed: cfg.lora.seed,
    },
  });
}

/**
 * Readies a session: checks every example fits the model's context, starts the adapter from
 * lora.init_adapter or (hooks.resume) from the newest valid checkpoint, writes config.yaml and
 * opens metrics.jsonl.
 */
async function startRun(
  cfg: TrainConfig,
  engine: LoraEngine,
  modelPath: string,
  data: { train: Encoded[]; eval: Encoded[] },
  hooks: TrainHooks,
): Promise<{ run: Run; start: Position }> {
  const log = hooks.onLog ?? (() => {});
  const info = engine.info;
  log(
    `model: ${modelPath} (${info.nLayer} layers, n_embd ${info.nEmbd}, ${info.weightType}) on ${info.device}; ` +
      `LoRA r=${cfg.lora.r} on ${info.targets.join(", ")}: ${engine.trainableParams.toLocaleString("en-US")} trainable parameters; ` +
      `memory ${cfg.train.memory}${info.checkpoint ? " with gradient checkpointing" : ""}`,
  );
  const tooLong = [...data.train, ...data.eval].find((e) => e.tokens.length > info.nCtx);
  if (tooLong) {
    throw new Error(`${tooLong.source}: ${tooLong.tokens.length} tokens exceed the model's context length ${info.nCtx}; set data.max_seq_len <= ${info.nCtx}`);
  }
  const record = { basePath: path.resolve(modelPath), baseModel: baseModelName(modelPath), template: cfg.data.template };
  if (cfg.lora.init_adapter && !hooks.resume) {
    const kind = await loadAdapterInto(engine, cfg.lora.init_adapter);
    log(`adapter: starting from ${cfg.lora.init_adapter} (${kind === "peft" ? "PEFT" : "GGUF LoRA"})`);
  }
  const steps = totalSteps(data.train.length, cfg.train);
  const tensors = (await engine.getAdapter()).map((t) => ({ name: t.name, size: t.data.length }));
  let start: Position = { step: 0, epoch: 0, offset: 0 };
  if (hooks.resume) {
    const from = await resumeNewest(engine, cfg.output.dir, tensors, log);
    start = from.pos;
    log(`resuming from ${from.dir} (step ${start.step} of ${steps})`);
  }
  const metrics = beginOutput(cfg, hooks, hooks.resume ? start.step : null);
  return { run: { cfg, engine, data, hooks, record, tensors, totalSteps: steps, startStep: start.step, metrics }, start };
}

/** Saves the final model (unless interrupted), loss.svg and summary.json; resolves to the summary. */
async function finish(run: Run, s: Session, data: DataSummary, t0: number): Promise<TrainSummary> {
  const out = run.cfg.output.dir;
  let finalModel: string | null = null;
  if (!s.interrupted) {
    finalModel = path.join(out, FINAL_MODEL);
    await saveAdapterFolder(run.engine, finalModel, { ...run.record, steps: s.pos.step });
  }
  const { history } = run.metrics;
  writeFileAtomic(path.join(out, "loss.svg"), lossCurveSvg(history.train, history.eval, `text2sql: ${path.basename(out)}`, history.evalEx));
  const best = run.exec?.best;
  const peak = process.resourceUsage().maxRSS * 1024;
  const summary: TrainSummary = {
    outputDir: out,
    finalModel,
    interrupted: s.interrupted,
    resumeCommand: s.interrupted ? `${run.hooks.command ?? "npx text2sql train"} --resume` : undefined,
    steps: s.pos.step,
    totalSteps: run.totalSteps,
    epochs: s.pos.epoch + s.pos.offset / run.data.train.length,
    trainLoss: s.recent.length ? s.recent.reduce((a, b) => a + b, 0) / s.recent.length : s.lastLoss,
    evalLoss: s.lastEval ? s.lastEval.loss : null,
    evalAccuracy: s.lastEval ? s.lastEval.accuracy : null,
    evalEx: s.lastEval?.eval_ex ?? null,
    bestModel: best ? { dir: path.join(out, BEST_MODEL), step: best.step, evalEx: best.ex, evalLoss: best.loss } : null,
    evalExecution: run.exec
      ? {
          rows: run.exec.rows.rows.length,
          goldFailed: run.exec.rows.goldFailed,
          notSampled: run.exec.rows.notSampled,
          noDatabase: run.exec.rows.noDatabase,
          keepDistinct: run.cfg.train.keep_distinct,
        }
      : null,
    wallS: (performance.now() - t0) / 1000,
    tokensPerS: s.trainSeconds > 0 ? s.tokensSeen / s.trainSeconds : 0,
    peakRssBytes: peak,
    trainableParams: run.engine.trainableParams,
    memory: memoryUse(run.engine, peak),
    data,
  };
  writeFileAtomic(path.join(out, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  return summary;
}

/** Where the peak memory went: what the engine holds, and the rest of the peak. */
function memoryUse(engine: LoraEngine, peak: number): TrainSummary["memory"] {
  const mem = engine.memoryInfo();
  const baseWeights = mem.weightBytes - mem.transposedBytes;
  const transposed = mem.transposedBytes;
  const lora = engine.trainableParams * 4;
  return {
    baseWeights,
    quantizedWeights: mem.quantBytes,
    transposedCopies: transposed,
    lora,
    gradients: lora,
    optimizer: 2 * lora,
    computeBuffer: mem.computeBytes,
    perLayerTransposed: mem.quantTBytes,
    other: Math.max(0, peak - baseWeights - transposed - 4 * lora - mem.computeBytes),
  };
}

export function formatSummary(s: TrainSummary): string {
  const f = (x: number | null, d = 4) => (x === null || !Number.isFinite(x) ? "n/a" : x.toFixed(d));
  const m = s.memory;
  return [
    s.interrupted
      ? `interrupted at step ${s.steps} of ${s.totalSteps}; resume with: ${s.resumeCommand}`
      : `done: ${s.steps} steps (${s.epochs.toFixed(2)} epochs)`,
    `train loss      ${f(s.trainLoss)} (mean of the last steps)`,
    `eval loss       ${f(s.evalLoss)}`,
    `token accuracy  ${s.evalAccuracy === null ? "n/a" : (100 * s.evalAccuracy).toFixed(1) + "%"}`,
    s.evalExecution
      ? `eval_ex         ${s.evalEx === null ? "n/a" : (100 * s.evalEx).toFixed(1) + "%"} (execution accuracy on ${s.evalExecution.rows} eval rows` +
        `${s.evalExecution.goldFailed ? `, ${s.evalExecution.goldFailed} left out: gold fails` : ""}; DISTINCT ${s.evalExecution.keepDistinct ? "kept" : "taken out"})`
      : "",
    s.bestModel
      ? `best model      ${s.bestModel.dir}: step ${s.bestModel.step}, eval_ex ${(100 * s.bestModel.evalEx).toFixed(1)}%, eval loss ${f(s.bestModel.evalLoss)}`
      : "",
    `wall time       ${(s.wallS / 60).toFixed(1)} min, ${s.tokensPerS.toFixed(1)} tokens/s`,
    `trainable       ${s.trainableParams.toLocaleString("en-US")} parameters`,
    `peak memory     ${gib(s.peakRssBytes)}: base weights ${gib(m.baseWeights)}${m.quantizedWeights > 0 ? ` (quantized ${gib(m.quantizedWeights)})` : ""}, transposed copies ${gib(m.transposedCopies)}, LoRA ${gib(m.lora)}, gradients ${gib(m.gradients)}, optimizer state ${gib(m.optimizer)}, compute buffer (activations) ${gib(m.computeBuffer)}${m.perLayerTransposed > 0 ? ` (of which per-layer Wᵀ ${gib(m.perLayerTransposed)})` : ""}, other ${gib(m.other)}`,
    s.finalModel ? `adapter         ${path.join(s.finalModel, GGUF_ADAPTER)}` : "",
    `metrics         ${path.join(s.outputDir, "metrics.jsonl")}, ${path.join(s.outputDir, "loss.svg")}`,
  ]
    .filter(Boolean)
    .join("\n");
}
