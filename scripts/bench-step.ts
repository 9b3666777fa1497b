/**
 * npm run bench:step: times one LoRA training step at TinyLlama shape with random weights.
 *
 * For each weight type (F16 and BF16 by default) it makes a TinyLlama-shaped GGUF (cached in
 * $TEXT2SQL_BENCH_DIR, default <tmp>/text2sql-bench), then runs the step in a child process so
 * that each type's peak RSS is its own: r=8 on q and v, one sequence of 256 tokens (batch 1), all
 * of them targets, then AdamW. One warm-up step, then the mean of --steps timed steps.
 *
 *   npm run bench:step -- [--types f16,bf16] [--steps 3] [--tokens 256] [--threads N] [--json]
 *
 * Reference on the 2-core dev machine (engine-notes section 6): PyTorch 1.13 bf16, 54 tokens/s at 3.7 GB peak.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LoraEngine, makeBatch } from "../src/engine.js";
import { TINYLLAMA_PRESET, makeTestModel, type TestModelType } from "./make-test-model.js";

interface Args { types: TestModelType[]; steps: number; tokens: number; threads: number; json: boolean; child?: string; type?: string }

function parse(argv: string[]): Args {
  const a: Args = { types: ["f16", "bf16"], steps: 3, tokens: 256, threads: 0, json: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === "--types") a.types = v().split(",") as TestModelType[];
    else if (k === "--steps") a.steps = Number(v());
    else if (k === "--tokens") a.tokens = Number(v());
    else if (k === "--threads") a.threads = Number(v());
    else if (k === "--json") a.json = true;
    else if (k === "--child") a.child = v();
    else if (k === "--type") a.type = v();
    else if (k === "--help" || k === "-h") {
      console.log("usage: npm run bench:step -- [--types f16,bf16] [--steps 3] [--tokens 256] [--threads N] [--json]");
      process.exit(0);
    } else throw new Error(`unknown option ${k} (see --help)`);
  }
  for (const t of a.types) if (!["f32", "f16", "bf16"].includes(t)) throw new Error(`--types: unknown type ${t}; use f32, f16, bf16`);
  if (!(a.steps >= 1) || !(a.tokens >= 2)) throw new Error("--steps must be >= 1 and --tokens >= 2");
  return a;
}

interface Result { type: string; loadS: number; sPerStep: number; tokensPerS: number; peakRssGB: number; trainable: number; device: string; threads: number }

async function child(a: Args): Promise<void> {
  const t0 = performance.now();
  const e = await LoraEngine.create({ model: a.child!, device: "cpu", threads: a.threads, lora: { r: 8, alpha: 16, targetModules: ["q_proj", "v_proj"] } });
  const loadS = (performance.now() - t0) / 1000;
  const tokens = Array.from({ length: a.tokens + 1 }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 31000)));
  const batch = makeBatch([{ tokens }]); // every position after the first is a target
  const step = async () => {
    await e.accumulate(batch, a.tokens);
    await e.step({ lr: 2e-4, maxGradNorm: 1 });
  };
  await step(); // warm-up: graph allocation, page faults
  const t1 = performance.now();
  for (let i = 0; i < a.steps; i++) await step();
  const sPerStep = (performance.now() - t1) / 1000 / a.steps;
  const r: Result = {
    type: a.type ?? "?",
    loadS,
    sPerStep,
    tokensPerS: a.tokens / sPerStep,
    peakRssGB: (process.resourceUsage().maxRSS * 1024) / 1e9,
    trainable: e.trainableParams,
    device: e.info.device,
    threads: a.threads || os.availableParallelism(),
  };
  await e.dispose();
  process.stdout.write(JSON.stringify(r) + "\n");
}

async function main(): Promise<void> {
  const a = parse(process.argv.slice(2));
  if (a.child) return child(a);
  const dir = process.env.TEXT2SQL_BENCH_DIR || path.join(os.tmpdir(), "text2sql-bench");
  fs.mkdirSync(dir, { recursive: true });
  const results: Result[] = [];
  for (const type of a.types) {
    const file = path.join(dir, `tinyllama-shape-${type}.gguf`);
    if (!fs.existsSync(file)) {
      process.stderr.write(`making a TinyLlama-shaped ${type} model with random weights: ${file}\n`);
      await makeTestModel({ path: file, type, ...TINYLLAMA_PRESET });
    }
    process.stderr.write(`timing ${type}: 1 warm-up + ${a.steps} steps of ${a.tokens} tokens\n`);
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--child", file, "--type", type, "--steps", String(a.steps), "--tokens", String(a.tokens), "--threads", String(a.threads)], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
    if (r.status !== 0) throw new Error(`the ${type} run failed (exit ${r.status})`);
    results.push(JSON.parse(r.stdout.trim().split("\n").pop()!));
  }
  if (a.json) {
    console.log(JSON.stringify(results, null, 2));
    return;
  }
  console.log(`\nLoRA step at TinyLlama shape (r=8 on q,v; ${a.tokens} tokens, batch 1; ${results[0]?.device}, ${results[0]?.threads} threads; ${os.cpus()[0]?.model ?? ""})`);
  console.log("weights  load s   s/step   tokens/s   peak RSS   trainable");
  for (const r of results) {
    console.log(`${r.type.padEnd(8)} ${r.loadS.toFixed(1).padStart(6)}   ${r.sPerStep.toFixed(2).padStart(6)}   ${r.tokensPerS.toFixed(1).padStart(8)}   ${r.peakRssGB.toFixed(2).padStart(5)} GB   ${r.trainable.toLocaleString("en-US")}`);
  }
  console.log("reference (engine-notes §6, same machine type): PyTorch 1.13 bf16 4.73 s/step, 54 tokens/s, 3.7 GB peak");
}

main().catch((err: unknown) => {
  console.error(`bench:step: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
