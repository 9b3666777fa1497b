// Training configuration: a YAML file, CLI overrides and `--set key=value`, validated as a whole
// before any work. Unknown keys name the closest known key; wrong types say what was expected.
import fs from "node:fs";
import YAML from "yaml";
import { LORA_DEFAULTS, LORA_MODULES, loraModule, type LoraOptions } from "../engine/lora.js";
import { checkThreads } from "../engine/system.js";
import { readUserText } from "../util/user-file.js";
import { DEFAULT_QUERY_MAX_BYTES, DEFAULT_QUERY_TIMEOUT_MS, MAX_QUERY_MAX_BYTES } from "../sql/query-process.js";

export const DEFAULT_TEMPLATE = "[INST] Generate SQL for the following question. Question: {question} [/INST]";
/**
 * The user turn of `data.template: chat` (rendered through the model's own chat template);
 * "chat:<text with {question} and {schema}>" gives another one.
 */
export const CHAT_USER_TEMPLATE = "Generate SQL for the following question. Question: {question}";

export interface TrainConfig {
  /** sft: supervised fine-tuning on the gold SQL; grpo: reinforcement learning with an execution reward (the rl section) */
  method: "sft" | "grpo";
  model: { path: string; dtype: "auto" | "bf16" | "f16" | "f32" };
  lora: {
    r: number;
    alpha: number;
    dropout: number;
    target_modules: string[];
    use_rslora: boolean;
    init_adapter: string | null;
    seed: number;
  };
  data: {
    path: string | null;
    train_path: string | null;
    eval_path: string | null;
    format: "auto" | "csv" | "jsonl" | "spider";
    columns: { question: string; sql: string; schema: string | null; db: string };
    tables_path: string | null;
    db: string | null;
    db_dir: string | null;
    split: number[];
    shuffle: boolean;
    seed: number;
    max_seq_len: number;
    too_long: "skip" | "truncate";
    template: string;
    loss_on: "completion" | "all";
    group_by_length: boolean;
  };
  train: {
    epochs: number;
    max_steps: number | null;
    batch_size: number;
    grad_accum: number;
    lr: number;
    lr_schedule: "cosine" | "linear" | "constant";
    warmup_steps: number;
    weight_decay: number;
    max_grad_norm: number;
    beta1: number;
    beta2: number;
    eps: number;
    eval_every: number;
    eval_execution: boolean;
    eval_execution_rows: number | null;
    eval_execution_timeout_ms: number;
    eval_execution_max_bytes: number;
    keep_distinct: boolean;
    save_every: number;
    keep_checkpoints: number;
    seed: number;
    threads: number;
    device: "auto" | "cpu" | "cuda" | "metal";
    memory: "fast" | "lean";
    gradient_checkpointing: "auto" | "on" | "off";
  };
  rl: {
    prompts_per_step: number;
    group_size: number;
    temperature: number;
    max_new_tokens: number;
    constrained: boolean;
    valid_sql_reward: number;
    scale_rewards: "group" | "none";
    clip_eps: number;
    kl_coef: number;
    updates_per_batch: number;
    reference: "init" | "base";
  };
  output: { dir: string };
}

type Kind = "string" | "number" | "integer" | "boolean" | "string[]" | "number[]";
interface Field {
  kind: Kind;
  nullable?: boolean;
  values?: readonly string[];
  min?: number;
  max?: number;
  /** the bound is exclusive */
  minExclusive?: boolean;
  maxExclusive?: boolean;
  doc: string;
}

/** Every key, its type and meaning; the defaults are in DEFAULTS. */
/** A config YAML larger than this is refused before it is parsed. */
export const MAX_CONFIG_BYTES = 16 * 2 ** 20;

export const SCHEMA: Record<string, Field> = {
  method: { kind: "string", values: ["sft", "grpo"], doc: "sft: fine-tune on the gold SQL; grpo: reinforcement learning with an execution reward (rl.*)" },
  "model.path": {
    kind: "string",
    doc: "a Llama GGUF (F32/F16/BF16), a Hugging Face checkpoint folder, a hub repository owner/name[@revision] (downloaded and converted on first use), hf:owner/repo/file.gguf, or builtin:tiny",
  },
  "model.dtype": {
    kind: "string",
    values: ["auto", "bf16", "f16", "f32"],
    doc: "weight type of the GGUF a Hugging Face checkpoint (folder or hub repository) is converted to; auto keeps the checkpoint's precision",
  },
  "lora.r": { kind: "integer", min: 1, doc: "LoRA rank" },
  "lora.alpha": { kind: "number", min: 0, minExclusive: true, doc: "LoRA alpha: the update is scaled by alpha / r" },
  "lora.dropout": { kind: "number", min: 0, max: 1, maxExclusive: true, doc: "dropout on the LoRA branch input" },
  "lora.target_modules": { kind: "string[]", doc: `${LORA_MODULES.map((m) => m.hf).join(", ")} (or ${LORA_MODULES.map((m) => m.short).join(", ")})` },
  "lora.use_rslora": { kind: "boolean", doc: "scale by alpha / sqrt(r) instead of alpha / r" },
  "lora.init_adapter": { kind: "string", nullable: true, doc: "start from this GGUF LoRA adapter instead of a fresh one" },
  "lora.seed": { kind: "integer", min: 0, doc: "seed of the adapter initialisation and dropout" },
  "data.path": { kind: "string", nullable: true, doc: "one dataset file, split into train/eval/test by data.split" },
  "data.train_path": { kind: "string", nullable: true, doc: "an explicit training file (bypasses the split)" },
  "data.eval_path": { kind: "string", nullable: true, doc: "an explicit evaluation file (with data.train_path)" },
  "data.format": { kind: "string", values: ["auto", "csv", "jsonl", "spider"], doc: "file format; auto picks by extension" },
  "data.columns.question": { kind: "string", doc: "CSV column / JSON field holding the question" },
  "data.columns.sql": { kind: "string", doc: "CSV column / JSON field holding the SQL" },
  "data.columns.schema": { kind: "string", nullable: true, doc: "optional column / field with the schema text (for {schema})" },
  "data.columns.db": {
    kind: "string",
    doc: "CSV column / JSONL field with the row's SQLite database (a path relative to the data file), for execution accuracy",
  },
  "data.tables_path": { kind: "string", nullable: true, doc: "Spider tables.json, for {schema} in Spider-format data" },
  "data.db": { kind: "string", nullable: true, doc: "one SQLite database for every row (a row's own data.columns.db wins)" },
  "data.db_dir": {
    kind: "string",
    nullable: true,
    doc: "Spider/BIRD JSON: databases as <dir>/<db_id>/<db_id>.sqlite; null: database/ (Spider) or <split>_databases/ (BIRD) beside the JSON when there; none: no databases",
  },
  "data.split": { kind: "number[]", doc: "train/eval/test fractions, e.g. [0.9, 0.05, 0.05]" },
  "data.shuffle": { kind: "boolean", doc: "shuffle before splitting (false keeps file order)" },
  "data.seed": { kind: "integer", min: 0, doc: "seed of the split shuffle" },
  "data.max_seq_len": { kind: "integer", min: 4, doc: "longest example in tokens, BOS and EOS included" },
  "data.too_long": { kind: "string", values: ["skip", "truncate"], doc: "longer examples are skipped, or their prompt is cut from the left" },
  "data.template": {
    kind: "string",
    doc: 'prompt template with {question} and optionally {schema} and {evidence} (BIRD\'s hint; empty when a row has none); "chat" (or "chat:<user turn with {question}>") renders it through the model\'s chat template',
  },
  "data.loss_on": { kind: "string", values: ["completion", "all"], doc: "which tokens carry the loss: the SQL and EOS, or all but BOS" },
  "data.group_by_length": { kind: "boolean", doc: "batch examples of similar length together" },
  "train.epochs": { kind: "number", min: 0, minExclusive: true, doc: "passes over the training split" },
  "train.max_steps": { kind: "integer", min: 1, nullable: true, doc: "stop after this many optimizer steps (overrides epochs)" },
  "train.batch_size": { kind: "integer", min: 1, doc: "examples per micro-batch" },
  "train.grad_accum": { kind: "integer", min: 1, doc: "micro-batches per optimizer step" },
  "train.lr": { kind: "number", min: 0, doc: "peak learning rate" },
  "train.lr_schedule": { kind: "string", values: ["cosine", "linear", "constant"], doc: "decay after warmup" },
  "train.warmup_steps": { kind: "integer", min: 0, doc: "linear warmup steps" },
  "train.weight_decay": { kind: "number", min: 0, doc: "AdamW decoupled weight decay" },
  "train.max_grad_norm": { kind: "number", min: 0, doc: "clip the global gradient norm (0: off)" },
  "train.beta1": { kind: "number", min: 0, max: 1, maxExclusive: true, doc: "AdamW beta1" },
  "train.beta2": { kind: "number", min: 0, max: 1, maxExclusive: true, doc: "AdamW beta2" },
  "train.eps": { kind: "number", min: 0, minExclusive: true, doc: "AdamW epsilon" },
  "train.eval_every": { kind: "integer", min: 0, doc: "evaluate every N optimizer steps (0: only at start and end)" },
  "train.eval_execution": {
    kind: "boolean",
    doc: "at every evaluation, greedy-decode the eval rows with the adapter, run them on their databases and log eval_ex; best_model/ keeps the best",
  },
  "train.eval_execution_rows": {
    kind: "integer",
    min: 1,
    nullable: true,
    doc: "eval_execution on a fixed sample of this many eval rows (seeded by train.seed; null: all); in GRPO also the sample of training rows train_ex is measured on",
  },
  "train.eval_execution_timeout_ms": {
    kind: "integer",
    min: 1,
    max: 600_000,
    doc: "eval_execution: wall-clock limit of each query (gold or decoded) in ms; a decoded query past it is killed and scores 0",
  },
  "train.eval_execution_max_bytes": {
    kind: "integer",
    min: 1,
    max: MAX_QUERY_MAX_BYTES,
    doc: "eval_execution: byte cap of each query's result, counted as its rows stream; a decoded query past it scores 0",
  },
  "train.keep_distinct": {
    kind: "boolean",
    doc: "execution accuracy runs DISTINCT as written (the official evaluator's keep_distinct); default: taken out of both queries",
  },
  "train.save_every": { kind: "integer", min: 0, doc: "checkpoint every N optimizer steps (0: never)" },
  "train.keep_checkpoints": { kind: "integer", min: 1, doc: "keep the last K checkpoints" },
  "train.seed": { kind: "integer", min: 0, doc: "seed of the training order" },
  "train.threads": { kind: "integer", min: 0, doc: "CPU threads (0: all cores)" },
  "train.device": { kind: "string", values: ["auto", "cpu", "cuda", "metal"], doc: "compute device" },
  "train.memory": {
    kind: "string",
    values: ["fast", "lean"],
    doc: "fast keeps a transposed copy of each frozen matrix (2x weight memory); lean makes them on the fly",
  },
  "train.gradient_checkpointing": {
    kind: "string",
    values: ["auto", "on", "off"],
    doc: "recompute each layer in the backward pass (4.9x less activation memory, ~20-30% more time at 1,024 tokens); auto: on with memory lean",
  },
  "rl.prompts_per_step": { kind: "integer", min: 1, doc: "GRPO: questions drawn per step" },
  "rl.group_size": { kind: "integer", min: 2, doc: "GRPO: completions sampled per question" },
  "rl.temperature": { kind: "number", min: 0, minExclusive: true, doc: "GRPO: sampling temperature (the log-probabilities are taken at it too)" },
  "rl.max_new_tokens": { kind: "integer", min: 1, doc: "GRPO: longest sampled completion in tokens" },
  "rl.constrained": {
    kind: "boolean",
    doc:
      "GRPO: sample completions under the row schema's grammar (as generate's constrain); biased: the engine's log-probabilities " +
      "are those of the unmasked model, so the ratio and the KL are taken under a distribution other than the masked one that sampled",
  },
  "rl.valid_sql_reward": { kind: "number", min: 0, doc: "GRPO: reward added for SQL that runs on the database" },
  "rl.scale_rewards": { kind: "string", values: ["group", "none"], doc: "GRPO: divide advantages by the group's std (+1e-4), or not" },
  "rl.clip_eps": { kind: "number", min: 0, max: 1, maxExclusive: true, doc: "GRPO: PPO clip range epsilon" },
  "rl.kl_coef": { kind: "number", min: 0, doc: "GRPO: beta of the k3 KL term to the reference policy" },
  "rl.updates_per_batch": { kind: "integer", min: 1, doc: "GRPO: optimizer steps on one sampled batch (mu)" },
  "rl.reference": { kind: "string", values: ["init", "base"], doc: "GRPO: the KL reference: the starting adapter (init) or the bare base model" },
  "output.dir": { kind: "string", doc: "where checkpoints, final_model/, metrics.jsonl and the loss curve go" },
};

/**
 * Training's one departure from the LoRA defaults of src/engine/lora.ts (PEFT's, dropout 0): the
 * reference job (TinyLlama on Spider, the seed's run) trains with dropout 0.05.
 */
const REFERENCE_JOB_DROPOUT = 0.05;

/** The engine's LoRA options for a config's `lora` section (the config's key names differ). */
export function engineLoraOptions(l: TrainConfig["lora"]): LoraOptions {
  return { r: l.r, alpha: l.alpha, dropout: l.dropout, rslora: l.use_rslora, targetModules: l.target_modules, seed: l.seed };
}

export const DEFAULTS: TrainConfig = {
  method: "sft",
  model: { path: "", dtype: "auto" },
  lora: {
    r: LORA_DEFAULTS.r,
    alpha: LORA_DEFAULTS.alpha,
    dropout: REFERENCE_JOB_DROPOUT,
    target_modules: LORA_DEFAULTS.targetModules.map((t) => loraModule(t).hf),
    use_rslora: LORA_DEFAULTS.rslora,
    init_adapter: null,
    seed: LORA_DEFAULTS.seed,
  },
  data: {
    path: null,
    train_path: null,
    eval_path: null,
    format: "auto",
    columns: { question: "text_query", sql: "sql_command", schema: null, db: "db" },
    tables_path: null,
    db: null,
    db_dir: null,
    split: [0.9, 0.05, 0.05],
    shuffle: true,
    seed: 42,
    max_seq_len: 256,
    too_long: "skip",
    template: DEFAULT_TEMPLATE,
    loss_on: "completion",
    group_by_length: false,
  },
  train: {
    epochs: 3,
    max_steps: null,
    batch_size: 1,
    grad_accum: 16,
    lr: 2e-4,
    lr_schedule: "cosine",
    warmup_steps: 0,
    weight_decay: 0,
    max_grad_norm: 1,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    eval_every: 100,
    eval_execution: false,
    eval_execution_rows: null,
    eval_execution_timeout_ms: DEFAULT_QUERY_TIMEOUT_MS,
    eval_execution_max_bytes: DEFAULT_QUERY_MAX_BYTES,
    keep_distinct: false,
    save_every: 200,
    keep_checkpoints: 3,
    seed: 42,
    threads: 0,
    device: "auto",
    memory: "fast",
    gradient_checkpointing: "auto",
  },
  rl: {
    prompts_per_step: 4,
    group_size: 8,
    temperature: 1.0,
    max_new_tokens: 128,
    constrained: false,
    valid_sql_reward: 0,
    scale_rewards: "group",
    clip_eps: 0.2,
    kl_coef: 0.0,
    updates_per_batch: 1,
    reference: "init",
  },
  output: { dir: "outputs/run" },
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/** Names other trainers (HF Trainer, PEFT, the seed's Python) use for our keys. */
const ALIASES: Record<string, string> = {
  learning_rate: "train.lr",
  lr_scheduler_type: "train.lr_schedule",
  num_train_epochs: "train.epochs",
  num_epochs: "train.epochs",
  per_device_train_batch_size: "train.batch_size",
  gradient_accumulation_steps: "train.grad_accum",
  max_grad: "train.max_grad_norm",
  clip: "train.max_grad_norm",
  eval_steps: "train.eval_every",
  save_steps: "train.save_every",
  save_total_limit: "train.keep_checkpoints",
  output_dir: "output.dir",
  rank: "lora.r",
  lora_r: "lora.r",
  lora_alpha: "lora.alpha",
  lora_dropout: "lora.dropout",
  rslora: "lora.use_rslora",
  targets: "lora.target_modules",
  max_length: "data.max_seq_len",
  max_len: "data.max_seq_len",
  model_name: "model.path",
  model_name_or_path: "model.path",
};

/**
 * The known key closest to `key`: an alias, else the nearest key or alias name in the same section
 * (`train.lerning_rate` -> train.lr, through the alias learning_rate), else the nearest overall.
 */
export function closestKey(key: string): string {
  const parts = key.split(".");
  const last = parts[parts.length - 1];
  if (ALIASES[last]) return ALIASES[last];
  const names = [...Object.keys(SCHEMA).map((k) => ({ name: k.split(".").pop()!, key: k })), ...Object.entries(ALIASES).map(([name, k]) => ({ name, key: k }))];
  const nearest = <T extends { key: string }>(cands: T[], of: (c: T) => string, target: string) =>
    cands.map((c) => ({ key: c.key, d: levenshtein(target, of(c)) })).sort((a, b) => a.d - b.d)[0];
  if (parts.length > 1) {
    const section = names.filter((n) => n.key.startsWith(parts[0] + "."));
    const best = section.length ? nearest(section, (n) => n.name, last) : undefined;
    if (best && best.d <= Math.max(2, Math.floor(last.length / 2))) return best.key;
  }
  const byLast = nearest(names, (n) => n.name, last);
  const byFull = nearest(
    Object.keys(SCHEMA).map((k) => ({ key: k })),
    (c) => c.key,
    key,
  );
  return byLast.d <= byFull.d ? byLast.key : byFull.key;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `a list (${JSON.stringify(v)})`;
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${String(v)}`;
}

function checkField(key: string, f: Field, v: unknown, where: string): void {
  const bad = (expected: string): never => {
    throw new ConfigError(`${where}${key}: expected ${expected}, got ${describe(v)}`);
  };
  if (v === null) {
    if (f.nullable) return;
    bad(`${expectedOf(f)} (it cannot be null)`);
  }
  switch (f.kind) {
    case "string":
      if (typeof v !== "string") bad(expectedOf(f));
      if (f.values && !f.values.includes(v as string)) bad(expectedOf(f));
      if (!f.values && v === "" && key !== "data.template") bad("a non-empty string");
      return;
    case "boolean":
      if (typeof v !== "boolean") bad("true or false");
      return;
    case "string[]":
      if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string" && x !== "")) bad("a non-empty list of names");
      return;
    case "number[]":
      if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isFinite(x))) bad("a list of numbers");
      return;
    case "number":
    case "integer": {
      if (typeof v !== "number" || !Number.isFinite(v)) bad(expectedOf(f));
      const n = v as number;
      if (f.kind === "integer" && !Number.isInteger(n)) bad(expectedOf(f));
      if (f.min !== undefined && (f.minExclusive ? n <= f.min : n < f.min)) bad(expectedOf(f));
      if (f.max !== undefined && (f.maxExclusive ? n >= f.max : n > f.max)) bad(expectedOf(f));
    }
  }
}

function expectedOf(f: Field): string {
  if (f.values) return `one of ${f.values.join(", ")}`;
  const what = f.kind === "integer" ? "an integer" : f.kind === "number" ? "a number" : f.kind === "string" ? "a string" : f.kind;
  const lo = f.min !== undefined ? `${f.minExclusive ? ">" : ">="} ${f.min}` : "";
  const hi = f.max !== undefined ? `${f.maxExclusive ? "<" : "<="} ${f.max}` : "";
  const range = [lo, hi].filter(Boolean).join(" and ");
  return range ? `${what} ${range}` : what;
}

/** Flattens a nested mapping into dotted keys, checking for unknown keys on the way. */
function flatten(obj: Record<string, unknown>, prefix: string, out: Map<string, unknown>, where: string): void {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (key in SCHEMA) {
      out.set(key, v);
    } else if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(SCHEMA).some((s) => s.startsWith(key + "."))) {
      flatten(v as Record<string, unknown>, key, out, where);
    } else if (!prefix && v !== null && typeof v === "object" && !Array.isArray(v)) {
      const groups = [...new Set(Object.keys(SCHEMA).map((k) => k.split(".")[0]))];
      const near = groups.map((g) => ({ g, d: levenshtein(g, k) })).sort((a, b) => a.d - b.d)[0];
      throw new ConfigError(`${where}unknown section '${key}'; did you mean '${near.g}'? (sections: ${groups.join(", ")})`);
    } else {
      throw new ConfigError(`${where}unknown key '${key}'; did you mean '${closestKey(key)}'?`);
    }
  }
}

function setPath(cfg: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split(".");
  let o = cfg;
  for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[parts[parts.length - 1]] = value;
}

export function getPath(cfg: TrainConfig, key: string): unknown {
  return key.split(".").reduce<unknown>((o, p) => (o as Record<string, unknown>)[p], cfg);
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends (infer U)[] ? U[] : T[K] extends object | null ? DeepPartial<T[K]> : T[K] };

export interface ConfigSources {
  /** YAML file */
  file?: string;
  /** settings as a nested object, applied after the file (as trainSft() takes them) */
  object?: DeepPartial<TrainConfig>;
  /** already-parsed overrides by dotted key (CLI flags) */
  overrides?: Record<string, unknown>;
  /** `key=value` strings; the value is parsed as YAML (numbers, booleans, lists) */
  set?: string[];
}

/** Reads, merges and validates a configuration. Throws ConfigError naming the key and the problem. */
export function loadConfig(src: ConfigSources): TrainConfig {
  const cfg: TrainConfig = structuredClone(DEFAULTS);
  const apply = (values: Map<string, unknown>, where: string) => {
    for (const [k, v] of values) {
      checkField(k, SCHEMA[k], v, where);
      setPath(cfg as unknown as Record<string, unknown>, k, v);
    }
  };
  if (src.file) {
    if (!fs.existsSync(src.file)) throw new ConfigError(`config file not found: ${src.file}`);
    let text: string;
    try {
      text = readUserText(src.file, { label: "--config", maxBytes: MAX_CONFIG_BYTES, what: "a config file" });
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    let doc: unknown;
    try {
      doc = YAML.parse(text);
    } catch (err) {
      throw new ConfigError(`${src.file}: invalid YAML: ${(err as Error).message}`);
    }
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigError(`${src.file}: expected a mapping of settings at the top level`);
      const flat = new Map<string, unknown>();
      flatten(doc as Record<string, unknown>, "", flat, `${src.file}: `);
      apply(flat, `${src.file}: `);
    }
  }
  if (src.object) {
    const flat = new Map<string, unknown>();
    flatten(src.object as Record<string, unknown>, "", flat, "");
    apply(flat, "");
  }
  const over = new Map<string, unknown>();
  for (const [k, v] of Object.entries(src.overrides ?? {})) {
    if (v === undefined) continue;
    if (!(k in SCHEMA)) throw new ConfigError(`unknown key '${k}'; did you mean '${closestKey(k)}'?`);
    over.set(k, v);
  }
  apply(over, "");
  const sets = new Map<string, unknown>();
  for (const s of src.set ?? []) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--set ${s}: expected key=value`);
    const key = s.slice(0, eq).trim();
    if (!(key in SCHEMA)) throw new ConfigError(`--set: unknown key '${key}'; did you mean '${closestKey(key)}'?`);
    const raw = s.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = SCHEMA[key].kind === "string" ? (raw === "null" ? null : raw) : YAML.parse(raw);
    } catch {
      // keep the raw string: the type check below says what was expected
    }
    sets.set(key, value);
  }
  apply(sets, "--set ");
  validateWhole(cfg);
  return cfg;
}

function validateWhole(cfg: TrainConfig): void {
  try {
    checkThreads("train.threads", cfg.train.threads, null); // the engine warns above the core count
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  for (const t of cfg.lora.target_modules) {
    try {
      loraModule(t, "lora.target_modules");
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
  }
  if (!cfg.model.path)
    throw new ConfigError(
      "model.path: expected a GGUF path (or a checkpoint folder, a hub repository owner/name, or builtin:tiny), got nothing (set it in the config or pass --model)",
    );
  const d = cfg.data;
  if (!d.path && !d.train_path)
    throw new ConfigError("data.path: expected a dataset file (or data.train_path), got nothing (set it in the config or pass --data)");
  if (d.path && d.train_path)
    throw new ConfigError("data.train_path: set either data.path (split by data.split) or data.train_path (explicit files), not both");
  if (d.eval_path && !d.train_path) throw new ConfigError("data.eval_path: needs data.train_path (explicit files bypass the split)");
  if (d.split.length !== 3 || d.split.some((x) => x < 0) || Math.abs(d.split.reduce((a, b) => a + b, 0) - 1) > 1e-9 || d.split[0] <= 0) {
    throw new ConfigError(`data.split: expected three fractions [train, eval, test] that sum to 1, got ${JSON.stringify(d.split)}`);
  }
  const user = d.template === "chat" ? CHAT_USER_TEMPLATE : d.template.startsWith("chat:") ? d.template.slice(5) : d.template;
  if (!user.includes("{question}")) {
    throw new ConfigError(
      `data.template: expected a template containing {question}, "chat", or "chat:" then a user turn containing {question}, got ${JSON.stringify(d.template)}`,
    );
  }
  for (const m of user.match(/\{[a-z_]+\}/g) ?? []) {
    if (m !== "{question}" && m !== "{schema}" && m !== "{evidence}")
      throw new ConfigError(`data.template: unknown placeholder ${m}; use {question}, {schema} and {evidence}`);
  }
}

/** The effective configuration as YAML, for the output folder. */
export function configToYaml(cfg: TrainConfig): string {
  return `# effective configuration written by text2sql\n${YAML.stringify(cfg)}`;
}
