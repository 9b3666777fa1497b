// `text2sql train`: fine-tunes a LoRA adapter; progress as a bar on a terminal, plain lines
// otherwise, JSON lines with --json; Ctrl-C saves a checkpoint and exits 130.
import { Command } from "commander";
import { formatDuration } from "../util/format.js";
import { lazyBar } from "../util/bar.js";
import type { TrainConfig } from "../train/config.js";
import { formatSummary, trainSft, type TrainHooks, type TrainSummary } from "../train/trainer.js";
import { decodeWithAdapter } from "../serve/eval-decoder.js";
import { sampleWithAdapter } from "../serve/grpo-sampler.js";
import { formatGrpoSummary, trainGrpo, type GrpoStepEvent } from "../train/grpo.js";
import { configFrom, withConfigFlags, type CommonFlags } from "./config-flags.js";
import { cliResolveModel, onInterrupt } from "./progress.js";

const emit = (obj: object) => process.stdout.write(JSON.stringify(obj) + "\n");

/** The trainer's step and eval events: JSON lines, a bar on a terminal, else a line every 10 s. */
function trainProgress(cfg: TrainConfig, json: boolean): { hooks: TrainHooks; stop: () => void } {
  const tty = !json && process.stderr.isTTY;
  const bar = lazyBar("train |{bar}| {value}/{total} steps | loss {loss}{ex} | lr {lr} | {tps} tok/s | ETA {remaining}", { hideCursor: true });
  let lastLine = 0;
  let ex = "";
  const hooks: TrainHooks = {
    onEvalProgress: (done, total, step, phase) => {
      if (json) return;
      if (phase === "execution") {
        process.stderr.write(
          `${tty ? "\r\x1b[K" : ""}eval @ step ${step}: decoding ${total} eval rows and running them on their databases (eval_ex)...${tty ? "" : "\n"}`,
        );
      } else if (tty) {
        process.stderr.write(`\r\x1b[Keval @ step ${step}: ${done}/${total} examples`);
      } else if (done === Math.min(total, cfg.train.batch_size)) {
        process.stderr.write(`eval @ step ${step}: ${total} examples...\n`);
      }
    },
    onEval: (e) => {
      if (json) return emit({ type: "eval", ...e });
      if (e.eval_ex !== undefined) ex = ` | EX ${(100 * e.eval_ex).toFixed(1)}%`;
      const line =
        `eval @ step ${e.step}: loss ${e.loss.toFixed(4)}, token accuracy ${(100 * e.accuracy).toFixed(1)}%` +
        (e.eval_ex !== undefined ? `, eval_ex ${(100 * e.eval_ex).toFixed(1)}% (best_model: step ${e.best_step})` : "");
      process.stderr.write((tty ? "\r\x1b[K" : "") + line + "\n");
    },
    onStep: (e) => {
      if (json) return emit({ type: "step", ...e });
      const payload = { loss: e.loss.toFixed(4), lr: e.lr.toExponential(2), tps: e.tokensPerS.toFixed(0), remaining: formatDuration(e.etaS), ex };
      if (tty) {
        bar.update(e.step, e.totalSteps, payload, e.step - 1);
      } else if (e.step === e.totalSteps || performance.now() - lastLine > 10_000 || e.step === 1) {
        lastLine = performance.now();
        process.stderr.write(
          `step ${e.step}/${e.totalSteps} | loss ${payload.loss}${ex} | lr ${payload.lr} | ${payload.tps} tok/s | ETA ${payload.remaining}\n`,
        );
      }
    },
  };
  return { hooks, stop: () => bar.stop() };
}

async function train(o: CommonFlags): Promise<void> {
  const cfg = configFrom(o);
  const json = !!o.json;
  const onLog = (msg: string) => (json ? emit({ type: "log", message: msg }) : process.stderr.write(`${msg}\n`));
  // the model first (a download or a conversion has its own Ctrl-C); the trainer then finds it resolved
  await cliResolveModel(cfg.model.path, { yes: o.yes, dtype: cfg.model.dtype, log: onLog });
  const ac = new AbortController();
  const listen = onInterrupt(() => {
    ac.abort();
    process.stderr.write("\ntext2sql: stopping after the current micro-step and saving a checkpoint (Ctrl-C again to quit at once)\n");
  });
  listen(true);
  if (cfg.method === "grpo") return grpo(cfg, o, ac.signal, onLog, () => listen(false));
  const progress = trainProgress(cfg, json);
  const summary: TrainSummary = await trainSft(cfg, {
    resume: !!o.resume,
    overwrite: !!o.overwrite,
    signal: ac.signal,
    command: rerunCommand(),
    onLog,
    decodeSql: decodeWithAdapter,
    ...progress.hooks,
  });
  progress.stop();
  listen(false);
  if (json) emit({ type: "summary", ...summary });
  else process.stderr.write(`\n${formatSummary(summary)}\n`);
  if (summary.interrupted) process.exit(130);
}

/** `train --method grpo`: the GRPO trainer with node-llama-cpp's sampler and decoder; a bar (or a line every 10 s) per step. */
async function grpo(cfg: TrainConfig, o: CommonFlags, signal: AbortSignal, onLog: (m: string) => void, unlisten: () => void): Promise<void> {
  const json = !!o.json;
  const tty = !json && process.stderr.isTTY;
  const bar = lazyBar("grpo |{bar}| {value}/{total} steps | reward {reward}{ex} | kl {kl} | ETA {remaining}", { hideCursor: true });
  let lastLine = 0;
  let ex = "";
  const onStep = (e: GrpoStepEvent) => {
    if (json) return emit({ type: "step", ...e });
    if (e.eval_ex !== undefined || e.train_ex !== undefined)
      ex =
        (e.eval_ex !== undefined ? ` | EX ${(100 * e.eval_ex).toFixed(1)}%` : "") +
        (e.train_ex !== undefined ? ` | train EX ${(100 * e.train_ex).toFixed(1)}%` : "");
    const payload = { reward: e.rewardMean.toFixed(3), kl: e.kl.toExponential(2), remaining: formatDuration(e.etaS), ex };
    if (tty) bar.update(e.step, e.totalSteps, payload, e.step - 1);
    else if (e.step === e.totalSteps || e.step === 1 || performance.now() - lastLine > 10_000) {
      lastLine = performance.now();
      const sec = e.seconds;
      process.stderr.write(
        `step ${e.step}/${e.totalSteps} | reward ${payload.reward} ± ${e.rewardStd.toFixed(3)}${ex} | zero-variance groups ${(100 * e.zeroVarianceGroups).toFixed(0)}% | ` +
          `kl ${payload.kl} | completion ${e.completionLen.toFixed(1)} tokens | s sampling ${sec.sampling.toFixed(1)} scoring ${sec.scoring.toFixed(1)} updating ${sec.updating.toFixed(1)} | ETA ${payload.remaining}\n`,
      );
    }
  };
  const summary = await trainGrpo(cfg, {
    resume: !!o.resume,
    overwrite: !!o.overwrite,
    signal,
    command: rerunCommand(),
    onLog,
    decodeSql: decodeWithAdapter,
    sample: sampleWithAdapter,
    onStep,
  });
  bar.stop();
  unlisten();
  if (json) emit({ type: "summary", ...summary });
  else process.stderr.write(`\n${formatGrpoSummary(summary)}\n`);
  if (summary.interrupted) process.exit(130);
}

/** How this run was started, less --resume and --overwrite: the trainers' resume hint. */
const rerunCommand = () =>
  `npx text2sql ${process.argv
    .slice(2)
    .filter((a) => a !== "--resume" && a !== "--overwrite")
    .join(" ")}`;

export function registerTrain(program: Command): void {
  withConfigFlags(program.command("train"))
    .description("fine-tune a LoRA adapter on question/SQL pairs (Ctrl-C saves a checkpoint; --resume continues)")
    .option("--resume", "continue from the latest valid checkpoint in output.dir")
    .option("--overwrite", "start afresh in a non-empty output.dir, replacing the run it holds (without --resume or --overwrite such a folder is refused)")
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql train --config configs/quickstart.yaml
  npx text2sql train --config configs/config_spider_schema.yaml --eval-execution --db-dir ../shared/spider/database --set train.eval_execution_rows=100
  npx text2sql train --config configs/config_spider.yaml --data ../shared/spider/spider_text_sql.csv --max-steps 200
  npx text2sql train --config configs/config_spider.yaml --resume
  npx text2sql train --config configs/config_spider.yaml --model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --dtype bf16 --yes
  npx text2sql train --config configs/quickstart.yaml --model ./my-hf-checkpoint/
  npx text2sql train --config configs/quickstart-grpo.yaml        (method: grpo, after the quickstart SFT)
  npx text2sql train --method grpo --config configs/quickstart.yaml --set lora.init_adapter=outputs/quickstart/final_model --output outputs/grpo

--method grpo (method: grpo): reinforcement learning with an execution reward. Each step samples
rl.group_size completions (default 8) for rl.prompts_per_step training questions (default 4) at
rl.temperature with the current adapter, rewards 1 when the SQL's result matches the gold's on the
row's database (+ rl.valid_sql_reward for SQL that runs), and takes rl.updates_per_batch clipped
(rl.clip_eps) policy-gradient steps with an optional k3 KL term (rl.kl_coef, to rl.reference).
train.max_steps counts GRPO steps. Every row needs a database; LoRA dropout is off. Writes
samples.jsonl (one line per completion: prompt/completion ids, log-probabilities, reward, advantage).
The greedy eval_ex every train.eval_every steps keeps best_model/ (ties: the earlier step).
--set rl.constrained=true samples under the schema's grammar; biased: the log-probabilities are
the unmasked model's (see docs/training.md).

model.path (--model) may be a hub repository: it is downloaded into the cache (after a question,
or at once with --yes) and converted to a GGUF once; see \`text2sql model --help\`.

Writes to output.dir (which must be empty or new, unless --resume or --overwrite): config.yaml (effective config), metrics.jsonl, loss.svg, summary.json,
checkpoints/checkpoint-<step>/ (adapter, optimizer and trainer state; the last train.keep_checkpoints
are kept) and final_model/adapter.gguf (a GGUF LoRA for llama.cpp, Ollama and node-llama-cpp).
With --eval-execution (train.eval_execution; every eval row needs a database: a CSV/JSONL db
column, --db, or Spider/BIRD JSON with --db-dir), each evaluation also logs eval_ex, the execution
accuracy of the adapter's greedy answers on the eval rows, and best_model/ holds the adapter with
the best eval_ex (ties: the lower eval loss).
Each checkpoint and final_model/ is written whole (a temporary folder renamed into place), so a
crash never leaves a half-written one; --resume skips a damaged checkpoint, saying which.`,
    )
    .action(train);
}
