// LoraEngine: the typed, validated face of the native engine. Every argument is checked here,
// with the option's name, what was expected and what arrived, before it crosses the boundary.
import fs from "node:fs";
import {
  loadNative,
  type NativeBatchStats,
  type NativeEngine,
  type NativeEngineInfo,
  type NativeProfileEntry,
  type NativeOpCaps,
  type NativeOptimizerState,
  type NativeTensor,
} from "./native.js";
import { checkThreads, warn } from "./system.js";
import { ggmlTypeName, readGguf } from "../formats/gguf.js";
import { checkModelFile } from "../formats/model-check.js";
import { TRAINABLE_QUANT_NAMES, untrainableMatrix } from "../formats/quant.js";
import {
  checkInt,
  checkNum,
  fail,
  LORA_MODULES,
  rankWarning,
  resolveLoraOptions,
  targetIndex,
  type HfModuleName,
  type LoraOptions,
  type ResolvedLoraOptions,
} from "./lora.js";

export type Device = "auto" | "cpu" | "cuda" | "metal";

export interface EngineOptions {
  /**
   * Path to a GGUF of architecture llama, qwen2 or qwen3 (src/formats/architectures.ts) with F32, F16, BF16 or quantized (Q8_0, Q4_0, Q4_1, Q5_0,
   * Q5_1, Q4_K, Q5_K, Q6_K; mixed as in Q4_K_M files) weights. Quantized weights stay quantized;
   * each one's Wᵀ for the backward pass is made per layer, as in lean mode.
   */
  model: string;
  device?: Device;
  /** CPU threads (default: all cores). */
  threads?: number;
  /**
   * "fast" (default) keeps a transposed copy of every frozen matrix for the backward pass (twice
   * the weight memory); "lean" makes each one in the graph when it is needed and frees it.
   */
  memory?: "fast" | "lean";
  /**
   * Gradient checkpointing: the forward pass keeps each layer's input and its q/k/v/o outputs (and
   * the gate/up outputs of the last layers that fit in an eighth of the weights' memory), and the
   * backward pass recomputes the rest of the layer. Default: on with memory "lean".
   */
  checkpointing?: boolean;
  /** Time every graph node (slow; for benchmarks): read with takeProfile(). */
  profile?: boolean;
  /** Compose every backward op from basic ops, as the graph does on Metal (for tests). */
  portableOps?: boolean;
  /**
   * Quantized weights. "fast" (default): forward products run ggml's quantized kernels (which
   * round the activations to 8 bits) and each per-layer Wᵀ of the backward pass is BF16. "exact"
   * (for checks; slower, more memory per layer): every product uses the weight dequantized to F32
   * per layer, so forward and gradients are those of the dequantized model in float32.
   */
  quantMode?: "fast" | "exact";
  lora?: LoraOptions;
}

/** Rejects, before the native engine opens it, a model with a matrix of a type it cannot train on. */
function checkTrainableTypes(model: string): void {
  let tensors;
  try {
    tensors = readGguf(model).tensors;
  } catch {
    return; // not GGUF, or truncated: the native loader names what is wrong with the file
  }
  const bad = untrainableMatrix(tensors);
  if (bad) {
    throw new Error(
      `model: ${model}: tensor "${bad.name}" has type ${ggmlTypeName(bad.type)}, which the engine cannot train on; ` +
        `supported: F32, F16, BF16, ${TRAINABLE_QUANT_NAMES} (convert or download one of these)`,
    );
  }
}

export interface StepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this value; 0 disables clipping. */
  maxGradNorm?: number;
}

/** A right-padded batch: `tokens` and `mask` hold nSeq rows of seqLen values. */
export interface Batch {
  tokens: Int32Array;
  mask: Uint8Array;
  nSeq: number;
  seqLen: number;
}

export interface Sequence {
  tokens: ArrayLike<number>;
  /** 1 where the token is a training target; position 0 can never be one. Default: all but 0. */
  mask?: ArrayLike<number>;
}

export type BatchStats = NativeBatchStats;
export type AdapterTensor = NativeTensor;
/** The native engine's info, with the adapted layers by their Hugging Face names (q_proj, ...). */
export type EngineInfo = Omit<NativeEngineInfo, "targets"> & { targets: HfModuleName[] };
export type OptimizerState = NativeOptimizerState;
export type ProfileEntry = NativeProfileEntry;

/** Right-pads sequences into one batch. */
export function makeBatch(seqs: Sequence[]): Batch {
  if (!Array.isArray(seqs) || seqs.length === 0) fail("batch", "a non-empty array of sequences", seqs);
  const seqLen = Math.max(...seqs.map((s) => s.tokens.length));
  const tokens = new Int32Array(seqs.length * seqLen);
  const mask = new Uint8Array(seqs.length * seqLen);
  seqs.forEach((s, i) => {
    if (s.mask && s.mask.length !== s.tokens.length) {
      fail(`batch[${i}].mask`, `${s.tokens.length} values (one per token)`, `${s.mask.length} values`);
    }
    for (let j = 0; j < s.tokens.length; j++) {
      tokens[i * seqLen + j] = s.tokens[j];
      mask[i * seqLen + j] = s.mask ? (s.mask[j] ? 1 : 0) : j > 0 ? 1 : 0;
    }
  });
  return { tokens, mask, nSeq: seqs.length, seqLen };
}

export class LoraEngine {
  readonly info: EngineInfo;
  readonly options: Required<Omit<EngineOptions, "lora">> & { lora: ResolvedLoraOptions };
  #native: NativeEngine | null;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(native: NativeEngine, options: LoraEngine["options"]) {
    this.#native = native;
    this.options = options;
    const info = native.info();
    this.info = { ...info, targets: info.targets.map((t) => LORA_MODULES[t].hf) };
  }

  /** Loads the model and creates a fresh adapter (A ~ U(±1/sqrt(n_in)), B = 0). */
  static async create(options: EngineOptions): Promise<LoraEngine> {
    if (typeof options !== "object" || options === null) fail("options", "an object", options);
    if (typeof options.model !== "string" || options.model === "") fail("model", "a path to a GGUF file", options.model);
    if (!fs.existsSync(options.model)) throw new Error(`model: file not found: ${options.model}`);
    checkModelFile(options.model); // the native loader aborts or allocates without bound on files our reader rejects
    const device = options.device ?? "auto";
    if (!["auto", "cpu", "cuda", "metal"].includes(device)) fail("device", "one of auto, cpu, cuda, metal", device);
    const threads = checkThreads("threads", options.threads ?? 0);
    const memory = options.memory ?? "fast";
    if (memory !== "fast" && memory !== "lean") fail("memory", '"fast" or "lean"', memory);
    const checkpointing = options.checkpointing ?? memory === "lean";
    if (typeof checkpointing !== "boolean") fail("checkpointing", "a boolean", checkpointing);
    const profile = options.profile ?? false;
    if (typeof profile !== "boolean") fail("profile", "a boolean", profile);
    const portableOps = options.portableOps ?? false;
    if (typeof portableOps !== "boolean") fail("portableOps", "a boolean", portableOps);
    const quantMode = options.quantMode ?? "fast";
    if (quantMode !== "fast" && quantMode !== "exact") fail("quantMode", '"fast" or "exact"', quantMode);
    const lora = resolveLoraOptions(options.lora);
    checkTrainableTypes(options.model);
    const native = await loadNative().createEngine({
      modelPath: options.model,
      device,
      threads,
      lean: memory === "lean",
      checkpoint: checkpointing,
      profile,
      portableOps,
      quantExact: quantMode === "exact",
      r: lora.r,
      alpha: lora.alpha,
      dropout: lora.dropout,
      rslora: lora.rslora,
      seed: lora.seed,
      targets: lora.targetModules.map(targetIndex),
    });
    const engine = new LoraEngine(native, {
      model: options.model,
      device,
      threads,
      memory,
      checkpointing,
      profile,
      portableOps,
      quantMode,
      lora,
    });
    const tooWide = rankWarning(lora, engine.info);
    if (tooWide) warn(tooWide);
    return engine;
  }

  get trainableParams(): number {
    return this.info.trainableParams;
  }

  /** The optimizer's step count and the dropout stream's position now (cheap: no tensor is copied). */
  counters(): { t: number; dropoutCalls: number } {
    const i = this.#live("counters").info();
    return { t: i.optimizerSteps, dropoutCalls: i.dropoutCalls };
  }

  /**
   * Memory the engine holds now: weights (and transposed copies; quantBytes of them quantized
   * matrices) and the compute buffer (of which up to quantTBytes is the one Wᵀ made at a time
   * from a quantized weight for the backward pass).
   */
  memoryInfo(): { weightBytes: number; transposedBytes: number; computeBytes: number; quantBytes: number; quantTBytes: number } {
    const i = this.#live("memoryInfo").info();
    return {
      weightBytes: i.weightBytes,
      transposedBytes: i.transposedBytes,
      computeBytes: i.computeBytes,
      quantBytes: i.quantBytes ?? 0,
      quantTBytes: i.quantTBytes ?? 0,
    };
  }

  /** Per-op timings since the last call (engine created with profile: true), slowest first. */
  takeProfile(): ProfileEntry[] {
    if (!this.options.profile) throw new Error("takeProfile: create the engine with profile: true");
    return this.#live("takeProfile").takeProfile();
  }

  #live(call: string): NativeEngine {
    if (!this.#native) throw new Error(`${call}: the engine has been disposed`);
    return this.#native;
  }

  /** Runs native calls one after another, in call order. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  #checkBatch(call: string, b: Batch): void {
    if (!(b.tokens instanceof Int32Array)) fail(`${call}: batch.tokens`, "an Int32Array", b.tokens);
    if (!(b.mask instanceof Uint8Array)) fail(`${call}: batch.mask`, "a Uint8Array", b.mask);
    checkInt(`${call}: batch.nSeq`, b.nSeq, 1);
    checkInt(`${call}: batch.seqLen`, b.seqLen, 2);
    if (b.tokens.length !== b.nSeq * b.seqLen || b.mask.length !== b.nSeq * b.seqLen) {
      fail(`${call}: batch`, `tokens and mask of nSeq × seqLen = ${b.nSeq * b.seqLen} values`, `${b.tokens.length} and ${b.mask.length}`);
    }
    this.#checkTokens(call, b.tokens, b.seqLen);
    for (let s = 0; s < b.nSeq; s++) {
      if (b.mask[s * b.seqLen]) fail(`${call}: batch.mask[${s}][0]`, "0 (the first token has nothing before it to predict it from)", 1);
      let last = 0;
      for (let j = b.seqLen - 1; j > 0; j--)
        if (b.mask[s * b.seqLen + j]) {
          last = j;
          break;
        }
      if (last > this.info.nCtx) {
        throw new RangeError(`${call}: sequence ${s} needs ${last + 1} tokens but the model's context length is ${this.info.nCtx}`);
      }
    }
  }

  #checkTokens(call: string, tokens: Int32Array, rowLen: number): void {
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t < 0 || t >= this.info.nVocab) {
        throw new RangeError(
          `${call}: token id ${t} at sequence ${Math.floor(i / rowLen)}, position ${i % rowLen} is outside the vocabulary [0, ${this.info.nVocab})`,
        );
      }
    }
  }

  /**
   * Adds the gradients of Σ NLL / divisor over the batch's masked tokens. Pass as divisor the
   * number of masked tokens in the whole accumulated batch (token-weighted loss).
   */
  async accumulate(batch: Batch, divisor: number): Promise<BatchStats> {
    const native = this.#live("accumulate");
    this.#checkBatch("accumulate", batch);
    checkNum("accumulate: divisor", divisor, (x) => x > 0, "a positive number (masked tokens in the accumulated batch)");
    return this.#serial(() => native.accumulate(batch.tokens, batch.mask, batch.nSeq, batch.seqLen, 1 / divisor));
  }

  /**
   * Adds the gradients of -gradScale · Σ_j w_j · log p_j over the tokens whose weight is not 0,
   * with p from logits / temperature (GRPO: the weights are the surrogate's derivative by log p).
   * `batch.mask` is ignored; the weights say which tokens are targets. Refused with LoRA dropout on.
   */
  async accumulateWeighted(batch: Batch, weights: Float32Array, o: { gradScale: number; temperature: number }): Promise<BatchStats> {
    const native = this.#live("accumulateWeighted");
    if (this.options.lora.dropout > 0) {
      fail("accumulateWeighted: lora.dropout", "0 (the log-probabilities must be those of the policy that sampled)", this.options.lora.dropout);
    }
    if (!(weights instanceof Float32Array)) fail("accumulateWeighted: weights", "a Float32Array", weights);
    for (let i = 0; i < weights.length; i++) {
      if (!Number.isFinite(weights[i]))
        fail(`accumulateWeighted: weights[${Math.floor(i / batch.seqLen)}][${i % batch.seqLen}]`, "a finite number", weights[i]);
    }
    const mask = Uint8Array.from(weights, (w) => (w !== 0 ? 1 : 0));
    this.#checkBatch("accumulateWeighted", { ...batch, mask });
    checkNum("accumulateWeighted: gradScale", o.gradScale, (x) => x > 0, "a positive number");
    checkNum("accumulateWeighted: temperature", o.temperature, (x) => x > 0, "a positive number");
    return this.#serial(() => native.accumulateWeighted(batch.tokens, weights, batch.nSeq, batch.seqLen, o.gradScale, o.temperature));
  }

  /**
   * Per-token log-probabilities of the batch's masked tokens under logits / temperature, forward
   * only, without dropout: nSeq × seqLen values, 0 where the mask is 0.
   */
  async logprobs(batch: Batch, temperature = 1): Promise<Float64Array> {
    const native = this.#live("logprobs");
    this.#checkBatch("logprobs", batch);
    checkNum("logprobs: temperature", temperature, (x) => x > 0, "a positive number");
    return this.#serial(() => native.logprobs(batch.tokens, batch.mask, batch.nSeq, batch.seqLen, temperature));
  }

  /** Loss sum, masked-token count and correct predictions, without gradients or dropout. */
  async evaluate(batch: Batch): Promise<BatchStats> {
    const native = this.#live("evaluate");
    this.#checkBatch("evaluate", batch);
    return this.#serial(() => native.evaluate(batch.tokens, batch.mask, batch.nSeq, batch.seqLen));
  }

  /** Next-token logits at every position: nTokens rows of nVocab. */
  async logits(tokens: ArrayLike<number>): Promise<Float32Array[]> {
    const native = this.#live("logits");
    const t = Int32Array.from(tokens);
    if (t.length === 0) fail("logits: tokens", "at least one token", "none");
    if (t.length > this.info.nCtx) throw new RangeError(`logits: ${t.length} tokens exceed the model's context length ${this.info.nCtx}`);
    this.#checkTokens("logits", t, t.length);
    const flat = await this.#serial(() => native.logits(t));
    const V = this.info.nVocab;
    return Array.from({ length: t.length }, (_, i) => flat.subarray(i * V, (i + 1) * V));
  }

  /** One AdamW step (torch.optim.AdamW semantics) after clipping; returns the norm before clipping. */
  async step(o: StepOptions): Promise<number> {
    const native = this.#live("step");
    if (typeof o !== "object" || o === null) fail("step", "an object with lr", o);
    const p = {
      lr: checkNum("step: lr", o.lr, (x) => x >= 0, "a number >= 0"),
      beta1: checkNum("step: beta1", o.beta1 ?? 0.9, (x) => x >= 0 && x < 1, "a number in [0, 1)"),
      beta2: checkNum("step: beta2", o.beta2 ?? 0.999, (x) => x >= 0 && x < 1, "a number in [0, 1)"),
      eps: checkNum("step: eps", o.eps ?? 1e-8, (x) => x > 0, "a positive number"),
      weightDecay: checkNum("step: weightDecay", o.weightDecay ?? 0, (x) => x >= 0, "a number >= 0"),
      maxGradNorm: checkNum("step: maxGradNorm", o.maxGradNorm ?? 0, (x) => x >= 0, "a number >= 0 (0 disables clipping)"),
    };
    return this.#serial(() => native.step(p));
  }

  async zeroGrad(): Promise<void> {
    const native = this.#live("zeroGrad");
    return this.#serial(async () => native.zeroGrad());
  }

  /** LoRA weights (or their accumulated gradients), named as in a GGUF LoRA. */
  async getAdapter(opts: { gradients?: boolean } = {}): Promise<AdapterTensor[]> {
    const native = this.#live("getAdapter");
    return this.#serial(async () => native.getAdapter(opts.gradients ?? false));
  }

  /** Sets LoRA weights by name (a subset is fine), or with gradients: true the accumulated gradients. */
  async setAdapter(tensors: AdapterTensor[], opts: { gradients?: boolean } = {}): Promise<void> {
    const native = this.#live("setAdapter");
    if (!Array.isArray(tensors)) fail("setAdapter", "an array of {name, ne, data}", tensors);
    return this.#serial(async () => native.setAdapter(tensors, opts.gradients ?? false));
  }

  /** Back to a fresh adapter (same seed) and a fresh optimizer. */
  async resetAdapter(): Promise<void> {
    const native = this.#live("resetAdapter");
    return this.#serial(async () => native.resetAdapter());
  }

  /** Writes a GGUF LoRA that llama.cpp, Ollama and node-llama-cpp load as it is. */
  async saveAdapter(path: string): Promise<void> {
    const native = this.#live("saveAdapter");
    if (typeof path !== "string" || path === "") fail("saveAdapter: path", "a file path", path);
    return this.#serial(() => native.saveAdapter(path));
  }

  async loadAdapter(path: string): Promise<void> {
    const native = this.#live("loadAdapter");
    if (typeof path !== "string" || path === "") fail("loadAdapter: path", "a file path", path);
    if (!fs.existsSync(path)) throw new Error(`loadAdapter: file not found: ${path}`);
    return this.#serial(() => native.loadAdapter(path));
  }

  async getOptimizerState(): Promise<OptimizerState> {
    const native = this.#live("getOptimizerState");
    return this.#serial(async () => native.getOptimizerState());
  }

  async setOptimizerState(state: OptimizerState): Promise<void> {
    const native = this.#live("setOptimizerState");
    return this.#serial(async () => native.setOptimizerState(state));
  }

  /** The ops of the training graph for nTokens tokens, for the backend-portability check. */
  async graphOps(nTokens = 8, caps?: NativeOpCaps): Promise<string[]> {
    const native = this.#live("graphOps");
    checkInt("graphOps: nTokens", nTokens, 1);
    return this.#serial(async () => native.graphOps(nTokens, caps));
  }

  /** Frees the model and adapter memory after pending calls finish. */
  async dispose(): Promise<void> {
    const native = this.#native;
    if (!native) return;
    this.#native = null;
    await this.#queue;
    native.dispose();
  }
}
