/**
 * npm run project-epoch -- <output dir> [--model <gguf>]: projects one epoch of a training run's
 * data from what the run measured (its summary.json and metrics.jsonl).
 *
 *   npx text2sql train --config configs/config_spider.yaml --model <tinyllama-shaped.gguf> --max-steps 200 --output out/spider200
 *   npm run project-epoch -- out/spider200
 *
 * Training time per epoch = the epoch's tokens (every training row, tokenized as the trainer does)
 * / the run's measured training tokens per second (optimizer steps only). Evaluations are timed
 * apart from training (the "eval" lines of metrics.jsonl) and added per epoch at eval_every.
 */
import fs from "node:fs";
import path from "node:path";
import { loadConfig } from "../src/train/config.js";
import { prepareData } from "../src/train/trainer.js";

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir || dir.startsWith("-")) throw new Error("usage: npm run project-epoch -- <training output dir> [--model <gguf>]");
  const mi = process.argv.indexOf("--model");
  const summary = JSON.parse(fs.readFileSync(path.join(dir, "summary.json"), "utf8")) as { steps: number; tokensPerS: number; wallS: number };
  const cfg = loadConfig({ file: path.join(dir, "config.yaml"), overrides: mi > 0 ? { "model.path": process.argv[mi + 1] } : {} });
  const lines = fs
    .readFileSync(path.join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, number | string>);
  const train = lines.filter((l) => l.type === "train");
  const evals = lines.filter((l) => l.type === "eval");
  const data = await prepareData(cfg, cfg.model.path);
  const epochTokens = data.train.reduce((n, e) => n + e.tokens.length, 0);
  const stepsPerEpoch = Math.ceil(data.train.length / (cfg.train.batch_size * cfg.train.grad_accum));
  const measuredTokens = train.reduce((n, l) => n + Number(l.tokens), 0);
  const trainS = measuredTokens / summary.tokensPerS;
  const evalTimes = evals.map((e) => Number(e.seconds)).filter((s) => Number.isFinite(s) && s > 0);
  const evalS = evalTimes.length ? evalTimes.reduce((a, b) => a + b, 0) / evalTimes.length : NaN;
  const evalsPerEpoch = cfg.train.eval_every > 0 ? Math.floor(stepsPerEpoch / cfg.train.eval_every) : 0;
  const epochTrainS = epochTokens / summary.tokensPerS;
  const h = (s: number) => `${(s / 3600).toFixed(2)} h`;
  console.log(
    `measured: ${summary.steps} optimizer steps, ${measuredTokens.toLocaleString("en-US")} tokens in ${(trainS / 60).toFixed(1)} min of training (${summary.tokensPerS.toFixed(1)} tokens/s, ${(trainS / summary.steps).toFixed(2)} s per optimizer step); wall ${(summary.wallS / 60).toFixed(1)} min with evaluations and checkpoints`,
  );
  console.log(
    `epoch: ${data.train.length.toLocaleString("en-US")} rows, ${epochTokens.toLocaleString("en-US")} tokens (mean ${(epochTokens / data.train.length).toFixed(1)}), ${stepsPerEpoch} optimizer steps of ${cfg.train.batch_size} x ${cfg.train.grad_accum}`,
  );
  console.log(`projected training time per epoch: ${h(epochTrainS)}`);
  if (Number.isFinite(evalS))
    console.log(
      `evaluation: ${evalS.toFixed(0)} s each, ${evalsPerEpoch} per epoch at eval_every ${cfg.train.eval_every}: ${h(epochTrainS + evalsPerEpoch * evalS)} with them`,
    );
  // no PyTorch ratio here: a figure from another run is no comparison (npm run bench:vs-torch times both sides at once)
}

main().catch((err: unknown) => {
  console.error(`project-epoch: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
