/**
 * Generate a random-weight model in GGUF format, for tests and benchmarks.
 *
 * Each family uses its real vocabulary (all `tokenizer.*` metadata copied verbatim from
 * llama.cpp's models/ggml-vocab-*.gguf), so llama.cpp / node-llama-cpp can load it, tokenize
 * text with it and evaluate it:
 *   llama   Llama 2 / TinyLlama: SentencePiece vocabulary (ggml-vocab-llama-spm), the default
 *   llama3  Llama 3.x: BPE vocabulary (ggml-vocab-llama-bpe), tied embeddings, llama3 RoPE
 *           scaling (rope_freqs.weight), the Llama 3.2 chat template
 *   qwen2   Qwen2.5: BPE vocabulary (ggml-vocab-qwen2), q/k/v biases, tied embeddings, NEOX RoPE
 *   qwen3   Qwen3: the same vocabulary, per-head q/k RMSNorm, a head size that is not
 *           n_embd / n_head (as in Qwen3-0.6B), tied embeddings, NEOX RoPE
 * (architecture details: src/formats/architectures.ts).
 * Weights come from a fast seeded PRNG, one independent stream per tensor (keyed by
 * the tensor name), so the same seed gives the same values whatever the storage
 * type: an F16/BF16 model is the F32 model rounded.
 *
 * Used by `builtin:tiny` (./model-path.ts), the tests and the benchmarks:
 *   await makeTestModel({ path: "/tmp/m.gguf", type: "f16" })
 * From a shell: node dist/scripts/make-test-model.js --out m.gguf --type bf16 --tinyllama
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { packageRoot } from "../engine/native.js";
import { GgmlType, GgufValueType, gv, readGguf } from "../formats/gguf.js";
import { f32ToBf16, f32ToF16 } from "../formats/float16.js";
import { writeGguf } from "../formats/gguf-write.js";
import { quantizeQ4K, quantizeQ8_0 } from "../formats/quant.js";
import type { GgufValue } from "../formats/gguf.js";
import type { GgufTensorSpec, TensorData } from "../formats/gguf-write.js";
import { ARCHITECTURES, llama3RopeFactors, type ArchName } from "../formats/architectures.js";

/**
 * Storage of the 2D matrices: f32/f16/bf16, q8_0, q4_k, or q4_k_m (a mix as in llama.cpp's Q4_K_M
 * files: Q4_K matrices, with attn_v, ffn_down and the output head in Q8_0 here, where those files
 * use Q6_K). Quantized types need nEmbd and nFf to be multiples of the block size (32; 256 for K).
 */
export type TestModelType = "f32" | "f16" | "bf16" | "q8_0" | "q4_k" | "q4_k_m";

/** The model families test models can be made of (see the file comment). */
export type TestFamily = "llama" | "llama3" | "qwen2" | "qwen3";

interface FamilySpec {
  arch: ArchName;
  /** models/<vocab> in the llama.cpp source tree */
  vocab: string;
  /** models/templates/<file> stored as tokenizer.chat_template (when the vocab has none) */
  chatTemplate?: string;
  ropeBase: number;
  rmsEps: number;
  tied: boolean;
  /** head size as a multiple of n_embd / n_head (Qwen3-0.6B: 128 against 1024 / 16 = 64) */
  headDimFactor: number;
  /**
   * llama3 RoPE scaling (rope_freqs.weight), with a short original context so that the factors
   * differ from 1 on the dimensions a 16-token test reaches (8192 in the real models).
   */
  llama3Rope?: Record<string, number>;
}

export const TEST_FAMILIES: Readonly<Record<TestFamily, FamilySpec>> = {
  llama: { arch: "llama", vocab: "ggml-vocab-llama-spm.gguf", ropeBase: 10000, rmsEps: 1e-5, tied: false, headDimFactor: 1 },
  llama3: {
    arch: "llama",
    vocab: "ggml-vocab-llama-bpe.gguf",
    chatTemplate: "meta-llama-Llama-3.2-3B-Instruct.jinja",
    ropeBase: 500000,
    rmsEps: 1e-5,
    tied: true,
    headDimFactor: 1,
    llama3Rope: { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  },
  qwen2: { arch: "qwen2", vocab: "ggml-vocab-qwen2.gguf", ropeBase: 1000000, rmsEps: 1e-6, tied: true, headDimFactor: 1 },
  qwen3: {
    arch: "qwen3",
    vocab: "ggml-vocab-qwen2.gguf",
    chatTemplate: "Qwen-Qwen3-0.6B.jinja",
    ropeBase: 1000000,
    rmsEps: 1e-6,
    tied: true,
    headDimFactor: 2,
  },
};

export interface MakeTestModelOptions {
  /** Output file. */
  path: string;
  /** Storage type of the 2D weight matrices (norm weights are always F32). Default "f32". */
  type?: TestModelType;
  nEmbd?: number;
  nLayer?: number;
  nHead?: number;
  nHeadKv?: number;
  nFf?: number;
  /** Training context length written to the metadata. */
  nCtx?: number;
  seed?: number;
  /** Omit output.weight; llama.cpp then reuses token_embd.weight as the output projection. Default: the family's. */
  tiedEmbeddings?: boolean;
  /** Architecture name used for `general.architecture` and the metadata key prefix. Default: the family's. */
  arch?: string;
  /** Model family: vocabulary, architecture and its extra tensors. Default "llama" (Llama 2, SPM vocabulary). */
  family?: TestFamily;
  /** Attention head size (written as attention.key_length when not nEmbd / nHead). Default: the family's. */
  headDim?: number;
}

/** Defaults: a tiny model that loads and evaluates in milliseconds, with GQA (nHead != nHeadKv). */
export const TEST_MODEL_DEFAULTS = {
  type: "f32",
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nHeadKv: 2,
  nFf: 128,
  nCtx: 128,
  seed: 1,
} as const satisfies Partial<MakeTestModelOptions>;

/**
 * Real model shapes for benchmarks (random weights, each family's vocabulary and tied head):
 * `npm run bench:step -- --shape qwen2.5-1.5b`. Llama 3.2's rope_freqs use the test family's
 * short original context (timing and memory do not depend on them); tinyllama and llama3.2-3b
 * have the Llama-2 vocabulary of the test models (32,000 tokens where Llama 3.2 has 128,256).
 */
export const BENCH_SHAPES = {
  tinyllama: { nEmbd: 2048, nLayer: 22, nHead: 32, nHeadKv: 4, nFf: 5632, nCtx: 2048 },
  "llama-3.2-1b": { family: "llama3", nEmbd: 2048, nLayer: 16, nHead: 32, nHeadKv: 8, nFf: 8192, nCtx: 131072 },
  "qwen2.5-1.5b": { family: "qwen2", nEmbd: 1536, nLayer: 28, nHead: 12, nHeadKv: 2, nFf: 8960, nCtx: 32768 },
  "qwen2.5-0.5b": { family: "qwen2", nEmbd: 896, nLayer: 24, nHead: 14, nHeadKv: 2, nFf: 4864, nCtx: 32768 },
  "llama3.2-3b": { nEmbd: 3072, nLayer: 28, nHead: 24, nHeadKv: 8, nFf: 8192, nCtx: 2048 },
  "qwen3-0.6b": { family: "qwen3", nEmbd: 1024, nLayer: 28, nHead: 16, nHeadKv: 8, nFf: 3072, nCtx: 40960, headDim: 128 },
} as const satisfies Record<string, Partial<MakeTestModelOptions>>;

/** TinyLlama-1.1B shapes (about 2.2 GB as F16/BF16): `--tinyllama` of scripts/make-test-model.ts. */
export const TINYLLAMA_PRESET = BENCH_SHAPES.tinyllama;
/** Llama-3.2-3B's layer shapes (hidden 3072, 28 layers, 24 heads, 8 KV heads, FFN 8192) with the test models' Llama-2 vocabulary. */
export const LLAMA32_3B_PRESET = BENCH_SHAPES["llama3.2-3b"];
export type BenchShape = keyof typeof BENCH_SHAPES;

const FILE_TYPE: Record<TestModelType, number> = { f32: 0, f16: 1, bf16: 32, q8_0: 7, q4_k: 15, q4_k_m: 15 }; // llama_ftype
const GGML_TYPE: Record<TestModelType, number> = {
  f32: GgmlType.F32,
  f16: GgmlType.F16,
  bf16: GgmlType.BF16,
  q8_0: GgmlType.Q8_0,
  q4_k: GgmlType.Q4_K,
  q4_k_m: GgmlType.Q4_K,
};

/** The type of one matrix: q4_k_m keeps attn_v, ffn_down and output in Q8_0. */
function matrixType(type: TestModelType, name: string): number {
  if (type === "q4_k_m" && /attn_v|ffn_down|^output/.test(name)) return GgmlType.Q8_0;
  return GGML_TYPE[type];
}

// ---------------------------------------------------------------------------
// Locating llama.cpp
// ---------------------------------------------------------------------------

/**
 * The llama.cpp source tree unpacked from node-llama-cpp's bundle:
 * `<package root>/node_modules/.cache/text2sql/llama.cpp` (override with TEXT2SQL_LLAMA_CPP_DIR).
 */
export function llamaCppSourceDir(): string {
  const dir = process.env.TEXT2SQL_LLAMA_CPP_DIR || path.join(packageRoot(), "node_modules", ".cache", "text2sql", "llama.cpp");
  if (!fs.existsSync(path.join(dir, "models", "ggml-vocab-llama-spm.gguf"))) {
    throw new Error(`llama.cpp source tree not found at ${dir} (expected models/ggml-vocab-llama-spm.gguf there)`);
  }
  return dir;
}

/** The `tokenizer.*` metadata of a vocabulary GGUF of the bundle, in file order (cached per file). */
const vocabCache = new Map<string, { entries: [string, GgufValue][]; nVocab: number }>();
function bundleVocab(file: string): { entries: [string, GgufValue][]; nVocab: number } {
  const cached = vocabCache.get(file);
  if (cached) return cached;
  const vocabPath = path.join(llamaCppSourceDir(), "models", file);
  const g = readGguf(vocabPath);
  const entries = [...g.metadata].filter(([key]) => key.startsWith("tokenizer."));
  const tokens = g.metadata.get("tokenizer.ggml.tokens");
  if (!tokens || tokens.type !== GgufValueType.ARRAY || tokens.itemType !== GgufValueType.STRING) {
    throw new Error(`${vocabPath}: tokenizer.ggml.tokens is missing or not a string array`);
  }
  const v = { entries, nVocab: tokens.value.length };
  vocabCache.set(file, v);
  return v;
}

// ---------------------------------------------------------------------------
// Deterministic random weights
// ---------------------------------------------------------------------------

/** Elements generated per chunk (4 MiB of f32): bounds memory regardless of tensor size. */
const CHUNK_ELEMS = 1 << 20;

/** 32-bit seed for one tensor: FNV-1a of its name mixed with the model seed. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b9);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h | 0;
}

/**
 * Fill `out` with mean + std * X where X is a zero-mean, unit-variance triangular
 * variate (sum of two 16-bit uniforms from one mulberry32 output): "normal-ish",
 * bounded by +-sqrt(6) std, and a few ns per element. Returns the new PRNG state.
 */
function fillRandom(out: Float32Array, state: number, mean: number, std: number): number {
  const scale = (std * Math.sqrt(6)) / 65535;
  let a = state | 0;
  for (let i = 0; i < out.length; i++) {
    // mulberry32
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    t ^= t >>> 14;
    out[i] = mean + scale * ((t & 0xffff) + ((t >>> 16) & 0xffff) - 65535);
  }
  return a;
}

/**
 * A lazily generated random tensor. Chunks are produced on demand while the file
 * is written (the buffers are reused between chunks, which is safe because
 * writeGguf consumes each chunk before asking for the next).
 */
function randomTensor(name: string, ne: number[], type: number, seed: number, mean: number, std: number): GgufTensorSpec {
  const count = ne.reduce((a, b) => a * b, 1);
  function* chunks(): Generator<TensorData> {
    let state = tensorSeed(seed, name);
    const f32 = new Float32Array(Math.min(CHUNK_ELEMS, count));
    const u16 = type === GgmlType.F16 || type === GgmlType.BF16 ? new Uint16Array(f32.length) : undefined;
    for (let done = 0; done < count; done += f32.length) {
      const chunk = count - done >= f32.length ? f32 : f32.subarray(0, count - done);
      state = fillRandom(chunk, state, mean, std);
      // chunks are whole multiples of 256 values: whole blocks of every quantized type
      if (type === GgmlType.Q8_0) yield quantizeQ8_0(chunk);
      else if (type === GgmlType.Q4_K) yield quantizeQ4K(chunk);
      else if (!u16) yield chunk;
      else if (type === GgmlType.F16) yield f32ToF16(chunk, u16).subarray(0, chunk.length);
      else yield f32ToBf16(chunk, u16).subarray(0, chunk.length);
    }
  }
  return { name, type, ne, data: chunks };
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new Error(`makeTestModel: ${name} must be a positive integer, got ${v}`);
}

/** Write a random-weight GGUF model of a family (default: Llama 2 with the SPM vocabulary) and return its path. */
export async function makeTestModel(opts: MakeTestModelOptions): Promise<string> {
  const o = { ...TEST_MODEL_DEFAULTS, ...opts };
  const family = o.family ?? "llama";
  const fam = TEST_FAMILIES[family];
  if (!fam) throw new Error(`makeTestModel: family must be one of ${Object.keys(TEST_FAMILIES).join(", ")}, got ${String(family)}`);
  const spec = ARCHITECTURES[fam.arch];
  const arch = o.arch ?? fam.arch;
  const tied = o.tiedEmbeddings ?? fam.tied;
  const { nEmbd, nLayer, nHead, nHeadKv, nFf, nCtx, seed } = o;
  for (const [k, v] of Object.entries({ nEmbd, nLayer, nHead, nHeadKv, nFf, nCtx })) checkPositiveInt(k, v);
  if (!Number.isInteger(seed)) throw new Error(`makeTestModel: seed must be an integer, got ${seed}`);
  if (!(o.type in GGML_TYPE)) throw new Error(`makeTestModel: type must be one of ${Object.keys(GGML_TYPE).join(", ")}, got ${o.type}`);
  const block = o.type === "q8_0" ? 32 : o.type.startsWith("q4_k") ? 256 : 1;
  if (nEmbd % block !== 0 || nFf % block !== 0) {
    throw new Error(`makeTestModel: type ${o.type} needs nEmbd (${nEmbd}) and nFf (${nFf}) to be multiples of ${block}`);
  }
  if (nEmbd % nHead !== 0) throw new Error(`makeTestModel: nEmbd (${nEmbd}) must be divisible by nHead (${nHead})`);
  if (nHead % nHeadKv !== 0) throw new Error(`makeTestModel: nHead (${nHead}) must be divisible by nHeadKv (${nHeadKv})`);
  const headDim = o.headDim ?? (nEmbd / nHead) * fam.headDimFactor;
  checkPositiveInt("headDim", headDim);
  if (headDim % 2 !== 0) throw new Error(`makeTestModel: head dimension ${headDim} must be even (RoPE)`);

  const vocab = bundleVocab(fam.vocab);
  const nVocab = vocab.nVocab;
  const nEmbdQ = nHead * headDim;
  const nEmbdKv = nHeadKv * headDim;

  const metadata: [string, GgufValue][] = [
    ["general.architecture", gv.str(arch)],
    ["general.name", gv.str(`text2sql-test-${arch}-${nEmbd}x${nLayer}-${o.type}`)],
    [`${arch}.context_length`, gv.u32(nCtx)],
    [`${arch}.embedding_length`, gv.u32(nEmbd)],
    [`${arch}.block_count`, gv.u32(nLayer)],
    [`${arch}.feed_forward_length`, gv.u32(nFf)],
    [`${arch}.attention.head_count`, gv.u32(nHead)],
    [`${arch}.attention.head_count_kv`, gv.u32(nHeadKv)],
    [`${arch}.rope.freq_base`, gv.f32(fam.ropeBase)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gv.f32(fam.rmsEps)],
    [`${arch}.rope.dimension_count`, gv.u32(headDim)],
    ["general.file_type", gv.u32(FILE_TYPE[o.type])],
    [`${arch}.vocab_size`, gv.u32(nVocab)],
  ];
  if (headDim !== nEmbd / nHead) metadata.push([`${arch}.attention.key_length`, gv.u32(headDim)], [`${arch}.attention.value_length`, gv.u32(headDim)]);
  metadata.push(...vocab.entries);
  if (fam.chatTemplate && !vocab.entries.some(([k]) => k === "tokenizer.chat_template")) {
    const file = path.join(llamaCppSourceDir(), "models", "templates", fam.chatTemplate);
    metadata.push(["tokenizer.chat_template", gv.str(fs.readFileSync(file, "utf8"))]);
  }

  // Scales: every matrix gets std 1/sqrt(fan_in) so activations keep unit scale through
  // the layers (and attention scores have std ~1, so attention is far from uniform).
  // Embedding and output rows get std 2/sqrt(nEmbd): with a unit-RMS final hidden state
  // the logits then have std ~2, non-trivial but not saturated, tied or not.
  const matrix = (name: string, ne: number[]): GgufTensorSpec => randomTensor(name, ne, matrixType(o.type, name), seed, 0, 1 / Math.sqrt(ne[0]!));
  const norm = (name: string, n = nEmbd): GgufTensorSpec => randomTensor(name, [n], GgmlType.F32, seed, 1, 0.1);
  // biases as large as the projections' outputs (Qwen2's k biases are of that order)
  const bias = (name: string, n: number): GgufTensorSpec => randomTensor(name, [n], GgmlType.F32, seed, 0, 0.5);
  const embStd = 2 / Math.sqrt(nEmbd);

  const tensors: GgufTensorSpec[] = [randomTensor("token_embd.weight", [nEmbd, nVocab], matrixType(o.type, "token_embd"), seed, 0, embStd)];
  if (fam.llama3Rope) {
    const factors = llama3RopeFactors(fam.llama3Rope, fam.ropeBase, headDim);
    tensors.push({ name: "rope_freqs.weight", type: GgmlType.F32, ne: [factors.length], data: () => [factors] });
  }
  for (let l = 0; l < nLayer; l++) {
    const b = `blk.${l}`;
    tensors.push(
      norm(`${b}.attn_norm.weight`),
      matrix(`${b}.attn_q.weight`, [nEmbd, nEmbdQ]),
      matrix(`${b}.attn_k.weight`, [nEmbd, nEmbdKv]),
      matrix(`${b}.attn_v.weight`, [nEmbd, nEmbdKv]),
      matrix(`${b}.attn_output.weight`, [nEmbdQ, nEmbd]),
      norm(`${b}.ffn_norm.weight`),
      matrix(`${b}.ffn_gate.weight`, [nEmbd, nFf]),
      matrix(`${b}.ffn_up.weight`, [nEmbd, nFf]),
      matrix(`${b}.ffn_down.weight`, [nFf, nEmbd]),
    );
    if (spec.qkvBias) tensors.push(bias(`${b}.attn_q.bias`, nEmbdQ), bias(`${b}.attn_k.bias`, nEmbdKv), bias(`${b}.attn_v.bias`, nEmbdKv));
    if (spec.qkNorm) tensors.push(norm(`${b}.attn_q_norm.weight`, headDim), norm(`${b}.attn_k_norm.weight`, headDim));
  }
  tensors.push(norm("output_norm.weight"));
  if (!tied) tensors.push(randomTensor("output.weight", [nEmbd, nVocab], matrixType(o.type, "output"), seed, 0, embStd));

  fs.mkdirSync(path.dirname(path.resolve(o.path)), { recursive: true });
  writeGguf(o.path, { metadata, tensors });
  return o.path;
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

/** The benchmarks' random model of a real shape ({@link BENCH_SHAPES}) and this type, made on
 *  first use in $TEXT2SQL_BENCH_DIR (default <tmp>/text2sql-bench). */
export async function benchModel(type: TestModelType, shape: BenchShape = "tinyllama"): Promise<string> {
  const preset = BENCH_SHAPES[shape];
  if (!preset) throw new Error(`unknown shape ${String(shape)}; available: ${Object.keys(BENCH_SHAPES).join(", ")}`);
  const dir = process.env.TEXT2SQL_BENCH_DIR || path.join(os.tmpdir(), "text2sql-bench");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${shape}-shape-${type}.gguf`);
  if (!fs.existsSync(file)) {
    process.stderr.write(`making a ${shape}-shaped ${type} model with random weights: ${file}\n`);
    const tmp = `${file}.partial`;
    await makeTestModel({ path: tmp, type, ...preset });
    fs.renameSync(tmp, file);
  }
  return file;
}

/** The benchmarks' TinyLlama-shaped random model of this type (see {@link benchModel}). */
export function tinyLlamaBenchModel(type: TestModelType): Promise<string> {
  return benchModel(type, "tinyllama");
}
