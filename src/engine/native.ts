// The native boundary: the hand-written types of the C++ addon (native/addon.cpp) and its loader.
// Nothing else in text2sql talks to the addon directly; src/engine/engine.ts validates arguments first.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface NativeEngineOptions {
  modelPath: string;
  device: "auto" | "cpu" | "cuda" | "metal";
  threads: number; // 0: all cores
  lean: boolean; // no transposed weight copies: each Wᵀ is made in the graph when needed
  checkpoint: boolean; // gradient checkpointing: recompute each layer in the backward pass
  profile: boolean; // time every graph node (slow); read with takeProfile()
  portableOps?: boolean; // compose every backward op from basic ops, as on Metal (tests)
  quantExact?: boolean; // quantized weights: dequantize per layer to F32 for every product (exact; checks) instead of quantized kernels + BF16 Wᵀ
  r: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  seed: number;
  targets: number[]; // LoRA target indices (0 = q ... 6 = down); src/engine/lora.ts owns the order and names
}

export interface NativeBatchStats {
  lossSum: number; // Σ token NLL over unmasked positions
  nTokens: number; // unmasked positions
  nCorrect: number; // unmasked positions whose argmax is the target
}

export interface NativeTensor {
  name: string; // e.g. blk.0.attn_q.weight.lora_a
  ne: number[]; // ggml order: ne[0] is the fastest-moving dimension
  data: Float32Array;
}

export interface NativeStepParams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number; // <= 0: no clipping
}

export interface NativeEngineInfo {
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number; // attention head size (<arch>.attention.key_length; n_embd / n_head unless set)
  arch: string; // GGUF general.architecture: llama | qwen2 | qwen3 (src/formats/architectures.ts)
  nFf: number;
  nCtx: number;
  ropeFreqBase: number;
  rmsEps: number;
  weightType: string; // f32 | f16 | bf16 | q8_0 | q4_k | ... (of blk.0.attn_q)
  matmulKernel: string; // frozen-weight products: "ggml" (its mul_mat), "amx-bf16" (our AMX tiles), "amx-bf16-emulated" (TEXT2SQL_AMX=emulate), "avx512-bf16" (our AVX512-BF16 GEMM), "q8_0-vnni" (our Q8_0 GEMM on AVX512-VNNI)
  fusedKernel: string; // text2sql's fused CPU ops (causal attention, the SwiGLU backward; native/fused.h): "ggml" (ggml's composition of the same: TEXT2SQL_FUSED=0, or not the CPU), else the kernels' variant: "fused-avx512" | "fused-avx2" | "fused-base"
  loraKernel: string; // the adapters' rank-r products on the CPU: "ggml" (its mul_mat / out_prod; TEXT2SQL_FUSED_LORA=0 or another backend), "fused-avx512" | "fused-avx2" | "fused-base" (our fused ops, lora.h)
  normKernel: string; // the RMS norms and their backward on the CPU: "ggml" (RMS_NORM, MUL, RMS_NORM_BACK, ADD; TEXT2SQL_FUSED_NORM=0 or another backend), "fused-avx512" | "fused-avx2" | "fused-base" (our fused ops, fused.h)
  device: string; // ggml backend name, e.g. CPU, CUDA0, MTL0
  trainableParams: number;
  loraScale: number;
  optimizerSteps: number; // AdamW steps taken (now, not at creation)
  dropoutCalls: number; // position in the dropout stream (now)
  targets: number[]; // LoRA target indices, ascending (src/engine/lora.ts maps them to names)
  lean: boolean;
  checkpoint: boolean;
  weightBytes: number; // base weights, plus the transposed copies unless lean
  transposedBytes: number; // of which transposed copies
  quantBytes?: number; // of which quantized matrices
  quantTBytes?: number; // the largest Wᵀ made per layer from a quantized weight (compute buffer)
  computeBytes: number; // compute buffer (activations, temporaries): the largest graph so far
}

/** Fused backward ops a backend has (the graph composes the others from basic ops). */
export interface NativeOpCaps {
  softMaxBack?: boolean;
  rmsNormBack?: boolean;
  outProd?: boolean;
  customTranspose?: boolean; // lean mode's weight transpose as a CPU custom op
}

export interface NativeProfileEntry {
  phase: "forward" | "backward";
  op: string; // e.g. "MUL_MAT bf16 x f32 (frozen weight)"
  count: number;
  ms: number;
  flop: number; // for MUL_MAT: 2 · multiply-adds
}

export interface NativeOptimizerState {
  t: number; // AdamW steps taken
  dropoutCalls?: number; // position in the dropout stream, so a resumed run draws the same masks
  m: NativeTensor[];
  v: NativeTensor[];
}

export interface NativeEngine {
  info(): NativeEngineInfo;
  /** tokens/mask: nSeq × seqLen, row-major, right-padded; mask[j] = 1 marks token j as a target. */
  accumulate(tokens: Int32Array, mask: Uint8Array, nSeq: number, seqLen: number, gradScale: number): Promise<NativeBatchStats>;
  /**
   * weights: nSeq × seqLen; weights[j] != 0 marks token j as a target: adds the gradients of
   * -gradScale · Σ w_j · log softmax(logits / temperature)[token j].
   */
  accumulateWeighted(
    tokens: Int32Array,
    weights: Float32Array,
    nSeq: number,
    seqLen: number,
    gradScale: number,
    temperature: number,
  ): Promise<NativeBatchStats>;
  evaluate(tokens: Int32Array, mask: Uint8Array, nSeq: number, seqLen: number): Promise<NativeBatchStats>;
  /** nSeq × seqLen: log softmax(logits / temperature)[token j] where mask[j] = 1, else 0 (forward only). */
  logprobs(tokens: Int32Array, mask: Uint8Array, nSeq: number, seqLen: number, temperature: number): Promise<Float64Array>;
  /** [nTokens × nVocab] logits, row-major. */
  logits(tokens: Int32Array): Promise<Float32Array>;
  /** AdamW after global-norm clipping; zeroes the gradients; resolves to the norm before clipping. */
  step(params: NativeStepParams): Promise<number>;
  zeroGrad(): void;
  getAdapter(gradients?: boolean): NativeTensor[];
  /** Sets the LoRA weights, or with gradients = true the accumulated gradients. */
  setAdapter(tensors: NativeTensor[], gradients?: boolean): void;
  resetAdapter(): void;
  saveAdapter(path: string): Promise<void>;
  loadAdapter(path: string): Promise<void>;
  getOptimizerState(): NativeOptimizerState;
  setOptimizerState(state: NativeOptimizerState): void;
  /**
   * One line per node of the training graph for nTokens tokens: "OP TYPE,TYPE~[ broadcast]", where
   * a source type ends in "~" when the tensor is a non-contiguous view with contiguous rows and "^"
   * when even its rows are strided; "broadcast" marks a MUL_MAT whose src0 repeats over dims 2/3.
   */
  graphOps(nTokens: number, caps?: NativeOpCaps): string[];
  /** Per-op timings gathered since the last call (engine created with profile), slowest first. */
  takeProfile(): NativeProfileEntry[];
  dispose(): void;
}

export interface NativeCpuFeatures {
  avx2: boolean;
  avx512f: boolean;
  avx512_bf16: boolean;
  avx512_fp16: boolean;
  amx_tile: boolean;
  amx_bf16: boolean;
  amx_int8: boolean;
}

export interface NativeDevice {
  name: string;
  description: string;
  backend: string;
}

/** A kernel for the frozen-weight BF16 products: the AMX tiles, their scalar emulation, our AVX512-BF16 GEMM, or ggml's mul_mat. */
export type NativeMatmulKernel = "amx" | "emulate" | "avx512" | "ggml";

export interface NativeAddon {
  createEngine(options: NativeEngineOptions): Promise<NativeEngine>;
  /**
   * Test hook: one product on the CPU with the given kernel (threads ≥ 1). transpose false: y = W·x
   * with w [N rows of K] (w[n·K + k]); transpose true: y = Wᵀ·x with w [K rows of N] (w[k·N + n]).
   * w holds BF16 bit patterns, x is [T rows of K] (x[t·K + k]); resolves to y [T rows of N]. The
   * activations are rounded to BF16 as ggml's BF16 mul_mat does. Rejects "amx" where the tile
   * unit is not available, "avx512" where the CPU has no AVX512_BF16. "avx512-packed": the
   * AVX512-BF16 GEMM with W packed into panels first, as fast mode packs it at load (Wᵀ·x).
   */
  amxMatmulTest(
    kernel: NativeMatmulKernel | "avx512-packed",
    transpose: boolean,
    w: Uint16Array,
    x: Float32Array,
    K: number,
    N: number,
    T: number,
    threads: number,
  ): Promise<Float32Array>;
  /**
   * Test hook for quantized bases (native/quant.h): quantizes x [nOut rows of nIn] to `type` (a
   * ggml type name: "q4_K", "q8_0", ...) with ggml, loads it in ggml's CPU_REPACK layout when
   * `repack` and one exists here (resolves repacked: true), and runs the engine's dequantizing
   * transpose on rows [row0, nOut) (row0 a multiple of 8). Resolves to wt: the bytes of that Wᵀ
   * [nIn rows of nOut - row0] in BF16 or F32; ref: ggml's dequantization of all the rows [nOut rows of nIn].
   */
  quantTransposeTest(
    type: string,
    x: Float32Array,
    nIn: number,
    nOut: number,
    row0: number,
    repack: boolean,
    bf16: boolean,
    threads: number,
  ): Promise<{ wt: Uint8Array; ref: Float32Array; repacked: boolean }>;
  /**
   * The roofline microbenchmark (src/engine/matmul-bench.ts validates): y = W·x on the CPU with
   * `kernel`, W [K, N] of `type` (seeded values; bf16 only for "amx", "emulate" and "avx512"), x [K, T]
   * f32, threads ≥ 1: one untimed run, then `reps` timed runs; resolves to each one's milliseconds.
   */
  matmulBench(kernel: NativeMatmulKernel, type: "f32" | "f16" | "bf16", K: number, N: number, T: number, threads: number, reps: number): Promise<Float64Array>;
  /** amxTiles: whether loading the addon obtained the AMX tile state for this process (Linux x86-64; "absent" without AMX). */
  systemInfo(): {
    devices: NativeDevice[];
    lastLog: string;
    amxTiles: "absent" | "granted" | "denied";
    /** CPUID's answer for the features that decide the matrix kernels (all false off x86-64). */
    cpuFeatures: NativeCpuFeatures;
    /** The CPU kernel of the frozen-weight products (W·x, Wᵀ·dy, output head) per weight type. */
    kernels: { f32: string; f16: string; bf16: string };
    /** Why the AMX kernel is off on a CPU that has AMX (tiles denied, no AMX code built), or "". */
    kernelNote: string;
  };
}

/** The package root (holds package.json), from dist/src/engine/ or src/engine/. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("text2sql: cannot find the package root");
    dir = up;
  }
  return dir;
}

let addon: NativeAddon | undefined;

/**
 * Loads the addon, building it first when it is missing: `npm install text2sql` under npm 11 runs
 * no install scripts of a dependency until they are approved, so the first use builds instead.
 */
export function loadNative(): NativeAddon {
  if (addon) return addon;
  const root = packageRoot();
  const file = path.join(root, "build", "Release", "text2sql.node");
  if (!fs.existsSync(file)) {
    process.stderr.write("text2sql: the native engine is not built yet; building it now (once, about a minute)\n");
    const r = spawnSync(process.execPath, [path.join(root, "native", "build.mjs")], {
      cwd: root,
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, TEXT2SQL_BUILD_QUIET: "1" },
    });
    if (r.status !== 0 || !fs.existsSync(file)) {
      throw new Error(`text2sql: building the native engine failed (see the messages above); run \`node ${path.join(root, "native", "build.mjs")}\` to retry`);
    }
  }
  const require = createRequire(import.meta.url);
  addon = require(file) as NativeAddon;
  return addon;
}
