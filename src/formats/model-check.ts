// Checking a model GGUF with our own reader before llama.cpp (through node-llama-cpp) opens it:
// llama.cpp aborts the whole process (GGML_ASSERT, exit 134) or allocates without bound (a header
// claiming 2^40 tensors) on files that our reader rejects with an Error naming the file and the
// fault. Every place that hands a model to node-llama-cpp calls checkModelFile first.
import fs from "node:fs";
import { isArchName } from "./architectures.js";
import { GgufValueType, readGguf, type GgufFile } from "./gguf.js";

/** The fewest bytes one metadata entry (key length, type, one-byte value) and one tensor info take. */
const MIN_KV_BYTES = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8;

/** Throws when the header's tensor and metadata counts could not fit in a file of its size. */
function checkHeaderCounts(file: string, label: string): void {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(24);
    if (fs.readSync(fd, head, 0, 24, 0) < 24) return; // readGguf names what is missing
    if (head.toString("latin1", 0, 4) !== "GGUF") return;
    const nTensors = head.readBigUInt64LE(8);
    const nKv = head.readBigUInt64LE(16);
    if (nTensors * BigInt(MIN_TENSOR_INFO_BYTES) + nKv * BigInt(MIN_KV_BYTES) > BigInt(size)) {
      throw new Error(`${label}: ${file}: corrupt GGUF header: ${nTensors} tensors and ${nKv} metadata entries cannot fit in a file of ${size} bytes`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * llama.cpp's own layer limit: `#define LLAMA_MAX_LAYERS 512` (llama.cpp src/llama-hparams.h:11),
 * asserted by `GGML_ASSERT(hparams.n_layer_all > 0 && hparams.n_layer_all <= LLAMA_MAX_LAYERS)`
 * (src/llama-model.cpp:1226), which aborts the process.
 */
export const LLAMA_MAX_LAYERS = 512;

/** An integer metadata value, or undefined when the key is missing or not a scalar integer. */
function intValue(g: GgufFile, key: string): number | undefined {
  const v = g.metadata.get(key);
  if (!v || v.type === GgufValueType.ARRAY || v.type === GgufValueType.STRING || typeof v.value === "boolean") return undefined;
  return Number(v.value);
}

/** The hyperparameters llama.cpp divides by or sizes tensors with: each present one must be >= 1. */
function checkHyperparameters(g: GgufFile, arch: string, bad: (what: string) => Error): void {
  const keys = ["block_count", "embedding_length", "feed_forward_length", "context_length", "attention.head_count", "attention.head_count_kv"];
  for (const k of keys) {
    const v = intValue(g, `${arch}.${k}`);
    if (v !== undefined && !(v >= 1)) throw bad(`${arch}.${k} is ${v}; it must be at least 1`);
  }
  if (!isArchName(arch)) return;
  for (const k of ["block_count", "embedding_length", "attention.head_count"]) {
    if (intValue(g, `${arch}.${k}`) === undefined) throw bad(`${arch}.${k} is missing`);
  }
  const nEmbd = intValue(g, `${arch}.embedding_length`)!;
  const nHead = intValue(g, `${arch}.attention.head_count`)!;
  const nHeadKv = intValue(g, `${arch}.attention.head_count_kv`) ?? nHead;
  // with attention.key_length (Qwen3) the head size need not be n_embd / n_head
  const headFits = intValue(g, `${arch}.attention.key_length`) !== undefined || nEmbd % nHead === 0;
  if (!headFits || nHead % nHeadKv !== 0) {
    throw bad(`inconsistent hyperparameters (n_embd ${nEmbd}, heads ${nHead}, kv heads ${nHeadKv})`);
  }
  checkAgainstTensors(g, arch, bad);
}

/**
 * The hyperparameters against the tensors the file holds: block_count within LLAMA_MAX_LAYERS and
 * (unless the file is vocabulary-only) equal to the number of blk.N groups, embedding_length equal to token_embd's row length, and the
 * vocabulary's length equal to token_embd's row count.
 */
function checkAgainstTensors(g: GgufFile, arch: string, bad: (what: string) => Error): void {
  const nLayer = intValue(g, `${arch}.block_count`)!;
  const blocks = new Set<number>();
  for (const t of g.tensors) {
    const m = /^blk\.(\d+)\./.exec(t.name);
    if (m) blocks.add(Number(m[1]));
  }
  // a vocabulary-only file (no tensors, what tokenizing needs) keeps llama.cpp's limit alone
  if (nLayer > LLAMA_MAX_LAYERS || (g.tensors.length > 0 && nLayer !== blocks.size)) {
    throw bad(
      `${arch}.block_count is ${nLayer} but the file holds ${blocks.size} blk.N tensor groups` +
        (nLayer > LLAMA_MAX_LAYERS ? ` (and llama.cpp allows at most LLAMA_MAX_LAYERS = ${LLAMA_MAX_LAYERS})` : ""),
    );
  }
  if (g.tensors.length === 0) return;
  const missing = [...Array(nLayer).keys()].find((i) => !blocks.has(i));
  if (missing !== undefined) throw bad(`${arch}.block_count is ${nLayer} but the file has no blk.${missing}.* tensors`);
  const embd = g.tensors.find((t) => t.name === "token_embd.weight");
  if (!embd) return;
  const nEmbd = intValue(g, `${arch}.embedding_length`)!;
  if (embd.ne[0] !== nEmbd) throw bad(`${arch}.embedding_length is ${nEmbd} but token_embd.weight has shape [${embd.ne.join(", ")}]`);
  const tokens = g.metadata.get("tokenizer.ggml.tokens");
  const nVocab = tokens && tokens.type === GgufValueType.ARRAY ? (tokens.value as ArrayLike<unknown>).length : undefined;
  if (nVocab !== undefined && embd.ne[1] !== nVocab) {
    throw bad(`tokenizer.ggml.tokens holds ${nVocab} tokens but token_embd.weight has shape [${embd.ne.join(", ")}]`);
  }
}

/**
 * Checks that `file` is a GGUF model llama.cpp can open without aborting: a readable header whose
 * counts fit the file, an architecture, hyperparameters >= 1 (and consistent for llama, qwen2, qwen3), no tensor
 * with a zero dimension, and a vocabulary. Throws an Error naming the file; returns the header.
 */
export function checkModelFile(file: string, label = "model"): GgufFile {
  if (!fs.existsSync(file)) throw new Error(`${label}: file not found: ${file}`);
  if (!fs.statSync(file).isFile()) throw new Error(`${label}: ${file} is not a file`);
  checkHeaderCounts(file, label);
  let g: GgufFile;
  try {
    g = readGguf(file);
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message}`, { cause: e });
  }
  const bad = (what: string) => new Error(`${label}: ${file}: ${what}; llama.cpp cannot load it`);
  const arch = g.metadata.get("general.architecture");
  if (!arch || arch.type !== GgufValueType.STRING || !arch.value) throw bad("no general.architecture");
  checkHyperparameters(g, String(arch.value), bad);
  const empty = g.tensors.find((t) => t.ne.some((n) => n < 1));
  if (empty) throw bad(`tensor "${empty.name}" has shape [${empty.ne.join(", ")}] with a zero dimension`);
  const tokens = g.metadata.get("tokenizer.ggml.tokens");
  if (!tokens || tokens.type !== GgufValueType.ARRAY || (tokens.value as ArrayLike<unknown>).length === 0) throw bad("no vocabulary (tokenizer.ggml.tokens)");
  return g;
}
