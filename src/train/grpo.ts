// The GRPO trainer (method: grpo): each step draws rl.prompts_per_step training questions (with a
// seeded RNG whose state goes into the checkpoints), saves the current adapter and has the sampler
// hook (node-llama-cpp, a layer above) sample rl.group_size completions per question from the exact
// prompt ids the engine conditions on, scores them by execution match on the row's database (the
// function `eval` uses, through the read-only query sandbox), and takes rl.updates_per_batch
// optimizer steps on the batch (grpo-loss.ts). samples.jsonl is the audit trail, one line per
// completion. The greedy eval_ex and best_model/ are grpo-eval.ts's. Setup, checkpoints,
// final_model/ and the schedule are the SFT trainer's.
import fs from "node:fs";
import path from "node:path";
import { baseModelName, FINAL_MODEL } from "../adapters/folder.js";
import { loadAdapterInto, saveAdapterFolder } from "../adapters/save-load.js";
import { LoraEngine, type AdapterTensor } from "../engine/engine.js";
import { readJsonFile } from "../formats/json.js";
import { resolveModelPath } from "../models/model-path.js";
import { closeAll, runReadOnly } from "../sql/query-process.js";
import { removeDistinct } from "../sql/sql-text.js";
import { removeAtomic, writeFileAtomic } from "../util/atomic.js";
import { checkpointDirs, resumeNewest, saveCheckpoint, type TensorList } from "./checkpoints.js";
import { configToYaml, loadConfig, type TrainConfig } from "./config.js";
import { loadDataset, seededSample, type Example } from "./data.js";
import { BEST_MODEL, execLimits, execRows, executionScores } from "./exec-eval.js";
import { grpoEvalEx, removeLeftEvalAdapter, resumeGrpoBest, type GrpoBest } from "./grpo-eval.js";
import { groupAdvantages, grpoUpdate, splitLogps, completionBatch, type Completion } from "./grpo-loss.js";
import { encodeExample, Tokenizer } from "./prompt.js";
import { lrAt } from "./schedule.js";
import type { RunSummary, TrainHooks, TrainOptions } from "./hooks.js";
import { openEngine } from "./trainer.js";

/** One completion to sample: the exact prompt ids (BOS included), its sampling seed, and the row's schema (for rl.constrained). */
export interface SampleJob {
  promptIds: number[];
  seed: number;
  schema?: string;
}

/**
 * GRPO's sampler: for each job, sampled ids (the end token included when it was sampled) and the
 * SQL of their text, from the adapter folder `adapterDir` at `temperature`; unconstrained, or with
 * `constrained` under the job's schema grammar (`constrained: false` in an answer: sampled
 * without it, the schema's grammar having been skipped, which the sampler says).
 */
export type GrpoSampler = (
  adapterDir: string,
  jobs: SampleJob[],
  o: { maxTokens: number; temperature: number; constrained: boolean },
) => Promise<{ ids: number[]; sql: string; constrained?: boolean }[]>;

/** Said once at the start of a run with rl.constrained (and in the docs and the key's doc string). */
export const CONSTRAINED_BIAS =
  "constrained sampling: the engine's log-probabilities are those of the unmasked model, so the ratio/KL are biased: " +
  "the completions are drawn from the grammar-masked, renormalized distribution, but old_logps, the clipped ratio and the k3 KL " +
  "are taken under the unmasked one (lower by the log of the mass the grammar allows at each token), with no importance " +
  "correction for the mask; the update is not the policy gradient of the distribution that sampled";

export interface GrpoHooks extends Omit<TrainHooks, "onStep"> {
  /** the sampler; trainGrpo from the package's entry and `text2sql train --method grpo` pass node-llama-cpp's */
  sample?: GrpoSampler;
  onStep?: (e: GrpoStepEvent) => void;
}

export interface GrpoStepEvent {
  step: number;
  totalSteps: number;
  rewardMean: number;
  rewardStd: number;
  /** share of the step's groups whose rewards are all equal */
  zeroVarianceGroups: number;
  kl: number;
  loss: number;
  completionLen: number;
  lr: number;
  gradNorm: number;
  seconds: { sampling: number; scoring: number; updating: number };
  /** completion tokens sampled and scored; prompt + completion tokens through the updates (each of the μ updates counted) */
  tokens: { sampled: number; scored: number; updated: number };
  elapsedS: number;
  etaS: number;
  eval_ex?: number;
  /** with eval_ex: best_model/'s step so far */
  best_step?: number;
  /** greedy execution accuracy on the fixed seeded sample of training rows (GrpoRun.trainExRows), when evaluated */
  train_ex?: number;
}

export interface GrpoSummary extends RunSummary {
  rewardMean: number | null;
  evalEx: number | null;
  /** best_model/: the adapter of the evaluation with the best eval_ex (ties: the earlier step; GRPO has no eval loss) */
  bestModel: { dir: string; step: number; evalEx: number } | null;
  /** reward mean of the first steps (up to 10, from metrics.jsonl), beside rewardMean of the last */
  rewardMeanFirst: number | null;
  /** greedy EX on a fixed sample of the training rows (train.eval_execution_rows of them, seeded by train.seed; null: all) before the first step (start) and at the last evaluation (end: after the last step when the run finished) */
  trainEx: { rows: number; start: number | null; end: number | null } | null;
  /** training rows used, and those left out: no database, gold fails on it (each said once with its line) */
  rows: { used: number; noDatabase: number; goldFailed: number };
  wallS: number;
}

interface Row {
  ex: Example & { db: string };
  promptIds: number[];
}

/** mulberry32: a tiny seeded RNG whose whole state is one uint32 (saved in the checkpoints). */
export class Rng {
  constructor(public state: number) {}
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** The training rows with a database whose gold query runs, as prompt ids; the others said (with their line) and counted. */
async function grpoRows(cfg: TrainConfig, modelPath: string, log: (m: string) => void): Promise<{ rows: Row[]; noDatabase: number; goldFailed: number }> {
  const ds = await loadDataset(cfg.data);
  const tok = await Tokenizer.load(modelPath);
  const rows: Row[] = [];
  let noDatabase = 0;
  let goldFailed = 0;
  try {
    for (const ex of ds.train) {
      if (!ex.db) {
        noDatabase++;
        continue;
      }
      if (cfg.rl.constrained && !ex.schema)
        throw new Error(
          `rl.constrained: ${ex.source} has no schema, and constrained sampling uses the schema's grammar; give the rows a schema or set rl.constrained: false`,
        );
      const res = await runReadOnly(ex.db, cfg.train.keep_distinct ? ex.sql : removeDistinct(ex.sql), execLimits(cfg));
      if (!res.ok) {
        goldFailed++;
        log(`grpo: ${ex.source}: the gold query fails on ${ex.db} (${res.category}: ${res.error}); the row is skipped`);
        continue;
      }
      const e = encodeExample(tok, ex, { template: cfg.data.template, maxSeqLen: cfg.data.max_seq_len, tooLong: cfg.data.too_long, lossOn: "completion" });
      if (e) rows.push({ ex: ex as Example & { db: string }, promptIds: e.tokens.slice(0, e.promptLen) });
    }
  } finally {
    await tok.dispose();
  }
  if (noDatabase) log(`grpo: ${noDatabase} training rows have no database (the reward needs one); they are skipped`);
  if (rows.length === 0) throw new Error("grpo: no training row has a database on which its gold query runs (see the lines above); the reward needs one");
  log(`grpo: ${rows.length} training rows with a database${goldFailed ? `; ${goldFailed} skipped: their gold query fails` : ""}`);
  return { rows, noDatabase, goldFailed };
}

/**
 * 1 when `sql`'s result matches the gold's on the row's database, else 0; plus rl.valid_sql_reward
 * when it runs. Scored by executionScores, the bounded runner eval_execution uses (read-only,
 * train.eval_execution_timeout_ms and _max_bytes, the row cap): a query that fails scores 0 and
 * never ends the run.
 */
export async function executionReward(row: { db: string; sql: string }, sql: string, cfg: TrainConfig): Promise<{ reward: number; runs: boolean }> {
  const [m] = await executionScores([row], [sql], { keepDistinct: cfg.train.keep_distinct, ...execLimits(cfg) });
  const runs = m.match || m.category === "wrong" || m.category === "empty";
  return { reward: (m.match ? 1 : 0) + (runs ? cfg.rl.valid_sql_reward : 0), runs };
}

interface GrpoRun {
  cfg: TrainConfig;
  engine: LoraEngine;
  rows: Row[];
  hooks: GrpoHooks;
  sample: GrpoSampler;
  rng: Rng;
  ref: AdapterTensor[] | null;
  record: { basePath: string; baseModel: string; template: string };
  tensors: TensorList;
  totalSteps: number;
  startStep: number;
  evalRows: (Example & { db: string })[];
  /** best_model/'s evaluation so far (in the checkpoints' grpo_state.json) */
  best: GrpoBest | null;
  /** the fixed sample of training rows train_ex is measured on */
  trainExRows: (Example & { db: string })[];
}

/** Log-probabilities of the completions under the adapter `tensors` (the current one put back after). */
async function logpsUnder(run: GrpoRun, cs: Completion[], tensors: AdapterTensor[] | null): Promise<number[][]> {
  const batch = completionBatch(cs);
  if (!tensors) return splitLogps(await run.engine.logprobs(batch, run.cfg.rl.temperature), cs, batch.seqLen);
  const cur = await run.engine.getAdapter();
  await run.engine.setAdapter(tensors);
  try {
    return splitLogps(await run.engine.logprobs(batch, run.cfg.rl.temperature), cs, batch.seqLen);
  } finally {
    await run.engine.setAdapter(cur);
  }
}

/** Samples and scores one step's groups. */
async function sampleStep(run: GrpoRun, step: number) {
  const { cfg } = run;
  const rl = cfg.rl;
  const picked = Array.from({ length: rl.prompts_per_step }, () => run.rows[run.rng.int(run.rows.length)]);
  const jobs = picked.flatMap((r) =>
    Array.from({ length: rl.group_size }, () => ({ promptIds: r.promptIds, seed: run.rng.int(2 ** 31), schema: r.ex.schema })),
  );
  const t0 = performance.now();
  const dir = path.join(cfg.output.dir, "sample_adapter");
  await saveAdapterFolder(run.engine, dir, { ...run.record, steps: step });
  const outs = await run.sample(dir, jobs, { maxTokens: rl.max_new_tokens, temperature: rl.temperature, constrained: rl.constrained });
  if (outs.length !== jobs.length) throw new Error(`grpo: the sampler answered ${outs.length} of ${jobs.length} completions`);
  const loose = rl.constrained ? outs.filter((o) => o.constrained === false).length : 0;
  if (loose)
    run.hooks.onLog?.(`grpo step ${step + 1}: ${loose} of ${outs.length} completions sampled without the grammar (their schema's grammar was skipped)`);
  const tSample = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const rewards: number[] = [];
  for (const [i, o] of outs.entries()) rewards.push((await executionReward(picked[Math.floor(i / rl.group_size)].ex, o.sql, cfg)).reward);
  const tScore = (performance.now() - t1) / 1000;
  return { picked, outs, rewards, tSample, tScore };
}

/** One GRPO step: sample, score, advantages, μ updates; samples.jsonl and metrics.jsonl lines. */
async function grpoStep(run: GrpoRun, step: number, t0: number): Promise<GrpoStepEvent> {
  const { cfg, engine } = run;
  const rl = cfg.rl;
  const s = await sampleStep(run, step);
  const t2 = performance.now();
  const cs: (Completion & { sql: string; reward: number; group: number })[] = [];
  let zero = 0;
  for (let g = 0; g < rl.prompts_per_step; g++) {
    const rs = s.rewards.slice(g * rl.group_size, (g + 1) * rl.group_size);
    const adv = groupAdvantages(rs, rl.scale_rewards, `grpo step ${step + 1}, group ${g} (${s.picked[g].ex.source})`);
    if (adv.zeroVariance) zero++;
    for (let k = 0; k < rl.group_size; k++) {
      const o = s.outs[g * rl.group_size + k];
      cs.push({
        promptIds: s.picked[g].promptIds,
        completionIds: o.ids,
        oldLogps: [],
        refLogps: null,
        advantage: adv.advantages[k],
        sql: o.sql,
        reward: rs[k],
        group: g,
      });
    }
  }
  const live = cs.filter((c) => c.completionIds.length > 0);
  if (live.length < cs.length) run.hooks.onLog?.(`grpo step ${step + 1}: ${cs.length - live.length} completions without a token are left out of the update`);
  const old = await logpsUnder(run, live, null);
  const ref = rl.kl_coef > 0 ? await logpsUnder(run, live, run.ref ?? zerosLike(await engine.getAdapter())) : null;
  live.forEach((c, i) => ((c.oldLogps = old[i]), (c.refLogps = ref ? ref[i] : null)));
  const tc = cfg.train;
  let u = { loss: 0, kl: 0, gradNorm: 0, tokens: 0 };
  let lr = 0;
  for (let m = 0; m < rl.updates_per_batch; m++) {
    const opt = step * rl.updates_per_batch + m;
    lr = lrAt(opt, run.totalSteps * rl.updates_per_batch, tc);
    const stepOpts = { lr, beta1: tc.beta1, beta2: tc.beta2, eps: tc.eps, weightDecay: tc.weight_decay, maxGradNorm: tc.max_grad_norm };
    const r = await grpoUpdate(engine, live, { clipEps: rl.clip_eps, klCoef: rl.kl_coef, temperature: rl.temperature, step: stepOpts });
    if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm))
      throw new Error(`grpo: the loss or gradient norm of step ${step + 1} is not finite (${r.loss}, ${r.gradNorm}); stopped before saving anything of it`);
    if (m === 0) u = r;
  }
  const tUpdate = (performance.now() - t2) / 1000;
  const lines = cs.map((c) =>
    JSON.stringify({
      step: step + 1,
      group: c.group,
      prompt_ids: c.promptIds,
      completion_ids: c.completionIds,
      old_logps: c.oldLogps,
      ref_logps: c.refLogps,
      reward: c.reward,
      advantage: c.advantage,
      sql: c.sql,
    }),
  );
  fs.appendFileSync(path.join(cfg.output.dir, "samples.jsonl"), lines.join("\n") + "\n");
  const mean = s.rewards.reduce((a, b) => a + b, 0) / s.rewards.length;
  const sampled = cs.reduce((n, c) => n + c.completionIds.length, 0);
  const scoredTokens = live.reduce((n, c) => n + c.promptIds.length + c.completionIds.length, 0);
  const elapsedS = (performance.now() - t0) / 1000;
  return {
    step: step + 1,
    totalSteps: run.totalSteps,
    rewardMean: mean,
    rewardStd: Math.sqrt(s.rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / Math.max(1, s.rewards.length - 1)),
    zeroVarianceGroups: zero / rl.prompts_per_step,
    kl: u.kl,
    loss: u.loss,
    completionLen: sampled / cs.length,
    lr,
    gradNorm: u.gradNorm,
    seconds: { sampling: s.tSample, scoring: s.tScore, updating: tUpdate },
    tokens: { sampled, scored: sampled, updated: scoredTokens * rl.updates_per_batch },
    elapsedS,
    etaS: (elapsedS / (step + 1 - run.startStep)) * (run.totalSteps - step - 1),
  };
}

function zerosLike(ts: AdapterTensor[]): AdapterTensor[] {
  return ts.map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
}

/** The engine for GRPO: LoRA dropout off (the log-probabilities must be those of the policy that sampled). */
function openGrpoEngine(cfg: TrainConfig, modelPath: string, log: (m: string) => void): Promise<LoraEngine> {
  if (cfg.lora.dropout !== 0) log(`grpo: lora.dropout ${cfg.lora.dropout} is set to 0: the log-probabilities must be those of the policy that sampled`);
  return openEngine(cfg, modelPath, 0);
}

/** Starts the adapter (init_adapter, or a checkpoint on resume) and the RNG; the reference policy's tensors. */
async function startGrpo(cfg: TrainConfig, engine: LoraEngine, hooks: GrpoHooks, log: (m: string) => void) {
  if (cfg.lora.init_adapter) {
    const kind = await loadAdapterInto(engine, cfg.lora.init_adapter);
    log(`adapter: starting from ${cfg.lora.init_adapter} (${kind === "peft" ? "PEFT" : "GGUF LoRA"})`);
  } else log("adapter: starting from a fresh LoRA adapter (lora.init_adapter not set)");
  const ref = cfg.rl.kl_coef > 0 && cfg.rl.reference === "init" ? await engine.getAdapter() : null;
  const tensors = (await engine.getAdapter()).map((t) => ({ name: t.name, size: t.data.length }));
  let step = 0;
  let rngState = cfg.train.seed >>> 0;
  let best: GrpoBest | null = null;
  if (hooks.resume) {
    const from = await resumeNewest(engine, cfg.output.dir, tensors, log);
    step = from.pos.step;
    const state = readGrpoState(from.dir);
    rngState = state.rng;
    best = resumeGrpoBest(cfg.output.dir, from.dir, state, log);
    log(`resuming from ${from.dir} (GRPO step ${step}${best ? `; best_model/: step ${best.step}, eval_ex ${best.ex}` : ""})`);
  }
  return { ref, tensors, step, rng: new Rng(rngState), best };
}

/** A checkpoint's grpo_state.json: the sampler RNG's state and best_model/'s evaluation (checked; an error names the file). */
function readGrpoState(dir: string): { rng: number; best?: GrpoBest | null } {
  const file = path.join(dir, "grpo_state.json");
  const s = readJsonFile(file) as { rng?: unknown; best?: { step?: unknown; ex?: unknown } | null };
  if (typeof s !== "object" || s === null || !Number.isInteger(s.rng) || (s.rng as number) < 0 || (s.rng as number) > 0xffffffff)
    throw new Error(`${file}: expected {"rng": an integer uint32, "best": ...}, got ${JSON.stringify(s)}`);
  const b = s.best;
  if (b !== undefined && b !== null && !(Number.isInteger(b.step) && typeof b.ex === "number" && b.ex >= 0 && b.ex <= 1))
    throw new Error(`${file}: best: expected null or {"step": an integer, "ex": a number in [0, 1]}, got ${JSON.stringify(b)}`);
  return s as { rng: number; best?: GrpoBest | null };
}

/** samples.jsonl and metrics.jsonl cut back to the steps up to `upTo` (a resume) or emptied. */
function cutJsonl(file: string, upTo: number): void {
  const keep = fs.existsSync(file)
    ? fs
        .readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => {
          try {
            return l.trim() !== "" && (JSON.parse(l) as { step: number }).step <= upTo;
          } catch {
            return false;
          }
        })
    : [];
  writeFileAtomic(file, keep.map((l) => l + "\n").join(""));
}

/**
 * Reinforcement learning of a LoRA adapter with an execution reward (GRPO), usually after SFT
 * (lora.init_adapter). Resolves to a summary of the run.
 *
 *   await trainGrpo({ config: "configs/quickstart-grpo.yaml" }, { sample: sampleWithAdapter })
 */
export async function trainGrpo(options: TrainOptions | TrainConfig, hooks: GrpoHooks = {}): Promise<GrpoSummary> {
  const { config: file, ...object } = options as TrainOptions;
  const cfg = loadConfig({ file, object: { ...object, method: "grpo" } });
  const log = hooks.onLog ?? (() => {});
  if (!hooks.sample)
    throw new Error("grpo: this trainGrpo has no sampler (hooks.sample); use trainGrpo from the package's entry point or `text2sql train --method grpo`");
  const t0 = performance.now();
  const out = cfg.output.dir;
  if (hooks.resume && checkpointDirs(out).length === 0) throw new Error(`--resume: no checkpoint in ${path.join(out, "checkpoints")}`);
  if (!hooks.resume && !hooks.overwrite && fs.existsSync(out) && fs.readdirSync(out).length > 0)
    throw new Error(`output.dir: ${out} is not empty; continue its run with --resume, replace it with --overwrite, or choose another output.dir`);
  const modelPath = await resolveModelPath(cfg.model.path, { log, dtype: cfg.model.dtype, signal: hooks.signal });
  const data = await grpoRows(cfg, modelPath, log);
  const ds = await loadDataset(cfg.data);
  // the eval rows with a database, as eval_execution takes them: a fixed sample of train.eval_execution_rows, gold checked (a failing one said with its line, left out)
  const evalRows = ds.eval.some((r) => r.db) ? (await execRows(cfg, ds.eval, log)).rows : [];
  const engine = await openGrpoEngine(cfg, modelPath, log);
  try {
    const st = await startGrpo(cfg, engine, hooks, log);
    fs.mkdirSync(out, { recursive: true });
    if (hooks.overwrite) for (const f of ["checkpoints", FINAL_MODEL, BEST_MODEL, "summary.json"]) removeAtomic(path.join(out, f));
    removeLeftEvalAdapter(out, log);
    for (const f of ["samples.jsonl", "metrics.jsonl"]) cutJsonl(path.join(out, f), st.step);
    writeFileAtomic(path.join(out, "config.yaml"), configToYaml(cfg));
    const rl = cfg.rl;
    log(
      `grpo: ${rl.prompts_per_step} questions x ${rl.group_size} completions per step, temperature ${rl.temperature}, ${rl.constrained ? "constrained to the schema's grammar" : "unconstrained"}; ` +
        `clip ${rl.clip_eps}, kl_coef ${rl.kl_coef}${rl.kl_coef > 0 ? ` (reference: ${rl.reference})` : ""}, ${rl.updates_per_batch} updates per batch; reward: execution match${rl.valid_sql_reward ? ` + ${rl.valid_sql_reward} for SQL that runs` : ""}`,
    );
    if (rl.constrained) log(CONSTRAINED_BIAS);
    const run: GrpoRun = {
      cfg,
      engine,
      rows: data.rows,
      hooks,
      sample: hooks.sample,
      rng: st.rng,
      ref: st.ref,
      record: { basePath: path.resolve(modelPath), baseModel: baseModelName(modelPath), template: cfg.data.template },
      tensors: st.tensors,
      totalSteps: cfg.train.max_steps ?? 100,
      startStep: st.step,
      evalRows,
      best: st.best,
      trainExRows: seededSample(
        data.rows.map((r) => r.ex),
        cfg.train.eval_execution_rows,
        cfg.train.seed,
      ),
    };
    return await grpoLoop(run, st.step, data, t0);
  } finally {
    removeAtomic(path.join(out, "sample_adapter"));
    await engine.dispose();
    await closeAll();
  }
}

/** The steps from `start`, checkpoints and eval_ex on schedule; the final model and summary.json. */
async function grpoLoop(run: GrpoRun, start: number, data: { noDatabase: number; goldFailed: number; rows: Row[] }, t0: number): Promise<GrpoSummary> {
  const { cfg, hooks } = run;
  const out = cfg.output.dir;
  const metrics = path.join(out, "metrics.jsonl");
  const write = (m: object) => fs.appendFileSync(metrics, JSON.stringify(m) + "\n");
  let step = start;
  let lastEx: number | null = null;
  let lastTrainEx: number | null = null;
  let interrupted = false;
  const recent: number[] = [];
  if (step === 0) {
    const ex = await grpoEvalEx(run, 0);
    if (ex.eval_ex !== undefined) lastEx = ex.eval_ex;
    if (ex.train_ex !== undefined) lastTrainEx = ex.train_ex;
    if (ex.eval_ex !== undefined || ex.train_ex !== undefined) write({ type: "eval", step: 0, ...ex, best_step: run.best?.step });
  }
  const loopStart = performance.now();
  while (step < run.totalSteps) {
    if (hooks.signal?.aborted) {
      interrupted = true;
      break;
    }
    const ev = await grpoStep(run, step, loopStart);
    step++;
    recent.push(ev.rewardMean);
    if (recent.length > 10) recent.shift();
    const due = (every: number) => every > 0 && step % every === 0;
    if (due(cfg.train.eval_every) || step === run.totalSteps) {
      const ex = await grpoEvalEx(run, step);
      if (ex.eval_ex !== undefined) {
        ev.eval_ex = lastEx = ex.eval_ex;
        ev.best_step = run.best?.step;
      }
      if (ex.train_ex !== undefined) ev.train_ex = lastTrainEx = ex.train_ex;
    }
    write({ type: "train", ...ev });
    hooks.onStep?.(ev);
    if (due(cfg.train.save_every) || hooks.signal?.aborted) await checkpoint(run, step);
  }
  const finalModel = interrupted ? null : path.join(out, FINAL_MODEL);
  if (finalModel) await saveAdapterFolder(run.engine, finalModel, { ...run.record, steps: step });
  const summary: GrpoSummary = {
    outputDir: out,
    finalModel,
    interrupted,
    resumeCommand: interrupted ? `${hooks.command ?? "npx text2sql train --method grpo"} --resume` : undefined,
    steps: step,
    totalSteps: run.totalSteps,
    rewardMean: recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : null,
    evalEx: lastEx,
    bestModel: run.best ? { dir: path.join(out, BEST_MODEL), step: run.best.step, evalEx: run.best.ex } : null,
    ...firstAndTrainEx(metrics, run.trainExRows.length, lastTrainEx),
    rows: { used: data.rows.length, noDatabase: data.noDatabase, goldFailed: data.goldFailed },
    wallS: (performance.now() - t0) / 1000,
  };
  writeFileAtomic(path.join(out, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  return summary;
}

/** From metrics.jsonl (whole across a resume): the reward mean of the first steps (up to 10) and train_ex at step 0 beside the last. */
function firstAndTrainEx(metrics: string, rows: number, end: number | null): Pick<GrpoSummary, "rewardMeanFirst" | "trainEx"> {
  const ms = fs
    .readFileSync(metrics, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as { type: string; step: number; rewardMean?: number; train_ex?: number });
  const first = ms.filter((m) => m.type === "train" && typeof m.rewardMean === "number").slice(0, 10);
  const start = ms.find((m) => m.type === "eval" && m.step === 0)?.train_ex ?? null;
  return {
    rewardMeanFirst: first.length ? first.reduce((a, m) => a + m.rewardMean!, 0) / first.length : null,
    trainEx: rows ? { rows, start, end } : null,
  };
}

/** A checkpoint after `step` GRPO steps, with the sampler RNG's state. */
async function checkpoint(run: GrpoRun, step: number): Promise<void> {
  // grpo_state.json goes into the checkpoint folder before it is swapped in: a checkpoint never lacks it
  const state = { "grpo_state.json": JSON.stringify({ rng: run.rng.state, best: run.best }) + "\n" };
  const pos = { step, epoch: 0, offset: 0 };
  const dir = await saveCheckpoint(run.engine, run.cfg.output.dir, pos, run.tensors, run.cfg.train.keep_checkpoints, run.record, undefined, state);
  run.hooks.onLog?.(`checkpoint: ${dir}`);
}

/** The summary as lines for the terminal. */
export function formatGrpoSummary(s: GrpoSummary): string {
  return [
    s.interrupted ? `interrupted at GRPO step ${s.steps} of ${s.totalSteps}; resume with: ${s.resumeCommand}` : `done: ${s.steps} GRPO steps`,
    `reward          ${s.rewardMeanFirst === null ? "n/a" : s.rewardMeanFirst.toFixed(3)} (mean of the first steps) -> ${s.rewardMean === null ? "n/a" : s.rewardMean.toFixed(3)} (mean of the last steps)`,
    `eval_ex         ${s.evalEx === null ? "n/a" : (100 * s.evalEx).toFixed(1) + "%"}`,
    s.bestModel ? `best model      ${s.bestModel.dir}: step ${s.bestModel.step}, eval_ex ${(100 * s.bestModel.evalEx).toFixed(1)}%` : "",
    s.trainEx
      ? `train_ex        ${pct(s.trainEx.start)} (before the first step) -> ${pct(s.trainEx.end)} (after the last), greedy, on ${s.trainEx.rows} training rows`
      : "",
    `rows            ${s.rows.used} used; skipped: ${s.rows.noDatabase} without a database, ${s.rows.goldFailed} whose gold query fails`,
    `wall time       ${(s.wallS / 60).toFixed(1)} min`,
    s.finalModel ? `adapter         ${s.finalModel}` : "",
  ]
    .filter(Boolean)
    .join("\n");
}

function pct(x: number | null): string {
  return x === null ? "n/a" : (100 * x).toFixed(1) + "%";
}
