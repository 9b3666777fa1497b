// The model architectures text2sql trains, and how each differs from plain Llama: the one owning
// description that the engine's TS side, the converter, PEFT export/import, merge and the test
// models derive from (the native engine mirrors it in native/model.cpp's arch table).
//
// | GGUF arch | HF architectures                          | q/k rows permuted | RoPE | q/k/v bias | q/k norm |
// | llama     | LlamaForCausalLM, MistralForCausalLM      | yes               | norm | no         | no       |
// | qwen2     | Qwen2ForCausalLM                          | no                | neox | yes        | no       |
// | qwen3     | Qwen3ForCausalLM                          | no                | neox | no         | yes      |
//
// Every family may tie its output head to the token embedding (no `output.weight` in the GGUF,
// `tie_word_embeddings: true` in HF config.json); a tied embedding is never a LoRA target.
// Mixture-of-experts, multimodal, sliding-window and hybrid-attention families are refused with a
// reason (REFUSED_ARCHITECTURES).

/** A GGUF `general.architecture` the engine trains. */
export type ArchName = "llama" | "qwen2" | "qwen3";

export interface ArchSpec {
  /** GGUF `general.architecture`, also the prefix of its metadata keys (`qwen2.block_count`). */
  readonly gguf: ArchName;
  /** Human-readable families, for messages. */
  readonly families: string;
  /** HF config.json `architectures[0]` values converted to this GGUF architecture. */
  readonly hfArchitectures: readonly string[];
  /** HF config.json `model_type` values of this architecture. */
  readonly hfModelTypes: readonly string[];
  /**
   * llama.cpp's converter permutes the rows of q_proj/k_proj (and so the q/k lora_B rows) for
   * ggml's normal RoPE (./llama-layout.ts). False: NEOX RoPE, rows in HF order everywhere.
   */
  readonly permuteQk: boolean;
  /** ggml RoPE mode: "norm" (0, adjacent pairs rotated) or "neox" (2, half a head apart, HF's rotate_half). */
  readonly rope: "norm" | "neox";
  /** q/k/v projections carry biases: GGUF `blk.N.attn_{q,k,v}.bias`, HF `self_attn.{q,k,v}_proj.bias`. */
  readonly qkvBias: boolean;
  /**
   * Per-head RMSNorm of q and k before RoPE, weights [head_dim]: GGUF `blk.N.attn_{q,k}_norm.weight`,
   * HF `self_attn.{q,k}_norm.weight`.
   */
  readonly qkNorm: boolean;
}

export const ARCHITECTURES: Readonly<Record<ArchName, ArchSpec>> = {
  llama: {
    gguf: "llama",
    families: "Llama 1/2/3.x, TinyLlama, Mistral, SmolLM2",
    hfArchitectures: ["LlamaForCausalLM", "MistralForCausalLM"],
    hfModelTypes: ["llama", "mistral"],
    permuteQk: true,
    rope: "norm",
    qkvBias: false,
    qkNorm: false,
  },
  qwen2: {
    gguf: "qwen2",
    families: "Qwen2, Qwen2.5, Qwen2.5-Coder",
    hfArchitectures: ["Qwen2ForCausalLM"],
    hfModelTypes: ["qwen2"],
    permuteQk: false,
    rope: "neox",
    qkvBias: true,
    qkNorm: false,
  },
  qwen3: {
    gguf: "qwen3",
    families: "Qwen3 (dense)",
    hfArchitectures: ["Qwen3ForCausalLM"],
    hfModelTypes: ["qwen3"],
    permuteQk: false,
    rope: "neox",
    qkvBias: false,
    qkNorm: true,
  },
};

export const ARCH_NAMES: readonly ArchName[] = Object.keys(ARCHITECTURES) as ArchName[];

/** Families that are recognised and refused, with the reason (GGUF arch or HF model_type -> why). */
export const REFUSED_ARCHITECTURES: Readonly<Record<string, string>> = {
  qwen2moe: "Qwen2-MoE is a mixture-of-experts model",
  qwen3moe: "Qwen3-MoE is a mixture-of-experts model",
  qwen3_moe: "Qwen3-MoE is a mixture-of-experts model",
  qwen2_moe: "Qwen2-MoE is a mixture-of-experts model",
  qwen35: "Qwen3.5 uses hybrid (linear + full) attention",
  qwen3_5: "Qwen3.5 uses hybrid (linear + full) attention",
  qwen35moe: "Qwen3.5-MoE is a hybrid-attention mixture-of-experts model",
  qwen3next: "Qwen3-Next uses hybrid attention and mixture of experts",
  qwen3_next: "Qwen3-Next uses hybrid attention and mixture of experts",
  qwen2vl: "Qwen2-VL is multimodal",
  qwen2_vl: "Qwen2-VL is multimodal",
  qwen25vl: "Qwen2.5-VL is multimodal",
  qwen2_5_vl: "Qwen2.5-VL is multimodal",
  qwen3vl: "Qwen3-VL is multimodal",
  qwen3_vl: "Qwen3-VL is multimodal",
  mixtral: "Mixtral is a mixture-of-experts model",
  llama4: "Llama 4 is a multimodal mixture-of-experts model",
  gemma: "Gemma has a different block (GeGLU, scaled embeddings, offset norms)",
  gemma2: "Gemma 2 uses sliding-window attention and logit soft-capping",
  gemma3: "Gemma 3 uses sliding-window attention",
  gemma3n: "Gemma 3n is multimodal",
  gemma4: "Gemma 4 uses sliding-window attention",
  phi3: "Phi-3 fuses its q/k/v and gate/up projections",
};

/** "llama (Llama 1/2/3.x, ...), qwen2 (...), qwen3 (...)": for error messages. */
export function supportedArchitecturesText(): string {
  return ARCH_NAMES.map((a) => `${a} (${ARCHITECTURES[a].families})`).join(", ");
}

/** The HF architectures converted, for error messages. */
export function supportedHfArchitecturesText(): string {
  return ARCH_NAMES.flatMap((a) => ARCHITECTURES[a].hfArchitectures).join(", ");
}

/** True when `name` is an architecture the engine trains. */
export function isArchName(name: string): name is ArchName {
  return Object.prototype.hasOwnProperty.call(ARCHITECTURES, name);
}

/**
 * The spec of a GGUF `general.architecture`; throws naming `where` (a file), what arrived and what
 * is supported (with the reason for a recognised but refused family).
 */
export function archSpec(name: string | undefined, where: string): ArchSpec {
  if (name !== undefined && isArchName(name)) return ARCHITECTURES[name];
  const why = name !== undefined && Object.prototype.hasOwnProperty.call(REFUSED_ARCHITECTURES, name) ? ` (${REFUSED_ARCHITECTURES[name]})` : "";
  throw new Error(`${where}: architecture ${JSON.stringify(name ?? null)} is not supported${why}; supported: ${supportedArchitecturesText()}`);
}

/**
 * The spec for an HF config.json (`architectures`, `model_type`); throws naming `where` with what
 * is supported. The first listed architecture decides, as in llama.cpp's converter.
 */
export function archSpecFromHf(architectures: readonly string[], modelType: string | undefined, where: string): ArchSpec {
  for (const a of ARCH_NAMES) {
    const s = ARCHITECTURES[a];
    if (architectures.length > 0 ? s.hfArchitectures.includes(architectures[0]!) : modelType !== undefined && s.hfModelTypes.includes(modelType)) {
      return s;
    }
  }
  const found = architectures.length > 0 ? architectures.join(", ") : modelType ? `model_type ${modelType}` : "none given";
  const why = modelType !== undefined && Object.prototype.hasOwnProperty.call(REFUSED_ARCHITECTURES, modelType) ? ` (${REFUSED_ARCHITECTURES[modelType]})` : "";
  throw new Error(`${where}: architecture ${JSON.stringify(found)} is not supported${why}; supported: ${supportedHfArchitecturesText()}`);
}

/** Heads whose q/k rows are permuted between HF and GGUF order for `short` (q, k, ...) in `arch`: 0 when none. */
export function archPermutedHeads(arch: ArchSpec, short: string, nHead: number, nHeadKv: number): number {
  if (!arch.permuteQk) return 0;
  return short === "q" ? nHead : short === "k" ? nHeadKv : 0;
}

/**
 * The extra per-layer tensors of an architecture beyond Llama's, GGUF stem -> HF name inside
 * `model.layers.N.` (each `.weight` or `.bias` as in the stem): q/k/v biases, q/k norms.
 */
export function archExtraLayerTensors(arch: ArchSpec): { gguf: string; hf: string }[] {
  const out: { gguf: string; hf: string }[] = [];
  if (arch.qkvBias) {
    for (const m of ["q", "k", "v"]) out.push({ gguf: `attn_${m}.bias`, hf: `self_attn.${m}_proj.bias` });
  }
  if (arch.qkNorm) {
    for (const m of ["q", "k"]) out.push({ gguf: `attn_${m}_norm.weight`, hf: `self_attn.${m}_norm.weight` });
  }
  return out;
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
