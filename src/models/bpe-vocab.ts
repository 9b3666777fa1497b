// The byte-level BPE half of the tokenizer conversion (./convert-tokenizer.ts has the SentencePiece
// one): a Hugging Face `tokenizer.json` (Llama 3, Qwen2/2.5/3, SmolLM2, GPT-2, StarCoder) to the
// GGUF `tokenizer.ggml.*` keys that llama.cpp's convert_hf_to_gguf.py writes (get_vocab_base,
// _set_vocab_gpt2 and gguf-py's SpecialVocab): model "gpt2", the pre-tokenizer's llama.cpp name,
// tokens, token types and merges.
//
// llama.cpp names the pre-tokenizer by hashing the original tokenizer's output on a sample text;
// without Python's tokenizer we recognise the pre-tokenizer by its structure in tokenizer.json
// (the Split regexes and ByteLevel/Digits steps), which is what each llama.cpp name implements.
// An unknown structure is refused, naming the file and the supported ones.
import { readUserText } from "../util/user-file.js";
import { gv, type GgufValue } from "../formats/gguf.js";
import { SentencePieceType } from "./sentencepiece.js";

type Json = Record<string, unknown>;

/** tokenizer.json is hostile input: bigger than this is refused before reading (Gemma's is ~34 MB). */
export const MAX_TOKENIZER_JSON_BYTES = 128 << 20;

/** The regexes of the Split pre-tokenizers llama.cpp implements (as tokenizer.json spells them). */
const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN35_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * Known pre-tokenizer structures -> llama.cpp's `tokenizer.ggml.pre`. A structure is the list of
 * steps of the (Sequence) pre_tokenizer: `split:<regex>` (Isolated, not inverted),
 * `bytelevel:<use_regex>` (add_prefix_space false), `digits:<individual>`.
 */
const PRE_TOKENIZERS: { pre: string; models: string; steps: string[] }[] = [
  { pre: "llama-bpe", models: "Llama 3.x", steps: [`split:${LLAMA3_REGEX}`, "bytelevel:false"] },
  { pre: "qwen2", models: "Qwen2, Qwen2.5, Qwen2.5-Coder, Qwen3", steps: [`split:${QWEN2_REGEX}`, "bytelevel:false"] },
  { pre: "qwen35", models: "Qwen3.5", steps: [`split:${QWEN35_REGEX}`, "bytelevel:false"] },
  { pre: "gpt-2", models: "GPT-2", steps: ["bytelevel:true"] },
  // llama.cpp's starcoder and smollm run the same regexes; smollm keeps spaces when detokenizing
  { pre: "starcoder", models: "StarCoder, SmolLM2 (as smollm)", steps: ["digits:true", "bytelevel:true"] },
];

/** "llama-bpe (Llama 3.x), qwen2 (...)": for error messages. */
export function supportedPreTokenizersText(): string {
  return PRE_TOKENIZERS.map((p) => `${p.pre} (${p.models})`).join(", ");
}

/** One pre-tokenizer step as a comparable string; null for a step no llama.cpp name implements. */
function stepSignature(s: Json): string | null {
  if (s.type === "Split") {
    const regex = (s.pattern as Json | undefined)?.Regex;
    if (typeof regex !== "string" || s.behavior !== "Isolated" || s.invert === true) return null;
    return `split:${regex}`;
  }
  if (s.type === "ByteLevel") return s.add_prefix_space === true ? null : `bytelevel:${s.use_regex !== false}`;
  if (s.type === "Digits") return `digits:${s.individual_digits === true}`;
  return null;
}

/**
 * llama.cpp's name (`tokenizer.ggml.pre`) of the tokenizer.json's pre-tokenizer; throws naming the
 * file, what it found and the supported ones.
 */
export function identifyPreTokenizer(tok: Json, tokenizerConfig: Json | undefined, file: string): string {
  const pt = tok.pre_tokenizer as Json | null | undefined;
  const steps = pt?.type === "Sequence" && Array.isArray(pt.pretokenizers) ? (pt.pretokenizers as Json[]) : pt ? [pt] : [];
  const sig = steps.map(stepSignature);
  const known = PRE_TOKENIZERS.find((p) => p.steps.length === sig.length && p.steps.every((s, i) => s === sig[i]));
  if (!known) {
    const found =
      steps.length === 0
        ? "none"
        : steps
            .map((s) => `${String(s.type)}${s.type === "Split" ? ` ${JSON.stringify((s.pattern as Json | undefined)?.Regex ?? s.pattern)}` : ""}`)
            .join(" + ");
    throw new Error(`${file}: unknown pre-tokenizer (${found.slice(0, 400)}); supported: ${supportedPreTokenizersText()}`);
  }
  // SmolLM2's tokenizer is StarCoder's; llama.cpp names it smollm, which keeps spaces on detokenizing
  if (known.pre === "starcoder" && tokenizerConfig?.clean_up_tokenization_spaces === false) return "smollm";
  return known.pre;
}

/** llama.cpp's does_token_look_special: added tokens that ought to be control tokens. */
export function looksSpecial(t: string): boolean {
  return (
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) ||
    (t.startsWith("<|") && t.endsWith("|>")) ||
    (t.startsWith("<｜") && t.endsWith("｜>")) ||
    (t.startsWith("<unused") && t.endsWith(">"))
  );
}

/** A JSON file of at most `max` bytes, parsed; the errors name the file. */
export function readBoundedJson(file: string, max = MAX_TOKENIZER_JSON_BYTES): Json {
  const text = readUserText(file, { label: "model folder", maxBytes: max, what: "a tokenizer or config file" });
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Json;
}

export interface BpeVocab {
  /** tokenizer.json, parsed (its added_tokens name the special tokens). */
  json: Json;
  pre: string;
  tokens: string[];
  types: Int32Array;
  merges: string[];
}

/** model.merges, either "a b" strings or [a, b] pairs (transformers >= 4.45; spaces become U+0120 as gguf-py does). */
function readMerges(model: Json, file: string): string[] {
  const merges = model.merges;
  if (!Array.isArray(merges) || merges.length === 0) throw new Error(`${file}: model.merges is missing or empty; a BPE tokenizer needs its merges`);
  if (typeof merges[0] === "string") {
    if (!merges.every((m) => typeof m === "string")) throw new Error(`${file}: model.merges mixes strings and other values`);
    return merges as string[];
  }
  return merges.map((m, i) => {
    if (!Array.isArray(m) || m.length !== 2 || typeof m[0] !== "string" || typeof m[1] !== "string") {
      throw new Error(`${file}: model.merges[${i}] is neither "a b" nor a pair of strings`);
    }
    return (m as string[]).map((part) => part.replaceAll(" ", "\u0120")).join(" ");
  });
}

/**
 * The vocabulary of a byte-level BPE tokenizer.json as llama.cpp's get_vocab_base builds it: ids
 * 0..vocabSize-1, the model's tokens (NORMAL), the added tokens (CONTROL when special or looking
 * special, else USER_DEFINED), `[PAD<id>]` (UNUSED) for ids neither has.
 */
export function readBpeVocab(file: string, vocabSize: number | undefined, tokenizerConfig: Json | undefined, warn: (m: string) => void): BpeVocab {
  const json = readBoundedJson(file);
  const model = json.model as Json | undefined;
  if (model?.type !== "BPE") throw new Error(`${file}: model.type is ${JSON.stringify(model?.type ?? null)}; only BPE tokenizers are supported here`);
  if (model.byte_fallback === true) throw new Error(`${file}: a BPE model with byte_fallback (SentencePiece-style) is not a byte-level BPE; not supported`);
  if (model.continuing_subword_prefix || model.end_of_word_suffix) {
    throw new Error(`${file}: BPE with continuing_subword_prefix / end_of_word_suffix is not supported (llama.cpp's byte-level BPE has neither)`);
  }
  const pre = identifyPreTokenizer(json, tokenizerConfig, file);
  const normalizer = json.normalizer as Json | null | undefined;
  if (normalizer && normalizer.type !== "NFC") warn(`${file}: the ${String(normalizer.type)} normalizer is not applied by llama.cpp`);
  const ignoreMerges = model.ignore_merges === true;
  if (ignoreMerges !== (pre === "llama-bpe")) {
    warn(`${file}: ignore_merges is ${ignoreMerges}, llama.cpp's ${pre} uses ${pre === "llama-bpe"}; a word that is itself a token may split differently`);
  }

  const vocab = model.vocab as Json | undefined;
  if (typeof vocab !== "object" || vocab === null || Array.isArray(vocab)) throw new Error(`${file}: model.vocab must be an object of token -> id`);
  const byId = new Map<number, string>();
  for (const [t, id] of Object.entries(vocab)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0)
      throw new Error(`${file}: model.vocab[${JSON.stringify(t)}] is ${JSON.stringify(id)}, not a token id`);
    byId.set(id, t);
  }
  const added = new Map<number, { content: string; special: boolean }>();
  for (const a of Array.isArray(json.added_tokens) ? (json.added_tokens as Json[]) : []) {
    if (typeof a?.id !== "number" || !Number.isInteger(a.id) || a.id < 0 || typeof a.content !== "string") {
      throw new Error(`${file}: an added_tokens entry lacks an integer id or a string content: ${JSON.stringify(a).slice(0, 200)}`);
    }
    added.set(a.id, { content: a.content, special: a.special === true });
  }
  let maxId = -1;
  for (const id of [...byId.keys(), ...added.keys()]) if (id > maxId) maxId = id;
  const n = vocabSize ?? maxId + 1;
  if (maxId >= n) throw new Error(`${file}: token id ${maxId} is outside the vocabulary size ${n} (config.json vocab_size)`);

  const tokens: string[] = new Array<string>(n);
  const types = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const a = added.get(i);
    if (a) {
      const control = a.special || looksSpecial(a.content);
      tokens[i] = control ? a.content : a.content.replaceAll("\u2581", " "); // llama.cpp pre-normalizes user-defined spaces
      types[i] = control ? SentencePieceType.CONTROL : SentencePieceType.USER_DEFINED;
      continue;
    }
    const t = byId.get(i);
    tokens[i] = t ?? `[PAD${i}]`;
    types[i] = t === undefined ? SentencePieceType.UNUSED : SentencePieceType.NORMAL;
  }
  return { json, pre, tokens, types, merges: readMerges(model, file) };
}

/** `tokenizer.ggml.model` .. `merges`: the keys of a BPE vocabulary, in llama.cpp's order. */
export function bpeVocabMetadata(v: BpeVocab): [string, GgufValue][] {
  return [
    ["tokenizer.ggml.model", gv.str("gpt2")],
    ["tokenizer.ggml.pre", gv.str(v.pre)],
    ["tokenizer.ggml.tokens", gv.strings(v.tokens)],
    ["tokenizer.ggml.token_type", gv.i32s(v.types)],
    ["tokenizer.ggml.merges", gv.strings(v.merges)],
  ];
}

/**
 * add_bos / add_eos from tokenizer.json's post_processor, as gguf-py's SpecialVocab reads a
 * TemplateProcessing (Llama 3 adds <|begin_of_text|>): a leading special token that is the BOS
 * means add_bos. tokenizer_config.json's add_bos_token / add_eos_token override it.
 */
export function postProcessorAddsBos(tok: Json, bosText: string | undefined): boolean | undefined {
  const pp = tok.post_processor as Json | null | undefined;
  if (!pp) return undefined;
  const procs = Array.isArray(pp.processors) ? (pp.processors as Json[]) : [pp];
  for (const p of procs) {
    if (p.type !== "TemplateProcessing" || !Array.isArray(p.single) || p.single.length < 2) continue;
    const first = ((p.single[0] as Json).SpecialToken as Json | undefined)?.id;
    if (typeof first === "string") return bosText === undefined || first === bosText;
    return false;
  }
  return undefined;
}
