/**
 * npm run bench:bf16-products: the BF16 frozen-weight product y = W·x alone, at a training step's
 * TinyLlama shapes (W [N x K] of q/o, k/v, gate/up and down, and their Wᵀ·dy shapes, x [K x T]),
 * through three kernels in the same command, in rounds: text2sql's AVX512-BF16 GEMM (where the CPU
 * has AVX512_BF16), ggml's mul_mat (llamafile's tinyBLAS) and PyTorch's torch.matmul (oneDNN), all
 * with the same threads, taking turns shape by shape (a PyTorch process stays up and times one shape
 * per request). Prints each kernel's best GFLOP/s per shape over the rounds, the CPU and
 * the load average at the start and the end (the dev machine is shared: say so with any figure).
 *
 *   options: --tokens 256 --threads 2 --rounds 3 --python <interpreter with torch>
 *
 * The output head (N = 32,000) is left out: one run is ~33 GFLOP, and it is the same kernel.
 * PyTorch: the first of `python3` and `/usr/bin/python3` that imports torch, unless --python.
 */
import { spawn } from "node:child_process";
import readline from "node:readline";
import os from "node:os";
import { benchMatmul, benchReps, shapeRate, stepProductShapes, type ProductShape } from "../src/engine/matmul-bench.js";
import { loadNative } from "../src/engine/native.js";
import { findTorchPython } from "./torch-python.js";

interface Args {
  tokens: number;
  threads: number;
  rounds: number;
  python?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { tokens: 256, threads: 2, rounds: 3 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = argv[++i];
    if (k === "--python" && v) a.python = v;
    else if ((k === "--tokens" || k === "--threads" || k === "--rounds") && v && /^[1-9][0-9]*$/.test(v))
      a[k.slice(2) as "tokens" | "threads" | "rounds"] = Number(v);
    else throw new Error(`bench-bf16-products: unknown option or bad value: ${k} ${v ?? ""} (options: --tokens N --threads N --rounds N --python FILE)`);
  }
  return a;
}

// One shape per line on stdin ({"K", "N", "reps"}), one JSON list of run milliseconds per line out
const TORCH = `
import json, sys, time, torch
T, threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
for line in sys.stdin:
    s = json.loads(line)
    w = torch.randn(s["N"], s["K"]).to(torch.bfloat16); x = torch.randn(s["K"], T).to(torch.bfloat16)
    torch.matmul(w, x)
    ms = []
    for _ in range(s["reps"]):
        t0 = time.perf_counter(); torch.matmul(w, x); ms.append((time.perf_counter() - t0) * 1000)
    print(json.dumps(ms), flush=True)
`;

/** A PyTorch process that times one shape per request, so that the kernels can take turns shape by shape. */
function startTorch(python: string, a: Args): { time(s: ProductShape & { reps: number }): Promise<number[]>; close(): void } {
  const child = spawn(python, ["-c", TORCH, String(a.tokens), String(a.threads)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = readline.createInterface({ input: child.stdout });
  const waiting: ((line: string) => void)[] = [];
  lines.on("line", (l) => waiting.shift()?.(l));
  return {
    time(s) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${python}: torch.matmul timed out`)), 300_000);
        waiting.push((l) => {
          clearTimeout(timer);
          resolve(JSON.parse(l) as number[]);
        });
        child.stdin.write(`${JSON.stringify(s)}\n`);
      });
    },
    close: () => child.stdin.end(),
  };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const python = findTorchPython(a.python);
  const ours = loadNative().systemInfo().cpuFeatures.avx512_bf16;
  const tiny = { nEmbd: 2048, nHead: 32, nHeadKv: 4, headDim: 64, nFf: 5632, nVocab: 32000 };
  const shapes = stepProductShapes(tiny)
    .filter((s) => s.N !== tiny.nVocab && s.K !== tiny.nVocab)
    .map((s) => ({ ...s, reps: benchReps(s, a.tokens, 20) }));
  const kernels: ("avx512" | "ggml" | "torch")[] = [...(ours ? (["avx512"] as const) : []), "ggml", "torch"];
  const best = new Map<string, number>();
  const loadBefore = os.loadavg()[0]!;
  const torch = startTorch(python, a);
  for (let round = 0; round < a.rounds; round++) {
    for (const s of shapes) {
      for (const k of kernels) {
        const ms =
          k === "torch" ? await torch.time(s) : await benchMatmul({ kernel: k, type: "bf16", K: s.K, N: s.N, T: a.tokens, threads: a.threads, reps: s.reps });
        const key = `${k} ${s.N}x${s.K}`;
        best.set(key, Math.max(best.get(key) ?? 0, shapeRate(s, a.tokens, ms).bestGflops));
      }
    }
  }
  torch.close();
  const loadAfter = os.loadavg()[0]!;
  const name = { avx512: "text2sql AVX512-BF16", ggml: "ggml tinyBLAS", torch: "torch.matmul" };
  console.log(`W·x bf16 x f32 (torch: bf16 x bf16), T = ${a.tokens}, ${a.threads} threads: best GFLOP/s of ${a.rounds} rounds`);
  console.log(`${"shape".padEnd(24)}${kernels.map((k) => name[k].padStart(22)).join("")}${ours ? "   ours/torch" : ""}`);
  for (const s of shapes) {
    const g = kernels.map((k) => best.get(`${k} ${s.N}x${s.K}`)!);
    const ratio = ours ? `${(g[0]! / g[g.length - 1]!).toFixed(2).padStart(14)}` : "";
    console.log(`${`[${s.N}x${s.K}]x[${s.K}x${a.tokens}]`.padEnd(24)}${g.map((x) => x.toFixed(0).padStart(22)).join("")}${ratio}`);
  }
  console.log(
    `${os.cpus()[0]?.model ?? "unknown CPU"}; PyTorch from ${python}; load average ${loadBefore.toFixed(2)} at the start, ${loadAfter.toFixed(2)} at the end`,
  );
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
