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

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

async function main(): Promise<void> {
  const steps = arg("--steps", 2);
  const group = arg("--group", 4);
  const prompts = arg("--prompts", 4);
  const newTokens = arg("--new-tokens", 32);
  const threads = arg("--threads", 2);
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
    loadavg: os.loadavg().map((x) => x.toFixed(2)),
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
  if (process.argv.includes("--json")) return void console.log(JSON.stringify(r));
  console.log(`GRPO step, ${r.model}, ${prompts} questions x ${group} completions, ${newTokens} new tokens, engine ${threads} threads`);
  console.log(`CPU ${r.cpu}; load average ${r.loadavg.join(" ")}`);
  console.log(`seconds per step  ${r.sPerStep.toFixed(2)} (mean of ${r.steps} after one warm-up)`);
  for (const k of ["sampling", "scoring", "updating"] as const) console.log(`  ${k.padEnd(9)} ${r[k].s.toFixed(2)} s  ${r[k].tokensPerS.toFixed(1)} tokens/s`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
