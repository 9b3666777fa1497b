// Step 3 of the conversion (./convert.ts): the GGUF metadata, the keys and value types llama.cpp's
// converter writes (general.*, the architecture's hyperparameters, then the tokenizer's keys from
// ./tokenizer.ts).
import path from "node:path";
import { gv, type GgufValue } from "../../formats/gguf.js";
import type { Checkpoint } from "./checkpoint.js";
import type { OutType } from "./tensors.js";
import { tokenizerMetadata } from "./tokenizer.js";

/** llama_ftype of each output type (general.file_type). */
const FILE_TYPE = { f32: 0, f16: 1, bf16: 32, q8_0: 7 } as const;

/** The repository name of a hub cache snapshot (.../models--org--name/snapshots/<hash>), else the folder name. */
function defaultModelName(dir: string): string {
  const abs = path.resolve(dir);
  const m = /models--[^/\\]+--([^/\\]+)[/\\]snapshots[/\\][^/\\]+$/.exec(abs);
  return m ? m[1]! : path.basename(abs);
}

/** Step 3: the metadata (the keys and value types llama.cpp's converter writes for Llama). */
export function ggufMetadata(ck: Checkpoint, opts: { name?: string; sourceRepo?: string }, outtype: OutType): [string, GgufValue][] {
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
