// Hugging Face PEFT adapters: export our LoRA to `adapter_model.safetensors` + `adapter_config.json`
// and import such a folder back (the safetensors files are read and written by ../formats/safetensors.ts).
//
// The one subtle point (../formats/llama-layout.ts): for the llama architecture llama.cpp's
// converter permutes the rows of q_proj and k_proj, so a LoRA trained on GGUF weights has the rows
// of q/k `lora_B` in GGUF order. Export applies the inverse permutation to those, import re-applies
// the forward one. `lora_A` and the other five modules are never permuted, and neither is anything
// of qwen2/qwen3 (NEOX RoPE: GGUF rows are HF rows; ../formats/architectures.ts). The PEFT key
// layout (base_model.model.model.layers.N.self_attn.q_proj...) is the same for every family.
import fs from "node:fs";
import path from "node:path";
import { archPermutedHeads, archSpec } from "../formats/architectures.js";
import { GgufValueType, readGguf } from "../formats/gguf.js";
import { readJsonObject } from "../formats/json.js";
import { permuteRows, unpermuteRows } from "../formats/llama-layout.js";
import { readSafetensors, writeSafetensors, type SafetensorsTensor } from "../formats/safetensors.js";
import { LORA_MODULES, loraModule, type HfModuleName, type LoraModule } from "../engine/lora.js";
import { PEFT_CONFIG, PEFT_WEIGHTS } from "./folder.js";

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

// The seven modules, their names and their order (the export's tensor order within a layer) are
// the LoRA contract's (../engine/lora.ts). Tensor names are looked up in their own world only.
const BY_GGUF = new Map<string, LoraModule>(LORA_MODULES.map((m) => [m.gguf, m]));
const BY_HF = new Map<string, LoraModule>(LORA_MODULES.map((m) => [m.hf, m]));

/** The HF names of modules given by any of their names, deduplicated, in layer order. */
function hfNames(names: string[], where: string): HfModuleName[] {
  const wanted = new Set(names.map((x) => loraModule(x, where)));
  return LORA_MODULES.filter((m) => wanted.has(m)).map((m) => m.hf);
}

/** `blk.3.attn_q.weight.lora_a` -> { layer 3, q_proj, A }. */
function parseGgufName(name: string): { layer: number; module: LoraModule; ab: "A" | "B" } | null {
  const m = /^blk\.(\d+)\.([a-z_]+)\.weight\.lora_(a|b)$/.exec(name);
  const mod = m ? BY_GGUF.get(m[2]) : undefined;
  if (!m || !mod) return null;
  return { layer: Number(m[1]), module: mod, ab: m[3] === "a" ? "A" : "B" };
}

function ggufName(layer: number, module: LoraModule, ab: "A" | "B"): string {
  return `blk.${layer}.${module.gguf}.weight.lora_${ab === "A" ? "a" : "b"}`;
}

function peftKey(layer: number, module: LoraModule, ab: "A" | "B"): string {
  return `base_model.model.model.layers.${layer}.${module.group}.${module.hf}.lora_${ab}.weight`;
}

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/** One adapter tensor as the engine gives it: GGUF name, ggml `ne`, data in GGUF row order. */
export interface PeftTensor {
  name: string;
  ne: number[];
  data: Float32Array;
}

export interface PeftExportMeta {
  r: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  /** HF names (q_proj, ...); short names (q, ...) are accepted too. */
  targetModules: string[];
  /** `base_model_name_or_path`, e.g. "TinyLlama/TinyLlama-1.1B-Chat-v1.0". */
  baseModel: string;
  nHead: number;
  nHeadKv: number;
  /** The model's GGUF architecture (llama, qwen2, qwen3): whether q/k rows are permuted. Default "llama". */
  arch?: string;
}

export interface PeftExportOptions {
  /**
   * @internal Apply the inverse q/k permutation to lora_B (default true). Only tests turn it off,
   * to show the permutation matters.
   */
  unpermute?: boolean;
}

/** The adapter_config.json that {@link exportPeft} writes (current PEFT keys, defaults kept). */
export function peftConfigJson(meta: Omit<PeftExportMeta, "nHead" | "nHeadKv" | "arch">): Record<string, unknown> {
  const targets = hfNames(meta.targetModules, "exportPeft: targetModules");
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: meta.baseModel,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: meta.alpha,
    lora_dropout: meta.dropout,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    peft_type: "LORA",
    r: meta.r,
    rank_pattern: {},
    revision: null,
    target_modules: targets,
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: meta.rslora,
  };
}

function checkMeta(meta: PeftExportMeta): void {
  const int = (k: keyof PeftExportMeta, min: number) => {
    const v = meta[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) throw new TypeError(`exportPeft: meta.${k}: expected an integer >= ${min}, got ${String(v)}`);
  };
  if (typeof meta !== "object" || meta === null) throw new TypeError("exportPeft: meta: expected an object");
  int("r", 1);
  int("nHead", 1);
  int("nHeadKv", 1);
  if (typeof meta.alpha !== "number" || !(meta.alpha > 0)) throw new TypeError(`exportPeft: meta.alpha: expected a positive number, got ${String(meta.alpha)}`);
  if (typeof meta.dropout !== "number" || !(meta.dropout >= 0 && meta.dropout < 1))
    throw new TypeError(`exportPeft: meta.dropout: expected a number in [0, 1), got ${String(meta.dropout)}`);
  if (typeof meta.rslora !== "boolean") throw new TypeError(`exportPeft: meta.rslora: expected a boolean, got ${String(meta.rslora)}`);
  if (typeof meta.baseModel !== "string") throw new TypeError(`exportPeft: meta.baseModel: expected a string, got ${String(meta.baseModel)}`);
  if (!Array.isArray(meta.targetModules) || meta.targetModules.length === 0)
    throw new TypeError("exportPeft: meta.targetModules: expected a non-empty list of modules");
}

/**
 * Writes `dir/adapter_model.safetensors` (float32, layers in order, q k v o gate up down, A then
 * B) and `dir/adapter_config.json`. Creates `dir`. Returns the two file paths.
 */
export function exportPeft(dir: string, tensors: PeftTensor[], meta: PeftExportMeta, opts: PeftExportOptions = {}): { weights: string; config: string } {
  checkMeta(meta);
  const arch = archSpec(meta.arch ?? "llama", "exportPeft: meta.arch");
  const config = peftConfigJson(meta);
  const targets = new Set(config.target_modules as string[]);

  interface Pair {
    layer: number;
    module: LoraModule;
    A?: PeftTensor;
    B?: PeftTensor;
  }
  const pairs = new Map<string, Pair>();
  for (const t of tensors) {
    const p = parseGgufName(t.name);
    if (!p) throw new TypeError(`exportPeft: ${JSON.stringify(t.name)} is not a LoRA tensor name like blk.0.attn_q.weight.lora_a`);
    if (!targets.has(p.module.hf)) {
      throw new TypeError(`exportPeft: tensor ${t.name} is for ${p.module.hf}, which is not in meta.targetModules [${[...targets].join(", ")}]`);
    }
    if (!Array.isArray(t.ne) || t.ne.length !== 2 || product(t.ne) !== t.data.length) {
      throw new TypeError(`exportPeft: tensor ${t.name}: ne ${JSON.stringify(t.ne)} does not hold its ${t.data.length} values`);
    }
    const rAxis = p.ab === "A" ? t.ne[1] : t.ne[0];
    if (rAxis !== meta.r) throw new RangeError(`exportPeft: tensor ${t.name} has rank ${rAxis} (ne ${shapeStr(t.ne)}) but meta.r is ${meta.r}`);
    const key = `${p.layer}/${p.module.hf}`;
    const pair = pairs.get(key) ?? { layer: p.layer, module: p.module };
    if (pair[p.ab]) throw new TypeError(`exportPeft: duplicate tensor ${t.name}`);
    pair[p.ab] = t;
    pairs.set(key, pair);
  }
  const layers = [...new Set([...pairs.values()].map((p) => p.layer))].sort((a, b) => a - b);
  if (layers.length === 0) throw new TypeError("exportPeft: no adapter tensors");

  const out: SafetensorsTensor[] = [];
  for (const layer of layers) {
    for (const module of LORA_MODULES) {
      if (!targets.has(module.hf)) continue;
      const pair = pairs.get(`${layer}/${module.hf}`);
      if (!pair?.A || !pair.B) {
        throw new TypeError(`exportPeft: missing ${ggufName(layer, module, pair?.A ? "B" : "A")} (every layer needs lora_a and lora_b of each target)`);
      }
      const [nIn] = pair.A.ne;
      const [, nOut] = pair.B.ne;
      let b = pair.B.data;
      const nh = archPermutedHeads(arch, module.short, meta.nHead, meta.nHeadKv);
      if (nh && opts.unpermute !== false) b = unpermuteRows(b, nOut, meta.r, nh);
      out.push({ name: peftKey(layer, module, "A"), shape: [meta.r, nIn], data: pair.A.data });
      out.push({ name: peftKey(layer, module, "B"), shape: [nOut, meta.r], data: b });
    }
  }

  fs.mkdirSync(dir, { recursive: true });
  const weights = path.join(dir, PEFT_WEIGHTS);
  const configPath = path.join(dir, PEFT_CONFIG);
  writeSafetensors(weights, out, { format: "pt" });
  fs.writeFileSync(configPath, JSON.stringify(config, null, 2) + "\n");
  return { weights, config: configPath };
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

export interface PeftConfig {
  r: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  /** HF names in a fixed order (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj). */
  targetModules: string[];
  /** `base_model_name_or_path`, when the file gives one. */
  baseModel?: string;
  /** `layers_to_transform`, when the file restricts the adapter to some layers. */
  layersToTransform?: number[];
}

export interface PeftImportExpect {
  nHead: number;
  nHeadKv: number;
  /** The model's GGUF architecture (llama, qwen2, qwen3): whether q/k rows are permuted. Default "llama". */
  arch?: string;
  /** The engine's adapter tensors (names and ggml ne), e.g. from `engine.getAdapter()`. */
  tensors: { name: string; ne: number[] }[];
}

/**
 * Reads and checks `dir/adapter_config.json`. Target modules given as a string (PEFT's regex form,
 * or "all-linear") come back as the modules whose tensors `adapter_model.safetensors` holds.
 */
export function readPeftConfig(dir: string): PeftConfig {
  const file = path.join(dir, PEFT_CONFIG);
  if (!fs.existsSync(dir)) throw new Error(`${dir}: PEFT adapter folder not found`);
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found (a PEFT adapter folder holds ${PEFT_CONFIG} and ${PEFT_WEIGHTS})`);
  const c = readJsonObject(file);
  const bad = (key: string, expected: string): never => {
    throw new Error(`${file}: ${key}: expected ${expected}, got ${JSON.stringify(c[key])}`);
  };
  if (c.peft_type !== undefined && c.peft_type !== "LORA") bad("peft_type", '"LORA" (only LoRA adapters are supported)');
  const r = c.r ?? 8;
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) bad("r", "an integer >= 1");
  const alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== "number" || !(alpha > 0)) bad("lora_alpha", "a positive number");
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) bad("lora_dropout", "a number in [0, 1)");
  const rslora = c.use_rslora ?? false;
  if (typeof rslora !== "boolean") bad("use_rslora", "a boolean");
  if ((c.bias ?? "none") !== "none") bad("bias", '"none" (LoRA bias terms are not supported)');
  if (c.fan_in_fan_out === true) bad("fan_in_fan_out", "false (Llama's and Qwen's linear layers are not Conv1D)");
  if (c.use_dora === true) bad("use_dora", "false (DoRA is not supported)");
  if (c.modules_to_save != null && !(Array.isArray(c.modules_to_save) && c.modules_to_save.length === 0)) {
    bad("modules_to_save", "null (fully trained extra modules are not supported)");
  }
  for (const k of ["rank_pattern", "alpha_pattern"]) {
    const v = c[k];
    if (v != null && !(typeof v === "object" && Object.keys(v as object).length === 0)) bad(k, "{} (per-module ranks and alphas are not supported)");
  }
  if (c.layer_replication != null) bad("layer_replication", "null");
  let targetModules: string[] = [];
  const tm = c.target_modules;
  if (Array.isArray(tm)) {
    if (tm.length === 0 || !tm.every((x) => typeof x === "string")) bad("target_modules", "a non-empty list of module names");
    targetModules = hfNames(tm, `${file}: target_modules`);
  } else if (typeof tm !== "string") {
    bad("target_modules", "a list of module names");
  }
  const out: PeftConfig = { r: r as number, alpha: alpha as number, dropout: dropout as number, rslora: rslora as boolean, targetModules };
  if (typeof c.base_model_name_or_path === "string") out.baseModel = c.base_model_name_or_path;
  const lt = c.layers_to_transform;
  if (lt != null) {
    const list = typeof lt === "number" ? [lt] : lt;
    if (!Array.isArray(list) || !list.every((x) => Number.isInteger(x) && x >= 0)) bad("layers_to_transform", "null, a layer index or a list of them");
    out.layersToTransform = list as number[];
  }
  return out;
}

/**
 * Reads a PEFT LoRA folder into the engine's tensors: GGUF names, ggml `ne`, q/k lora_B rows in
 * GGUF order, in the order of `expect.tensors` (only those the adapter has). The caller creates
 * the engine with `config`'s r, alpha and target modules first (see {@link readPeftConfig}).
 */
export function importPeft(dir: string, expect: PeftImportExpect): { tensors: PeftTensor[]; config: PeftConfig } {
  const config = readPeftConfig(dir);
  const arch = archSpec(expect.arch ?? "llama", `importPeft: the model's architecture`);
  const configFile = path.join(dir, PEFT_CONFIG);
  const file = path.join(dir, PEFT_WEIGHTS);
  if (!fs.existsSync(file)) {
    const bin = fs.existsSync(path.join(dir, "adapter_model.bin")) ? " (adapter_model.bin, a pickle, is not read: save with safe_serialization=True)" : "";
    throw new Error(`${file}: file not found${bin}`);
  }
  const st = readSafetensors(file);

  // what the engine holds: GGUF name -> ne
  const want = new Map<string, number[]>();
  let engineR: number | undefined;
  for (const t of expect.tensors) {
    want.set(t.name, t.ne);
    const p = parseGgufName(t.name);
    if (p?.ab === "A") engineR = t.ne[1];
  }
  if (engineR !== undefined && engineR !== config.r) {
    throw new RangeError(`${configFile}: r is ${config.r} but the engine's adapter has rank ${engineR}; create the engine with lora.r = ${config.r}`);
  }

  const got = new Map<string, PeftTensor>();
  const found = new Set<string>(); // "layer/module" with any tensor
  const keyRe = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([A-Za-z0-9_]+)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/;
  for (const t of st.tensors) {
    const m = keyRe.exec(t.name);
    if (!m) {
      throw new Error(`${file}: unexpected tensor ${t.name}: expected LoRA keys like base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`);
    }
    const layer = Number(m[1]);
    const module = BY_HF.get(m[3]);
    if (!module || module.group !== m[2]) {
      throw new Error(
        `${file}: tensor ${t.name} is for an unknown module ${m[2]}.${m[3]}; expected ${LORA_MODULES.map((x) => `${x.group}.${x.hf}`).join(", ")}`,
      );
    }
    const ab = m[4] as "A" | "B";
    const gname = ggufName(layer, module, ab);
    const ne = want.get(gname);
    if (!ne) {
      throw new Error(
        `${file}: tensor ${t.name} has no place in the engine's adapter (no ${gname}): the model has ${expect.tensors.length ? `these targets: ${[...new Set(expect.tensors.map((x) => parseGgufName(x.name)?.module.hf))].join(", ")}` : "no adapter tensors"} and layers 0..${Math.max(-1, ...expect.tensors.map((x) => parseGgufName(x.name)?.layer ?? -1))}`,
      );
    }
    if (config.targetModules.length && !config.targetModules.includes(module.hf)) {
      throw new Error(`${file}: tensor ${t.name} is for ${module.hf}, which is not in ${PEFT_CONFIG}'s target_modules [${config.targetModules.join(", ")}]`);
    }
    const expectedShape = [ne[1], ne[0]];
    if (t.shape.length !== 2 || t.shape[0] !== expectedShape[0] || t.shape[1] !== expectedShape[1]) {
      throw new Error(`${file}: tensor ${t.name} has shape ${shapeStr(t.shape)} but the model needs ${shapeStr(expectedShape)} (for ${gname})`);
    }
    if (got.has(gname)) throw new Error(`${file}: two tensors map to ${gname} (the second is ${t.name})`);
    let data = t.data;
    const nh = archPermutedHeads(arch, module.short, expect.nHead, expect.nHeadKv);
    if (ab === "B" && nh) data = permuteRows(data, t.shape[0], t.shape[1], nh);
    got.set(gname, { name: gname, ne: [...ne], data });
    found.add(`${layer}/${module.hf}`);
  }
  if (got.size === 0) throw new Error(`${file}: holds no LoRA tensors`);

  // every target of the config (or, for a regex config, every module present) in every layer
  const targets = config.targetModules.length ? config.targetModules : [...new Set([...found].map((k) => k.split("/")[1]))];
  if (!config.targetModules.length) config.targetModules = LORA_MODULES.map((m) => m.hf).filter((m) => targets.includes(m));
  const layers = [...new Set(expect.tensors.map((t) => parseGgufName(t.name)?.layer).filter((l): l is number => l !== undefined))].sort((a, b) => a - b);
  for (const layer of config.layersToTransform ?? layers) {
    for (const hf of targets) {
      const module = BY_HF.get(hf)!;
      for (const ab of ["A", "B"] as const) {
        const gname = ggufName(layer, module, ab);
        if (!want.has(gname)) {
          throw new Error(
            `${configFile}: target ${hf} has no place in the engine's adapter (no ${gname}); create the engine with target modules [${config.targetModules.join(", ")}]`,
          );
        }
        if (!got.has(gname)) throw new Error(`${file}: missing tensor ${peftKey(layer, module, ab)} (target ${hf}, layer ${layer})`);
      }
    }
  }

  const tensors = expect.tensors.filter((t) => got.has(t.name)).map((t) => got.get(t.name)!);
  return { tensors, config };
}

// ---------------------------------------------------------------------------
// Format sniffing
// ---------------------------------------------------------------------------

/** True when `dir` is a folder holding adapter_config.json and adapter_model.safetensors. */
export function isPeftDir(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory() && fs.existsSync(path.join(dir, PEFT_CONFIG)) && fs.existsSync(path.join(dir, PEFT_WEIGHTS));
  } catch {
    return false;
  }
}

/** True when `file` is a GGUF file whose metadata says general.type = "adapter" (a GGUF LoRA). */
export function isGgufAdapter(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    const v = readGguf(file).metadata.get("general.type"); // the header only, not the tensor data
    return v?.type === GgufValueType.STRING && v.value === "adapter";
  } catch {
    return false;
  }
}
