// The tokenizer half of the Hugging Face -> GGUF conversion (./convert.ts): the vocabulary (a
// SentencePiece tokenizer.model plus added tokens, or a byte-level BPE tokenizer.json through
// ./bpe-vocab.ts), the special token ids, and the tokenizer's GGUF metadata (flags and chat
// templates) as llama.cpp's convert_hf_to_gguf.py and gguf-py's SpecialVocab write them.
import fs from "node:fs";
import path from "node:path";
import { gv, type GgufValue } from "../formats/gguf.js";
import { readUserFile, readUserText } from "../util/user-file.js";
import { bpeVocabMetadata, looksSpecial, postProcessorAddsBos, readBoundedJson, readBpeVocab, supportedPreTokenizersText, type BpeVocab } from "./bpe-vocab.js";
import { parseSentencePieceModel, SentencePieceModelType, SentencePieceType, sentencePieceModelTypeName, type SentencePieceModel } from "./sentencepiece.js";

export type Json = Record<string, unknown>;

/** config.json, tokenizer_config.json, ... are hostile input: bigger than this is refused before reading. */
const MAX_CONFIG_JSON_BYTES = 32 << 20;
/** A SentencePiece tokenizer.model larger than this is refused before reading (Llama 2's is 500 KB). */
const MAX_TOKENIZER_MODEL_BYTES = 256 << 20;

/** A JSON object file of bounded size; undefined when the file does not exist. */
export function readJson(file: string): Json | undefined {
  return fs.existsSync(file) ? readBoundedJson(file, MAX_CONFIG_JSON_BYTES) : undefined;
}

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

export interface Vocab {
  tokens: string[];
  /** SentencePiece scores; none for BPE. */
  scores?: Float32Array;
  types: Int32Array;
  /** The SentencePiece model (tokenizer.model), or */
  sp?: SentencePieceModel;
  /** the byte-level BPE tokenizer (tokenizer.json). */
  bpe?: BpeVocab;
}

/**
 * tokens / scores / token types as llama.cpp's _create_vocab_sentencepiece builds them: the
 * protobuf's pieces, padded with [PAD<id>] (UNUSED, -10000) up to config.vocab_size, then
 * added_tokens.json and tokenizer_config.json's added_tokens_decoder entries (CONTROL when
 * special, else USER_DEFINED; score -1000).
 */
export function readVocab(dir: string, vocabSize: number | undefined, tokenizerConfig: Json | undefined, warn: (m: string) => void): Vocab {
  const spFile = path.join(dir, "tokenizer.model");
  if (!fs.existsSync(spFile)) {
    // as llama.cpp's converter: SentencePiece first, else the byte-level BPE of tokenizer.json
    const jsonFile = path.join(dir, "tokenizer.json");
    if (fs.existsSync(jsonFile)) {
      const bpe = readBpeVocab(jsonFile, vocabSize, tokenizerConfig, warn);
      return { tokens: bpe.tokens, types: bpe.types, bpe };
    }
    throw new Error(
      `${dir}: no tokenizer.model (SentencePiece, as in Llama 1/2, TinyLlama, Mistral) nor tokenizer.json (byte-level BPE: ${supportedPreTokenizersText()}) found`,
    );
  }
  const sp = parseSentencePieceModel(readUserFile(spFile, { label: "model folder", maxBytes: MAX_TOKENIZER_MODEL_BYTES, what: "a tokenizer.model" }), spFile);
  if (sp.modelType === SentencePieceModelType.UNIGRAM) {
    warn(
      `${spFile}: a SentencePiece UNIGRAM model; llama.cpp tokenizes "llama" vocabularies with SentencePiece BPE, so its tokens may differ from the original tokenizer's`,
    );
  } else if (sp.modelType !== SentencePieceModelType.BPE) {
    throw new Error(`${spFile}: SentencePiece ${sentencePieceModelTypeName(sp.modelType)} models are not supported (Llama uses BPE)`);
  }
  if (!sp.byteFallback) warn(`${spFile}: byte_fallback is off; characters outside the vocabulary cannot be encoded as bytes`);
  if (sp.removeExtraWhitespaces) warn(`${spFile}: the normalizer collapses repeated spaces (remove_extra_whitespaces), which llama.cpp does not do`);
  if (sp.hasPrecompiledCharsmap) warn(`${spFile}: the normalizer has a character map (${sp.normalizerName ?? "unnamed"}), which llama.cpp does not apply`);

  const n = vocabSize ?? sp.pieces.length;
  const tokens = Array.from({ length: n }, (_, i) => `[PAD${i}]`);
  const scores = new Float32Array(n).fill(-10000);
  const types = new Int32Array(n).fill(SentencePieceType.UNUSED);
  if (sp.pieces.length > n) warn(`${spFile}: ${sp.pieces.length} pieces but vocab_size is ${n}; ids from ${n} on are dropped`);
  for (let i = 0; i < Math.min(n, sp.pieces.length); i++) {
    const p = sp.pieces[i]!;
    tokens[i] = p.piece;
    scores[i] = p.score;
    types[i] = p.type;
  }

  const added = readJson(path.join(dir, "added_tokens.json"));
  for (const [text, id] of Object.entries(added ?? {})) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= n) {
      warn(`added_tokens.json: ignoring ${JSON.stringify(text)} with id ${String(id)} (vocabulary size ${n})`);
      continue;
    }
    tokens[id] = text;
    scores[id] = -1000;
    types[id] = SentencePieceType.USER_DEFINED;
  }
  const decoder = tokenizerConfig?.added_tokens_decoder;
  if (typeof decoder === "object" && decoder !== null) {
    for (const [key, data] of Object.entries(decoder as Json)) {
      const id = Number(key);
      const content = (data as Json | null)?.content;
      if (!Number.isInteger(id) || typeof content !== "string") continue;
      if (id < 0 || id >= n) {
        warn(`tokenizer_config.json: ignoring added token ${JSON.stringify(content)} with id ${id} (vocabulary size ${n})`);
        continue;
      }
      if (types[id] !== SentencePieceType.UNUSED && tokens[id] !== content) {
        warn(`tokenizer_config.json: added token ${id} replaces ${JSON.stringify(tokens[id])} with ${JSON.stringify(content)}`);
      }
      if ((data as Json).special === true || looksSpecial(content)) {
        types[id] = SentencePieceType.CONTROL;
        tokens[id] = content;
      } else {
        types[id] = SentencePieceType.USER_DEFINED;
        tokens[id] = content.replaceAll("\u2581", " "); // llama.cpp pre-normalizes user-defined spaces
      }
      scores[id] = -1000;
    }
  }
  return { tokens, scores, types, sp };
}

const SPECIAL_TYPES = ["bos", "eos", "unk", "sep", "pad"] as const;
export type SpecialType = (typeof SPECIAL_TYPES)[number];
const SPECIAL_KEY: Record<SpecialType, string> = {
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  unk: "tokenizer.ggml.unknown_token_id",
  sep: "tokenizer.ggml.seperator_token_id", // sic: gguf's spelling
  pad: "tokenizer.ggml.padding_token_id",
};

/**
 * Special token ids, first found wins (as in gguf-py's SpecialVocab, which only knows the first
 * two): tokenizer_config.json's `<type>_token` text looked up in tokenizer.json's added tokens
 * or the vocabulary, config.json's `<type>_token_id`, generation_config.json's, then the
 * SentencePiece trainer spec's unk/bos/eos/pad ids.
 */
export function specialIds(dir: string, vocab: Vocab, config: Json, tokenizerConfig: Json | undefined, warn: (m: string) => void): Map<SpecialType, number> {
  const n = vocab.tokens.length;
  const ids = new Map<SpecialType, number>();
  const set = (typ: SpecialType, id: unknown, from: string): void => {
    if (Array.isArray(id)) id = id[0]; // generation_config's eos_token_id may be a list
    if (ids.has(typ) || typeof id !== "number" || !Number.isInteger(id) || id < 0) return;
    if (id >= n) {
      warn(`${from}: ${typ} token id ${id} is outside the vocabulary (${n}); ignored`);
      return;
    }
    ids.set(typ, id);
  };
  const tokJson = vocab.bpe ? vocab.bpe.json : readJson(path.join(dir, "tokenizer.json"));
  const addedTokens = Array.isArray(tokJson?.added_tokens) ? (tokJson.added_tokens as Json[]) : [];
  for (const typ of SPECIAL_TYPES) {
    const entry = tokenizerConfig?.[`${typ}_token`];
    const text = typeof entry === "string" ? entry : typeof (entry as Json | null)?.content === "string" ? ((entry as Json).content as string) : undefined;
    if (text === undefined) continue;
    const fromAdded = addedTokens.find((a) => a.content === text)?.id;
    set(typ, typeof fromAdded === "number" ? fromAdded : vocab.tokens.indexOf(text), "tokenizer_config.json");
  }
  for (const typ of SPECIAL_TYPES) set(typ, config[`${typ}_token_id`], "config.json");
  const gen = readJson(path.join(dir, "generation_config.json"));
  for (const typ of SPECIAL_TYPES) set(typ, gen?.[`${typ}_token_id`], "generation_config.json");
  if (vocab.sp) {
    set("unk", vocab.sp.unkId, "tokenizer.model");
    set("bos", vocab.sp.bosId, "tokenizer.model");
    set("eos", vocab.sp.eosId, "tokenizer.model");
    set("pad", vocab.sp.padId, "tokenizer.model");
  }
  return ids;
}

// ---------------------------------------------------------------------------
// GGUF metadata
// ---------------------------------------------------------------------------

/**
 * The tokenizer's GGUF metadata, as llama.cpp's converter writes it for a SentencePiece
 * vocabulary: the vocabulary, the special token ids, add_bos/add_eos, add_space_prefix and the
 * chat templates.
 */
export function tokenizerMetadata(dir: string, vocab: Vocab, special: Map<SpecialType, number>, tokenizerConfig: Json | undefined): [string, GgufValue][] {
  const md: [string, GgufValue][] = vocab.bpe
    ? bpeVocabMetadata(vocab.bpe)
    : [
        ["tokenizer.ggml.model", gv.str("llama")],
        ["tokenizer.ggml.pre", gv.str("default")],
        ["tokenizer.ggml.tokens", gv.strings(vocab.tokens)],
        ["tokenizer.ggml.scores", gv.f32s(vocab.scores ?? new Float32Array(vocab.tokens.length))],
        ["tokenizer.ggml.token_type", gv.i32s(vocab.types)],
      ];
  for (const typ of SPECIAL_TYPES) {
    const id = special.get(typ);
    if (id !== undefined) md.push([SPECIAL_KEY[typ], gv.u32(id)]);
  }
  const add: Partial<Record<"bos" | "eos", boolean>> = {};
  if (vocab.bpe) {
    // gguf-py reads add_bos from tokenizer.json's TemplateProcessing (Llama 3), then tokenizer_config
    const bosId = special.get("bos");
    const addBos = postProcessorAddsBos(vocab.bpe.json, bosId === undefined ? undefined : vocab.tokens[bosId]);
    if (addBos !== undefined) add.bos = addBos;
  }
  for (const typ of ["bos", "eos"] as const) {
    const v = tokenizerConfig?.[`add_${typ}_token`];
    if (typeof v === "boolean") add[typ] = v;
  }
  for (const typ of ["bos", "eos"] as const) if (add[typ] !== undefined) md.push([`tokenizer.ggml.add_${typ}_token`, gv.bool(add[typ])]);
  // llama.cpp takes add_space_prefix from tokenizer_config's add_prefix_space only; a protobuf
  // whose normalizer has add_dummy_prefix off also means no space prefix. (Byte-level BPE has none.)
  if (vocab.sp) {
    const addPrefix = tokenizerConfig?.add_prefix_space;
    if (typeof addPrefix === "boolean") md.push(["tokenizer.ggml.add_space_prefix", gv.bool(addPrefix)]);
    else if (!vocab.sp.addDummyPrefix) md.push(["tokenizer.ggml.add_space_prefix", gv.bool(false)]);
  }
  md.push(...chatTemplates(dir, tokenizerConfig));
  return md;
}

/** tokenizer.chat_template (and named templates) from tokenizer_config.json, chat_template.jinja or chat_template.json. */
function chatTemplates(dir: string, tokenizerConfig: Json | undefined): [string, GgufValue][] {
  let tpl: unknown = tokenizerConfig?.chat_template;
  if (tpl === undefined) {
    const jinja = path.join(dir, "chat_template.jinja");
    if (fs.existsSync(jinja)) tpl = readUserText(jinja, { label: "model folder", maxBytes: MAX_CONFIG_JSON_BYTES, what: "a chat template" });
    else tpl = readJson(path.join(dir, "chat_template.json"))?.chat_template;
  }
  if (typeof tpl === "string") return [["tokenizer.chat_template", gv.str(tpl)]];
  if (!Array.isArray(tpl)) return [];
  const out: [string, GgufValue][] = [];
  const names: string[] = [];
  let def: string | undefined;
  for (const c of tpl as Json[]) {
    const name = String(c?.name ?? "").replace(/[^A-Za-z0-9]/g, "_");
    if (!name || typeof c.template !== "string") continue;
    if (name === "default") def = c.template;
    else if (!names.includes(name)) {
      names.push(name);
      out.push([`tokenizer.chat_template.${name}`, gv.str(c.template)]);
    }
  }
  if (names.length > 0) out.push(["tokenizer.chat_templates", gv.strings(names)]);
  if (def !== undefined) out.push(["tokenizer.chat_template", gv.str(def)]);
  return out;
}

/**
 * The tokenizer's GGUF metadata of a Hugging Face folder alone (tokenizer.model or tokenizer.json,
 * tokenizer_config.json, config.json, generation_config.json): what convertHfToGguf writes,
 * without the weights (used to check a tokenizer and by the tokenizer tests).
 */
export function convertTokenizer(dir: string, opts: { vocabSize?: number; warn?: (m: string) => void } = {}): [string, GgufValue][] {
  const warn = opts.warn ?? (() => {});
  const config = readJson(path.join(dir, "config.json")) ?? {};
  const tokenizerConfig = readJson(path.join(dir, "tokenizer_config.json"));
  const vocabSize = opts.vocabSize ?? (typeof config.vocab_size === "number" ? config.vocab_size : undefined);
  const vocab = readVocab(dir, vocabSize, tokenizerConfig, warn);
  return tokenizerMetadata(dir, vocab, specialIds(dir, vocab, config, tokenizerConfig, warn), tokenizerConfig);
}
