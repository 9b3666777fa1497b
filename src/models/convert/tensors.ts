// Step 2 of the conversion (./convert.ts): the tensor plan. Each checkpoint tensor gets its GGUF
// name (model.layers.N.self_attn.q_proj.weight -> blk.N.attn_q.weight, Qwen2's q/k/v biases ->
// blk.N.attn_q.bias, Qwen3's q/k norms -> blk.N.attn_q_norm.weight, ...), its shape is checked
// against config.json, and its storage type is chosen (1-D tensors as F32, as llama.cpp does);
// Llama's q_proj and k_proj are marked for the row permutation of ggml's RoPE layout
// (../../formats/llama-layout.ts; the per-architecture facts are ../../formats/architectures.ts's).
import path from "node:path";
import { GgmlType } from "../../formats/gguf.js";
import { SAFETENSORS_DTYPE_SIZE, type StTensorInfo } from "../../formats/safetensors.js";
import { archExtraLayerTensors, archPermutedHeads, type ArchSpec } from "../../formats/architectures.js";
import { LORA_MODULES, type LoraTarget } from "../../engine/lora.js";
import type { Checkpoint, HParams, Reporter } from "./checkpoint.js";

export type ConvertOutType = "auto" | "bf16" | "f16" | "f32" | "q8_0";
/** The storage type of the 2-D weights once "auto" is resolved. */
export type OutType = "f32" | "f16" | "bf16" | "q8_0";

const GGML_OF = { f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0 } as const;
const OUTTYPE_OF_DTYPE: Record<string, "f32" | "f16" | "bf16"> = { F32: "f32", F16: "f16", BF16: "bf16" };

export interface TensorPlan {
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
export function planTensors(ck: Checkpoint, outtype: ConvertOutType, { log, warn }: Reporter): { plans: TensorPlan[]; resolvedOuttype: OutType } {
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
