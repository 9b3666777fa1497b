/**
 * npm run bench:vs-torch: our LoRA step (bench:step's shape: TinyLlama, r=8 on q,v, one sequence of
 * --tokens tokens, AdamW) side by side with the same step in PyTorch bf16 (scripts/bench-torch-step.py),
 * in one run, in rounds (ours fast, ours lean, PyTorch, [baseline fast, baseline lean]), so that a
 * neighbour's load hits every side alike; prints the median tokens/s of each over the rounds and
 * the ratios to PyTorch.
 *
 *   npm run bench:vs-torch                          bf16 fast and lean against PyTorch bf16
 *   npm run bench:vs-torch -- --baseline <dir>      also another text2sql checkout's bench:step
 *                                                   (built: dist/ and build/), e.g. before a change
 *   options: --rounds 3 --steps 3 --tokens 256 --threads N --types bf16 --amx 0|auto|emulate
 *            --python <interpreter>
 *
 * Needs a python3 with torch (Debian: apt install python3-torch): --python, else the first of
 * `python3` and `/usr/bin/python3` that imports torch (a pyenv `python3` often has none while
 * Debian's has it); the error names every interpreter tried. --amx sets TEXT2SQL_AMX for our
 * runs (0: ggml's kernels, for comparison on an AMX CPU). The CPU and the load average at the
 * start and the end are printed with the table.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { flags } from "./args.js";
import { findTorchPython } from "./torch-python.js";

interface Args {
  rounds: number;
  steps: number;
  tokens: number;
  threads: number;
  types: string[];
  baseline?: string;
  amx?: string;
  python?: string;
}

interface Row {
  label: string;
  tokensPerS: number[];
  peakRssGB: number[];
}

const HELP = `usage: npm run bench:vs-torch -- [options]
Our LoRA step (TinyLlama shape, r=8 on q,v, one sequence, AdamW) and the same step in PyTorch bf16,
in rounds in one command (ours fast, ours lean, PyTorch[, the baseline's fast and lean]); prints the
median tokens/s and peak RSS of each side, the ratios to PyTorch, the CPU and the load average.
  --rounds 3            rounds, each side once per round in turn (a changing load hits them all)
  --steps 3             timed steps per side and round, after one warm-up step
  --tokens 256          sequence length
  --threads N           CPU threads for both sides (default: all cores)
  --types bf16          our weight types, a list (PyTorch runs bf16)
  --baseline DIR        also another built text2sql checkout's bench:step (e.g. before a change)
  --amx 0|auto|emulate  TEXT2SQL_AMX for our runs
  --python PATH         the python3 with torch (default: the first of python3, /usr/bin/python3
                        that imports it; Debian: apt install python3-torch)`;

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");

function parse(argv: string[]): Args {
  const a: Args = { rounds: 3, steps: 3, tokens: 256, threads: os.availableParallelism(), types: ["bf16"] };
  for (const [k, v] of flags(argv)) {
    if (k === "--rounds") a.rounds = Number(v());
    else if (k === "--steps") a.steps = Number(v());
    else if (k === "--tokens") a.tokens = Number(v());
    else if (k === "--threads") a.threads = Number(v());
    else if (k === "--types") a.types = v().split(",");
    else if (k === "--baseline") a.baseline = path.resolve(v());
    else if (k === "--amx") a.amx = v();
    else if (k === "--python") a.python = v();
    else if (k === "--help" || k === "-h") {
      console.log(HELP);
      process.exit(0);
    } else throw new Error(`unknown option ${k} (see --help)`);
  }
  if (!(a.rounds >= 1 && a.steps >= 1 && a.tokens >= 2 && a.threads >= 1)) throw new Error("--rounds, --steps, --threads >= 1, --tokens >= 2");
  if (a.baseline && !fs.existsSync(path.join(a.baseline, "dist", "scripts", "bench-step.js")))
    throw new Error(`--baseline ${a.baseline}: no dist/scripts/bench-step.js there (build it: npm run build)`);
  return a;
}

/** bench:step of a checkout (ours or the baseline) for one type and memory mode: tokens/s and peak RSS. */
function ours(dir: string, a: Args, type: string, memory: string, env: NodeJS.ProcessEnv): { tokensPerS: number; peakRssGB: number } {
  const args = ["--types", type, "--memory", memory, "--steps", String(a.steps), "--tokens", String(a.tokens), "--threads", String(a.threads), "--json"];
  const r = spawnSync(process.execPath, [path.join(dir, "dist", "scripts", "bench-step.js"), ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    env,
  });
  if (r.status !== 0) throw new Error(`bench:step in ${dir} (${type} ${memory}) failed with exit ${r.status}`);
  const res = JSON.parse(r.stdout.slice(r.stdout.indexOf("["))) as { tokensPerS: number; peakRssGB: number }[];
  return res[0]!;
}

function torch(a: Args, python: string, dtype: string): { tokensPerS: number; peakRssGB: number } {
  const script = path.join(root, "scripts", "bench-torch-step.py");
  const r = spawnSync(
    python,
    [script, "--tokens", String(a.tokens), "--steps", String(a.steps), "--threads", String(a.threads), "--dtype", dtype === "bf16" ? "bf16" : "fp32"],
    {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  if (r.error || r.status !== 0) throw new Error(`${python} ${script} failed (${r.error?.message ?? `exit ${r.status}`})`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as { tokensPerS: number; peakRssGB: number };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function main(): void {
  const a = parse(process.argv.slice(2));
  const python = findTorchPython(a.python);
  const loadBefore = os.loadavg()[0]!;
  const env = { ...process.env, ...(a.amx !== undefined ? { TEXT2SQL_AMX: a.amx } : {}) };
  const rows = new Map<string, Row>();
  const add = (label: string, r: { tokensPerS: number; peakRssGB: number }) => {
    const row = rows.get(label) ?? { label, tokensPerS: [], peakRssGB: [] };
    row.tokensPerS.push(r.tokensPerS);
    row.peakRssGB.push(r.peakRssGB);
    rows.set(label, row);
    process.stderr.write(`  ${label}: ${r.tokensPerS.toFixed(1)} tokens/s, ${r.peakRssGB.toFixed(2)} GB\n`);
  };
  for (let round = 1; round <= a.rounds; round++) {
    process.stderr.write(`round ${round} of ${a.rounds}\n`);
    for (const type of a.types) {
      for (const memory of ["fast", "lean"]) {
        add(`text2sql ${type} ${memory}`, ours(root, a, type, memory, env));
        if (a.baseline) add(`baseline ${type} ${memory}`, ours(a.baseline, a, type, memory, env));
      }
      add(`PyTorch ${type}`, torch(a, python, type));
    }
  }
  const cpu = os.cpus()[0]?.model ?? "?";
  const loadAfter = os.loadavg()[0]!;
  console.log(
    `\nLoRA step, TinyLlama shape, r=8 on q,v, ${a.tokens} tokens, ${a.threads} threads; ${cpu}; medians of ${a.rounds} rounds (each a median of ${a.steps} steps); PyTorch from ${python}; load average ${loadBefore.toFixed(2)} at the start, ${loadAfter.toFixed(2)} at the end`,
  );
  console.log("run                          tokens/s   vs PyTorch   peak RSS   per round (tokens/s)");
  for (const row of rows.values()) {
    const type = row.label.split(" ")[1]!;
    const ref = rows.get(`PyTorch ${type}`);
    const ratio = ref ? median(row.tokensPerS) / median(ref.tokensPerS) : NaN;
    console.log(
      `${row.label.padEnd(28)} ${median(row.tokensPerS).toFixed(1).padStart(8)}   ${ratio.toFixed(2).padStart(9)}x   ${median(row.peakRssGB).toFixed(2).padStart(5)} GB   ${row.tokensPerS.map((x) => x.toFixed(1)).join(", ")}`,
    );
  }
}

try {
  main();
} catch (err) {
  console.error(`bench:vs-torch: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
