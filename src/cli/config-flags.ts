// The flags of the commands that read a training config (train, data): -c/--config, the shortcuts
// for the common keys (--model, --data, ...), --set key=value, and the config they make.
import { Command, Option } from "commander";
import { MODEL_DTYPES, type ModelDtype } from "../models/model-path.js";
import { loadConfig, type TrainConfig } from "../train/config.js";

export interface CommonFlags {
  config?: string;
  method?: string;
  model?: string;
  dtype?: ModelDtype;
  yes?: boolean;
  data?: string;
  db?: string;
  dbDir?: string;
  evalExecution?: boolean;
  keepDistinct?: boolean;
  output?: string;
  maxSteps?: string;
  device?: string;
  threads?: string;
  memory?: string;
  set: string[];
  json?: boolean;
  resume?: boolean;
  overwrite?: boolean;
}

function collect(v: string, acc: string[]): string[] {
  return [...acc, v];
}

export function withConfigFlags(cmd: Command): Command {
  return cmd
    .option("-c, --config <file>", "YAML config (see configs/; `text2sql keys` lists every key)")
    .option(
      "--model <path>",
      "model.path: a Llama GGUF, a Hugging Face checkpoint folder, a hub repository owner/name[@revision], hf:owner/repo/file.gguf, or builtin:tiny",
    )
    .addOption(
      new Option("--dtype <type>", "model.dtype: weight type a Hugging Face checkpoint is converted to (auto: the checkpoint's own)").choices(MODEL_DTYPES),
    )
    .option("-y, --yes", "download model.path from the hub without asking when it is not in the cache")
    .option("--method <sft|grpo>", "method: sft (fine-tune on the gold SQL) or grpo (reinforcement learning with an execution reward, the rl: section)")
    .option("--data <file>", "data.path: CSV, JSONL, Spider or BIRD JSON")
    .option("--db <file>", "data.db: one SQLite database for every row without its own db column")
    .option("--db-dir <dir>", "data.db_dir: Spider/BIRD databases as <dir>/<db_id>/<db_id>.sqlite (none: no databases)")
    .option("--eval-execution", "train.eval_execution: at every evaluation, eval_ex (greedy answers run on the eval rows' databases) and best_model/")
    .option("--keep-distinct", "train.keep_distinct: eval_ex runs DISTINCT as written (default: taken out of both queries, as the official evaluator)")
    .option("--output <dir>", "output.dir")
    .option("--max-steps <n>", "train.max_steps")
    .addOption(new Option("--device <device>", "train.device").choices(["auto", "cpu", "cuda", "metal"]))
    .option("--threads <n>", "train.threads (0: all cores)")
    .addOption(
      new Option(
        "--memory <mode>",
        "train.memory: fast keeps transposed weight copies (about 2x the model's size); lean makes them on the fly and recomputes layers (about 1.1x)",
      ).choices(["fast", "lean"]),
    )
    .option("--set <key=value>", "set any config key, e.g. --set train.lr=1e-4 (repeatable)", collect, [])
    .option("--json", "machine-readable output: one JSON object per line on stdout");
}

export function configFrom(o: CommonFlags): TrainConfig {
  const num = (flag: string, v?: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`${flag}: expected a number, got ${JSON.stringify(v)}`);
    return n;
  };
  return loadConfig({
    file: o.config,
    overrides: {
      method: o.method,
      "model.path": o.model,
      "model.dtype": o.dtype,
      "data.path": o.data,
      "data.db": o.db,
      "data.db_dir": o.dbDir,
      "train.eval_execution": o.evalExecution,
      "train.keep_distinct": o.keepDistinct,
      "output.dir": o.output,
      "train.max_steps": num("--max-steps", o.maxSteps),
      "train.device": o.device,
      "train.threads": num("--threads", o.threads),
      "train.memory": o.memory,
    },
    set: o.set,
  });
}
