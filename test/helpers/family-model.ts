// Tiny random-weight GGUFs of the llama / qwen2 / qwen3 architectures with a real byte-level BPE
// vocabulary from the llama.cpp bundle (llama-bpe for Llama 3, qwen2 for Qwen), in the layout
// llama.cpp's converter writes (Qwen2's q/k/v biases, Qwen3's q/k norms, no output.weight when
// tied), made once per option set and cached in the OS temp folder. For the conversion and
// chat-template tests; the engine's own family models are src/models/test-model.ts's.
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { GgmlType, gv, readGguf, type GgufValue } from "../../src/formats/gguf.js";
import { writeGguf, type GgufTensorSpec } from "../../src/formats/gguf-write.js";
import { archSpec, archExtraLayerTensors, type ArchName } from "../../src/formats/architectures.js";
import { llamaCppSourceDir } from "../../src/models/test-model.js";
import { rng } from "./models.js";

export interface FamilyModelOptions {
  arch: ArchName;
  /** the bundle's models/ggml-vocab-<vocab>.gguf */
  vocab: "llama-bpe" | "qwen2";
  tied?: boolean;
  /** tokenizer.chat_template; default: none */
  chatTemplate?: string;
  nEmbd?: number;
  nLayer?: number;
  nHead?: number;
  nHeadKv?: number;
  nFf?: number;
  /** explicit head size (key_length/value_length), as Qwen3 has */
  headDim?: number;
  seed?: number;
}

const dir = path.join(os.tmpdir(), "text2sql-test-models");

export function familyModel(o: FamilyModelOptions): string {
  const src = fs.readFileSync(new URL(import.meta.url));
  const key = createHash("sha256").update(JSON.stringify(o)).update(src).digest("hex").slice(0, 16);
  const file = path.join(dir, `family-${o.arch}-${key}.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  writeFamilyModel(o, file);
  return file;
}

function writeFamilyModel(o: FamilyModelOptions, file: string): void {
  const { arch, nEmbd = 64, nLayer = 2, nHead = 4, nHeadKv = 2, nFf = 128, seed = 1 } = o;
  const spec = archSpec(arch, "familyModel");
  const headDim = o.headDim ?? nEmbd / nHead;
  const vocab = readGguf(path.join(llamaCppSourceDir(), "models", `ggml-vocab-${o.vocab}.gguf`));
  const tokenizer = [...vocab.metadata].filter(([k]) => k.startsWith("tokenizer.ggml."));
  const nVocab = (vocab.metadata.get("tokenizer.ggml.tokens")!.value as string[]).length;
  const md: [string, GgufValue][] = [
    ["general.architecture", gv.str(arch)],
    ["general.type", gv.str("model")],
    ["general.name", gv.str(`text2sql-test-${arch}-${o.vocab}`)],
    [`${arch}.context_length`, gv.u32(256)],
    [`${arch}.embedding_length`, gv.u32(nEmbd)],
    [`${arch}.block_count`, gv.u32(nLayer)],
    [`${arch}.feed_forward_length`, gv.u32(nFf)],
    [`${arch}.attention.head_count`, gv.u32(nHead)],
    [`${arch}.attention.head_count_kv`, gv.u32(nHeadKv)],
    [`${arch}.rope.freq_base`, gv.f32(arch === "llama" ? 500000 : 1000000)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gv.f32(1e-6)],
  ];
  if (o.headDim !== undefined) md.push([`${arch}.attention.key_length`, gv.u32(headDim)], [`${arch}.attention.value_length`, gv.u32(headDim)]);
  if (arch === "llama") md.push([`${arch}.rope.dimension_count`, gv.u32(headDim)]);
  md.push(["general.file_type", gv.u32(0)]);
  if (arch === "llama") md.push([`${arch}.vocab_size`, gv.u32(nVocab)]);
  md.push(["general.quantization_version", gv.u32(2)], ...tokenizer);
  if (o.chatTemplate !== undefined) md.push(["tokenizer.chat_template", gv.str(o.chatTemplate)]);

  const r = rng(seed);
  // uniform values of the given standard deviation
  const t = (name: string, ne: number[], mean: number, std: number): GgufTensorSpec => {
    const n = ne.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const scale = std * Math.sqrt(3);
    for (let i = 0; i < n; i++) data[i] = mean + r() * scale;
    return { name, type: GgmlType.F32, ne, data };
  };
  const q = nHead * headDim;
  const kv = nHeadKv * headDim;
  // embedding and output rows of norm ~3 against a unit-RMS hidden state: logits of std ~3, so a
  // target can stand out of a 150k-token vocabulary (at std 1 the best loss would be ~3)
  const embStd = 3 / Math.sqrt(nEmbd);
  const tensors: GgufTensorSpec[] = [t("token_embd.weight", [nEmbd, nVocab], 0, embStd)];
  const extraShape: Record<string, number[]> = {
    "attn_q.bias": [q],
    "attn_k.bias": [kv],
    "attn_v.bias": [kv],
    "attn_q_norm.weight": [headDim],
    "attn_k_norm.weight": [headDim],
  };
  for (let l = 0; l < nLayer; l++) {
    const b = `blk.${l}`;
    const m = (name: string, nIn: number, nOut: number): GgufTensorSpec => t(`${b}.${name}.weight`, [nIn, nOut], 0, 1 / Math.sqrt(nIn));
    tensors.push(
      t(`${b}.attn_norm.weight`, [nEmbd], 1, 0.05),
      m("attn_q", nEmbd, q),
      m("attn_k", nEmbd, kv),
      m("attn_v", nEmbd, kv),
      m("attn_output", q, nEmbd),
    );
    for (const x of archExtraLayerTensors(spec)) tensors.push(t(`${b}.${x.gguf}`, extraShape[x.gguf]!, x.gguf.includes("norm") ? 1 : 0, 0.05));
    tensors.push(t(`${b}.ffn_norm.weight`, [nEmbd], 1, 0.05), m("ffn_gate", nEmbd, nFf), m("ffn_up", nEmbd, nFf), m("ffn_down", nFf, nEmbd));
  }
  tensors.push(t("output_norm.weight", [nEmbd], 1, 0.05));
  if (!o.tied) tensors.push(t("output.weight", [nEmbd, nVocab], 0, embStd));
  writeGguf(file, { metadata: md, tensors });
}
