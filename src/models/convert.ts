// Convert a Hugging Face checkpoint folder (config.json, safetensors weights, a SentencePiece
// tokenizer.model or a BPE tokenizer.json, tokenizer_config.json, ...) of a Llama, Qwen2 or Qwen3
// model to a GGUF that llama.cpp, node-llama-cpp and our engine load: a TypeScript port of what
// llama.cpp's convert_hf_to_gguf.py does for LlamaForCausalLM, Qwen2ForCausalLM and
// Qwen3ForCausalLM (conversion/llama.py, qwen.py, base.py and gguf-py's SpecialVocab).
//
// - Tensors are renamed (model.layers.N.self_attn.q_proj.weight -> blk.N.attn_q.weight, Qwen2's
//   q/k/v biases -> blk.N.attn_q.bias, Qwen3's q/k norms -> blk.N.attn_q_norm.weight, ...); for
//   Llama the rows of q_proj and k_proj are permuted for ggml's RoPE layout
//   (../shared/docs/engine-notes.md section 3), Qwen's NEOX RoPE needs none (the per-architecture
//   facts are ../formats/architectures.ts's); 1-D tensors (norms, biases) are stored as F32, as
//   llama.cpp does.
// - The conversion streams: each tensor is read from its shard in blocks of whole rows (whole
//   heads for q/k), converted and written before the next block is read, so memory stays at a
//   few tens of MB whatever the model size.
// - The GGUF is written under a temporary name and renamed at the end (writeGguf), so an
//   interrupted conversion never leaves a complete-looking file.
// - The tokenizer (vocabulary, special ids, chat templates) is ./convert-tokenizer.ts's part.
import fs from "node:fs";
import path from "node:path";
import { GgmlType, ggmlTensorByteLength, gv, type GgufValue } from "../formats/gguf.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../formats/float16.js";
import { writeGguf, type GgufTensorSpec, type TensorData } from "../formats/gguf-write.js";
import { checkHfConfig } from "../formats/hf-config-check.js";
import { openHfWeights, StReader, SAFETENSORS_DTYPE_SIZE, type HfWeights, type StTensorInfo } from "../formats/safetensors.js";
import { permuteRowsBytes } from "../formats/llama-layout.js";
import { archExtraLayerTensors, archPermutedHeads, archSpecFromHf, REFUSED_ARCHITECTURES, type ArchSpec } from "../formats/architectures.js";
import { quantizeQ8_0 } from "../formats/quant.js";
import { LORA_MODULES, type LoraTarget } from "../engine/lora.js";
import { readJson, readVocab, specialIds, tokenizerMetadata, type Json, type SpecialType, type Vocab } from "./convert-tokenizer.js";

export type ConvertOutType = "auto" | "bf16" | "f16" | "f32" | "q8_0";

export interface ConvertOptions {
  /** Storage type of the 2-D weights. "auto" (default) keeps each tensor's checkpoint precision. */
  outtype?: ConvertOutType;
  /** general.name; default: the repository name when dir is a hub cache snapshot, else the folder name. */
  name?: string;
  /**
   * The hub repository the checkpoint came from ("owner/name"), written as
   * general.source.huggingface.repository (PEFT exports name it as the base model).
   */
  sourceRepo?: string;
  /** Progress messages (one line each). */
  log?: (message: string) => void;
  /** Bytes of tensor data written so far and in all (called after every block). */
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertResult {
  file: string;
  /** The storage type of the 2-D weights ("f32", "f16", "bf16" or "q8_0"; for "auto", that of token_embd). */
  outtype: "f32" | "f16" | "bf16" | "q8_0";
  nTensors: number;
  warnings: string[];
}

export const SUPPORTED_ARCHITECTURES =
  "LlamaForCausalLM (Llama 1/2/3.x, TinyLlama, SmolLM2, ...), MistralForCausalLM, Qwen2ForCausalLM (Qwen2, Qwen2.5, Qwen2.5-Coder) and Qwen3ForCausalLM (Qwen3 dense), " +
  "with a SentencePiece tokenizer.model or a byte-level BPE tokenizer.json";

/** llama_ftype of each output type (general.file_type). */
const FILE_TYPE = { f32: 0, f16: 1, bf16: 32, q8_0: 7 } as const;
const GGML_OF = { f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0 } as const;
const OUTTYPE_OF_DTYPE: Record<string, "f32" | "f16" | "bf16"> = { F32: "f32", F16: "f16", BF16: "bf16" };

/** Source bytes per block (whole rows / whole heads): bounds memory for any tensor size. */
const BLOCK_BYTES = 16 << 20;

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/** The repository name of a hub cache snapshot (.../models--org--name/snapshots/<hash>), else the folder name. */
function defaultModelName(dir: string): string {
  const abs = path.resolve(dir);
  const m = /models--[^/\\]+--([^/\\]+)[/\\]snapshots[/\\][^/\\]+$/.exec(abs);
  return m ? m[1]! : path.basename(abs);
}

// ---------------------------------------------------------------------------
// Hyperparameters
// ---------------------------------------------------------------------------

interface HParams {
  arch: ArchSpec;
  nEmbd: number;
  nFf: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  headDimExplicit: boolean;
  nCtx: number;
  rmsEps: number;
  ropeTheta: number;
  vocabSize: number | undefined;
  tied: boolean;
  rope: { type: "none" } | { type: "linear"; factor: number } | { type: "llama3"; factors: Float32Array };
}

/**
 * Mixture-of-experts, multimodal and sliding-window checkpoints whose `architectures` still name a
 * supported class, and biases an architecture does not have: refused, naming the file.
 */
function refuseUnsupportedFeatures(config: Json, arch: ArchSpec, file: string): void {
  const has = (k: string): boolean => config[k] !== undefined && config[k] !== null && config[k] !== 0 && config[k] !== false;
  const moe = ["num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size"].find(has);
  if (moe) throw new Error(`${file}: "${moe}" is set: mixture-of-experts models are not supported (${REFUSED_ARCHITECTURES.qwen3moe}, ...)`);
  const mm = ["vision_config", "audio_config", "text_config"].find(has);
  if (mm) throw new Error(`${file}: "${mm}" is set: multimodal models are not supported; convert the text model alone`);
  if (config.use_sliding_window === true) throw new Error(`${file}: use_sliding_window is true: sliding-window attention is not supported`);
  if (Array.isArray(config.layer_types) && config.layer_types.some((t) => t !== "full_attention")) {
    throw new Error(`${file}: layer_types has ${JSON.stringify([...new Set(config.layer_types)])}: only full attention in every layer is supported`);
  }
  if (!arch.qkvBias && config.attention_bias === true) {
    throw new Error(`${file}: attention_bias is set; ${arch.gguf} checkpoints with attention bias tensors are not supported`);
  }
  if (config.mlp_bias === true) throw new Error(`${file}: mlp_bias is set; checkpoints with MLP bias tensors are not supported`);
}

function readHParams(dir: string, warn: (m: string) => void): { hp: HParams; config: Json } {
  const file = path.join(dir, "config.json");
  const config = readJson(file);
  if (!config) throw new Error(`${dir}: no config.json; expected a Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer.model)`);

  const archs = Array.isArray(config.architectures) ? config.architectures.filter((a): a is string => typeof a === "string") : [];
  const modelType = typeof config.model_type === "string" ? config.model_type : undefined;
  const arch = archSpecFromHf(archs, modelType, file);
  refuseUnsupportedFeatures(config, arch, file);
  if (config.quantization_config !== undefined && config.quantization_config !== null) {
    const method = (config.quantization_config as Json).quant_method;
    throw new Error(`${file}: the checkpoint is quantized (${String(method ?? "quantization_config")}); only F32, F16 and BF16 checkpoints can be converted`);
  }

  const int = (key: string, fallback?: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new Error(`${file}: "${key}" must be a positive integer, got ${JSON.stringify(config[key])}`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0)) throw new Error(`${file}: "${key}" must be a positive number, got ${JSON.stringify(config[key])}`);
    return v;
  };
  const nEmbd = int("hidden_size");
  const nHead = int("num_attention_heads");
  const nHeadKv = int("num_key_value_heads", nHead);
  const headDimExplicit = config.head_dim !== undefined && config.head_dim !== null;
  const headDim = headDimExplicit ? int("head_dim") : nEmbd / nHead;
  if (!Number.isInteger(headDim)) throw new Error(`${file}: hidden_size ${nEmbd} is not a multiple of num_attention_heads ${nHead}`);
  if (headDim % 2 !== 0) throw new Error(`${file}: head dimension ${headDim} is odd; RoPE needs it even`);
  if (nHead % nHeadKv !== 0) throw new Error(`${file}: num_attention_heads ${nHead} is not a multiple of num_key_value_heads ${nHeadKv}`);
  if (config.hidden_act !== undefined && config.hidden_act !== "silu") {
    throw new Error(`${file}: hidden_act ${JSON.stringify(config.hidden_act)} is not supported (Llama and Qwen use silu)`);
  }
  const nCtx =
    config.max_position_embeddings === undefined
      ? (warn(`${file}: no max_position_embeddings; using a context length of 2048`), 2048)
      : int("max_position_embeddings");
  if (modelType === "mistral" || archs[0] === "MistralForCausalLM") {
    const sw = config.sliding_window;
    if (typeof sw === "number" && sw < nCtx)
      warn(`${file}: sliding_window ${sw} is ignored (llama.cpp's llama architecture attends to the whole context, as its own converter assumes)`);
  }

  // RoPE: transformers >= 5 nests rope_theta and the scaling in rope_parameters; older configs have
  // rope_theta at the top and rope_scaling (type or rope_type, factor, ...).
  const ropeParams = ((config.rope_parameters ?? config.rope_scaling) as Json | null | undefined) ?? {};
  const ropeTheta = typeof config.rope_theta === "number" ? config.rope_theta : typeof ropeParams.rope_theta === "number" ? ropeParams.rope_theta : 10000;
  const ropeType = String(ropeParams.rope_type ?? ropeParams.type ?? "default").toLowerCase();
  let rope: HParams["rope"];
  if (ropeType === "default" || ropeType === "none") rope = { type: "none" };
  else if (ropeType === "linear") {
    const factor = ropeParams.factor;
    if (typeof factor !== "number" || !(factor > 0)) throw new Error(`${file}: linear RoPE scaling needs a positive "factor", got ${JSON.stringify(factor)}`);
    rope = { type: "linear", factor };
  } else if (ropeType === "llama3") {
    rope = { type: "llama3", factors: llama3RopeFactors(ropeParams, ropeTheta, headDim) };
  } else {
    throw new Error(`${file}: RoPE scaling ${JSON.stringify(ropeType)} is not supported; supported: none, linear, llama3`);
  }

  const vocabSize = config.vocab_size === undefined ? undefined : int("vocab_size");
  return {
    config,
    hp: {
      arch,
      nEmbd,
      nFf: int("intermediate_size"),
      nLayer: int("num_hidden_layers"),
      nHead,
      nHeadKv,
      headDim,
      headDimExplicit,
      nCtx,
      rmsEps: num("rms_norm_eps", 1e-6), // transformers' LlamaConfig default
      ropeTheta,
      vocabSize,
      tied: config.tie_word_embeddings === true,
      rope,
    },
  };
}

/**
 * The per-dimension RoPE frequency divisors of "llama3" scaling (Llama 3.1+), as llama.cpp's
 * LlamaModel.generate_extra_tensors computes them; stored as the F32 tensor rope_freqs.weight.
 * (Computed in float64 and rounded to f32 once; torch computes in f32, so a factor may differ in
 * its last bit.)
 */
export function llama3RopeFactors(p: Record<string, unknown>, base: number, dim: number): Float32Array {
  const num = (k: string, d: number): number => (typeof p[k] === "number" ? (p[k] as number) : d);
  const factor = num("factor", 8);
  const lowFreqFactor = num("low_freq_factor", 1);
  const highFreqFactor = num("high_freq_factor", 4);
  const oldCtx = num("original_max_position_embeddings", 8192);
  const lowFreqWavelen = oldCtx / lowFreqFactor;
  const highFreqWavelen = oldCtx / highFreqFactor;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = 1 / base ** ((2 * i) / dim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highFreqWavelen) out[i] = 1;
    else if (wavelen > lowFreqWavelen) out[i] = factor;
    else {
      const smooth = (oldCtx / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------

interface TensorPlan {
  hfName: string;
  ggufName: string;
  src: StTensorInfo;
  /** GGUF ne (reversed torch shape). */
  ne: number[];
  type: number;
  /** Rows per head when the rows are permuted (q_proj, k_proj), else 0. */
  rowsPerHead: number;
}

/**
 * GGUF name (after `blk.N.`) of each per-layer HF tensor (after `model.layers.N.`) of an
 * architecture: the two norms, the seven LoRA-able projections (../engine/lora.ts), and the
 * architecture's extras (Qwen2's q/k/v biases, Qwen3's q/k norms).
 */
function layerTensors(arch: ArchSpec): Map<string, string> {
  const m = new Map<string, string>([
    ["input_layernorm.weight", "attn_norm.weight"],
    ["post_attention_layernorm.weight", "ffn_norm.weight"],
    ...LORA_MODULES.map((p): [string, string] => [`${p.group}.${p.hf}.weight`, `${p.gguf}.weight`]),
  ]);
  for (const x of archExtraLayerTensors(arch)) m.set(x.hf, x.gguf);
  return m;
}

/** GGUF name of an HF tensor name; null for tensors to skip; throws for names that are not weights of the architecture. */
function ggufNameOf(name: string, hp: HParams, layerMap: Map<string, string>): string | null {
  if (name.endsWith(".rotary_emb.inv_freq")) return null; // recomputed by llama.cpp
  if (name === "model.embed_tokens.weight") return "token_embd.weight";
  if (name === "model.norm.weight") return "output_norm.weight";
  if (name === "lm_head.weight") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  const stem = m ? layerMap.get(m[2]!) : undefined;
  if (m && stem) {
    const layer = Number(m[1]);
    if (layer >= hp.nLayer) throw new Error(`tensor ${name}: layer ${layer} is beyond num_hidden_layers ${hp.nLayer}`);
    return `blk.${layer}.${stem}`;
  }
  if (m && m[2]!.endsWith(".bias")) throw new Error(`tensor ${name}: ${hp.arch.gguf} (${hp.arch.families}) has no such bias tensor`);
  throw new Error(
    `tensor ${name} is not a ${hp.arch.gguf} weight (expected model.embed_tokens, model.layers.N.{${[...layerMap.keys()].join(", ")}}, model.norm, lm_head)`,
  );
}

/** Torch shape ([out, in]) of each projection of a layer. */
function projectionShape(hp: HParams, short: LoraTarget): number[] {
  const q = hp.nHead * hp.headDim;
  const kv = hp.nHeadKv * hp.headDim;
  const shapes: Record<LoraTarget, number[]> = {
    q: [q, hp.nEmbd],
    k: [kv, hp.nEmbd],
    v: [kv, hp.nEmbd],
    o: [hp.nEmbd, q],
    gate: [hp.nFf, hp.nEmbd],
    up: [hp.nFf, hp.nEmbd],
    down: [hp.nEmbd, hp.nFf],
  };
  return shapes[short];
}

/** Expected torch shape of each GGUF tensor (the canonical output order is this map's order). */
function expectedShapes(hp: HParams, nVocab: number): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set("token_embd.weight", [nVocab, hp.nEmbd]);
  const extra: Record<string, number[]> = {
    "attn_q.bias": [hp.nHead * hp.headDim],
    "attn_k.bias": [hp.nHeadKv * hp.headDim],
    "attn_v.bias": [hp.nHeadKv * hp.headDim],
    "attn_q_norm.weight": [hp.headDim],
    "attn_k_norm.weight": [hp.headDim],
  };
  const extras = archExtraLayerTensors(hp.arch).map((x) => x.gguf);
  for (let l = 0; l < hp.nLayer; l++) {
    const b = `blk.${l}`;
    for (const group of ["self_attn", "mlp"] as const) {
      m.set(`${b}.${group === "self_attn" ? "attn_norm" : "ffn_norm"}.weight`, [hp.nEmbd]);
      for (const p of LORA_MODULES) if (p.group === group) m.set(`${b}.${p.gguf}.weight`, projectionShape(hp, p.short));
      if (group === "self_attn") for (const x of extras) m.set(`${b}.${x}`, extra[x]!);
    }
  }
  m.set("output_norm.weight", [hp.nEmbd]);
  m.set("output.weight", [nVocab, hp.nEmbd]);
  return m;
}

/** Convert little-endian source bytes of one dtype to the data writeGguf stores for `dst`. */
function convertBlock(bytes: Uint8Array, srcDtype: string, dst: number, onOverflow: (n: number) => void): TensorData {
  const srcType = srcDtype === "F32" ? GgmlType.F32 : srcDtype === "F16" ? GgmlType.F16 : GgmlType.BF16;
  if (srcType === dst) return bytes;
  const f32 =
    srcType === GgmlType.F32
      ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
      : (srcType === GgmlType.F16 ? f16ToF32 : bf16ToF32)(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
  if (dst === GgmlType.F32) return f32;
  if (dst === GgmlType.Q8_0) return quantizeQ8_0(f32); // whole rows: planTensors checked they are whole blocks
  if (dst === GgmlType.BF16) return f32ToBf16(f32);
  const h = f32ToF16(f32);
  let overflow = 0;
  for (let i = 0; i < h.length; i++) if ((h[i]! & 0x7fff) === 0x7c00 && Number.isFinite(f32[i]!)) overflow++;
  if (overflow > 0) onOverflow(overflow);
  return h;
}

// ---------------------------------------------------------------------------
// The conversion
// ---------------------------------------------------------------------------

/** What the conversion reads before any tensor data: config, tokenizer, weight headers. */
interface Checkpoint {
  dir: string;
  hp: HParams;
  config: Json;
  tokenizerConfig: Json | undefined;
  weights: HfWeights;
  /** model.embed_tokens.weight (its dtype is the "auto" output type). */
  embed: StTensorInfo;
  nVocab: number;
  vocab: Vocab;
  special: Map<SpecialType, number>;
}

/** Messages of one conversion: `log` for progress, `warn` also collects the warnings. */
interface Reporter {
  log: (message: string) => void;
  warn: (message: string) => void;
}

/** Step 1: config, tokenizer and the weights' headers. */
function readCheckpoint(dir: string, { log, warn }: Reporter): Checkpoint {
  const { hp, config } = readHParams(dir, warn);
  const tokenizerConfig = readJson(path.join(dir, "tokenizer_config.json"));
  const weights = openHfWeights(dir);
  const embed = weights.tensors.get("model.embed_tokens.weight");
  if (!embed) throw new Error(`${dir}: the weights have no model.embed_tokens.weight`);
  const nVocab = hp.vocabSize ?? embed.shape[0]!;
  const vocab = readVocab(dir, nVocab, tokenizerConfig, warn);
  const special = specialIds(dir, vocab, config, tokenizerConfig, warn);
  log(
    `${hp.arch.gguf}: ${hp.nLayer} layers, ${hp.nEmbd} embd, ${hp.nHead}/${hp.nHeadKv} heads, ${hp.nFf} ff, vocab ${nVocab}, context ${hp.nCtx}; ` +
      `${weights.files.length} weight file(s), ${weights.tensors.size} tensors`,
  );
  return { dir, hp, config, tokenizerConfig, weights, embed, nVocab, vocab, special };
}

/** The checkpoint's tensors by GGUF name (lm_head left out when tied); throws when a Llama tensor is missing. */
function findTensors(ck: Checkpoint, shapes: Map<string, number[]>, log: (m: string) => void): Map<string, StTensorInfo & { hfName: string }> {
  const { hp } = ck;
  const found = new Map<string, StTensorInfo & { hfName: string }>();
  const layerMap = layerTensors(hp.arch);
  for (const [name, t] of ck.weights.tensors) {
    let g: string | null;
    try {
      g = ggufNameOf(name, hp, layerMap);
    } catch (e) {
      throw new Error(`${path.basename(t.file)}: ${(e as Error).message}`, { cause: e });
    }
    if (g === null) continue;
    if (g === "output.weight" && hp.tied) {
      log("tie_word_embeddings is set: lm_head.weight is left out (llama.cpp uses token_embd for the output)");
      continue;
    }
    found.set(g, { ...t, hfName: name });
  }
  const missing = [...shapes.keys()].filter((g) => g !== "output.weight" && !found.has(g));
  if (missing.length > 0) {
    throw new Error(
      `${ck.dir}: the weights lack ${missing.length} ${hp.arch.gguf} tensor(s), e.g. ${missing.slice(0, 3).join(", ")} (GGUF names; incomplete checkpoint?)`,
    );
  }
  if (!found.has("output.weight") && !hp.tied) log("no lm_head.weight: the output projection is tied to token_embd");
  return found;
}

/** Rows per head of a GGUF tensor whose rows are permuted (attn_q, attn_k), else 0. */
function rowsPerHeadOf(ggufName: string, rows: number, hp: HParams): number {
  const stem = /^blk\.\d+\.([a-z_]+)\.weight$/.exec(ggufName)?.[1];
  const module = LORA_MODULES.find((m) => m.gguf === stem);
  const heads = module ? archPermutedHeads(hp.arch, module.short, hp.nHead, hp.nHeadKv) : 0;
  return heads ? rows / heads : 0;
}

/** Step 2: the tensor plan (names, shapes, types, in the canonical order) and the resolved output type. */
function planTensors(ck: Checkpoint, outtype: ConvertOutType, { log, warn }: Reporter): { plans: TensorPlan[]; resolvedOuttype: ConvertResult["outtype"] } {
  const shapes = expectedShapes(ck.hp, ck.nVocab);
  const found = findTensors(ck, shapes, log);
  const plans: TensorPlan[] = [];
  const srcTypes2d = new Set<string>();
  for (const [g, want] of shapes) {
    const t = found.get(g);
    if (!t) continue;
    if (!(t.dtype in SAFETENSORS_DTYPE_SIZE)) {
      throw new Error(`${path.basename(t.file)}: tensor ${t.hfName} has dtype ${t.dtype}; only F32, F16 and BF16 checkpoints can be converted`);
    }
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new Error(`${path.basename(t.file)}: tensor ${t.hfName} has shape [${t.shape.join(", ")}], expected [${want.join(", ")}] from config.json`);
    }
    let type: number;
    if (want.length === 1)
      type = GgmlType.F32; // norms: always F32, as llama.cpp does
    else {
      srcTypes2d.add(t.dtype);
      type = outtype === "auto" ? GGML_OF[OUTTYPE_OF_DTYPE[t.dtype]!] : GGML_OF[outtype];
      if (type === GgmlType.Q8_0 && want[want.length - 1]! % 32 !== 0) {
        throw new Error(`${t.hfName}: rows of ${want[want.length - 1]} values cannot be stored as Q8_0 (blocks of 32); choose --dtype bf16`);
      }
    }
    plans.push({ hfName: t.hfName, ggufName: g, src: t, ne: [...want].reverse(), type, rowsPerHead: rowsPerHeadOf(g, want[0]!, ck.hp) });
  }
  const resolvedOuttype = outtype === "auto" ? (OUTTYPE_OF_DTYPE[ck.embed.dtype] ?? "f32") : outtype;
  if (outtype === "auto" && srcTypes2d.size > 1) warn(`the checkpoint mixes ${[...srcTypes2d].join(" and ")} weights; each keeps its own type`);
  log(`output type ${resolvedOuttype}${outtype === "auto" ? " (the checkpoint's)" : ""}`);
  return { plans, resolvedOuttype };
}

/** Step 3: the metadata (the keys and value types llama.cpp's converter writes for Llama). */
function ggufMetadata(ck: Checkpoint, opts: ConvertOptions, outtype: ConvertResult["outtype"]): [string, GgufValue][] {
  const { hp, vocab, special, tokenizerConfig } = ck;
  const a = hp.arch.gguf; // the metadata key prefix
  const md: [string, GgufValue][] = [
    ["general.architecture", gv.str(a)],
    ["general.type", gv.str("model")],
    ["general.name", gv.str(opts.name ?? defaultModelName(ck.dir))],
    ...(opts.sourceRepo ? ([["general.source.huggingface.repository", gv.str(opts.sourceRepo)]] as [string, GgufValue][]) : []),
    [`${a}.context_length`, gv.u32(hp.nCtx)],
    [`${a}.embedding_length`, gv.u32(hp.nEmbd)],
    [`${a}.block_count`, gv.u32(hp.nLayer)],
    [`${a}.feed_forward_length`, gv.u32(hp.nFf)],
    [`${a}.attention.head_count`, gv.u32(hp.nHead)],
    [`${a}.attention.head_count_kv`, gv.u32(hp.nHeadKv)],
    [`${a}.rope.freq_base`, gv.f32(hp.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.f32(hp.rmsEps)],
  ];
  if (hp.headDimExplicit) md.push([`${a}.attention.key_length`, gv.u32(hp.headDim)], [`${a}.attention.value_length`, gv.u32(hp.headDim)]);
  if (a === "llama") md.push([`${a}.rope.dimension_count`, gv.u32(hp.headDim)]); // Qwen's converter leaves it to the default (head_dim)
  if (hp.rope.type === "linear") md.push([`${a}.rope.scaling.type`, gv.str("linear")], [`${a}.rope.scaling.factor`, gv.f32(hp.rope.factor)]);
  md.push(
    ["general.file_type", gv.u32(FILE_TYPE[outtype])],
    ...(a === "llama" ? ([[`${a}.vocab_size`, gv.u32(ck.nVocab)]] as [string, GgufValue][]) : []), // only LlamaModel writes it
    ["general.quantization_version", gv.u32(2)],
    ...tokenizerMetadata(ck.dir, vocab, special, tokenizerConfig),
  );
  return md;
}

/** Step 4: the tensors, produced lazily (read, permuted, converted) while writeGguf writes them. */
function tensorSpecs(plans: TensorPlan[], hp: HParams, reader: StReader, opts: ConvertOptions, warn: (m: string) => void): GgufTensorSpec[] {
  let done = 0;
  const total = plans.reduce((s, p) => s + ggmlTensorByteLength(p.type, p.ne), 0) + (hp.rope.type === "llama3" ? hp.rope.factors.byteLength : 0);
  const progress = (n: number): void => {
    done += n;
    opts.onProgress?.(done, total);
  };
  const specs: GgufTensorSpec[] = [];
  if (hp.rope.type === "llama3") {
    const factors = hp.rope.factors;
    specs.push({ name: "rope_freqs.weight", type: GgmlType.F32, ne: [factors.length], data: () => (progress(factors.byteLength), [factors]) });
  }
  for (const p of plans) {
    specs.push({
      name: p.ggufName,
      type: p.type,
      ne: p.ne,
      data: () =>
        tensorBlocks(p, reader, progress, (n) => warn(`${p.hfName}: ${n} value(s) exceed the F16 range (|x| > 65504) and become ±Inf in ${p.ggufName}`)),
    });
  }
  return specs;
}

/**
 * Convert the Hugging Face Llama checkpoint in `dir` to the GGUF `outFile`.
 * Throws with a clear message for unsupported architectures, tokenizers, dtypes or tensor names.
 */
export async function convertHfToGguf(dir: string, outFile: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  const outtype = opts.outtype ?? "auto";
  if (!["auto", "bf16", "f16", "f32", "q8_0"].includes(outtype))
    throw new Error(`convertHfToGguf: outtype must be auto, bf16, f16, f32 or q8_0, got ${JSON.stringify(outtype)}`);
  const log = opts.log ?? (() => {});
  const warnings: string[] = [];
  const warn = (m: string): void => {
    warnings.push(m);
    log(`warning: ${m}`);
  };
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder`);
  checkHfConfig(dir); // config.json against the weights' headers before anything is planned (issue 25.4)

  const ck = readCheckpoint(dir, { log, warn });
  const { plans, resolvedOuttype } = planTensors(ck, outtype, { log, warn });
  const md = ggufMetadata(ck, opts, resolvedOuttype);
  const reader = new StReader();
  const specs = tensorSpecs(plans, ck.hp, reader, opts, warn);

  fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
  try {
    writeGguf(outFile, { metadata: md, tensors: specs });
  } finally {
    reader.close();
  }
  log(`wrote ${outFile} (${specs.length} tensors, ${(fs.statSync(outFile).size / 1e6).toFixed(1)} MB)`);
  return { file: outFile, outtype: resolvedOuttype, nTensors: specs.length, warnings };
}

/** One tensor's data in blocks of whole rows (whole heads when permuted), converted to its GGUF type. */
function* tensorBlocks(p: TensorPlan, reader: StReader, progress: (n: number) => void, onOverflow: (n: number) => void): Generator<TensorData> {
  const rows = p.src.shape[0]!;
  const rowBytes = p.src.byteLength / rows;
  const unit = p.rowsPerHead || 1; // rows that must stay together
  const unitsPerBlock = Math.max(1, Math.floor(BLOCK_BYTES / (unit * rowBytes)));
  let overflow = 0;
  for (let r = 0; r < rows; r += unit * unitsPerBlock) {
    const n = Math.min(rows - r, unit * unitsPerBlock);
    let bytes = reader.read(p.src, r * rowBytes, n * rowBytes);
    if (p.rowsPerHead) bytes = permuteRowsBytes(bytes, rowBytes, p.rowsPerHead);
    const out = convertBlock(bytes, p.src.dtype, p.type, (k) => (overflow += k));
    progress(out.byteLength);
    yield out;
  }
  if (overflow > 0) onOverflow(overflow);
}
