// Question to SQL through node-llama-cpp: the base GGUF plus the trained GGUF LoRA, the exact
// training prompt, greedy decoding that stops at EOS or the end of the statement, and optional
// validation of the SQL against a schema in SQLite (prepared, never run), and schema-constrained
// decoding (a GBNF grammar of the schema's SELECTs, src/sql/sql-grammar.ts) whose answers are always
// complete statements: when the token budget runs out first, the longest prefix of the model's text
// that the grammar's shortest completion (src/formats/gbnf.ts) closes within the budget, said so.
import fs from "node:fs";
import os from "node:os";
import {
  getLlama,
  LlamaGrammarEvaluationState,
  LlamaLogLevel,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { DEFAULT_TEMPLATE } from "../train/config.js";
import { checkSqlAgainstSchema, type SchemaCheckOptions } from "../sql/query-process.js";
import { schemaStatements } from "../sql/sql-text.js";
import { keywordRule } from "../sql/sql-grammar.js";
import { GbnfFollower, type Gbnf } from "../formats/gbnf.js";
import { buildGrammar } from "./grammar-worker.js";
import { checkAdapterFits } from "../adapters/merge.js";
import { checkModelFile } from "../formats/model-check.js";
import { resolveAdapter } from "../adapters/folder.js";
import { checkThreads, cpuHasAmxTiles, systemInfo, warn } from "../engine/system.js";
import { resolveModelPath } from "../models/model-path.js";
import { cpuLlama, ggufChatTemplate, PromptBuilder } from "../train/prompt.js";
import { generateWithCandidates, type CandidateDecodeOptions, type DecodedCandidate } from "./candidates.js";
import type { GenerateOptions, GenerateResult } from "./generate-types.js";

export type { GenerateOptions, GenerateResult } from "./generate-types.js";

export interface GeneratorOptions {
  /**
   * base model: a GGUF, or any model.path form (checkpoint folder, hub repository, hf: URI; see
   * resolveModelPath); defaults to the base recorded in the adapter folder
   */
  model?: string;
  /** an adapter.gguf, a final_model/ or checkpoint folder, or a trainer output folder */
  adapter?: string;
  /** the prompt template; defaults to the one recorded in the adapter folder, else the seed's */
  template?: string;
  device?: "auto" | "cpu";
  /** questions decoded at the same time (one single-sequence context each, over one loaded model) */
  parallel?: number;
  /** context length per sequence (prompt + SQL) */
  contextSize?: number;
  /**
   * CPU threads per decoder. Default: 1 for models under 200 MB (thread hand-offs cost more than
   * such a small model's work), else the cores divided among the parallel decoders.
   */
  threads?: number;
}

/** One decoded answer (see SqlGenerator.decode). */
interface Decoded {
  sql: string;
  /** tokens decoded (all of them, also those after the prefix that was answered; not the close) */
  tokens: number;
  /** total log-probability of the sampled tokens (NaN unless asked for) */
  logprob: number;
  truncated?: "budget" | "time";
  /** constrained: whether `sql` is a complete statement of the grammar */
  complete?: boolean;
  note?: string;
}

/** Cuts the SQL out of a completion: after [/INST] if present, up to the end of the first statement. */
export function extractSql(text: string): string {
  const inst = text.lastIndexOf("[/INST]");
  let s = inst >= 0 ? text.slice(inst + 7) : text;
  let quote: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"' || c === "`") {
      quote = c;
    } else if (c === ";") {
      s = s.slice(0, i);
      break;
    }
  }
  s = s.trim();
  return s ? `${s};` : "";
}

/** Whether the text already holds a complete statement (a ; outside quotes). */
function statementEnded(text: string): boolean {
  let quote: string | null = null;
  for (const c of text) {
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"' || c === "`") quote = c;
    else if (c === ";") return true;
  }
  return false;
}

/**
 * Checks SQL against a schema: the schema (only CREATE TABLE / INDEX / VIEW statements are
 * accepted) is built in a private in-memory SQLite database inside a killable child process with
 * bounded time and size, and the statement is prepared there. Nothing is executed; a statement
 * that would write is reported invalid; a bad schema throws an Error starting with `schema: `.
 */
export async function validateSql(sql: string, schema: string, opts?: SchemaCheckOptions): Promise<{ valid: boolean; error?: string }> {
  return checkSqlAgainstSchema(sql, schema, opts);
}

/**
 * llama.cpp's quantized AMX kernels fault (SIGILL) in a process that never asked Linux for the AMX
 * tile state; loading our addon asks for it (see native/kernels.h), once, for the whole process.
 * Only where the CPU has AMX: elsewhere generation needs no native engine of ours.
 */
function requestAmxTiles(): void {
  if (!cpuHasAmxTiles()) return;
  try {
    if (systemInfo().amxTiles === "denied") warn("the OS refused the AMX tile state: llama.cpp's AMX kernels for quantized models would fault on this CPU");
  } catch (err) {
    warn(
      `the native engine did not load, so the AMX tile state was not requested (${(err as Error).message.split("\n")[0]}); on a CPU with AMX, quantized models may fault`,
    );
  }
}

type TokenCheck = (state: LlamaGrammarEvaluationState, token: Token) => boolean;

/**
 * Whether a token may come next under a grammar state: node-llama-cpp's single-token grammar check
 * (llama_sampler_apply on one candidate). Asked with an end-of-generation token, it says whether
 * the text so far is complete under the grammar (llama.cpp allows the end only when a parse is
 * complete). node-llama-cpp 3.21 keeps it internal (its speculative decoding uses it), so it is
 * reached through its bindings; without it, constrained decoding stops with a clear error.
 */
function grammarTokenCheck(model: LlamaModel): TokenCheck {
  type Sampler = { canBeNextTokenForGrammarEvaluationState?: (state: unknown, token: number) => boolean };
  const sampler = (model as unknown as { _llama?: { _bindings?: { AddonSampler?: Sampler } } })._llama?._bindings?.AddonSampler;
  const check = sampler?.canBeNextTokenForGrammarEvaluationState;
  if (typeof check !== "function")
    throw new Error(
      "constrained decoding: this node-llama-cpp has no AddonSampler.canBeNextTokenForGrammarEvaluationState (written against 3.21), needed to end answers within the token budget",
    );
  return (state, token) => check.call(sampler, (state as unknown as { _state: unknown })._state, token);
}

/** A schema's grammar: for llama.cpp, which constrains the tokens, and parsed here, to close answers. */
interface SchemaGrammar {
  llama: LlamaGrammar;
  gbnf: Gbnf;
  /** what the grammar left out or checks loosely (sqlGrammar's notes) */
  notes: string[];
}

/**
 * The text decoded so far, followed through the grammar (src/formats/gbnf.ts), token by token: for
 * each prefix, the shortest text that would complete it. Detokenized text that does not extend
 * what was followed (a token that completes a multi-byte character) is followed again from the start.
 */
class Closer {
  private follower: GbnfFollower;
  private text = "";
  /** after each token: the tokens so far, where the follower was, its shortest completion's length */
  private readonly marks: { at: number; follower: GbnfFollower; length: number }[] = [];
  constructor(private readonly gbnf: Gbnf) {
    this.follower = new GbnfFollower(gbnf);
    this.marks.push({ at: 0, follower: this.follower.clone(), length: this.follower.completionLength });
  }
  /** follows the text of the `at` tokens decoded so far; false once it left the grammar */
  follow(text: string, at: number): boolean {
    if (!text.startsWith(this.text)) [this.follower, this.text] = [new GbnfFollower(this.gbnf), ""];
    this.follower.feed(text.slice(this.text.length));
    this.text = text;
    if (!this.follower.alive) return false;
    this.marks.push({ at, follower: this.follower.clone(), length: this.follower.completionLength });
    return true;
  }
  /** the token counts after which the text was complete */
  completeAt(): number[] {
    return this.marks.filter((m) => m.length === 0).map((m) => m.at);
  }
  /**
   * Ways to end the answer, the most of the model's tokens kept first: a prefix and its shortest
   * completion, whose tokens together fit in `maxTokens` (a complete prefix needs none). A close of
   * L characters takes at most L tokens and at least one, so few are tokenized.
   */
  *closes(tokenize: (text: string) => Token[], maxTokens: number): Generator<Close> {
    for (let i = this.marks.length - 1; i >= 0; i--) {
      const m = this.marks[i];
      if (m.length === 0) yield { at: m.at, text: "", tokens: 0 };
      else if (m.at + 1 <= maxTokens) {
        const text = m.follower.completion(keywordRule)!;
        const tokens = tokenize(text).length;
        if (m.at + tokens <= maxTokens) yield { at: m.at, text, tokens };
      }
    }
  }
}

/** Ways to end an answer checked in SQLite, best first, when the token budget runs out. */
const MAX_PREFIX_CHECKS = 16;

/** A way to end a constrained answer: its first `at` tokens, then `text` (`tokens` tokens) that completes them. */
interface Close {
  at: number;
  text: string;
  tokens: number;
}

/**
 * How a constrained answer ends when the budget (or time) runs out first: the first of `closes`
 * (best first: the most of the model's text kept) that SQLite prepares, of the 16 best that fit the
 * budget; when none fits (a budget of a few tokens), the best one past it.
 */
async function endConstrained(o: {
  out: string;
  /** ways to end, best first, within a budget of tokens */
  closes: (maxTokens: number) => Iterable<Close>;
  maxTokens: number;
  /** why the text was not followed to its end here (then only its complete prefixes are ways to end) */
  lost?: string;
  textOf: (tokens: number) => string;
  schema?: string;
}): Promise<{ sql: string; complete: boolean; note: string }> {
  const lost = o.lost ? ` (${o.lost})` : "";
  let refused = 0;
  const attempt = async (c: Close) => {
    const sql = extractSql(o.textOf(c.at) + c.text);
    const checked = o.schema
      ? await validateSql(sql, o.schema).catch((err: Error) => ({ valid: true, error: `not checked in SQLite: ${err.message}` }))
      : { valid: true };
    if (!checked.valid) return void refused++;
    const over = c.at + c.tokens > o.maxTokens ? `, ${c.at + c.tokens - o.maxTokens} past the budget: no shorter way fitted` : "";
    const what = c.text
      ? `closed after its first ${c.at} tokens with the shortest completion the schema's grammar allows, ${JSON.stringify(c.text)} (${c.tokens} token${c.tokens === 1 ? "" : "s"}${over})`
      : `answered with its first ${c.at} tokens, a complete statement`;
    const also = [refused ? `SQLite refused the ${refused} longer ones` : "", checked.error ?? ""].filter(Boolean);
    return { sql, complete: true, note: `${o.out}; ${what}${also.length ? ` (${also.join("; ")})` : ""}${lost}` };
  };
  for (const c of o.closes(o.maxTokens)) {
    const ended = await attempt(c);
    if (ended) return ended;
    if (refused >= MAX_PREFIX_CHECKS) break;
  }
  const [past] = refused ? [] : o.closes(Infinity); // nothing fitted the budget
  const ended = past && (await attempt(past));
  if (ended) return ended;
  const none = refused ? `SQLite refused the ${refused} that did` : "none did";
  return {
    sql: extractSql(o.textOf(Infinity)),
    complete: false,
    note: `${o.out}; no prefix of it could be completed within the budget and prepared (${none})${lost}`,
  };
}

/** Schemas with more tables than this are decoded without the grammar (with a warning). */
export const MAX_CONSTRAINED_TABLES = 100;

export class SqlGenerator {
  readonly modelPath: string;
  readonly adapterPath: string | undefined;
  readonly template: string;
  /** where node-llama-cpp decodes: cpu, cuda, metal or vulkan */
  readonly device: string;
  private readonly free: LlamaContextSequence[];
  private readonly waiting: (() => void)[] = [];
  /** the training prompt (src/train/prompt.ts) and the tokens that end the SQL */
  private readonly prompts: PromptBuilder;
  /** grammars of recent schemas, by schema text (most recent last) */
  private readonly grammars = new Map<string, Promise<SchemaGrammar | null>>();

  private constructor(
    private readonly model: LlamaModel,
    private readonly contexts: LlamaContext[],
    opts: { modelPath: string; adapterPath?: string; template: string; device: string; prompts: PromptBuilder },
  ) {
    this.device = opts.device;
    this.modelPath = opts.modelPath;
    this.adapterPath = opts.adapterPath;
    this.template = opts.template;
    this.prompts = opts.prompts;
    // one single-sequence context per parallel slot, reused from question to question
    this.free = contexts.map((c) => c.getSequence());
  }

  /** questions decoded at the same time */
  get parallel(): number {
    return this.contexts.length;
  }

  /** Loads the model (and adapter) once; reuse the generator for every question. */
  static async load(o: GeneratorOptions): Promise<SqlGenerator> {
    const a = o.adapter ? resolveAdapter(o.adapter) : {};
    const modelPath = o.model ? await resolveModelPath(o.model, { label: "model" }) : a.baseModel;
    if (!modelPath) throw new Error("model: give the base model GGUF (no adapter folder with a recorded base was given)");
    const chatTemplate = ggufChatTemplate(checkModelFile(modelPath)); // llama.cpp aborts the process on files our reader rejects
    const parallel = o.parallel ?? 4;
    if (!Number.isInteger(parallel) || parallel < 1) throw new TypeError(`parallel: expected an integer >= 1, got ${parallel}`);
    // checked before anything loads: past the load, a failure reads as an adapter that does not fit
    const threads =
      o.threads !== undefined
        ? checkThreads("threads", o.threads)
        : fs.statSync(modelPath).size < 200e6
          ? 1
          : Math.max(1, Math.floor(os.availableParallelism() / parallel));
    if (a.adapterFile) checkAdapterFits(modelPath, a.adapterFile);
    requestAmxTiles();
    const llama: Llama = o.device === "cpu" ? await cpuLlama() : await getLlama({ build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath });
    const template = o.template ?? a.template ?? DEFAULT_TEMPLATE;
    let prompts: PromptBuilder;
    try {
      prompts = new PromptBuilder({ path: modelPath, model, chatTemplate }, template);
    } catch (err) {
      await model.dispose();
      throw err;
    }
    try {
      // Parallel questions decode in separate single-sequence contexts over the one loaded model:
      // several sequences in one context gave corrupted outputs under concurrent decoding with
      // node-llama-cpp 3.21.1 (test/generate.test.ts checks 50 concurrent questions).
      // node-llama-cpp's own default thread count decoded 30 tokens of the quickstart model in 17 s
      // on a 2-core machine (1 thread: 25 ms); at TinyLlama shape 2 threads beat 1 (21 vs 15 tokens/s)
      const contexts: LlamaContext[] = [];
      for (let i = 0; i < parallel; i++) {
        contexts.push(
          await model.createContext({
            sequences: 1,
            contextSize: o.contextSize ?? 2048, // schema prompts of Spider reach p95 ~1,100 tokens
            lora: a.adapterFile ? { adapters: [{ filePath: a.adapterFile, scale: 1 }] } : undefined,
            failedCreationRemedy: false,
            threads,
          }),
        );
      }
      return new SqlGenerator(model, contexts, {
        modelPath,
        adapterPath: a.adapterFile,
        template,
        device: llama.gpu || "cpu",
        prompts,
      });
    } catch (err) {
      await model.dispose();
      const msg = (err as Error).message;
      throw new Error(a.adapterFile ? `adapter: ${a.adapterFile} could not be applied to ${modelPath} (${msg}); is it an adapter for this base model?` : msg, {
        cause: err,
      });
    }
  }

  private async acquire(): Promise<LlamaContextSequence> {
    while (this.free.length === 0) await new Promise<void>((r) => this.waiting.push(r));
    return this.free.pop()!;
  }

  private release(s: LlamaContextSequence): void {
    this.free.push(s);
    this.waiting.shift()?.();
  }

  /** The exact training prompt's tokens: BOS + prompt, or the chat template's prompt. */
  promptTokens(question: string, schema?: string, evidence?: string): Token[] {
    return this.prompts.prompt({ question, schema, evidence }) as Token[];
  }

  /**
   * GRPO's sampler: sampling from exactly `input` (the ids the trainer's engine conditions on) at
   * `temperature` with `seed`, unconstrained, or with `schema` under the schema's grammar (the one
   * generate() constrains to; none for a schema past MAX_CONSTRAINED_TABLES, said as generate()
   * says it); the sampled ids, the end token included when it was sampled, and the SQL of their text.
   */
  async sampleIds(
    input: readonly number[],
    o: { maxTokens: number; temperature: number; seed: number; schema?: string },
  ): Promise<{ ids: number[]; sql: string; constrained: boolean }> {
    const grammar = o.schema !== undefined ? await this.grammarFor(o.schema) : null;
    const sequence = await this.acquire();
    const ids: number[] = [];
    try {
      await sequence.clearHistory();
      const stops = this.prompts.stops;
      const state = grammar ? new LlamaGrammarEvaluationState({ model: this.model, grammar: grammar.llama }) : undefined;
      // yieldEogToken: node-llama-cpp otherwise ends at an end-of-generation token without yielding
      // it, and the completion (the ids the loss is taken on) would lack the end token it sampled.
      // topK 0, topP 1, minP 0: the whole distribution softmax(logits / temperature), the one the
      // trainer takes log-probabilities from (node-llama-cpp's defaults, top-k 40 and top-p 0.95,
      // would sample from a truncated one)
      const sampling = { temperature: o.temperature, topK: 0, topP: 1, minP: 0, seed: o.seed };
      const it = sequence.evaluate(input as Token[], { ...sampling, grammarEvaluationState: state, yieldEogToken: true });
      for await (const t of it) {
        ids.push(t);
        if (stops.includes(t) || this.model.isEogToken(t) || ids.length >= o.maxTokens) break;
      }
    } finally {
      this.release(sequence);
    }
    const last = ids[ids.length - 1] as Token | undefined;
    const ended = last !== undefined && (this.prompts.stops.includes(last) || this.model.isEogToken(last));
    const text = this.model.detokenize((ended ? ids.slice(0, -1) : ids) as Token[]);
    return { ids, sql: extractSql(text), constrained: !!grammar };
  }

  /** The schema's grammar (built once per schema text; the last 16 are kept). */
  grammarFor(schema: string): Promise<SchemaGrammar | null> {
    let g = this.grammars.get(schema);
    if (g) this.grammars.delete(schema);
    else {
      // off the event loop (a worker thread, bounded in time and heap): a wide schema's grammar takes a second to build
      g = buildGrammar(schema, MAX_CONSTRAINED_TABLES).then(async (built) => {
        if ("error" in built) throw new Error(built.error);
        if ("skipped" in built) {
          // said, not silent: such a grammar would cost more to build and to decode with than it saves
          warn(`constrained decoding: ${built.skipped}`);
          return null;
        }
        for (const note of built.notes) warn(`constrained decoding: ${note}`);
        const llama = await this.model.llama.createGrammar({ grammar: built.gbnf });
        return { llama, gbnf: built.parsed, notes: built.notes };
      });
      g.catch(() => this.grammars.delete(schema));
    }
    this.grammars.set(schema, g);
    if (this.grammars.size > 16) this.grammars.delete(this.grammars.keys().next().value!);
    return g;
  }

  async generate(o: GenerateOptions): Promise<GenerateResult> {
    if (typeof o.question !== "string" || !o.question.trim()) throw new TypeError("question: expected a non-empty string");
    if (o.decodeTimeoutMs !== undefined && !(typeof o.decodeTimeoutMs === "number" && o.decodeTimeoutMs > 0 && Number.isFinite(o.decodeTimeoutMs)))
      throw new TypeError(`decodeTimeoutMs: expected a positive number of milliseconds, got ${JSON.stringify(o.decodeTimeoutMs)}`);
    if (o.db !== undefined || o.candidates !== undefined) return generateWithCandidates(this, o);
    const maxTokens = o.maxTokens ?? 256;
    if (o.constrain !== undefined && typeof o.constrain !== "boolean")
      throw new TypeError(`constrain: expected true or false, got ${JSON.stringify(o.constrain)}`);
    if (o.constrain && !o.schema) throw new TypeError("constrain: constrained decoding needs a schema (give schema, CREATE TABLE statements)");
    const constrain = !!o.schema && o.constrain !== false;
    // a schema that is going to be built in SQLite is checked before any decoding is spent on it
    if (o.schema && o.validate !== false) schemaStatements(o.schema);
    const t0 = performance.now();
    const grammar = constrain ? await this.grammarFor(o.schema!) : undefined;
    const tokens = this.promptTokens(o.question.trim(), o.schema, o.evidence);
    const sequence = await this.acquire();
    let d: Decoded;
    try {
      await sequence.clearHistory();
      d = await this.decode(sequence, tokens, {
        maxTokens,
        temperature: o.temperature ?? 0,
        grammar: grammar ?? undefined,
        schema: o.schema,
        timeoutMs: o.decodeTimeoutMs,
      });
    } finally {
      this.release(sequence);
    }
    const result: GenerateResult = { sql: d.sql, tokens: d.tokens, ms: performance.now() - t0 };
    if (grammar) result.constrained = true;
    if (grammar?.notes.length) result.grammarNotes = grammar.notes;
    if (d.truncated) Object.assign(result, { truncated: d.truncated, note: d.note });
    if (d.complete === false) Object.assign(result, { valid: false, error: d.note });
    else if (o.schema && o.validate !== false) Object.assign(result, await validateSql(d.sql, o.schema));
    return result;
  }

  /**
   * Decodes one answer on a sequence that holds everything before `input`: until an end token, a
   * `;` outside quotes, or maxTokens. With a grammar, the tokens are constrained to it, and after
   * each token the grammar is asked whether the text so far is a complete statement (an end token
   * would be allowed): when the budget runs out first, the answer is the longest such prefix.
   */
  private async decode(
    sequence: LlamaContextSequence,
    input: Token[],
    o: { maxTokens: number; temperature: number; seed?: number; confidence?: boolean; grammar?: SchemaGrammar; schema?: string; timeoutMs?: number },
  ): Promise<Decoded> {
    const deadline = o.timeoutMs !== undefined ? performance.now() + o.timeoutMs : Infinity;
    const stops = this.prompts.stops; // EOS, and the chat template's end of turn
    const state = o.grammar ? new LlamaGrammarEvaluationState({ model: this.model, grammar: o.grammar.llama }) : undefined;
    const canFollow = state ? grammarTokenCheck(this.model) : undefined;
    let closer = o.grammar ? new Closer(o.grammar.gbnf) : undefined;
    const endToken = (this.model.tokens.eos ?? stops[0]) as Token | undefined;
    const toks: Token[] = [];
    let logprob = o.confidence ? 0 : NaN;
    let ends: number[] = []; // lengths of the prefixes that are complete statements, once the closer is lost
    let budget: "budget" | "time" | undefined;
    let lost: string | undefined; // why the text could not be followed through the grammar here
    const sampling = { temperature: o.temperature, ...(o.seed !== undefined ? { seed: o.seed } : {}) };
    for await (const r of sequence.evaluateWithMetadata(input, { confidence: !!o.confidence }, { ...sampling, grammarEvaluationState: state })) {
      if (stops.includes(r.token)) break;
      toks.push(r.token);
      if (o.confidence) logprob += "confidence" in r && typeof r.confidence === "number" ? Math.log(r.confidence) : NaN;
      const text = this.model.detokenize(toks);
      if (statementEnded(text)) break;
      if (closer && !closer.follow(text, toks.length))
        [closer, ends, lost] = [undefined, closer.completeAt(), `the text left the grammar as followed here after ${toks.length} tokens`];
      // without the closer, llama.cpp says whether the text is complete: an end token would be allowed now
      if (!closer && canFollow && endToken !== undefined && canFollow(state!, endToken)) ends.push(toks.length);
      if (toks.length >= o.maxTokens) {
        budget = "budget";
        break;
      }
      if (performance.now() > deadline) {
        budget = "time";
        break;
      }
    }
    const sqlOf = (k: number) => extractSql(this.model.detokenize(toks.slice(0, k)));
    const base = { tokens: toks.length, logprob };
    if (!budget) return { sql: sqlOf(toks.length), ...base, ...(state ? { complete: true } : {}) };
    const out =
      budget === "budget"
        ? `the token budget (${o.maxTokens} tokens) ran out before the statement ended`
        : `the decoding time limit (${o.timeoutMs} ms) ran out after ${toks.length} tokens, before the statement ended`;
    if (!state) return { sql: sqlOf(toks.length), ...base, truncated: budget, note: `${out}; the SQL is cut there` };
    const tokenize = (text: string) => this.model.tokenize(text, false, "trimLeadingSpace");
    const complete = ends.map((at) => ({ at, text: "", tokens: 0 })).reverse();
    const ended = await endConstrained({
      out,
      closes: closer ? (max) => closer.closes(tokenize, max) : () => complete,
      maxTokens: budget === "budget" ? o.maxTokens : Infinity,
      lost,
      textOf: (k) => this.model.detokenize(toks.slice(0, k)),
      schema: o.schema,
    });
    return { ...ended, ...base, truncated: budget };
  }

  /**
   * Candidates for one question on one decoder: the greedy one first (the same as generate()'s),
   * then n - 1 sampled at `temperature` with node-llama-cpp's default top-k 40 / top-p 0.95, seeds
   * seed, seed + 1, ...; the prompt stays in the KV cache between candidates. Sampled ones carry
   * their total log-probability under the distribution they were drawn from. With `constrain` and
   * a schema, each is decoded under the schema's grammar, ending as generate()'s do.
   */
  async decodeCandidates(o: CandidateDecodeOptions): Promise<DecodedCandidate[]> {
    const grammar = o.constrain && o.schema ? await this.grammarFor(o.schema) : undefined;
    const prompt = this.promptTokens(o.question, o.schema, o.evidence);
    const out: DecodedCandidate[] = [];
    const sequence = await this.acquire();
    // decodeTimeoutMs bounds all the candidates together: once it has run out, no more are decoded
    const deadline = o.decodeTimeoutMs !== undefined ? performance.now() + o.decodeTimeoutMs : Infinity;
    try {
      await sequence.clearHistory();
      for (let i = 0; i < o.n; i++) {
        const greedy = i === 0;
        if (!greedy && performance.now() >= deadline) break;
        if (!greedy) await sequence.eraseContextTokenRanges([{ start: prompt.length - 1, end: sequence.nextTokenIndex }]);
        const seed = o.seed + i - 1;
        const input = greedy ? prompt : prompt.slice(-1); // the prompt's last token again, for fresh logits
        const sampling = greedy ? { temperature: 0 } : { temperature: o.temperature, seed, confidence: true };
        const d = await this.decode(sequence, input, {
          maxTokens: o.maxTokens,
          grammar: grammar ?? undefined,
          schema: o.schema,
          timeoutMs: deadline === Infinity ? undefined : Math.max(0, deadline - performance.now()),
          ...sampling,
        });
        const c: DecodedCandidate = greedy
          ? { sql: d.sql, tokens: d.tokens, greedy, logprob: null }
          : { sql: d.sql, tokens: d.tokens, greedy, logprob: d.logprob, seed };
        if (grammar) c.constrained = true;
        if (d.truncated) Object.assign(c, { truncated: d.truncated, note: d.note });
        if (d.complete === false) c.complete = false;
        out.push(c);
      }
    } finally {
      this.release(sequence);
    }
    return out;
  }

  /** Many questions at once, decoded in parallel; results in input order. */
  generateMany(items: GenerateOptions[]): Promise<GenerateResult[]> {
    return Promise.all(items.map((it) => this.generate(it)));
  }

  async dispose(): Promise<void> {
    for (const c of this.contexts) await c.dispose();
    await this.model.dispose();
  }
}

const cache = new Map<string, Promise<SqlGenerator>>();

/**
 * Question to SQL. The model and context are loaded on the first call and reused by later calls
 * with the same model, adapter and device (see SqlGenerator for explicit control).
 */
export async function generateSql(o: GenerateOptions & GeneratorOptions): Promise<GenerateResult> {
  if (typeof o.question !== "string" || !o.question.trim()) throw new TypeError("question: expected a non-empty string");
  const key = JSON.stringify([o.model, o.adapter, o.device, o.template, o.parallel, o.contextSize, o.threads]);
  let g = cache.get(key);
  if (!g) {
    g = SqlGenerator.load(o);
    cache.set(key, g);
    g.catch(() => cache.delete(key));
  }
  return (await g).generate(o);
}

/** Frees the models generateSql() keeps loaded. */
export async function disposeGenerators(): Promise<void> {
  const all = [...cache.values()];
  cache.clear();
  for (const g of all) await (await g.catch(() => null))?.dispose();
}
