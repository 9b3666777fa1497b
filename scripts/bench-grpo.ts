/**
 * npm run bench:grpo: times GRPO steps at TinyLlama shape with random weights (BF16), the engine on
 * 2 threads: seconds per step split into sampling (node-llama-cpp, the adapter saved and reloaded),
 * scoring (the execution reward, read-only queries on data/quickstart.sqlite) and updating (the
 * engine's logprobs pass and weighted accumulation, AdamW), with tokens/s for each. The steps are
 * trainGrpo's own, on the quickstart questions; a random model's samples run to max_new_tokens.
 *
 *   npm run bench:grpo                       2 steps after one warm-up, 4 questions x 4 completions, 32 new tokens
 *   npm run bench:grpo -- --steps 3 --group 8 --prompts 4 --new-tokens 64 --threads 2 --json
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { benchModel } from "../src/models/test-model.js";
import { sampleWithAdapter } from "../src/serve/grpo-sampler.js";
import { trainGrpo, type GrpoStepEvent } from "../src/train/grpo.js";
import { flags } from "./args.js";

const HELP = `usage: npm run bench:grpo -- [options]
  --steps 2         timed GRPO steps after one warm-up step
  --prompts 4       questions per step (rl.prompts_per_step)
  --group 4         completions per question (rl.group_size)
  --new-tokens 32   rl.max_new_tokens (a random model's samples run to it)
  --threads 2       the engine's CPU threads
  --json            print the result as JSON`;

function parse(argv: string[]): { steps: number; prompts: number; group: number; newTokens: number; threads: number; json: boolean } {
  const a = { steps: 2, prompts: 4, group: 4, newTokens: 32, threads: 2, json: false };
  const int = (k: string, x: string, min: number) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < min) throw new Error(`${k}: expected an integer >= ${min}, got ${JSON.stringify(x)}`);
    return n;
  };
  for (const [k, v] of flags(argv)) {
    if (k === "--steps") a.steps = int(k, v(), 1);
    else if (k === "--prompts") a.prompts = int(k, v(), 1);
    else if (k === "--group") a.group = int(k, v(), 2);
    else if (k === "--new-tokens") a.newTokens = int(k, v(), 1);
    else if (k === "--threads") a.threads = int(k, v(), 1);
    else if (k === "--json") a.json = true;
    else if (k === "--help" || k === "-h") {
      console.log(HELP);
      process.exit(0);
    } else throw new Error(`unknown option ${k} (see --help)`);
  }
  return a;
}

async function main(): Promise<void> {
  const { steps, prompts, group, newTokens, threads, json } = parse(process.argv.slice(2));
  const loadBefore = os.loadavg().map((x) => x.toFixed(2));
  const model = await benchModel("bf16", "tinyllama");
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "t2s-bench-grpo-"));
  const events: GrpoStepEvent[] = [];
  try {
    await trainGrpo(
      {
        model: { path: model },
        data: { path: "data/quickstart.csv", db: "data/quickstart.sqlite", split: [0.9, 0.1, 0], max_seq_len: 128 },
        lora: { r: 8, alpha: 16, dropout: 0, target_modules: ["q_proj", "v_proj"] },
        train: { max_steps: steps + 1, threads, eval_every: 0, save_every: 0, seed: 1 },
        rl: { prompts_per_step: prompts, group_size: group, max_new_tokens: newTokens },
        output: { dir: out },
      },
      { sample: sampleWithAdapter, onStep: (e) => events.push(e) },
    );
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
  const timed = events.slice(1); // the first step warms up
  const mean = (f: (e: GrpoStepEvent) => number) => timed.reduce((a, e) => a + f(e), 0) / timed.length;
  const r = {
    model: "TinyLlama shape, random BF16 weights",
    cpu: os.cpus()[0]?.model,
    loadavg: { before: loadBefore, after: os.loadavg().map((x) => x.toFixed(2)) },
    threads,
    prompts,
    group,
    newTokens,
    steps: timed.length,
    sPerStep: mean((e) => e.seconds.sampling + e.seconds.scoring + e.seconds.updating),
    sampling: { s: mean((e) => e.seconds.sampling), tokensPerS: mean((e) => e.tokens.sampled) / mean((e) => e.seconds.sampling) },
    scoring: { s: mean((e) => e.seconds.scoring), tokensPerS: mean((e) => e.tokens.scored) / mean((e) => e.seconds.scoring) },
    updating: { s: mean((e) => e.seconds.updating), tokensPerS: mean((e) => e.tokens.updated) / mean((e) => e.seconds.updating) },
  };
  if (json) return void console.log(JSON.stringify(r));
  console.log(`GRPO step, ${r.model}, ${prompts} questions x ${group} completions, ${newTokens} new tokens, engine ${threads} threads`);
  console.log(`CPU ${r.cpu}; load average (1, 5, 15 min) ${r.loadavg.before.join(" ")} at the start, ${r.loadavg.after.join(" ")} at the end`);
  console.log(`seconds per step  ${r.sPerStep.toFixed(2)} (mean of ${r.steps} after one warm-up)`);
  for (const k of ["sampling", "scoring", "updating"] as const) console.log(`  ${k.padEnd(9)} ${r[k].s.toFixed(2)} s  ${r[k].tokensPerS.toFixed(1)} tokens/s`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
