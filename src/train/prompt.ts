// Prompts and tokenization. The prompt and the completion are tokenized separately, as
// BOS + prompt + completion + EOS, so the loss-mask boundary is exact and generation later sees
// exactly the prompt tokens the model was trained on.
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { checkModelFile } from "../models/model-check.js";
import { linkSchema, splitSchema } from "../sql/schema-linking.js";
import { DEFAULT_TEMPLATE } from "./config.js";
import type { Example } from "./data.js";

export { DEFAULT_TEMPLATE };

/** Fills {question} and {schema}; a template that wants a schema needs an example that has one. */
export function renderPrompt(template: string, ex: { question: string; schema?: string; source?: string }): string {
  if (template.includes("{schema}") && !ex.schema) {
    throw new Error(`${ex.source ?? "example"}: the template uses {schema} but the example has no schema (set data.columns.schema or data.tables_path)`);
  }
  return template.replaceAll("{question}", ex.question).replaceAll("{schema}", ex.schema ?? "");
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

/** The model's tokenizer, loaded vocabulary-only through node-llama-cpp. */
export class Tokenizer {
  private constructor(
    private readonly model: LlamaModel,
    readonly bos: number,
    readonly eos: number,
  ) {}

  static async load(modelPath: string): Promise<Tokenizer> {
    checkModelFile(modelPath); // llama.cpp aborts the process on files our reader rejects
    const llama = await cpuLlama();
    const model = await llama.loadModel({ modelPath, vocabOnly: true });
    const bos = model.tokens.bos;
    const eos = model.tokens.eos;
    if (bos == null || eos == null) {
      await model.dispose();
      throw new Error(`${modelPath}: the vocabulary has no BOS or EOS token`);
    }
    return new Tokenizer(model, bos, eos);
  }

  /** Token ids of text, without BOS/EOS; special-token text is kept as plain text. */
  encode(text: string): number[] {
    return Array.from(this.model.tokenize(text, false) as Token[], Number);
  }

  decode(tokens: number[]): string {
    return this.model.detokenize(tokens as Token[]);
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
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
  let prompt = tok.encode(renderPrompt(o.template, ex));
  const completion = [...tok.encode(ex.sql), tok.eos];
  const total = 1 + prompt.length + completion.length;
  const truncated = total > o.maxSeqLen;
  let tablesDropped = 0;
  if (truncated && o.tooLong === "truncate" && ex.schema && o.template.includes("{schema}")) {
    // the tables most related to the question that fit (src/sql/schema-linking.ts)
    const fits = (schema: string) => 1 + tok.encode(renderPrompt(o.template, { ...ex, schema })).length + completion.length <= o.maxSeqLen;
    const linked = linkSchema(ex.schema, ex.question, fits);
    if (linked.kept.length > 0) {
      tablesDropped = linked.dropped.length;
      prompt = tok.encode(renderPrompt(o.template, { ...ex, schema: linked.schema }));
    }
  }
  if (1 + prompt.length + completion.length > o.maxSeqLen) {
    const room = o.maxSeqLen - 1 - completion.length;
    if (o.tooLong === "skip" || room < 1) return null;
    prompt = prompt.slice(prompt.length - room); // keep the end of the prompt, next to [/INST]
  }
  const tokens = [tok.bos, ...prompt, ...completion];
  const mask = tokens.map((_, i) => (i === 0 ? 0 : o.lossOn === "all" || i > prompt.length ? 1 : 0));
  return { tokens, mask, promptLen: 1 + prompt.length, completionLen: completion.length, truncated, tablesDropped, source: ex.source };
}
