// The SFT trainer. It owns the schedule: epochs or max_steps, gradient accumulation, the learning
// rate, evaluation, checkpoints and resuming. The native engine only accumulates and steps.
import fs from "node:fs";
import path from "node:path";
import { baseModelName, loadAdapterInto, saveAdapterBoth, type AdapterRecord } from "../adapters/folder.js";
import { configToYaml, loadConfig, type DeepPartial, type TrainConfig } from "./config.js";
import { loadDataset, shuffled, type DatasetReport } from "./data.js";
import { LoraEngine, makeBatch, type OptimizerState } from "../engine/engine.js";
import { resolveModelPath } from "../models/model-path.js";
import { lossCurveSvg, type Series } from "./plot.js";
import { encodeExample, Tokenizer, type Encoded } from "./prompt.js";

export interface StepEvent {
  step: number; // optimizer steps done, 1-based
  totalSteps: number;
  epoch: number; // fractional epochs done
  loss: number; // token-weighted loss of this step
  lr: number;
  gradNorm: number;
  tokens: number; // tokens processed in this step
  tokensPerS: number; // over the whole run so far (this session)
  elapsedS: number;
  etaS: number;
}

export interface EvalEvent {
  step: number;
  loss: number;
  accuracy: number;
  tokens: number;
}

export interface LengthStats { p50: number; p95: number; max: number; mean: number }

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

export interface TrainSummary {
  outputDir: string;
  finalModel: string | null;
  interrupted: boolean;
  resumeCommand?: string;
  steps: number;
  totalSteps: number;
  epochs: number;
  trainLoss: number;
  evalLoss: number | null;
  evalAccuracy: number | null;
  wallS: number;
  tokensPerS: number;
  peakRssBytes: number;
  trainableParams: number;
  memory: { baseWeights: number; transposedCopies: number; lora: number; gradients: number; optimizer: number; computeBuffer: number; other: number };
  data: DataSummary;
}

export interface TrainHooks {
  onStep?: (e: StepEvent) => void;
  onEval?: (e: EvalEvent) => void;
  /** examples evaluated so far, during an evaluation */
  onEvalProgress?: (done: number, total: number, step: number) => void;
  /** human-readable progress of the preparation phases */
  onLog?: (msg: string) => void;
  /** abort: the current micro-step finishes, a checkpoint is saved, the summary says interrupted */
  signal?: AbortSignal;
  /** continue from the latest checkpoint in output.dir */
  resume?: boolean;
  /** how the run was started, for the resume hint */
  command?: string;
}

interface TrainerState {
  step: number;
  epoch: number; // whole epochs done
  offset: number; // examples of the current epoch already used
  optimizer: { t: number; dropoutCalls: number };
  tensors: { name: string; size: number }[];
}

export function lrAt(step: number, total: number, c: TrainConfig["train"]): number {
  const w = c.warmup_steps;
  if (step < w) return (c.lr * step) / Math.max(1, w);
  if (c.lr_schedule === "constant") return c.lr;
  const progress = (step - w) / Math.max(1, total - w);
  if (c.lr_schedule === "linear") return c.lr * Math.max(0, 1 - progress);
  return c.lr * 0.5 * (1 + Math.cos(Math.PI * progress));
}

function stats(xs: number[]): LengthStats {
  if (xs.length === 0) return { p50: 0, p95: 0, max: 0, mean: 0 };
  const s = xs.slice().sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { p50: q(0.5), p95: q(0.95), max: s[s.length - 1], mean: s.reduce((a, b) => a + b, 0) / s.length };
}

/** Reads, splits and tokenizes the data; the dry run of `text2sql data` and the first phase of training. */
export async function prepareData(cfg: TrainConfig, modelPath: string, log: (m: string) => void = () => {}) {
  const ds = await loadDataset(cfg.data);
  log(`data: ${ds.report.rows} rows from ${ds.report.files.join(", ")}; split ${ds.report.split.train} / ${ds.report.split.eval} / ${ds.report.split.test}` +
    (ds.report.duplicates ? `; ${ds.report.duplicates} duplicate rows (kept)` : ""));
  const tok = await Tokenizer.load(modelPath);
  const opts = { template: cfg.data.template, maxSeqLen: cfg.data.max_seq_len, tooLong: cfg.data.too_long, lossOn: cfg.data.loss_on };
  const prompts: number[] = [];
  const completions: number[] = [];
  const totals: number[] = [];
  let skipped = 0;
  let truncated = 0;
  let schemasShortened = 0;
  let tablesDropped = 0;
  let over = 0;
  const encode = (rows: typeof ds.train) => {
    const out: Encoded[] = [];
    for (const ex of rows) {
      // lengths as the template makes them, before any cut
      const full = encodeExample(tok, ex, { ...opts, maxSeqLen: Number.MAX_SAFE_INTEGER });
      prompts.push(full!.promptLen - 1);
      completions.push(full!.completionLen - 1);
      totals.push(full!.tokens.length);
      if (full!.tokens.length > opts.maxSeqLen) over++;
      const e = encodeExample(tok, ex, opts);
      if (!e) skipped++;
      else {
        if (e.truncated) truncated++;
        if (e.tablesDropped) {
          schemasShortened++;
          tablesDropped += e.tablesDropped;
        }
        out.push(e);
      }
    }
    return out;
  };
  const train = encode(ds.train);
  const evalSet = encode(ds.eval);
  encode(ds.test);
  await tok.dispose();
  if (over) {
    const how = opts.tooLong === "skip"
      ? `${skipped} skipped`
      : `${truncated} shortened` +
        (schemasShortened ? ` (${schemasShortened} by dropping ${tablesDropped} CREATE TABLE statements from the end of their schema, ${truncated - schemasShortened} by cutting the prompt from the left)` : " by cutting the prompt from the left") +
        (skipped ? `, ${skipped} skipped (the SQL alone is too long)` : "");
    log(`data: warning: ${over} rows are longer than ${opts.maxSeqLen} tokens: ${how}`);
  }
  if (train.length === 0) throw new Error("data: no training examples left after tokenizing");
  const summary: DataSummary = {
    ...ds.report,
    skippedTooLong: skipped,
    truncated,
    promptTokens: stats(prompts),
    completionTokens: stats(completions),
    totalTokens: stats(totals),
    overMaxSeqLen: over,
    maxSeqLen: opts.maxSeqLen,
    schemasShortened,
    tablesDropped,
    over1024: totals.filter((n) => n > 1024).length,
    over2048: totals.filter((n) => n > 2048).length,
  };
  return { train, eval: evalSet, summary };
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: checkpoints/checkpoint-<step>/{adapter.gguf, optimizer.bin, trainer_state.json}

function checkpointDirs(out: string): { step: number; dir: string }[] {
  const root = path.join(out, "checkpoints");
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root)
    .map((n) => ({ n, m: /^checkpoint-(\d+)$/.exec(n) }))
    .filter((x) => x.m && fs.existsSync(path.join(root, x.n, "trainer_state.json")))
    .map((x) => ({ step: Number(x.m![1]), dir: path.join(root, x.n) }))
    .sort((a, b) => a.step - b.step);
}

async function saveCheckpoint(engine: LoraEngine, out: string, state: TrainerState, opt: OptimizerState, keep: number, rec: Omit<AdapterRecord, "steps">): Promise<string> {
  const root = path.join(out, "checkpoints");
  const dir = path.join(root, `checkpoint-${state.step}`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  await saveAdapterBoth(engine, tmp, { ...rec, steps: state.step });
  // AdamW moments as raw little-endian float32: m of every tensor, then v of every tensor
  const parts: Buffer[] = [];
  for (const t of [...opt.m, ...opt.v]) parts.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  fs.writeFileSync(path.join(tmp, "optimizer.bin"), Buffer.concat(parts));
  fs.writeFileSync(path.join(tmp, "trainer_state.json"), JSON.stringify(state, null, 2) + "\n");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  const all = checkpointDirs(out);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(c.dir, { recursive: true, force: true });
  return dir;
}

async function loadCheckpoint(engine: LoraEngine, dir: string): Promise<TrainerState> {
  const state: TrainerState = JSON.parse(fs.readFileSync(path.join(dir, "trainer_state.json"), "utf8"));
  await engine.loadAdapter(path.join(dir, "adapter.gguf"));
  const adapter = await engine.getAdapter();
  const names = adapter.map((t) => t.name);
  if (JSON.stringify(names) !== JSON.stringify(state.tensors.map((t) => t.name))) {
    throw new Error(`${dir}: the checkpoint's adapter tensors do not match this configuration's LoRA targets`);
  }
  if (state.optimizer.t > 0) {
    const buf = fs.readFileSync(path.join(dir, "optimizer.bin"));
    const total = adapter.reduce((n, t) => n + t.data.length, 0);
    if (buf.length !== total * 8) throw new Error(`${dir}/optimizer.bin: expected ${total * 8} bytes, found ${buf.length}`);
    const f = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    let o = 0;
    const take = () => adapter.map((t) => ({ ...t, data: f.slice(o, (o += t.data.length)) }));
    const m = take();
    const v = take();
    await engine.setOptimizerState({ t: state.optimizer.t, dropoutCalls: state.optimizer.dropoutCalls, m, v });
  } else {
    await engine.setOptimizerState({ t: 0, dropoutCalls: state.optimizer.dropoutCalls, m: [], v: [] });
  }
  return state;
}

function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

/** trainSft's options: a YAML config file and/or settings in the config's shape (they win). */
export type TrainOptions = DeepPartial<TrainConfig> & { config?: string };

/**
 * Fine-tunes a LoRA adapter on question/SQL pairs. Resolves to a summary of the run.
 *
 *   await trainSft({ config: "configs/quickstart.yaml", train: { max_steps: 50 } }, { onStep: (e) => console.log(e.loss) })
 */
export async function trainSft(options: TrainOptions | TrainConfig, hooks: TrainHooks = {}): Promise<TrainSummary> {
  const { config: file, ...object } = options as TrainOptions;
  const cfg = loadConfig({ file, object });
  const log = hooks.onLog ?? (() => {});
  const t0 = performance.now();
  const out = cfg.output.dir;
  const resumeFrom = hooks.resume ? checkpointDirs(out).pop() : undefined;
  if (hooks.resume && !resumeFrom) throw new Error(`--resume: no checkpoint in ${path.join(out, "checkpoints")}`);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "config.yaml"), configToYaml(cfg));

  const modelPath = await resolveModelPath(cfg.model.path, { log, dtype: cfg.model.dtype, signal: hooks.signal });
  const data = await prepareData(cfg, modelPath, log);
  const tc = cfg.train;
  const engine = await LoraEngine.create({
    model: modelPath,
    device: tc.device,
    threads: tc.threads,
    memory: tc.memory,
    checkpointing: tc.gradient_checkpointing === "auto" ? tc.memory === "lean" : tc.gradient_checkpointing === "on",
    lora: { r: cfg.lora.r, alpha: cfg.lora.alpha, dropout: cfg.lora.dropout, rslora: cfg.lora.use_rslora, targetModules: cfg.lora.target_modules, seed: cfg.lora.seed },
  });
  try {
    log(`model: ${modelPath} (${engine.info.nLayer} layers, n_embd ${engine.info.nEmbd}, ${engine.info.weightType}) on ${engine.info.device}; ` +
      `LoRA r=${cfg.lora.r} on ${engine.info.targets.join(", ")}: ${engine.trainableParams.toLocaleString("en-US")} trainable parameters; ` +
      `memory ${tc.memory}${engine.info.checkpoint ? " with gradient checkpointing" : ""}`);
    const tooLong = [...data.train, ...data.eval].find((e) => e.tokens.length > engine.info.nCtx);
    if (tooLong) {
      throw new Error(`${tooLong.source}: ${tooLong.tokens.length} tokens exceed the model's context length ${engine.info.nCtx}; set data.max_seq_len <= ${engine.info.nCtx}`);
    }
    const record = { basePath: path.resolve(modelPath), baseModel: baseModelName(modelPath), template: cfg.data.template };
    if (cfg.lora.init_adapter && !resumeFrom) {
      const kind = await loadAdapterInto(engine, cfg.lora.init_adapter);
      log(`adapter: starting from ${cfg.lora.init_adapter} (${kind === "peft" ? "PEFT" : "GGUF LoRA"})`);
    }

    const perStep = tc.batch_size * tc.grad_accum;
    const stepsPerEpoch = Math.ceil(data.train.length / perStep);
    const totalSteps = tc.max_steps ?? Math.max(1, Math.ceil(tc.epochs * stepsPerEpoch));
    let state: TrainerState = { step: 0, epoch: 0, offset: 0, optimizer: { t: 0, dropoutCalls: 0 }, tensors: [] };
    if (resumeFrom) {
      state = await loadCheckpoint(engine, resumeFrom.dir);
      log(`resuming from ${resumeFrom.dir} (step ${state.step} of ${totalSteps})`);
    }
    state.tensors = (await engine.getAdapter()).map((t) => ({ name: t.name, size: t.data.length }));

    // metrics.jsonl: on resume, drop what came after the checkpoint
    const metricsFile = path.join(out, "metrics.jsonl");
    const history: { train: Series; eval: Series } = { train: [], eval: [] };
    const kept: string[] = [];
    if (resumeFrom && fs.existsSync(metricsFile)) {
      for (const line of fs.readFileSync(metricsFile, "utf8").split("\n")) {
        if (!line.trim()) continue;
        const m = JSON.parse(line);
        if (m.step > state.step) continue;
        kept.push(line);
        if (m.type === "train") history.train.push([m.step, m.loss]);
        if (m.type === "eval") history.eval.push([m.step, m.loss]);
      }
    }
    fs.writeFileSync(metricsFile, kept.map((l) => l + "\n").join(""));
    const metric = (m: object) => fs.appendFileSync(metricsFile, JSON.stringify(m) + "\n");

    let lastEval: EvalEvent | null = null;
    const evaluate = async (step: number) => {
      if (data.eval.length === 0) return;
      const t0 = performance.now();
      let lossSum = 0, n = 0, correct = 0;
      for (let i = 0; i < data.eval.length; i += tc.batch_size) {
        const st = await engine.evaluate(makeBatch(data.eval.slice(i, i + tc.batch_size)));
        lossSum += st.lossSum;
        n += st.nTokens;
        correct += st.nCorrect;
        hooks.onEvalProgress?.(Math.min(i + tc.batch_size, data.eval.length), data.eval.length, step);
        if (hooks.signal?.aborted) return;
      }
      lastEval = { step, loss: lossSum / n, accuracy: correct / n, tokens: n };
      history.eval.push([step, lastEval.loss]);
      metric({ type: "eval", ...lastEval, seconds: (performance.now() - t0) / 1000 });
      hooks.onEval?.(lastEval);
    };
    if (state.step === 0 && !history.eval.some((e) => e[0] === 0)) await evaluate(0);

    const order = (epoch: number) => {
      const idx = Array.from({ length: data.train.length }, (_, i) => i);
      let o = shuffled(idx, tc.seed + epoch);
      if (cfg.data.group_by_length) {
        // within chunks of 16 steps, sort by length so each micro-batch holds similar lengths
        // (less padding), then shuffle the order of the steps
        const chunk = perStep * 16;
        const steps: number[][] = [];
        for (let i = 0; i < o.length; i += chunk) {
          const sorted = o.slice(i, i + chunk).sort((a, b) => data.train[b].tokens.length - data.train[a].tokens.length);
          for (let j = 0; j < sorted.length; j += perStep) steps.push(sorted.slice(j, j + perStep));
        }
        o = shuffled(steps, tc.seed + epoch + 1).flat();
      }
      return o;
    };
    let epochOrder = order(state.epoch);
    let tokensSeen = 0;
    let trainSeconds = 0; // time in accumulate/step only: evaluation and checkpoints excluded
    const loopStart = performance.now();
    let interrupted = false;
    let lastLoss = NaN;
    const recent: number[] = [];

    while (state.step < totalSteps) {
      const stepStart = { ...state, optimizer: { ...state.optimizer } };
      if (state.offset >= epochOrder.length) {
        state.epoch++;
        state.offset = 0;
        epochOrder = order(state.epoch);
      }
      const stepT0 = performance.now();
      const ids = epochOrder.slice(state.offset, state.offset + perStep);
      const exs = ids.map((i) => data.train[i]);
      const divisor = exs.reduce((n, e) => n + e.mask.reduce((a, b) => a + b, 0), 0); // targets in the whole step
      let lossSum = 0;
      let stepTokens = 0;
      for (let i = 0; i < exs.length; i += tc.batch_size) {
        const mb = exs.slice(i, i + tc.batch_size);
        const st = await engine.accumulate(makeBatch(mb), divisor);
        lossSum += st.lossSum;
        stepTokens += mb.reduce((n, e) => n + e.tokens.length, 0);
        if (hooks.signal?.aborted) break;
      }
      if (hooks.signal?.aborted) {
        // leave this step undone: gradients are dropped, the checkpoint is the state before it
        await engine.zeroGrad();
        const opt = await engine.getOptimizerState();
        stepStart.optimizer = { t: opt.t, dropoutCalls: stepStart.optimizer.dropoutCalls };
        stepStart.tensors = state.tensors;
        const dir = await saveCheckpoint(engine, out, stepStart, opt, tc.keep_checkpoints, record);
        log(`interrupted: checkpoint saved to ${dir}`);
        state = stepStart;
        interrupted = true;
        break;
      }
      const lr = lrAt(state.step, totalSteps, tc);
      const gradNorm = await engine.step({ lr, beta1: tc.beta1, beta2: tc.beta2, eps: tc.eps, weightDecay: tc.weight_decay, maxGradNorm: tc.max_grad_norm });
      state.offset += exs.length;
      state.step++;
      const opt = await engine.getOptimizerState();
      state.optimizer = { t: opt.t, dropoutCalls: opt.dropoutCalls ?? 0 };
      tokensSeen += stepTokens;
      trainSeconds += (performance.now() - stepT0) / 1000;
      lastLoss = lossSum / divisor;
      recent.push(lastLoss);
      if (recent.length > 10) recent.shift();
      const elapsedS = (performance.now() - loopStart) / 1000; // wall time, evaluations included (for the ETA)
      const ev: StepEvent = {
        step: state.step,
        totalSteps,
        epoch: state.epoch + state.offset / data.train.length,
        loss: lastLoss,
        lr,
        gradNorm,
        tokens: stepTokens,
        tokensPerS: tokensSeen / trainSeconds,
        elapsedS,
        etaS: (elapsedS / (state.step - (resumeFrom ? resumeFrom.step : 0))) * (totalSteps - state.step),
      };
      history.train.push([ev.step, ev.loss]);
      metric({ type: "train", step: ev.step, epoch: ev.epoch, loss: ev.loss, lr, gradNorm, tokens: stepTokens, tokensPerS: ev.tokensPerS, elapsedS });
      hooks.onStep?.(ev);
      const last = state.step === totalSteps;
      if (tc.eval_every > 0 && state.step % tc.eval_every === 0 && !last) await evaluate(state.step);
      if (tc.save_every > 0 && state.step % tc.save_every === 0 && !last) {
        await saveCheckpoint(engine, out, state, opt, tc.keep_checkpoints, record);
      }
    }

    let finalModel: string | null = null;
    if (!interrupted) {
      await evaluate(state.step);
      finalModel = path.join(out, "final_model");
      await saveAdapterBoth(engine, finalModel, { ...record, steps: state.step });
    }
    fs.writeFileSync(path.join(out, "loss.svg"), lossCurveSvg(history.train, history.eval, `text2sql: ${path.basename(out)}`));

    // memory: what the engine holds, and the rest of the peak
    const mem = engine.memoryInfo();
    const baseWeights = mem.weightBytes - mem.transposedBytes;
    const transposed = mem.transposedBytes;
    const lora = engine.trainableParams * 4;
    const peak = process.resourceUsage().maxRSS * 1024;
    const summary: TrainSummary = {
      outputDir: out,
      finalModel,
      interrupted,
      resumeCommand: interrupted ? `${hooks.command ?? "npx text2sql train"} --resume` : undefined,
      steps: state.step,
      totalSteps,
      epochs: state.epoch + state.offset / data.train.length,
      trainLoss: recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : lastLoss,
      evalLoss: lastEval ? (lastEval as EvalEvent).loss : null,
      evalAccuracy: lastEval ? (lastEval as EvalEvent).accuracy : null,
      wallS: (performance.now() - t0) / 1000,
      tokensPerS: trainSeconds > 0 ? tokensSeen / trainSeconds : 0,
      peakRssBytes: peak,
      trainableParams: engine.trainableParams,
      memory: { baseWeights, transposedCopies: transposed, lora, gradients: lora, optimizer: 2 * lora, computeBuffer: mem.computeBytes, other: Math.max(0, peak - baseWeights - transposed - 4 * lora - mem.computeBytes) },
      data: data.summary,
    };
    fs.writeFileSync(path.join(out, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
    return summary;
  } finally {
    await engine.dispose();
  }
}

export function formatSummary(s: TrainSummary): string {
  const f = (x: number | null, d = 4) => (x === null || !Number.isFinite(x) ? "n/a" : x.toFixed(d));
  const m = s.memory;
  return [
    s.interrupted ? `interrupted at step ${s.steps} of ${s.totalSteps}; resume with: ${s.resumeCommand}` : `done: ${s.steps} steps (${s.epochs.toFixed(2)} epochs)`,
    `train loss      ${f(s.trainLoss)} (mean of the last steps)`,
    `eval loss       ${f(s.evalLoss)}`,
    `token accuracy  ${s.evalAccuracy === null ? "n/a" : (100 * s.evalAccuracy).toFixed(1) + "%"}`,
    `wall time       ${(s.wallS / 60).toFixed(1)} min, ${s.tokensPerS.toFixed(1)} tokens/s`,
    `trainable       ${s.trainableParams.toLocaleString("en-US")} parameters`,
    `peak memory     ${gib(s.peakRssBytes)}: base weights ${gib(m.baseWeights)}, transposed copies ${gib(m.transposedCopies)}, LoRA ${gib(m.lora)}, gradients ${gib(m.gradients)}, optimizer state ${gib(m.optimizer)}, compute buffer (activations) ${gib(m.computeBuffer)}, other ${gib(m.other)}`,
    s.finalModel ? `adapter         ${path.join(s.finalModel, "adapter.gguf")}` : "",
    `metrics         ${path.join(s.outputDir, "metrics.jsonl")}, ${path.join(s.outputDir, "loss.svg")}`,
  ].filter(Boolean).join("\n");
}
