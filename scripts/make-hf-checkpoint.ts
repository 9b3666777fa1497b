/**
 * Turn one of our Llama, Qwen2 or Qwen3 GGUFs (e.g. a tiny random model from
 * src/models/test-model.ts) back into a Hugging Face checkpoint folder, as `save_pretrained` would
 * write it: safetensors weights with HF names (Llama's q/k rows brought back from llama.cpp's order
 * to HF's; Qwen's q/k/v biases and q/k norms), optionally sharded with a
 * model.safetensors.index.json, config.json (LlamaForCausalLM, Qwen2ForCausalLM or
 * Qwen3ForCausalLM), generation_config.json, tokenizer_config.json and the vocabulary: a
 * SentencePiece tokenizer.model, or for a byte-level BPE ("gpt2") vocabulary the tokenizer.json
 * its model family publishes (./tokenizer-json.ts). It is the fixture for src/models/convert.ts:
 * converting the folder back must give the original GGUF's tensors.
 *
 * Library use:  await makeHfCheckpoint({ gguf: "m.gguf", dir: "hf/", dtype: "bf16", shards: 3 })
 * CLI:          node dist/scripts/make-hf-checkpoint.js --gguf m.gguf --out hf/ --dtype bf16 [--shards 3] [--tied]
 *
 * Tensors are written one at a time, so a TinyLlama-sized GGUF needs only about one tensor's f32
 * copy in memory.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { GgufValueType, readGguf, readTensorF32, type GgufFile, type GgufTensorInfo } from "../src/formats/gguf.js";
import { f32ToBf16, f32ToF16 } from "../src/formats/float16.js";
import { unpermuteRows } from "../src/formats/llama-layout.js";
import { archSpec, type ArchName } from "../src/formats/architectures.js";
import { writeTokenizerJson } from "./tokenizer-json.js";
import { writeSafetensorsStream, type StWriteEntry } from "../src/formats/safetensors.js";
import { encodeSentencePieceModel, SentencePieceModelType, type SentencePiece } from "../src/models/sentencepiece.js";
import { llama3RopeFactors } from "../src/models/convert.js";
import { isMain } from "./make-test-model.js";

export type HfDtype = "f32" | "bf16" | "f16";

export interface MakeHfCheckpointOptions {
  /** A llama, qwen2 or qwen3 GGUF with F32/F16/BF16 tensors. */
  gguf: string;
  /** Output folder (created). */
  dir: string;
  /** dtype of every tensor, norms included (as transformers saves them). */
  dtype: HfDtype;
  /** Number of safetensors files; > 1 also writes model.safetensors.index.json. Default 1. */
  shards?: number;
  /** Leave lm_head out and set tie_word_embeddings. Default: when the GGUF has no output.weight. */
  tieEmbeddings?: boolean;
  /** tokenizer_config.json's chat_template. */
  chatTemplate?: string;
  /** Also write tokenizer_config.json's added_tokens_decoder for the control/unknown tokens, as transformers does. */
  addedTokensDecoder?: boolean;
  /**
   * config.json's rope_scaling of a GGUF with rope_freqs.weight (Llama 3.x): its "llama3" values
   * (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings), checked to give
   * the GGUF's factors. The GGUF holds only the factors, so a GGUF with rope_freqs.weight and no
   * ropeScaling is refused (the checkpoint would silently lose the scaling).
   */
  ropeScaling?: Record<string, number>;
}

const ST_DTYPE: Record<HfDtype, string> = { f32: "F32", bf16: "BF16", f16: "F16" };
const TORCH_DTYPE: Record<HfDtype, string> = { f32: "float32", bf16: "bfloat16", f16: "float16" };

/** GGUF -> HF names of the per-layer tensors. */
const LAYER_NAMES: Record<string, string> = {
  attn_norm: "input_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  ffn_norm: "post_attention_layernorm",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};

/** GGUF -> HF names of Qwen's extra per-layer tensors (the suffix is kept). */
const EXTRA_NAMES: Record<string, string> = {
  attn_q_norm: "self_attn.q_norm",
  attn_k_norm: "self_attn.k_norm",
};

function hfName(gguf: string): string {
  if (gguf === "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf === "output_norm.weight") return "model.norm.weight";
  if (gguf === "output.weight") return "lm_head.weight";
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(gguf);
  const stem = m ? (LAYER_NAMES[m[2]!] ?? EXTRA_NAMES[m[2]!]) : undefined;
  if (!m || !stem) throw new Error(`makeHfCheckpoint: no Hugging Face name for GGUF tensor ${gguf}`);
  return `model.layers.${m[1]}.${stem}.${m[3]}`;
}

/** config.json's architecture fields of each GGUF architecture. */
const HF_ARCH: Record<ArchName, Record<string, unknown>> = {
  llama: { architectures: ["LlamaForCausalLM"], model_type: "llama", attention_bias: false, pretraining_tp: 1 },
  qwen2: { architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", use_sliding_window: false, sliding_window: 32768, max_window_layers: 28 },
  qwen3: { architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", attention_bias: false, use_sliding_window: false, sliding_window: null },
};

/** The shortest decimal that reads back as the same float32 (1e-5 rather than 0.000009999999747378752). */
function shortestF32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const v = Number(x.toPrecision(p));
    if (Math.fround(v) === x) return v;
  }
  return x;
}

function meta(file: GgufFile, key: string): unknown {
  const v = file.metadata.get(key);
  return v?.value;
}

function metaInt(file: GgufFile, key: string, fallback?: number): number {
  const v = meta(file, key) ?? fallback;
  if (typeof v === "bigint") return Number(v);
  if (typeof v !== "number") throw new Error(`${file.path}: missing metadata ${key}`);
  return v;
}

/** config.json's rope_scaling: null, or opts.ropeScaling as rope_type "llama3" when it gives the GGUF's rope_freqs.weight. */
function checkRopeScaling(g: GgufFile, opts: MakeHfCheckpointOptions, ropeTheta: number, headDim: number): Record<string, unknown> | null {
  const info = g.tensors.find((t) => t.name === "rope_freqs.weight");
  if (!info) {
    if (opts.ropeScaling) throw new Error(`makeHfCheckpoint: ropeScaling was given but ${opts.gguf} has no rope_freqs.weight`);
    return null;
  }
  if (!opts.ropeScaling) {
    throw new Error(
      `makeHfCheckpoint: ${opts.gguf} has rope_freqs.weight (llama3 RoPE scaling): pass ropeScaling (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)`,
    );
  }
  const want = llama3RopeFactors(opts.ropeScaling, ropeTheta, headDim);
  const got = readTensorF32(g, info);
  if (got.length !== want.length || got.some((x, i) => x !== want[i])) {
    throw new Error(`makeHfCheckpoint: ropeScaling ${JSON.stringify(opts.ropeScaling)} gives other factors than ${opts.gguf}'s rope_freqs.weight`);
  }
  return { rope_type: "llama3", ...opts.ropeScaling };
}

/** Write the checkpoint; returns the files written (relative to dir). */
export async function makeHfCheckpoint(opts: MakeHfCheckpointOptions): Promise<{ dir: string; files: string[] }> {
  const { dir, dtype } = opts;
  if (!(dtype in ST_DTYPE)) throw new Error(`makeHfCheckpoint: dtype must be f32, bf16 or f16, got ${String(dtype)}`);
  const g = readGguf(opts.gguf);
  const spec = archSpec(meta(g, "general.architecture") as string | undefined, opts.gguf);
  const a = spec.gguf;
  const nEmbd = metaInt(g, `${a}.embedding_length`);
  const nHead = metaInt(g, `${a}.attention.head_count`);
  const nHeadKv = metaInt(g, `${a}.attention.head_count_kv`, nHead);
  const nLayer = metaInt(g, `${a}.block_count`);
  const nFf = metaInt(g, `${a}.feed_forward_length`);
  const nCtx = metaInt(g, `${a}.context_length`, 2048);
  const headDim = metaInt(g, `${a}.attention.key_length`, nEmbd / nHead);
  const ropeTheta = (meta(g, `${a}.rope.freq_base`) as number | undefined) ?? 10000;
  const rmsEps = (meta(g, `${a}.attention.layer_norm_rms_epsilon`) as number | undefined) ?? 1e-5;
  const tokensV = g.metadata.get("tokenizer.ggml.tokens");
  const scoresV = g.metadata.get("tokenizer.ggml.scores");
  const typesV = g.metadata.get("tokenizer.ggml.token_type");
  const bpe = meta(g, "tokenizer.ggml.model") === "gpt2";
  if (tokensV?.type !== GgufValueType.ARRAY || tokensV.itemType !== GgufValueType.STRING || (meta(g, "tokenizer.ggml.model") !== "llama" && !bpe)) {
    throw new Error(`${opts.gguf}: no SentencePiece ("llama") or byte-level BPE ("gpt2") vocabulary in the metadata`);
  }
  const tokens = tokensV.value as string[];
  const scores = scoresV?.type === GgufValueType.ARRAY ? (scoresV.value as ArrayLike<number>) : new Float32Array(tokens.length);
  const types = typesV?.type === GgufValueType.ARRAY ? (typesV.value as ArrayLike<number>) : new Int32Array(tokens.length).fill(1);
  const bos = metaInt(g, "tokenizer.ggml.bos_token_id", 1);
  const eos = metaInt(g, "tokenizer.ggml.eos_token_id", 2);
  const unk = metaInt(g, "tokenizer.ggml.unknown_token_id", 0);
  const pad = metaInt(g, "tokenizer.ggml.padding_token_id", -1);
  const addBos = (meta(g, "tokenizer.ggml.add_bos_token") as boolean | undefined) ?? true;
  const addEos = (meta(g, "tokenizer.ggml.add_eos_token") as boolean | undefined) ?? false;
  const addSpace = (meta(g, "tokenizer.ggml.add_space_prefix") as boolean | undefined) ?? true;

  const ropeScaling = checkRopeScaling(g, opts, ropeTheta, headDim);
  const hasOutput = g.tensors.some((t) => t.name === "output.weight");
  const tied = opts.tieEmbeddings ?? !hasOutput;
  const sources: { name: string; info: GgufTensorInfo }[] = [];
  for (const t of g.tensors) {
    if (t.name === "output.weight" && tied) continue;
    if (t.name === "rope_freqs.weight") continue; // derived from config.json's rope_scaling
    sources.push({ name: hfName(t.name), info: t });
  }
  if (!tied && !hasOutput) {
    // an untied checkpoint of a tied GGUF: lm_head is a copy of the embedding
    const embd = g.tensors.find((t) => t.name === "token_embd.weight")!;
    sources.push({ name: "lm_head.weight", info: embd });
  }

  const entries: StWriteEntry[] = sources.map(({ name, info }) => ({
    name,
    dtype: ST_DTYPE[dtype],
    shape: [...info.ne].reverse(),
    data: () => {
      let f32 = readTensorF32(g, info);
      const [cols, rows] = [info.ne[0]!, info.ne[1] ?? 1];
      if (spec.permuteQk && info.name.endsWith("attn_q.weight")) f32 = unpermuteRows(f32, rows, cols, nHead);
      else if (spec.permuteQk && info.name.endsWith("attn_k.weight")) f32 = unpermuteRows(f32, rows, cols, nHeadKv);
      const out = dtype === "f32" ? f32 : dtype === "bf16" ? f32ToBf16(f32) : f32ToF16(f32);
      return [new Uint8Array(out.buffer, out.byteOffset, out.byteLength)];
    },
  }));

  // shards: contiguous runs of tensors of about equal size, at least one tensor each
  const nShards = opts.shards ?? 1;
  if (!Number.isInteger(nShards) || nShards < 1 || nShards > entries.length) {
    throw new Error(`makeHfCheckpoint: shards must be an integer from 1 to ${entries.length}, got ${nShards}`);
  }
  const elem = dtype === "f32" ? 4 : 2;
  const sizes = entries.map((e) => e.shape.reduce((a, b) => a * b, 1) * elem);
  const total = sizes.reduce((a, b) => a + b, 0);
  const shardOf: number[] = [];
  let s = 0;
  let cum = 0;
  entries.forEach((_, i) => {
    shardOf.push(s);
    cum += sizes[i]!;
    const leftTensors = entries.length - i - 1;
    const leftShards = nShards - s - 1;
    if (leftShards > 0 && (cum >= ((s + 1) * total) / nShards || leftTensors === leftShards)) s++;
  });

  fs.mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  for (let k = 0; k < nShards; k++) {
    const file = nShards === 1 ? "model.safetensors" : `model-${String(k + 1).padStart(5, "0")}-of-${String(nShards).padStart(5, "0")}.safetensors`;
    const mine = entries.filter((_, i) => shardOf[i] === k);
    writeSafetensorsStream(path.join(dir, file), mine);
    for (const e of mine) weightMap[e.name] = file;
    files.push(file);
  }
  if (nShards > 1) {
    const sorted = Object.fromEntries(
      Object.keys(weightMap)
        .sort()
        .map((k) => [k, weightMap[k]!]),
    );
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2) + "\n");
    files.push("model.safetensors.index.json");
  }

  const json = (name: string, v: unknown): void => {
    fs.writeFileSync(path.join(dir, name), JSON.stringify(v, null, 2) + "\n");
    files.push(name);
  };
  json("config.json", {
    ...HF_ARCH[a],
    attention_dropout: 0.0,
    bos_token_id: bos,
    eos_token_id: eos,
    hidden_act: "silu",
    hidden_size: nEmbd,
    initializer_range: 0.02,
    intermediate_size: nFf,
    max_position_embeddings: nCtx,
    num_attention_heads: nHead,
    ...(a === "qwen3" || headDim !== nEmbd / nHead ? { head_dim: headDim } : {}),
    num_hidden_layers: nLayer,
    num_key_value_heads: nHeadKv,
    rms_norm_eps: shortestF32(rmsEps),
    rope_scaling: ropeScaling,
    rope_theta: shortestF32(ropeTheta),
    tie_word_embeddings: tied,
    torch_dtype: TORCH_DTYPE[dtype],
    use_cache: true,
    vocab_size: tokens.length,
  });
  json("generation_config.json", { _from_model_config: true, bos_token_id: bos, eos_token_id: eos });
  if (bpe) {
    // tokenizer.json and tokenizer_config.json as the family publishes them
    files.push(...writeTokenizerJson(g, dir, { chatTemplate: opts.chatTemplate }));
    return { dir, files };
  }
  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: addBos,
    add_eos_token: addEos,
    bos_token: tokens[bos],
    eos_token: tokens[eos],
    unk_token: tokens[unk],
    pad_token: pad >= 0 ? tokens[pad] : null,
    clean_up_tokenization_spaces: false,
    legacy: false,
    model_max_length: nCtx,
    sp_model_kwargs: {},
    tokenizer_class: "LlamaTokenizer",
  };
  if (opts.addedTokensDecoder) {
    const special = [unk, bos, eos, ...(pad >= 0 ? [pad] : [])];
    tokenizerConfig.added_tokens_decoder = Object.fromEntries(
      [...new Set(special)]
        .sort((a, b) => a - b)
        .map((id) => [String(id), { content: tokens[id], lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]),
    );
  }
  if (opts.chatTemplate !== undefined) tokenizerConfig.chat_template = opts.chatTemplate;
  json("tokenizer_config.json", tokenizerConfig);

  const pieces: SentencePiece[] = tokens.map((piece, i) => ({ piece, score: scores[i]!, type: types[i]! }));
  const model = encodeSentencePieceModel({
    pieces,
    modelType: SentencePieceModelType.BPE,
    vocabSize: tokens.length,
    byteFallback: true,
    unkId: unk,
    bosId: bos,
    eosId: eos,
    padId: pad,
    normalizerName: "identity",
    addDummyPrefix: addSpace,
    removeExtraWhitespaces: false,
    escapeWhitespaces: true,
  });
  fs.writeFileSync(path.join(dir, "tokenizer.model"), model);
  files.push("tokenizer.model");
  return { dir, files };
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

const USAGE = `usage: make-hf-checkpoint --gguf FILE --out DIR [--dtype f32|bf16|f16] [--shards N] [--tied]

  --gguf FILE     a llama GGUF with F32/F16/BF16 weights (e.g. from make-test-model)
  --out DIR       the Hugging Face checkpoint folder to write
  --dtype T       dtype of the safetensors weights (default bf16)
  --shards N      split the weights into N files with model.safetensors.index.json (default 1)
  --tied          leave lm_head out (tie_word_embeddings)
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      gguf: { type: "string" },
      out: { type: "string", short: "o" },
      dtype: { type: "string", default: "bf16" },
      shards: { type: "string", default: "1" },
      tied: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (!values.gguf || !values.out) throw new Error(`--gguf and --out are required\n\n${USAGE}`);
  const dtype = values.dtype as HfDtype;
  if (!["f32", "bf16", "f16"].includes(dtype)) throw new Error(`--dtype: expected f32, bf16 or f16, got "${values.dtype}"`);
  const shards = Number(values.shards);
  const start = performance.now();
  const { files } = await makeHfCheckpoint({ gguf: values.gguf, dir: values.out, dtype, shards, tieEmbeddings: values.tied });
  process.stdout.write(`wrote ${files.length} files to ${values.out} in ${((performance.now() - start) / 1000).toFixed(1)} s\n`);
}

if (isMain(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`make-hf-checkpoint: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
