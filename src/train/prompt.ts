// Prompts and tokenization. The prompt and the completion are tokenized separately, as
// BOS + prompt + completion + EOS, so the loss-mask boundary is exact and generation later sees
// exactly the prompt tokens the model was trained on (PromptBuilder, shared with generation).
//
// Two kinds of template (data.template):
// - a text template with {question} and {schema} (the seed's "[INST] ... [/INST]" is the default,
//   for the Llama-2 family): BOS + template text + SQL + EOS;
// - "chat" or "chat:<user turn with {question} and {schema}>": the user turn rendered through the
//   model's own chat template (the GGUF's tokenizer.chat_template, a Jinja template rendered by
//   @huggingface/jinja) with the generation prompt, then the SQL and the template's end-of-turn
//   token (<|eot_id|>, <|im_end|>, ...). The template's own text (special tokens included) is
//   tokenized with special tokens parsed; the question and schema never are.
import { renderJinjaBounded } from "./chat-render.js";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { GgufValueType } from "../formats/gguf.js";
import { checkModelFile } from "../formats/model-check.js";
import { linkSchema, splitSchema } from "../sql/schema-linking.js";
import { CHAT_USER_TEMPLATE, DEFAULT_TEMPLATE } from "./config.js";
import type { Example } from "./data.js";

export { DEFAULT_TEMPLATE, CHAT_USER_TEMPLATE };

/**
 * Fills {question}, {schema} and {evidence} (BIRD's hint; empty for an example without one); a
 * template that wants a schema needs an example that has one.
 */
export function renderPrompt(template: string, ex: { question: string; schema?: string; evidence?: string; source?: string }): string {
  if (template.includes("{schema}") && !ex.schema) {
    throw new Error(`${ex.source ?? "example"}: the template uses {schema} but the example has no schema (set data.columns.schema or data.tables_path)`);
  }
  // one pass, so that a question holding "{schema}" or "{evidence}" is never filled in itself
  return template.replace(/\{(question|schema|evidence)\}/g, (_, k: string) =>
    k === "question" ? ex.question : k === "schema" ? (ex.schema ?? "") : (ex.evidence ?? ""),
  );
}

let llamaPromise: Promise<Llama> | undefined;

/** node-llama-cpp's prebuilt CPU binding, loaded once (tokenizing needs no GPU and no build). */
export function cpuLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error }).catch((err: unknown) => {
    llamaPromise = undefined; // let a later call retry
    throw err;
  });
  return llamaPromise;
}

/** The GGUF's tokenizer.chat_template, if any (the file is read by checkModelFile). */
export function ggufChatTemplate(g: ReturnType<typeof checkModelFile>): string | undefined {
  const v = g.metadata.get("tokenizer.chat_template");
  return v && v.type === GgufValueType.STRING ? v.value : undefined;
}

/** What a PromptBuilder needs of a loaded model: node-llama-cpp's tokenizer and the chat template. */
export interface PromptModel {
  /** the GGUF, for messages */
  readonly path: string;
  readonly model: LlamaModel;
  readonly chatTemplate: string | undefined;
}

/** The model's tokenizer, loaded vocabulary-only through node-llama-cpp. */
export class Tokenizer implements PromptModel {
  private readonly builders = new Map<string, PromptBuilder>();

  private constructor(
    readonly path: string,
    readonly model: LlamaModel,
    readonly bos: number,
    readonly eos: number,
    readonly chatTemplate: string | undefined,
  ) {}

  static async load(modelPath: string): Promise<Tokenizer> {
    const g = checkModelFile(modelPath); // llama.cpp aborts the process on files our reader rejects
    const llama = await cpuLlama();
    const model = await llama.loadModel({ modelPath, vocabOnly: true });
    const bos = model.tokens.bos;
    const eos = model.tokens.eos;
    if (bos == null || eos == null) {
      await model.dispose();
      throw new Error(`${modelPath}: the vocabulary has no BOS or EOS token`);
    }
    return new Tokenizer(modelPath, model, bos, eos, ggufChatTemplate(g));
  }

  /** Token ids of text, without BOS/EOS; special-token text is kept as plain text. */
  encode(text: string): number[] {
    return Array.from(this.model.tokenize(text, false) as Token[], Number);
  }

  decode(tokens: number[]): string {
    return this.model.detokenize(tokens as Token[]);
  }

  /** The prompt builder of a template (made once per template). */
  builder(template: string): PromptBuilder {
    let b = this.builders.get(template);
    if (!b) this.builders.set(template, (b = new PromptBuilder(this, template)));
    return b;
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

/** Whether a data.template is a chat template ("chat" or "chat:<user turn>"). */
export function isChatTemplate(template: string): boolean {
  return template === "chat" || template.startsWith("chat:");
}

/** The user-turn text template of a chat data.template. */
export function chatUserTemplate(template: string): string {
  return template === "chat" ? CHAT_USER_TEMPLATE : template.slice("chat:".length);
}

// Private-use characters: no whitespace (templates trim the content), never in a vocabulary's
// special tokens, and split out of the rendered text before anything is tokenized.
const USER_MARK = "\uE000text2sql-user\uE001";
const ANSWER_MARK = "\uE000text2sql-answer\uE001";
/** A fixed date: Llama 3's template writes today's date otherwise, and the prompt must not change. */
const DATE_STRING = "26 Jul 2024";
/** Chat templates are hostile input (they come inside model files): bounded before rendering. */
const MAX_CHAT_TEMPLATE_CHARS = 256 * 1024;

/**
 * The prompt tokens of an example and the token that ends its completion, for one template: the
 * one place training (encodeExample) and generation (SqlGenerator) build prompts.
 */
export class PromptBuilder {
  /** the token after the SQL: EOS, or the chat template's end of turn */
  readonly end: number;
  /** tokens that end generation (end, and EOS) */
  readonly stops: number[];
  /** the template wants the example's schema */
  readonly usesSchema: boolean;
  private readonly chat?: { before: number[]; after: number[] };
  private readonly bos: number | null;

  constructor(
    private readonly m: PromptModel,
    readonly template: string,
  ) {
    const eos = m.model.tokens.eos;
    if (eos == null) throw new Error(`${m.path}: the vocabulary has no EOS token`);
    this.bos = m.model.tokens.bos;
    if (!isChatTemplate(template)) {
      this.end = eos;
      this.usesSchema = template.includes("{schema}");
    } else {
      const c = renderChatTemplate(m, (t) => this.special(t));
      this.chat = { before: c.before, after: c.after };
      this.end = c.end;
      this.usesSchema = chatUserTemplate(template).includes("{schema}");
    }
    this.stops = [...new Set([this.end, eos])];
  }

  private special(text: string): number[] {
    return Array.from(this.m.model.tokenize(text, true) as Token[], Number);
  }

  private plain(text: string): number[] {
    return Array.from(this.m.model.tokenize(text, false) as Token[], Number);
  }

  /** BOS + template text, or the rendered chat prompt up to the assistant's turn. */
  prompt(ex: { question: string; schema?: string; evidence?: string; source?: string }): number[] {
    if (!this.chat) return [...(this.bos != null ? [this.bos] : []), ...this.plain(renderPrompt(this.template, ex))];
    return [...this.chat.before, ...this.plain(renderPrompt(chatUserTemplate(this.template), ex)), ...this.chat.after];
  }
}

/**
 * The model's chat template rendered around a user turn (by @huggingface/jinja): the tokens before
 * and after the user's text in the generation prompt, and the end-of-turn token (the first token
 * the template writes after an assistant message). Throws naming the GGUF when there is no
 * template or it fails to render.
 */
function renderChatTemplate(m: PromptModel, special: (t: string) => number[]): { before: number[]; after: number[]; end: number } {
  const where = `${m.path}: tokenizer.chat_template`;
  const src = m.chatTemplate;
  if (src === undefined) {
    throw new Error(
      `${m.path}: data.template is "chat" but the model has no chat template (tokenizer.chat_template); use a text template such as the default [INST] one`,
    );
  }
  if (src.length > MAX_CHAT_TEMPLATE_CHARS) throw new Error(`${where}: ${src.length} characters, more than the ${MAX_CHAT_TEMPLATE_CHARS} allowed`);
  const text = (id: number | null): string => (id == null ? "" : m.model.detokenize([id as Token], true));
  const vars = {
    bos_token: text(m.model.tokens.bos),
    eos_token: text(m.model.tokens.eos),
    date_string: DATE_STRING,
    enable_thinking: false, // Qwen3: no reasoning block before the SQL
  };
  let prompt: string;
  let answered: string;
  try {
    const user = { role: "user", content: USER_MARK };
    [prompt, answered] = renderJinjaBounded(src, [
      { ...vars, messages: [user], add_generation_prompt: true },
      { ...vars, messages: [user, { role: "assistant", content: ANSWER_MARK }], add_generation_prompt: false },
    ]) as [string, string];
  } catch (e) {
    throw new Error(`${where} failed to render a user turn (${(e as Error).message}); it is Jinja that @huggingface/jinja must render`, { cause: e });
  }
  const parts = prompt.split(USER_MARK);
  if (parts.length !== 2) throw new Error(`${where}: the rendered prompt holds the user's message ${parts.length - 1} times, expected once`);
  const tail = answered.split(ANSWER_MARK);
  if (tail.length !== 2) throw new Error(`${where}: the rendered conversation holds the assistant's message ${tail.length - 1} times, expected once`);
  const afterAnswer = special(tail[1]!);
  const end = afterAnswer[0];
  const eog = end !== undefined && m.model.isSpecialToken(end as Token);
  if (!eog) {
    throw new Error(`${where}: no special end-of-turn token follows the assistant's message (it is followed by ${JSON.stringify(tail[1]!.slice(0, 40))})`);
  }
  return { before: special(parts[0]!), after: special(parts[1]!), end };
}

export interface Encoded {
  tokens: number[];
  /** 1 marks a target token */
  mask: number[];
  promptLen: number; // BOS + prompt tokens
  completionLen: number; // SQL tokens + EOS
  /** the example did not fit maxSeqLen as written: tables were dropped or the prompt cut */
  truncated: boolean;
  /** CREATE TABLE statements dropped from the schema to fit (those least related to the question) */
  tablesDropped: number;
  source: string;
}

export interface EncodeOptions {
  template: string;
  maxSeqLen: number;
  tooLong: "skip" | "truncate";
  lossOn: "completion" | "all";
}

/**
 * A schema cut to its first `keep` CREATE TABLE statements (the serialisation is deterministic, so
 * the same tables go for the same database every time).
 */
export function keepTables(schema: string, keep: number): string {
  return splitSchema(schema).slice(0, keep).join("\n");
}

/**
 * BOS + prompt + SQL + EOS; null when the example is too long and is skipped. With
 * tooLong = "truncate", a schema in the prompt first loses whole tables, keeping those most related
 * to the question and their foreign-key neighbours (`linkSchema`; counted in `tablesDropped`);
 * only if not even one table fits is the prompt cut from the left instead.
 */
export function encodeExample(tok: Tokenizer, ex: Example, o: EncodeOptions): Encoded | null {
  const b = tok.builder(o.template);
  // the prompt starts with BOS (or the chat template's own start); the first token never carries loss
  let prompt = b.prompt(ex);
  const completion = [...tok.encode(ex.sql), b.end];
  const total = prompt.length + completion.length;
  const truncated = total > o.maxSeqLen;
  let tablesDropped = 0;
  if (truncated && o.tooLong === "truncate" && ex.schema && b.usesSchema) {
    // the tables most related to the question that fit (src/sql/schema-linking.ts)
    const fits = (schema: string) => b.prompt({ ...ex, schema }).length + completion.length <= o.maxSeqLen;
    const linked = linkSchema(ex.schema, ex.question, fits);
    if (linked.kept.length > 0) {
      tablesDropped = linked.dropped.length;
      prompt = b.prompt({ ...ex, schema: linked.schema });
    }
  }
  if (prompt.length + completion.length > o.maxSeqLen) {
    const room = o.maxSeqLen - 1 - completion.length;
    if (o.tooLong === "skip" || room < 1) return null;
    prompt = [prompt[0]!, ...prompt.slice(prompt.length - room)]; // keep the first token and the end of the prompt, next to [/INST]
  }
  const tokens = [...prompt, ...completion];
  const mask = tokens.map((_, i) => (i === 0 ? 0 : o.lossOn === "all" || i >= prompt.length ? 1 : 0));
  return { tokens, mask, promptLen: prompt.length, completionLen: completion.length, truncated, tablesDropped, source: ex.source };
}
