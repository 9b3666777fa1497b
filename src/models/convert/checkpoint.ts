// Step 1 of the conversion (./convert.ts): what is read before any tensor data. config.json
// becomes the hyperparameters (refusing mixture-of-experts, multimodal, sliding-window, quantized
// and biased checkpoints, naming the file and key), then the tokenizer (./tokenizer.ts) and the
// safetensors headers of the weights.
import path from "node:path";
import { openHfWeights, type HfWeights, type StTensorInfo } from "../../formats/safetensors.js";
import { archSpecFromHf, llama3RopeFactors, REFUSED_ARCHITECTURES, type ArchSpec } from "../../formats/architectures.js";
import { readJson, readVocab, specialIds, type Json, type SpecialType, type Vocab } from "./tokenizer.js";

export interface HParams {
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

/** What the conversion reads before any tensor data: config, tokenizer, weight headers. */
export interface Checkpoint {
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
export interface Reporter {
  log: (message: string) => void;
  warn: (message: string) => void;
}

/** Step 1: config, tokenizer and the weights' headers. */
export function readCheckpoint(dir: string, { log, warn }: Reporter): Checkpoint {
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
