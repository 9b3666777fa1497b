#!/usr/bin/env node
// The text2sql command line.
import cliProgress from "cli-progress";
import { Command, Option } from "commander";
import fs from "node:fs";
import path from "node:path";
import { packageRoot } from "../engine/native.js";
import { DEFAULTS, getPath, loadConfig, SCHEMA, type TrainConfig } from "../train/config.js";
import { LoraEngine } from "../engine/engine.js";
import { disposeGenerators, generateSql, resolveAdapter } from "../serve/generate.js";
import { evaluateSql, formatEvalReport } from "../eval/eval.js";
import { MAX_SCHEMA_CHARS } from "../sql/exec-metrics.js";
import { mergeAdapter } from "../adapters/merge.js";
import { buildLlama, localLlamaBuild } from "../serve/llama-build.js";
import { startServer } from "../serve/server.js";
import { formatBytes, formatDuration } from "../util/format.js";
import { listCachedModels, type CachedModel } from "../models/hub-cache.js";
import {
  cacheHome,
  convertCheckpoint,
  convertCheckpointCached,
  MODEL_DTYPES,
  parseHubGgufName,
  pullHubModel,
  removeModel,
  resolveModelPath,
  type ModelDtype,
  type ResolveModelOptions,
} from "../models/model-path.js";
import { systemInfo } from "../engine/system.js";
import { formatSummary, prepareData, trainSft, type TrainSummary } from "../train/trainer.js";

const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version: string };

const program = new Command();
program
  .name("text2sql")
  .description("Fine-tune small Llama-family models with LoRA to turn questions into SQL (no Python).")
  .version(pkg.version);

interface CommonFlags {
  config?: string;
  model?: string;
  dtype?: ModelDtype;
  yes?: boolean;
  data?: string;
  output?: string;
  maxSteps?: string;
  device?: string;
  threads?: string;
  memory?: string;
  set: string[];
  json?: boolean;
  resume?: boolean;
}

function collect(v: string, acc: string[]): string[] {
  return [...acc, v];
}

function withConfigFlags(cmd: Command): Command {
  return cmd
    .option("-c, --config <file>", "YAML config (see configs/; `text2sql keys` lists every key)")
    .option("--model <path>", "model.path: a Llama GGUF, a Hugging Face checkpoint folder, a hub repository owner/name[@revision], hf:owner/repo/file.gguf, or builtin:tiny")
    .addOption(new Option("--dtype <type>", "model.dtype: weight type a Hugging Face checkpoint is converted to (auto: the checkpoint's own)").choices(MODEL_DTYPES))
    .option("-y, --yes", "download model.path from the hub without asking when it is not in the cache")
    .option("--data <file>", "data.path: CSV, JSONL or Spider JSON")
    .option("--output <dir>", "output.dir")
    .option("--max-steps <n>", "train.max_steps")
    .addOption(new Option("--device <device>", "train.device").choices(["auto", "cpu", "cuda", "metal"]))
    .option("--threads <n>", "train.threads (0: all cores)")
    .addOption(new Option("--memory <mode>", "train.memory: fast keeps transposed weight copies (about 2x the model's size); lean makes them on the fly and recomputes layers (about 1.1x)").choices(["fast", "lean"]))
    .option("--set <key=value>", "set any config key, e.g. --set train.lr=1e-4 (repeatable)", collect, [])
    .option("--json", "machine-readable output: one JSON object per line on stdout");
}

function configFrom(o: CommonFlags): TrainConfig {
  const num = (flag: string, v?: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`${flag}: expected a number, got ${JSON.stringify(v)}`);
    return n;
  };
  return loadConfig({
    file: o.config,
    overrides: {
      "model.path": o.model,
      "model.dtype": o.dtype,
      "data.path": o.data,
      "output.dir": o.output,
      "train.max_steps": num("--max-steps", o.maxSteps),
      "train.device": o.device,
      "train.threads": num("--threads", o.threads),
      "train.memory": o.memory,
    },
    set: o.set,
  });
}

const stderrLine = (msg: string) => process.stderr.write(`${msg}\n`);

/**
 * Runs `fn` with Ctrl-C wired to its AbortSignal while a download is in progress: the download
 * stops, the partial files are kept (the next run resumes them) and the process exits 130. During a
 * conversion (which blocks until it is done) Ctrl-C quits at once, leaving no partial GGUF.
 */
async function downloadable<T>(fn: (o: { signal: AbortSignal; onPhase: (phase: "download" | "convert") => void }) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let presses = 0;
  const onSignal = () => {
    if (++presses > 1) process.exit(130);
    ac.abort();
    process.stderr.write("\ntext2sql: stopping the download (Ctrl-C again to quit at once)\n");
  };
  let listening = false;
  const listen = (on: boolean) => {
    if (on === listening) return;
    listening = on;
    for (const sig of ["SIGINT", "SIGTERM"] as const) on ? process.on(sig, onSignal) : process.off(sig, onSignal);
  };
  try {
    return await fn({ signal: ac.signal, onPhase: (phase) => listen(phase === "download") });
  } catch (err) {
    if (ac.signal.aborted) {
      process.stderr.write(`text2sql: ${(err as Error).message}\n`);
      process.stderr.write("text2sql: download interrupted; the partial download is kept and resumes when you run the command again\n");
      process.exit(130);
    }
    throw err;
  } finally {
    listen(false);
  }
}

/** A conversion progress line on a terminal (the conversion blocks, so it is drawn synchronously). */
function convertBar(): ((done: number, total: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return (done, total) => {
    const now = performance.now();
    if (done < total && now - last < 250) return;
    last = now;
    const pct = total ? Math.floor((100 * done) / total) : 100;
    process.stderr.write(`\r\x1b[Kconvert ${String(pct).padStart(3)}% | ${formatBytes(done)}/${formatBytes(total)}${done >= total ? "\n" : ""}`);
  };
}

/** resolveModelPath for a command: progress on stderr, a question (or --yes) before a download, Ctrl-C handled. */
function cliResolveModel(p: string, o: Omit<ResolveModelOptions, "signal" | "onPhase"> = {}): Promise<string> {
  return downloadable(({ signal, onPhase }) => resolveModelPath(p, { log: stderrLine, onConvertProgress: convertBar(), ...o, signal, onPhase }));
}

withConfigFlags(program.command("train"))
  .description("fine-tune a LoRA adapter on question/SQL pairs (Ctrl-C saves a checkpoint; --resume continues)")
  .option("--resume", "continue from the latest checkpoint in output.dir")
  .addHelpText("after", `
Examples:
  npx text2sql train --config configs/quickstart.yaml
  npx text2sql train --config configs/config_spider.yaml --data ../shared/spider/spider_text_sql.csv --max-steps 200
  npx text2sql train --config configs/config_spider.yaml --resume
  npx text2sql train --config configs/config_spider.yaml --model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --dtype bf16 --yes
  npx text2sql train --config configs/quickstart.yaml --model ./my-hf-checkpoint/

model.path (--model) may be a hub repository: it is downloaded into the cache (after a question,
or at once with --yes) and converted to a GGUF once; see \`text2sql model --help\`.

Writes to output.dir: config.yaml (effective config), metrics.jsonl, loss.svg, summary.json,
checkpoints/checkpoint-<step>/ (adapter, optimizer and trainer state; the last train.keep_checkpoints
are kept) and final_model/adapter.gguf (a GGUF LoRA for llama.cpp, Ollama and node-llama-cpp).`)
  .action(async (o: CommonFlags) => {
    const cfg = configFrom(o);
    const json = !!o.json;
    const emit = (obj: object) => process.stdout.write(JSON.stringify(obj) + "\n");
    const onLog = (msg: string) => (json ? emit({ type: "log", message: msg }) : process.stderr.write(`${msg}\n`));
    // the model first (a download or a conversion has its own Ctrl-C); the trainer then finds it resolved
    await cliResolveModel(cfg.model.path, { yes: o.yes, dtype: cfg.model.dtype, log: onLog });
    const tty = !json && process.stderr.isTTY;
    const ac = new AbortController();
    let sigints = 0;
    const onSigint = () => {
      sigints++;
      if (sigints > 1) process.exit(130);
      ac.abort();
      process.stderr.write("\ntext2sql: stopping after the current micro-step and saving a checkpoint (Ctrl-C again to quit at once)\n");
    };
    process.on("SIGINT", onSigint);
    process.on("SIGTERM", onSigint);
    let bar: cliProgress.SingleBar | null = null;
    let lastLine = 0;
    const summary: TrainSummary = await trainSft(cfg, {
      resume: !!o.resume,
      signal: ac.signal,
      command: `npx text2sql ${process.argv.slice(2).filter((a) => a !== "--resume").join(" ")}`,
      onLog,
      onEvalProgress: (done, total, step) => {
        if (json) return;
        if (tty) {
          process.stderr.write(`\r\x1b[Keval @ step ${step}: ${done}/${total} examples`);
        } else if (done === Math.min(total, cfg.train.batch_size)) {
          process.stderr.write(`eval @ step ${step}: ${total} examples...\n`);
        }
      },
      onEval: (e) => {
        if (json) return emit({ type: "eval", ...e });
        const line = `eval @ step ${e.step}: loss ${e.loss.toFixed(4)}, token accuracy ${(100 * e.accuracy).toFixed(1)}%`;
        process.stderr.write((tty ? "\r\x1b[K" : "") + line + "\n");
      },
      onStep: (e) => {
        if (json) return emit({ type: "step", ...e });
        const payload = { loss: e.loss.toFixed(4), lr: e.lr.toExponential(2), tps: e.tokensPerS.toFixed(0), remaining: formatDuration(e.etaS) };
        if (tty) {
          if (!bar) {
            bar = new cliProgress.SingleBar({
              format: "train |{bar}| {value}/{total} steps | loss {loss} | lr {lr} | {tps} tok/s | ETA {remaining}",
              barsize: 24,
              hideCursor: true,
              stream: process.stderr,
            }, cliProgress.Presets.shades_classic);
            bar.start(e.totalSteps, e.step - 1, payload);
          }
          bar.update(e.step, payload);
        } else if (e.step === e.totalSteps || performance.now() - lastLine > 10_000 || e.step === 1) {
          lastLine = performance.now();
          process.stderr.write(`step ${e.step}/${e.totalSteps} | loss ${payload.loss} | lr ${payload.lr} | ${payload.tps} tok/s | ETA ${payload.remaining}\n`);
        }
      },
    });
    (bar as cliProgress.SingleBar | null)?.stop();
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
    if (json) emit({ type: "summary", ...summary });
    else process.stderr.write(`\n${formatSummary(summary)}\n`);
    if (summary.interrupted) process.exit(130);
  });

withConfigFlags(program.command("data"))
  .description("dry run: read, split and tokenize the data, and print its figures (no training)")
  .addHelpText("after", `
Example:
  npx text2sql data --config configs/config_spider.yaml --data ../shared/spider/spider_text_sql.csv`)
  .action(async (o: CommonFlags) => {
    const cfg = configFrom(o);
    const modelPath = await cliResolveModel(cfg.model.path, { yes: o.yes, dtype: cfg.model.dtype });
    const { summary: s } = await prepareData(cfg, modelPath, o.json ? () => {} : (m) => process.stderr.write(m + "\n"));
    if (o.json) {
      console.log(JSON.stringify(s, null, 2));
      return;
    }
    const l = (x: { p50: number; p95: number; max: number; mean: number }) => `p50 ${x.p50}, p95 ${x.p95}, max ${x.max}, mean ${x.mean.toFixed(1)}`;
    console.log(`rows read        ${s.rows} (${s.duplicates} duplicates, kept)`);
    console.log(`split            train ${s.split.train} / eval ${s.split.eval} / test ${s.split.test}`);
    console.log(`prompt tokens    ${l(s.promptTokens)}`);
    console.log(`SQL tokens       ${l(s.completionTokens)}`);
    console.log(`example tokens   ${l(s.totalTokens)} (BOS + prompt + SQL + EOS)`);
    console.log(`over 1,024       ${s.over1024}; over 2,048 ${s.over2048}`);
    console.log(`over ${s.maxSeqLen} tokens  ${s.overMaxSeqLen} (${cfg.data.too_long === "skip" ? `${s.skippedTooLong} skipped` : `${s.truncated} truncated, ${s.skippedTooLong} skipped`})`);
  });

/** A --schema file: a regular file of at most MAX_SCHEMA_CHARS characters (never a device or a pipe without end). */
function readSchemaFile(file: string): string {
  if (!fs.existsSync(file)) throw new Error(`--schema: file not found: ${file}`);
  const st = fs.statSync(file);
  if (!st.isFile()) throw new Error(`--schema: ${file} is not a regular file`);
  if (st.size > 4 * MAX_SCHEMA_CHARS) throw new Error(`--schema: ${file} has ${st.size} bytes; a schema may have at most ${MAX_SCHEMA_CHARS} characters`);
  return fs.readFileSync(file, "utf8");
}

program
  .command("generate")
  .description("turn a question into SQL with a trained adapter (greedy decoding, through node-llama-cpp)")
  .argument("<question...>", "the question (quote it, or pass it as several words)")
  .option("--adapter <path>", "adapter.gguf, or a trainer output / final_model / checkpoint folder", undefined)
  .option("--model <path>", "base model (default: the base recorded in the adapter folder): a GGUF, a checkpoint folder, a hub repository owner/name[@revision] or hf:owner/repo/file.gguf")
  .option("-y, --yes", "download --model from the hub without asking when it is not in the cache")
  .option("--schema <file>", "CREATE TABLE statements: fills {schema} in schema-aware templates and validates the SQL in SQLite")
  .option("--max-tokens <n>", "longest SQL in tokens", "256")
  .addOption(new Option("--device <device>", "where to run").choices(["auto", "cpu"]).default("auto"))
  .option("--threads <n>", "CPU threads")
  .option("--json", "print the whole result as JSON")
  .addHelpText("after", `
Examples:
  npx text2sql generate "How many heads of the departments are older than 56?" --adapter outputs/spider
  npx text2sql generate "Which singers are from France?" --adapter outputs/spider --schema schema.sql --json`)
  .action(async (words: string[], o: { adapter?: string; model?: string; yes?: boolean; schema?: string; maxTokens: string; device: "auto" | "cpu"; threads?: string; json?: boolean }) => {
    const question = words.join(" ");
    if (!o.adapter && !o.model) throw new Error("give --adapter (a trainer output folder) and/or --model (a base GGUF)");
    const schema = o.schema ? readSchemaFile(o.schema) : undefined;
    const maxTokens = Number(o.maxTokens);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`--max-tokens: expected an integer >= 1, got ${JSON.stringify(o.maxTokens)}`);
    const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : undefined;
    const r = await generateSql({
      question,
      adapter: o.adapter,
      model,
      schema,
      maxTokens,
      device: o.device,
      threads: o.threads ? Number(o.threads) : undefined,
      parallel: 1,
    });
    await disposeGenerators();
    if (o.json) console.log(JSON.stringify(r, null, 2));
    else {
      console.log(r.sql);
      if (r.valid === false) console.error(`text2sql: the SQL does not fit the schema: ${r.error}`);
    }
  });

program
  .command("eval")
  .description("score SQL: exact-set match, components, execution accuracy on SQLite, by Spider hardness; eval loss and token accuracy")
  .requiredOption("--data <file>", "Spider JSON with db_id (or a CSV/JSONL the trainer reads, for the metrics that need no database)")
  .option("--tables <file>", "Spider tables.json (schemas for prompts and parsing)")
  .option("--db-dir <dir>", "databases as <dir>/<db_id>/<db_id>.sqlite, for execution accuracy")
  .option("--predictions <file>", "score these predictions (one SQL per line, dataset order) instead of generating")
  .option("--adapter <path>", "adapter or trainer output folder to generate with (and for eval loss / token accuracy)")
  .option("--model <path>", "base model (default: the adapter's recorded base): a GGUF, a checkpoint folder, a hub repository owner/name[@revision] or hf:owner/repo/file.gguf")
  .option("-y, --yes", "download --model from the hub without asking when it is not in the cache")
  .requiredOption("--output <dir>", "where eval.json and predictions.jsonl go")
  .option("--limit <n>", "only the first n examples")
  .option("--parallel <n>", "questions generated at once", "4")
  .option("--threads <n>", "CPU threads")
  .option("--json", "print the report as JSON")
  .addHelpText("after", `
Examples:
  npx text2sql eval --data ../shared/spider/dev.json --tables ../shared/spider/tables.json --predictions gold.sql --output outputs/eval-gold
  npx text2sql eval --data dev.json --tables tables.json --db-dir database/ --adapter outputs/spider-schema --output outputs/eval`)
  .action(async (o: { data: string; tables?: string; dbDir?: string; predictions?: string; adapter?: string; model?: string; yes?: boolean; output: string; limit?: string; parallel: string; threads?: string; json?: boolean }) => {
    const tty = !o.json && process.stderr.isTTY;
    let bar: cliProgress.SingleBar | null = null;
    let phase = "";
    const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : undefined;
    const report = await evaluateSql({
      data: o.data,
      tables: o.tables,
      dbDir: o.dbDir,
      predictions: o.predictions,
      adapter: o.adapter,
      model,
      output: o.output,
      limit: o.limit ? Number(o.limit) : undefined,
      parallel: Number(o.parallel),
      threads: o.threads ? Number(o.threads) : undefined,
      onProgress: (p, done, total) => {
        if (!tty) return;
        if (p !== phase) {
          (bar as cliProgress.SingleBar | null)?.stop();
          phase = p;
          bar = new cliProgress.SingleBar({ format: `${p.padEnd(8)} |{bar}| {value}/{total} | ETA {eta_formatted}`, barsize: 24, stream: process.stderr }, cliProgress.Presets.shades_classic);
          bar.start(total, 0);
        }
        bar?.update(done);
      },
    });
    (bar as cliProgress.SingleBar | null)?.stop();
    if (o.json) console.log(JSON.stringify(report, null, 2));
    else console.log(formatEvalReport(report));
  });

program
  .command("export")
  .description("write base + adapter into a new GGUF (--merge) that loads with no adapter")
  .requiredOption("--merge", "merge the adapter into the base weights (the only export for now: adapters are saved as GGUF LoRA and PEFT already)")
  .requiredOption("--adapter <path>", "adapter.gguf, or a trainer output / final_model / checkpoint folder")
  .requiredOption("--out <file>", "the merged GGUF to write")
  .option("--model <path>", "base model (default: the base recorded in the adapter folder): a GGUF, a checkpoint folder, a hub repository owner/name[@revision] or hf:owner/repo/file.gguf")
  .option("-y, --yes", "download --model from the hub without asking when it is not in the cache")
  .addOption(new Option("--type <type>", "weight type of the merged matrices (default f16, or the base's type when wider)").choices(["f16", "bf16", "f32"]))
  .addHelpText("after", `
Example:
  npx text2sql export --merge --adapter outputs/spider --out tinyllama-spider.gguf`)
  .action(async (o: { adapter: string; out: string; model?: string; yes?: boolean; type?: "f16" | "bf16" | "f32" }) => {
    const a = resolveAdapter(o.adapter);
    const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : a.baseModel;
    if (!model) throw new Error(`--model: the adapter folder records no base model; pass --model base.gguf`);
    const tty = process.stderr.isTTY;
    let bar: cliProgress.SingleBar | null = null;
    const r = await mergeAdapter({
      model,
      adapter: a.adapterFile!,
      out: o.out,
      type: o.type,
      onProgress: (done, total) => {
        if (!tty) return;
        if (!bar) {
          bar = new cliProgress.SingleBar({ format: "merge |{bar}| {value}/{total} tensors | ETA {eta_formatted}", barsize: 24, stream: process.stderr }, cliProgress.Presets.shades_classic);
          bar.start(total, 0);
        }
        bar.update(done);
      },
    });
    (bar as cliProgress.SingleBar | null)?.stop();
    for (const w of r.warnings) process.stderr.write(`text2sql: warning: ${w}\n`);
    process.stderr.write(`text2sql: wrote ${r.out} (${r.type}; ${r.merged} of ${r.tensors} tensors merged) from ${model} + ${a.adapterFile}\n`);
  });

program
  .command("serve")
  .description("serve question → SQL over HTTP (POST /generate_sql, GET /health) with a web page at /")
  .option("--adapter <path>", "adapter.gguf, or a trainer output / final_model / checkpoint folder")
  .option("--model <path>", "base model (default: the base recorded in the adapter folder): a GGUF, a checkpoint folder, a hub repository owner/name[@revision] or hf:owner/repo/file.gguf")
  .option("-y, --yes", "download --model from the hub without asking when it is not in the cache")
  .option("--port <n>", "port", "8080")
  .option("--host <host>", "address to bind; anything but 127.0.0.1 exposes the API to the network", "127.0.0.1")
  .option("--token <token>", "require 'Authorization: Bearer <token>' on the API (default: $TEXT2SQL_TOKEN)")
  .option("--parallel <n>", "questions decoded at once (parallel decoders over the one loaded model)", "4")
  .option("--queue <n>", "requests that may wait beyond those being decoded (more get 503)", "64")
  .addOption(new Option("--device <device>", "where to run").choices(["auto", "cpu"]).default("auto"))
  .option("--threads <n>", "CPU threads for decoding")
  .addHelpText("after", `
Examples:
  npx text2sql serve --adapter outputs/spider
  curl -s localhost:8080/generate_sql -H 'content-type: application/json' -d '{"question": "How many singers are there?"}'`)
  .action(async (o: { adapter?: string; model?: string; yes?: boolean; port: string; host: string; token?: string; parallel: string; queue: string; device: "auto" | "cpu"; threads?: string }) => {
    if (!o.adapter && !o.model) throw new Error("give --adapter (a trainer output folder) and/or --model (a base GGUF)");
    const int = (flag: string, v: string, min: number) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
      return n;
    };
    const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : undefined;
    const server = await startServer({
      adapter: o.adapter,
      model,
      port: int("--port", o.port, 0),
      host: o.host,
      token: o.token ?? process.env.TEXT2SQL_TOKEN,
      parallel: int("--parallel", o.parallel, 1),
      maxQueue: int("--queue", o.queue, 0),
      device: o.device,
      threads: o.threads ? int("--threads", o.threads, 1) : undefined,
    });
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`text2sql serve: ${sig}: finishing requests in flight, then exiting\n`);
      server.close().then(() => process.exit(0), (err: unknown) => {
        process.stderr.write(`text2sql serve: ${(err as Error).message}\n`);
        process.exit(1);
      });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });

const modelCmd = program
  .command("model")
  .description("download, convert, list and remove base models (the cache: $TEXT2SQL_HOME, default ~/.cache/text2sql)")
  .addHelpText("after", `
Examples:
  npx text2sql model pull TinyLlama/TinyLlama-1.1B-Chat-v1.0 --dtype bf16
  npx text2sql model list
  npx text2sql model rm TinyLlama/TinyLlama-1.1B-Chat-v1.0
  npx text2sql model convert ./my-hf-checkpoint --output my-model.bf16.gguf --dtype bf16

model.path (and --model) takes a hub repository directly: the first run downloads and converts it
(after a question, or at once with --yes). HF_ENDPOINT points at another hub (a mirror), HF_TOKEN
(or \`huggingface-cli login\`) opens gated repositories.`);

modelCmd
  .command("pull")
  .description("download a hub repository's checkpoint into the cache and convert it to a GGUF")
  .argument("<repo>", 'owner/name or owner/name@revision (a branch, tag or commit), e.g. "TinyLlama/TinyLlama-1.1B-Chat-v1.0"')
  .option("-y, --yes", "do not ask before downloading (without a terminal, pull never asks)")
  .addOption(new Option("--dtype <type>", "weight type of the GGUF (auto: the checkpoint's own)").choices(MODEL_DTYPES).default("auto"))
  .option("--no-convert", "only download the checkpoint (safetensors, config, tokenizer)")
  .addHelpText("after", `
Examples:
  npx text2sql model pull TinyLlama/TinyLlama-1.1B-Chat-v1.0
  npx text2sql model pull TinyLlama/TinyLlama-1.1B-Chat-v1.0@main --dtype bf16 --yes
  HF_TOKEN=hf_... npx text2sql model pull meta-llama/Llama-2-7b-hf --no-convert

Files go to $TEXT2SQL_HOME/hub/<owner>--<name>/<commit>/ (resumed where a pull was interrupted;
checked by size and hash), the GGUF to $TEXT2SQL_HOME/models/<owner>--<name>-<commit>-<dtype>.gguf.
Ctrl-C stops the download and keeps what arrived; the next pull resumes it.`)
  .action(async (repo: string, o: { yes?: boolean; dtype: ModelDtype; convert: boolean }) => {
    const interactive = !!process.stdin.isTTY && !!process.stderr.isTTY;
    const r = await downloadable(({ signal, onPhase }) =>
      pullHubModel(repo, {
        yes: o.yes || !interactive,
        dtype: o.dtype,
        convert: o.convert,
        fullSnapshot: true,
        log: stderrLine,
        label: "model pull",
        onConvertProgress: convertBar(),
        signal,
        onPhase,
        onPlan: (p) =>
          stderrLine(`model pull: ${p.repo}@${p.revision} is commit ${p.commit}: ${p.files.length} files, ${formatBytes(p.totalBytes)}` +
            (p.bytesToDownload ? "" : ", all in the cache") + (p.offline ? " (the hub is out of reach: using the cache)" : "")),
      }),
    );
    console.log(`snapshot  ${r.dir}`);
    if (r.gguf) console.log(`gguf      ${r.gguf}`);
  });

function describeCached(m: CachedModel): string {
  if (m.kind === "hf") {
    const refs = m.revisions.length ? `${m.revisions.join(", ")} -> ` : "";
    return `${refs}${m.commit!.slice(0, 10)}${m.complete ? "" : " (incomplete: pull again to finish)"}`;
  }
  const h = parseHubGgufName(m.path);
  if (h) return `from ${h.repo} @ ${h.commit} (${h.dtype})`;
  if (m.name.startsWith("converted/")) return "converted checkpoint folder";
  if (m.name.startsWith("gguf/")) return "downloaded GGUF";
  return "";
}

modelCmd
  .command("list")
  .description("list the cached hub checkpoints and GGUFs with their sizes")
  .option("--json", "print JSON")
  .action((o: { json?: boolean }) => {
    const all = listCachedModels();
    if (o.json) {
      console.log(JSON.stringify(all, null, 2));
      return;
    }
    if (all.length === 0) {
      console.log(`no models in ${cacheHome()}`);
      return;
    }
    const rows = [["NAME", "KIND", "SIZE", "REVISION / SOURCE", "PATH"], ...all.map((m) => [m.name, m.kind, formatBytes(m.bytes), describeCached(m), m.path])];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) console.log(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  "));
    console.log(`\n${all.length} model${all.length === 1 ? "" : "s"}, ${formatBytes(all.reduce((a, m) => a + m.bytes, 0))} in ${cacheHome()}`);
  });

modelCmd
  .command("rm")
  .description("remove a cached model: a hub repository (its snapshots and the GGUFs converted from it) or a GGUF")
  .argument("<name>", "owner/name (every revision), owner/name@revision, or a GGUF's name as `model list` shows it")
  .addHelpText("after", `
Examples:
  npx text2sql model rm TinyLlama/TinyLlama-1.1B-Chat-v1.0
  npx text2sql model rm TinyLlama/TinyLlama-1.1B-Chat-v1.0@main
  npx text2sql model rm converted/my-hf-checkpoint-0a1b2c3d-4e5f6a7b-auto.gguf`)
  .action((name: string) => {
    const r = removeModel(name);
    for (const p of r.removed) console.log(`removed ${p}`);
    console.log(`freed ${formatBytes(r.freed)} (${r.freed} bytes)`);
  });

modelCmd
  .command("convert")
  .description("convert a Hugging Face Llama checkpoint folder (config.json, safetensors, tokenizer.model) to a GGUF")
  .argument("<hf-folder>", "the checkpoint folder")
  .addOption(new Option("--dtype <type>", "weight type of the GGUF (auto: the checkpoint's own)").choices(MODEL_DTYPES).default("auto"))
  .option("--output <file>", "the GGUF to write (default: the cache, where model.path finds it again)")
  .addHelpText("after", `
Examples:
  npx text2sql model convert ./my-hf-checkpoint
  npx text2sql model convert ./my-hf-checkpoint --dtype bf16 --output my-model.bf16.gguf

Without --output the GGUF goes to $TEXT2SQL_HOME/models/converted/ (keyed by the folder and its files'
sizes and times), where --model ./my-hf-checkpoint finds it without converting again.`)
  .action(async (dir: string, o: { dtype: ModelDtype; output?: string }) => {
    const log = (m: string) => stderrLine(m);
    if (o.output) {
      await convertCheckpoint(dir, o.output, { dtype: o.dtype, log, onProgress: convertBar() });
      console.log(o.output);
    } else {
      const r = await convertCheckpointCached(dir, { dtype: o.dtype, log, onProgress: convertBar(), label: "model convert" });
      console.log(r.file);
    }
  });

program
  .command("keys")
  .description("list every config key with its type, default and meaning")
  .action(() => {
    for (const [key, f] of Object.entries(SCHEMA)) {
      const def = JSON.stringify(getPath(DEFAULTS, key));
      const type = f.values ? f.values.join(" | ") : f.kind + (f.nullable ? " | null" : "");
      console.log(`${key.padEnd(24)} ${type.padEnd(28)} default ${def}\n${" ".repeat(25)}${f.doc}`);
    }
  });

program
  .command("doctor")
  .description("check the native engine (builds it if needed), list its devices, and say which llama.cpp binaries generation uses")
  .option("--build-llama", "build node-llama-cpp's llama.cpp for this CPU now (prompt processing ~1.8x faster than its prebuilt binaries on x64; 3-4 min)")
  .action(async (o: { buildLlama?: boolean }) => {
    const info = systemInfo();
    for (const d of info.devices) console.log(`${d.backend.padEnd(6)} ${d.name}: ${d.description}`);
    if (o.buildLlama) {
      const status = buildLlama();
      if (status !== 0) throw new Error(`building node-llama-cpp's llama.cpp failed (exit ${status}); see the output above`);
    }
    const local = localLlamaBuild();
    console.log(local
      ? `generation: node-llama-cpp's local build for this CPU (${local})`
      : `generation: node-llama-cpp's prebuilt binaries${process.arch === "x64" ? " (a local build processes prompts ~1.8x faster here: npx text2sql doctor --build-llama)" : ""}`);
  });

program
  .command("info")
  .description("load a Llama GGUF and print its shape and the LoRA parameter count")
  .argument("<model>", "a Llama-architecture GGUF (F32, F16 or BF16 weights), or any model.path form (checkpoint folder, hub repository, hf: URI)")
  .option("-y, --yes", "download the model from the hub without asking when it is not in the cache")
  .option("-r, --rank <r>", "LoRA rank", "8")
  .option("-t, --targets <list>", "comma-separated LoRA targets (q,k,v,o,gate,up,down or q_proj,...)", "q_proj,v_proj")
  .option("--device <device>", "auto | cpu | cuda | metal", "auto")
  .option("--json", "print JSON")
  .action(async (spec: string, o: { rank: string; targets: string; device: string; json?: boolean; yes?: boolean }) => {
    const model = await cliResolveModel(spec, { yes: o.yes, label: "model" });
    const e = await LoraEngine.create({
      model,
      device: o.device as "auto",
      lora: { r: Number(o.rank), targetModules: o.targets.split(",").map((s) => s.trim()).filter(Boolean) },
    });
    const i = e.info;
    await e.dispose();
    if (o.json) {
      console.log(JSON.stringify(i, null, 2));
      return;
    }
    console.log(`model       ${model}`);
    console.log(`shape       ${i.nLayer} layers, n_embd ${i.nEmbd}, ${i.nHead} heads (${i.nHeadKv} KV), FFN ${i.nFf}, vocab ${i.nVocab}, context ${i.nCtx}`);
    console.log(`weights     ${i.weightType}`);
    console.log(`device      ${i.device}`);
    console.log(`LoRA        r=${o.rank} on ${i.targets.join(", ")}: ${i.trainableParams.toLocaleString("en-US")} trainable parameters`);
  });

program.parseAsync().catch((err: unknown) => {
  console.error(`text2sql: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
