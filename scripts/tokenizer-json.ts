/**
 * Turn a byte-level BPE GGUF vocabulary (e.g. the llama.cpp bundle's models/ggml-vocab-llama-bpe.gguf)
 * back into the Hugging Face files a checkpoint carries: tokenizer.json (the model's tokens and
 * merges, the added tokens, and the normalizer / pre-tokenizer / post-processor / decoder that
 * Llama 3, Qwen2, GPT-2 and StarCoder publish) and tokenizer_config.json (special tokens, the chat
 * template). The fixture for src/models/convert/bpe-vocab.ts: converting these files back must give the
 * GGUF's tokenizer, and @huggingface/tokenizers must tokenize with them as llama.cpp does.
 *
 * Library use:  writeTokenizerJson(readGguf("ggml-vocab-qwen2.gguf"), "hf/")
 */
import fs from "node:fs";
import path from "node:path";
import { GgufValueType, type GgufFile } from "../src/formats/gguf.js";

type Json = Record<string, unknown>;

const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN35_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const byteLevel = (useRegex: boolean, trimOffsets = true): Json => ({
  type: "ByteLevel",
  add_prefix_space: false,
  trim_offsets: trimOffsets,
  use_regex: useRegex,
});
const split = (regex: string): Json => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false });

/** normalizer, pre_tokenizer, ignore_merges and clean_up_tokenization_spaces of each pre-tokenizer, as the originals have them. */
const STRUCTURE: Record<string, { normalizer: Json | null; pre: Json; ignoreMerges: boolean; cleanSpaces: boolean }> = {
  "llama-bpe": { normalizer: null, pre: { type: "Sequence", pretokenizers: [split(LLAMA3_REGEX), byteLevel(false)] }, ignoreMerges: true, cleanSpaces: true },
  qwen2: {
    normalizer: { type: "NFC" },
    pre: { type: "Sequence", pretokenizers: [split(QWEN2_REGEX), byteLevel(false, false)] },
    ignoreMerges: false,
    cleanSpaces: false,
  },
  qwen35: {
    normalizer: null,
    pre: { type: "Sequence", pretokenizers: [split(QWEN35_REGEX), byteLevel(false, false)] },
    ignoreMerges: false,
    cleanSpaces: false,
  },
  "gpt-2": { normalizer: null, pre: byteLevel(true), ignoreMerges: false, cleanSpaces: true },
  starcoder: {
    normalizer: null,
    pre: { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel(true)] },
    ignoreMerges: false,
    cleanSpaces: true,
  },
  smollm: {
    normalizer: null,
    pre: { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel(true)] },
    ignoreMerges: false,
    cleanSpaces: false,
  },
};
export const EXPORTABLE_PRE = Object.keys(STRUCTURE);

function meta(g: GgufFile, key: string): unknown {
  const v = g.metadata.get(key)?.value;
  return typeof v === "bigint" ? Number(v) : v;
}

/** tokenizer.json and tokenizer_config.json of a "gpt2"-model GGUF vocabulary. */
export function ggufToTokenizerJson(g: GgufFile, opts: { pre?: string; chatTemplate?: string } = {}): { tokenizer: Json; tokenizerConfig: Json } {
  const tokensV = g.metadata.get("tokenizer.ggml.tokens");
  if (meta(g, "tokenizer.ggml.model") !== "gpt2" || tokensV?.type !== GgufValueType.ARRAY || tokensV.itemType !== GgufValueType.STRING) {
    throw new Error(`${g.path}: no byte-level BPE ("gpt2") vocabulary in the metadata`);
  }
  const tokens = tokensV.value as string[];
  const types = (g.metadata.get("tokenizer.ggml.token_type")?.value as ArrayLike<number> | undefined) ?? new Int32Array(tokens.length).fill(1);
  const merges = g.metadata.get("tokenizer.ggml.merges")?.value as string[];
  const pre = opts.pre ?? String(meta(g, "tokenizer.ggml.pre"));
  const s = STRUCTURE[pre];
  if (!s) throw new Error(`${g.path}: no tokenizer.json structure for pre-tokenizer ${pre}; known: ${EXPORTABLE_PRE.join(", ")}`);

  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  tokens.forEach((t, id) => {
    const type = types[id];
    if (type === 3 || type === 4) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: type === 4, special: type === 3 });
    } else if (type === 1) {
      if (Object.prototype.hasOwnProperty.call(vocab, t)) throw new Error(`${g.path}: token ${JSON.stringify(t)} appears twice (${vocab[t]} and ${id})`);
      vocab[t] = id;
    } // UNUSED ([PAD<id>]) ids are in neither, as in the originals
  });
  const id = (key: string): number | undefined => meta(g, `tokenizer.ggml.${key}_token_id`) as number | undefined;
  const bos = id("bos");
  const text = (i: number | undefined): string | null => (i === undefined ? null : tokens[i]!);
  const addBos = pre === "llama-bpe"; // Llama 3 adds <|begin_of_text|> in its post-processor; the others add nothing
  const postProcessor: Json =
    addBos && bos !== undefined
      ? {
          type: "Sequence",
          processors: [
            { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
            {
              type: "TemplateProcessing",
              single: [{ SpecialToken: { id: tokens[bos], type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
              pair: [
                { SpecialToken: { id: tokens[bos], type_id: 0 } },
                { Sequence: { id: "A", type_id: 0 } },
                { SpecialToken: { id: tokens[bos], type_id: 1 } },
                { Sequence: { id: "B", type_id: 1 } },
              ],
              special_tokens: { [tokens[bos]!]: { id: tokens[bos], ids: [bos], tokens: [tokens[bos]] } },
            },
          ],
        }
      : byteLevel(false, false);
  const tokenizer: Json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: s.normalizer,
    pre_tokenizer: s.pre,
    post_processor: postProcessor,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: s.ignoreMerges,
      vocab,
      merges: merges.map((m) => m.split(" ")), // the [a, b] form of transformers >= 4.45
    },
  };
  const tokenizerConfig: Json = {
    added_tokens_decoder: Object.fromEntries(added.map((a) => [String(a.id), { ...a, id: undefined }])),
    bos_token: text(bos),
    eos_token: text(id("eos")),
    pad_token: text(id("padding")),
    unk_token: text(id("unknown")),
    clean_up_tokenization_spaces: s.cleanSpaces,
    model_max_length: 131072,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  const tpl = opts.chatTemplate ?? (meta(g, "tokenizer.chat_template") as string | undefined);
  if (tpl !== undefined) tokenizerConfig.chat_template = tpl;
  return { tokenizer, tokenizerConfig };
}

/** Writes tokenizer.json and tokenizer_config.json into `dir`; returns the file names. */
export function writeTokenizerJson(g: GgufFile, dir: string, opts: { pre?: string; chatTemplate?: string } = {}): string[] {
  const { tokenizer, tokenizerConfig } = ggufToTokenizerJson(g, opts);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig, null, 2) + "\n");
  return ["tokenizer.json", "tokenizer_config.json"];
}
