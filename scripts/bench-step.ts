/**
 * npm run bench:step: times LoRA training steps at TinyLlama shape with random weights.
 *
 * Each configuration runs in its own child process, so that its peak RSS is its own: one sequence
 * (batch 1) whose tokens are all targets, then AdamW; one warm-up step, then the median of --steps
 * timed steps. TinyLlama-shaped GGUFs are made on first use in $TEXT2SQL_BENCH_DIR (default
 * <tmp>/text2sql-bench).
 *
 *   npm run bench:step                      bf16 and f16, fast and lean memory, 256 tokens, r=8 on q,v
 *   npm run bench:step -- --profile         the same with a per-op profile (forward / backward)
 *   after the table, a roofline line per configuration: the frozen-weight product kernel alone at
 *   the step's shapes and threads (its peak GFLOP/s), and with --profile the products' share of it
 *   (src/engine/matmul-bench.ts; docs/benchmarks.md reads it)
 *   npm run bench:step -- --scaling         step time and memory against sequence length, rank,
 *                                           targets, threads and checkpointing
 *   npm run bench:step -- --types bf16,q8_0,q4_k --memory lean
 *                                           quantized bases against the BF16 lean step (issue 14)
 *   npm run bench:step -- --types q4_k --memory lean  --shape llama3.2-3b --tokens 512
 *                                           a Q4_K Llama-3.2-3B-shaped model (Llama-2 test vocabulary)
 *   npm run bench:step -- --shape qwen2.5-1.5b   another model's shape (llama-3.2-1b, qwen2.5-0.5b,
 *                                           qwen3-0.6b; src/models/test-model.ts BENCH_SHAPES)
 *   options: --types bf16,f16 --memory fast,lean --checkpointing auto --tokens 256 --steps 3 --rounds 1 --threads N --json
 *            --shape tinyllama|llama3.2-3b|llama-3.2-1b|qwen2.5-1.5b|qwen2.5-0.5b|qwen3-0.6b
 *
 * Against PyTorch: npm run bench:vs-torch, which runs both sides in one command (a figure from
 * another run or machine is no comparison).
 */
import { spawnSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { LoraEngine, makeBatch, type ProfileEntry } from "../src/engine/engine.js";
import { formatRates, formatRoofline, measureKernel, roofline, rooflineKernel, stepProductShapes, type ShapeRate } from "../src/engine/matmul-bench.js";
import { systemInfo } from "../src/engine/system.js";
import { BENCH_SHAPES, benchModel, type BenchShape, type TestModelType } from "../src/models/test-model.js";
import { flags } from "./args.js";

interface Config {
  shape: BenchShape;
  type: TestModelType;
  memory: "fast" | "lean";
  checkpointing: boolean;
  tokens: number;
  r: number;
  targets: string[];
  threads: number;
}

interface Result extends Config {
  loadS: number;
  sPerStep: number;
  tokensPerS: number;
  peakRssGB: number;
  weightGB: number;
  transposedGB: number;
  computeGB: number;
  quantGB: number; // of weightGB: quantized matrices
  quantTGB: number; // of computeGB: the largest Wᵀ made per layer from a quantized weight
  trainable: number;
  device: string;
  profile?: ProfileEntry[];
  kernel: string; // the frozen-weight products' kernel, e.g. "bf16, tinyBLAS bf16 (AVX512-BF16 vdpbf16ps)"
  rates?: ShapeRate[]; // the roofline microbenchmark of that kernel at the step's shapes (one run per type)
  rooflineNote?: string; // why there is no microbenchmark
}

interface Args {
  types: TestModelType[];
  memory: ("fast" | "lean")[];
  checkpointing: ("on" | "off" | "auto")[];
  steps: number;
  rounds: number;
  tokens: number;
  threads: number;
  json: boolean;
  profile: boolean;
  scaling: boolean;
  roofline: boolean;
  shape: BenchShape;
}

const HELP = `usage: npm run bench:step -- [options]
  --types bf16,f16      weight types (f32, f16, bf16, q8_0, q4_k, q4_k_m)
  --memory fast,lean    memory modes (lean also turns on gradient checkpointing)
  --checkpointing auto  on, off or auto (auto: on with lean); a list runs each
  --tokens 256          sequence length
  --shape tinyllama     model shape: ${Object.keys(BENCH_SHAPES).join(", ")}
  --steps 3             timed steps after one warm-up step
  --rounds 1            time every configuration this many times, in turn (round-robin): a load
                        that changes during the run then falls on all of them; the table shows
                        the median of the rounds (the lower middle one of an even count), and
                        each round's ratios to the first row follow
  --threads N           CPU threads (default: all cores)
  --profile             per-op profile of one step (forward and backward)
  --scaling             the scaling table (bf16): sequence length 64-1024, rank 8-64,
                        q,v versus all seven targets, 1 versus 2 threads, checkpointing at 1,024
  --no-roofline         skip the roofline: after the steps, a microbenchmark (a few seconds per
                        weight type) of the frozen-weight product kernel at the step's shapes and
                        threads, its peak GFLOP/s, and with --profile the products' share of it
                        (not run with --scaling)
  --json                print the results as JSON`;

function parse(argv: string[]): Args {
  const a: Args = {
    types: ["bf16", "f16"],
    memory: ["fast", "lean"],
    checkpointing: ["auto"],
    steps: 3,
    rounds: 1,
    tokens: 256,
    threads: 0,
    json: false,
    profile: false,
    scaling: false,
    roofline: true,
    shape: "tinyllama",
  };
  for (const [k, v] of flags(argv)) {
    if (k === "--types") a.types = v().split(",") as TestModelType[];
    else if (k === "--memory") a.memory = v().split(",") as ("fast" | "lean")[];
    else if (k === "--checkpointing") a.checkpointing = v().split(",") as ("on" | "off" | "auto")[];
    else if (k === "--steps") a.steps = Number(v());
    else if (k === "--rounds") a.rounds = Number(v());
    else if (k === "--tokens") a.tokens = Number(v());
    else if (k === "--threads") a.threads = Number(v());
    else if (k === "--json") a.json = true;
    else if (k === "--profile") a.profile = true;
    else if (k === "--scaling") a.scaling = true;
    else if (k === "--no-roofline") a.roofline = false;
    else if (k === "--shape") {
      const x = v();
      if (!(x in BENCH_SHAPES)) throw new Error(`--shape: unknown shape ${x}; use ${Object.keys(BENCH_SHAPES).join(", ")}`);
      a.shape = x as BenchShape;
    } else if (k === "--help" || k === "-h") {
      console.log(HELP);
      process.exit(0);
    } else throw new Error(`unknown option ${k} (see --help)`);
  }
  const TYPES = ["f32", "f16", "bf16", "q8_0", "q4_k", "q4_k_m"];
  for (const t of a.types) if (!TYPES.includes(t)) throw new Error(`--types: unknown type ${t}; use ${TYPES.join(", ")}`);
  for (const m of a.memory) if (m !== "fast" && m !== "lean") throw new Error(`--memory: unknown mode ${m}; use fast, lean`);
  for (const c of a.checkpointing) if (!["on", "off", "auto"].includes(c)) throw new Error(`--checkpointing: unknown value ${c}; use on, off, auto`);
  if (!(a.steps >= 1) || !(a.tokens >= 2)) throw new Error("--steps must be >= 1 and --tokens >= 2");
  if (!Number.isInteger(a.rounds) || a.rounds < 1) throw new Error(`--rounds: expected an integer >= 1, got ${a.rounds}`);
  return a;
}

async function child(file: string, c: Config, steps: number, profile: boolean, measure: boolean): Promise<void> {
  const t0 = performance.now();
  const e = await LoraEngine.create({
    model: file,
    device: "cpu",
    threads: c.threads,
    memory: c.memory,
    checkpointing: c.checkpointing,
    profile,
    lora: { r: c.r, alpha: 2 * c.r, targetModules: c.targets },
  });
  const loadS = (performance.now() - t0) / 1000;
  const tokens = Array.from({ length: c.tokens + 1 }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 31000)));
  const batch = makeBatch([{ tokens }]); // every position after the first is a target
  const step = async () => {
    await e.accumulate(batch, c.tokens);
    await e.step({ lr: 2e-4, maxGradNorm: 1 });
  };
  await step(); // warm-up: graph allocation, page faults
  if (profile) e.takeProfile(); // drop the warm-up's timings
  // the median step: this 2-core VM's timings jump by 10% when a neighbour wakes up
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t1 = performance.now();
    await step();
    times.push((performance.now() - t1) / 1000);
  }
  times.sort((x, y) => x - y);
  const sPerStep = steps % 2 ? times[(steps - 1) / 2] : (times[steps / 2 - 1] + times[steps / 2]) / 2;
  const mem = e.memoryInfo();
  const threads = c.threads || os.availableParallelism();
  const rk = rooflineKernel(e.info);
  const kernels: Record<string, string> = systemInfo().kernels;
  const kernelName = e.info.matmulKernel === "ggml" ? (kernels[e.info.weightType]?.split(", activations")[0] ?? "ggml mul_mat") : e.info.matmulKernel;
  const r: Result = {
    ...c,
    threads,
    loadS,
    sPerStep,
    tokensPerS: c.tokens / sPerStep,
    peakRssGB: (process.resourceUsage().maxRSS * 1024) / 1e9,
    weightGB: mem.weightBytes / 1e9,
    transposedGB: mem.transposedBytes / 1e9,
    computeGB: mem.computeBytes / 1e9,
    quantGB: mem.quantBytes / 1e9,
    quantTGB: mem.quantTBytes / 1e9,
    trainable: e.trainableParams,
    device: e.info.device,
    profile: profile ? e.takeProfile().map((p) => ({ ...p, ms: p.ms / steps, flop: p.flop / steps, count: p.count / steps })) : undefined,
    kernel: `${e.info.weightType}, ${kernelName}`,
    rooflineNote: "reason" in rk ? rk.reason : undefined,
  };
  const shapes = stepProductShapes(e.info);
  await e.dispose();
  // the roofline: the same kernel, alone, at the step's shapes and threads (the engine's memory freed first)
  if (measure && "kernel" in rk) r.rates = await measureKernel(rk.kernel, rk.type, shapes, c.tokens, threads);
  process.stdout.write(JSON.stringify(r) + "\n");
}

async function runConfig(c: Config, steps: number, profile: boolean, measure = false): Promise<Result> {
  const file = await benchModel(c.type, c.shape);
  const label = `${c.shape} ${c.type} ${c.memory}${c.checkpointing ? "+ckpt" : ""} T=${c.tokens} r=${c.r} ${c.targets.join(",")} ${c.threads || os.availableParallelism()} threads`;
  process.stderr.write(`timing ${label}: 1 warm-up + ${steps} steps${measure ? ", then the product kernel alone (roofline)" : ""}\n`);
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--child", file, JSON.stringify({ c, steps, profile, measure })], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`the run ${label} failed (exit ${r.status})`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Result;
}

const gb = (x: number) => `${x.toFixed(2)} GB`;

function printTable(title: string, rows: Result[]): void {
  console.log(`\n${title}`);
  console.log("weights  memory      tokens  rank  targets  threads   s/step  tokens/s  peak RSS   weights  (quantized)  compute buf  (one Wᵀ)");
  for (const r of rows) {
    console.log(
      `${r.type.padEnd(8)} ${(r.memory + (r.checkpointing ? "+ckpt" : "")).padEnd(10)}  ${String(r.tokens).padStart(6)}  ${String(r.r).padStart(4)}  ${(r.targets.length === 7 ? "all 7" : r.targets.join(",")).padEnd(7)}  ${String(r.threads).padStart(7)}  ${r.sPerStep.toFixed(2).padStart(7)}  ${r.tokensPerS.toFixed(1).padStart(8)}  ${gb(r.peakRssGB).padStart(8)}  ${gb(r.weightGB).padStart(8)}  ${gb(r.quantGB).padStart(11)}  ${gb(r.computeGB).padStart(11)}  ${gb(r.quantTGB).padStart(8)}`,
    );
  }
}

function printProfile(r: Result): void {
  const prof = r.profile ?? [];
  const total = prof.reduce((s, p) => s + p.ms, 0);
  console.log(
    `\nper-op profile, ${r.type} ${r.memory}${r.checkpointing ? "+ckpt" : ""}, ${r.tokens} tokens (one step, nodes timed one by one: ${(total / 1000).toFixed(2)} s)`,
  );
  console.log("phase     op                                              calls      ms   share   GFLOP/s");
  for (const p of prof) {
    if (p.ms / total < 0.002) continue;
    const gflops = p.flop > 0 ? (p.flop / (p.ms / 1000) / 1e9).toFixed(0) : "";
    console.log(
      `${p.phase.padEnd(9)} ${p.op.padEnd(47)} ${String(Math.round(p.count)).padStart(6)} ${p.ms.toFixed(0).padStart(7)}  ${((100 * p.ms) / total).toFixed(1).padStart(5)}%  ${gflops.padStart(8)}`,
    );
  }
  for (const phase of ["forward", "backward"]) {
    const ms = prof.filter((p) => p.phase === phase).reduce((s, p) => s + p.ms, 0);
    console.log(`${phase}: ${(ms / 1000).toFixed(2)} s (${((100 * ms) / total).toFixed(0)}%)`);
  }
}

/** A roofline line per configuration, after its type's measured rates (measured once per type). */
function printRoofline(results: Result[]): void {
  console.log("");
  for (const r of results) {
    const rates = results.find((x) => x.type === r.type && x.kernel === r.kernel && x.rates)?.rates;
    const what = `${r.type} ${r.memory}${r.checkpointing ? "+ckpt" : ""}`;
    if (!rates) {
      console.log(`${what} roofline: not measured: ${r.rooflineNote ?? "no microbenchmark ran for this weight type"}`);
      continue;
    }
    if (r.rates) console.log(`product kernel alone (${r.kernel}; ${r.threads} threads; best and median of timed runs):\n${formatRates(rates).join("\n")}`);
    console.log(`${what} ${formatRoofline(roofline(rates, r.sPerStep, r.profile), r.kernel, r.threads)}`);
  }
}

/** One configuration over several rounds: the median step time (its round's other figures), the largest peak, the roofline's rates. */
function medianOfRounds(rs: Result[]): Result {
  const sorted = rs.slice().sort((x, y) => x.sPerStep - y.sPerStep);
  return { ...sorted[Math.floor((sorted.length - 1) / 2)], peakRssGB: Math.max(...rs.map((r) => r.peakRssGB)), rates: rs.find((r) => r.rates)?.rates };
}

async function main(): Promise<void> {
  if (process.argv[2] === "--child") {
    const { c, steps, profile, measure } = JSON.parse(process.argv[4]) as { c: Config; steps: number; profile: boolean; measure: boolean };
    return child(process.argv[3], c, steps, profile, measure);
  }
  const a = parse(process.argv.slice(2));
  const base: Config = { shape: a.shape, type: "bf16", memory: "fast", checkpointing: false, tokens: a.tokens, r: 8, targets: ["q", "v"], threads: a.threads };
  const ALL = ["q", "k", "v", "o", "gate", "up", "down"];
  const results: Result[] = [];
  const tables: [string, Result[]][] = [];
  let roundLines: string[] = []; // --rounds: each round's step times
  if (a.scaling) {
    const run = async (title: string, cs: Partial<Config>[], steps = a.steps) => {
      const rows: Result[] = [];
      for (const c of cs) rows.push(await runConfig({ ...base, ...c }, steps, false));
      results.push(...rows);
      tables.push([title, rows]);
    };
    await run(
      "sequence length (bf16, fast, r=8 on q,v)",
      [64, 128, 256, 512, 1024].map((tokens) => ({ tokens })),
      2,
    );
    await run(
      "rank (bf16, fast, 256 tokens, q,v)",
      [8, 16, 32, 64].map((r) => ({ r })),
    );
    await run("targets (bf16, fast, 256 tokens, r=8)", [{ targets: ["q", "v"] }, { targets: ALL }]);
    await run("threads (bf16, fast, 256 tokens, r=8 on q,v)", [{ threads: 1 }, { threads: 2 }], 2);
    await run(
      "gradient checkpointing at 1,024 tokens (bf16, r=8 on q,v)",
      [{ tokens: 1024 }, { tokens: 1024, checkpointing: true }, { tokens: 1024, memory: "lean", checkpointing: true }],
      2,
    );
  } else {
    const configs: Config[] = [];
    for (const type of a.types)
      for (const memory of a.memory)
        for (const ck of a.checkpointing) configs.push({ ...base, type, memory, checkpointing: ck === "auto" ? memory === "lean" : ck === "on" });
    // round-robin: round k times every configuration once
    const byRound: Result[][] = [];
    for (let k = 0; k < a.rounds; k++) {
      const round: Result[] = [];
      // the roofline's microbenchmark once per weight type, after its first configuration of round 1
      for (const [i, c] of configs.entries())
        round.push(await runConfig(c, a.steps, a.profile && k === 0, a.roofline && k === 0 && configs.findIndex((d) => d.type === c.type) === i));
      byRound.push(round);
    }
    const rows = configs.map((_, i) => medianOfRounds(byRound.map((round) => round[i])));
    if (a.rounds > 1)
      roundLines = byRound.map(
        (round, k) =>
          `round ${k + 1}: ${round.map((r) => `${r.type} ${r.memory} ${r.sPerStep.toFixed(2)} s (${(r.sPerStep / round[0].sPerStep).toFixed(2)}x)`).join(", ")}`,
      );
    results.push(...rows);
    tables.push([
      `LoRA step at ${a.shape} shape (r=8 on q,v; ${a.tokens} tokens, batch 1; CPU, ${rows[0]?.threads} threads; ${os.cpus()[0]?.model ?? ""})`,
      rows,
    ]);
  }
  if (a.json) {
    console.log(JSON.stringify(results, null, 2));
    return;
  }
  console.log(`\nmachine: ${os.cpus()[0]?.model ?? "?"}, ${os.availableParallelism()} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
  for (const [title, rows] of tables) printTable(title, rows);
  if (roundLines.length) console.log(`\neach round's s/step and ratio to the first row:\n${roundLines.join("\n")}`);
  for (const r of results) if (r.profile) printProfile(r);
  if (a.roofline && !a.scaling) printRoofline(results);
  console.log("\nagainst PyTorch on this machine: npm run bench:vs-torch (both sides in one command)");
  console.log(
    "compute buf: ggml's compute buffer (activations and temporaries) of the largest graph, of which one Wᵀ: the largest made per layer from a quantized weight; " +
      "weights: base weights + transposed copies (fast), of which quantized: the quantized matrices",
  );
}

main().catch((err: unknown) => {
  console.error(`bench:step: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
