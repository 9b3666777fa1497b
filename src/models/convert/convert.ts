// Convert a Hugging Face checkpoint folder (config.json, safetensors weights, a SentencePiece
// tokenizer.model or a BPE tokenizer.json, tokenizer_config.json, ...) of a Llama, Qwen2 or Qwen3
// model to a GGUF that llama.cpp, node-llama-cpp and our engine load: a TypeScript port of what
// llama.cpp's convert_hf_to_gguf.py does for LlamaForCausalLM, Qwen2ForCausalLM and
// Qwen3ForCausalLM (conversion/llama.py, qwen.py, base.py and gguf-py's SpecialVocab).
//
// The conversion is a pipeline, one file per step, each handing its result down to the next:
//   1. ./checkpoint.ts  read the checkpoint: config.json's hyperparameters, the tokenizer
//                       (./tokenizer.ts, with ./sentencepiece.ts and ./bpe-vocab.ts), the weights' headers
//   2. ./tensors.ts     plan the tensors: GGUF names, shapes checked, storage types, q/k permutation
//   3. ./metadata.ts    the GGUF metadata (general.*, hyperparameters, the tokenizer's keys)
//   4. ./write.ts       the tensors' data, streamed in blocks of whole rows while writeGguf writes
// The GGUF is written under a temporary name and renamed at the end (writeGguf), so an
// interrupted conversion never leaves a complete-looking file.
import fs from "node:fs";
import path from "node:path";
import { writeGguf } from "../../formats/gguf-write.js";
import { StReader } from "../../formats/safetensors.js";
import { checkHfConfig } from "../../formats/hf-config-check.js";
import { readCheckpoint } from "./checkpoint.js";
import { planTensors, type ConvertOutType, type OutType } from "./tensors.js";
import { ggufMetadata } from "./metadata.js";
import { tensorSpecs } from "./write.js";

export type { ConvertOutType } from "./tensors.js";

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
  outtype: OutType;
  nTensors: number;
  warnings: string[];
}

export const SUPPORTED_ARCHITECTURES =
  "LlamaForCausalLM (Llama 1/2/3.x, TinyLlama, SmolLM2, ...), MistralForCausalLM, Qwen2ForCausalLM (Qwen2, Qwen2.5, Qwen2.5-Coder) and Qwen3ForCausalLM (Qwen3 dense), " +
  "with a SentencePiece tokenizer.model or a byte-level BPE tokenizer.json";

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
