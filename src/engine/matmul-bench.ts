// The roofline of a training step (npm run bench:step): a short microbenchmark of the kernel that
// runs the step's frozen-weight products, at the step's shapes and threads (the addon's
// matmulBench), and the arithmetic that sets a step's profile against that measured peak.
import os from "node:os";
import { checkThreads } from "./system.js";
import { fail } from "./lora.js";
import { loadNative, type NativeMatmulKernel, type NativeProfileEntry } from "./native.js";

/** A frozen-weight product y = W·x: W has N rows of K (ggml: [K, N]), x is [K, T]. */
export interface ProductShape {
  K: number;
  N: number;
}

/** The kernel's measured rate at one shape: the best and the median of its timed runs. */
export interface ShapeRate extends ProductShape {
  T: number;
  runs: number;
  bestGflops: number;
  medianGflops: number;
}

export type BenchWeightType = "f32" | "f16" | "bf16";

/**
 * The distinct shapes of a step's frozen-weight products at a model's size: W·x of q, k/v, o,
 * gate/up, down and the output head, and their Wᵀ·dy in the backward (K and N swapped).
 */
export function stepProductShapes(m: { nEmbd: number; nHead: number; nHeadKv: number; headDim: number; nFf: number; nVocab: number }): ProductShape[] {
  const q = m.nHead * m.headDim;
  const kv = m.nHeadKv * m.headDim;
  const fwd: ProductShape[] = [
    { K: m.nEmbd, N: q },
    { K: m.nEmbd, N: kv },
    { K: q, N: m.nEmbd },
    { K: m.nEmbd, N: m.nFf },
    { K: m.nFf, N: m.nEmbd },
    { K: m.nEmbd, N: m.nVocab },
  ];
  const all = [...fwd, ...fwd.map((s) => ({ K: s.N, N: s.K }))];
  return all.filter((s, i) => all.findIndex((t) => t.K === s.K && t.N === s.N) === i);
}

/**
 * The microbenchmark's kernel for an engine's frozen-weight products (EngineInfo.matmulKernel,
 * weightType, device), or why there is none: only ggml's f32/f16/bf16 mul_mat, the AMX tiles and
 * the AVX512-BF16 GEMM on the CPU are measured.
 */
export function rooflineKernel(info: {
  matmulKernel: string;
  weightType: string;
  device: string;
}): { kernel: NativeMatmulKernel; type: BenchWeightType } | { reason: string } {
  if (info.device !== "CPU") return { reason: `the products run on ${info.device}; the microbenchmark measures the CPU kernels only` };
  if (info.matmulKernel === "amx-bf16") return { kernel: "amx", type: "bf16" };
  if (info.matmulKernel === "amx-bf16-emulated") return { kernel: "emulate", type: "bf16" };
  if (info.matmulKernel === "avx512-bf16") return { kernel: "avx512", type: "bf16" };
  if (info.matmulKernel === "ggml" && ["f32", "f16", "bf16"].includes(info.weightType)) return { kernel: "ggml", type: info.weightType as BenchWeightType };
  return {
    reason: `no microbenchmark for the ${info.matmulKernel} kernel on ${info.weightType} weights (only ggml's f32/f16/bf16 mul_mat, the AMX tiles and the AVX512-BF16 GEMM)`,
  };
}

/**
 * Times y = W·x on the CPU with `kernel` (W [K, N] of `type`, seeded values; x [K, T] f32, as a
 * training step's products run): one untimed run, then `reps` timed ones; resolves to each timed
 * run's milliseconds. threads 0: all cores.
 */
export async function benchMatmul(o: {
  kernel: NativeMatmulKernel;
  type: BenchWeightType;
  K: number;
  N: number;
  T: number;
  threads: number;
  reps: number;
}): Promise<number[]> {
  if (!["ggml", "amx", "emulate", "avx512"].includes(o.kernel)) fail("kernel", "ggml, amx, emulate or avx512", o.kernel);
  if (!["f32", "f16", "bf16"].includes(o.type)) fail("type", "f32, f16 or bf16", o.type);
  if (o.kernel !== "ggml" && o.type !== "bf16") fail("type", `bf16 for the ${o.kernel} kernel`, o.type);
  for (const k of ["K", "N", "T"] as const) {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 1 << 20) fail(k, "an integer from 1 to 1048576", v);
  }
  if (o.K * Math.max(o.N, o.T) > 2 ** 31) fail("K·N", "at most 2^31 elements in W and x", o.K * Math.max(o.N, o.T));
  const threads = checkThreads("threads", o.threads) || os.availableParallelism();
  if (typeof o.reps !== "number" || !Number.isInteger(o.reps) || o.reps < 1 || o.reps > 1000) fail("reps", "an integer from 1 to 1000", o.reps);
  return Array.from(await loadNative().matmulBench(o.kernel, o.type, o.K, o.N, o.T, threads, o.reps));
}

/** Timed runs per shape: about `targetGflop` of work (at least 3 runs, at most 30). */
export function benchReps(s: ProductShape, T: number, targetGflop = 100): number {
  return Math.min(30, Math.max(3, Math.round((targetGflop * 1e9) / (2 * s.K * s.N * T))));
}

/** The kernel's rate at every shape, one after the other (about 100 GFLOP of work per shape). */
export async function measureKernel(
  kernel: NativeMatmulKernel,
  type: BenchWeightType,
  shapes: ProductShape[],
  T: number,
  threads: number,
): Promise<ShapeRate[]> {
  const rates: ShapeRate[] = [];
  for (const s of shapes) {
    const ms = await benchMatmul({ kernel, type, K: s.K, N: s.N, T, threads, reps: benchReps(s, T) });
    rates.push(shapeRate(s, T, ms));
  }
  return rates;
}

/** GFLOP/s of timed runs (2·K·N·T flop each): the best run and the median (the lower middle of an even count). */
export function shapeRate(s: ProductShape, T: number, ms: number[]): ShapeRate {
  if (ms.length === 0 || ms.some((x) => !(x > 0))) throw new Error(`shapeRate: expected positive run times, got [${ms.join(", ")}]`);
  const sorted = ms.slice().sort((a, b) => a - b);
  const rate = (x: number) => (2 * s.K * s.N * T) / (x / 1000) / 1e9;
  return { K: s.K, N: s.N, T, runs: ms.length, bestGflops: rate(sorted[0]), medianGflops: rate(sorted[Math.floor((sorted.length - 1) / 2)]) };
}

export interface PhaseProducts {
  phase: string; // forward | backward
  ms: number;
  gflops: number;
  ofPeak: number; // gflops / peak
}

export interface Roofline {
  peak: ShapeRate; // the shape where the kernel ran fastest
  products?: { ms: number; gflops: number; ofPeak: number; phases: PhaseProducts[] };
  boundS?: number; // the step with every frozen-weight product at the peak rate
  ofBound?: number; // boundS / the step's time
  nonProductShare?: number; // (the step's time − the products' time) / the step's time
}

/** A frozen-weight product in the profile: W·x, Wᵀ·dy or the output head, on any kernel. */
export function isFrozenProduct(p: NativeProfileEntry): boolean {
  return p.flop > 0 && (p.op.includes("(frozen weight)") || p.op.includes("(output head)"));
}

/**
 * The step against the kernel's peak. stepS: the step's time (s); profile: one step's per-op
 * entries (ms, flop per step), or undefined when the step was not profiled.
 */
export function roofline(rates: ShapeRate[], stepS: number, profile?: NativeProfileEntry[]): Roofline {
  if (rates.length === 0) throw new Error("roofline: no measured shapes");
  if (!(stepS > 0)) throw new Error(`roofline: expected a positive step time, got ${stepS}`);
  const peak = rates.reduce((a, b) => (b.bestGflops > a.bestGflops ? b : a));
  const r: Roofline = { peak };
  const prods = (profile ?? []).filter(isFrozenProduct);
  if (!profile || prods.length === 0) return r;
  const sum = (ps: NativeProfileEntry[]) => ({ ms: ps.reduce((a, p) => a + p.ms, 0), flop: ps.reduce((a, p) => a + p.flop, 0) });
  const rate = (x: { ms: number; flop: number }) => x.flop / (x.ms / 1000) / 1e9;
  const all = sum(prods);
  const phases = [...new Set(prods.map((p) => p.phase))].map((phase) => {
    const x = sum(prods.filter((p) => p.phase === phase));
    return { phase, ms: x.ms, gflops: rate(x), ofPeak: rate(x) / peak.bestGflops };
  });
  r.products = { ms: all.ms, gflops: rate(all), ofPeak: rate(all) / peak.bestGflops, phases };
  r.boundS = Math.max(0, stepS - all.ms / 1000) + all.flop / (peak.bestGflops * 1e9);
  r.ofBound = r.boundS / stepS;
  r.nonProductShare = Math.max(0, stepS - all.ms / 1000) / stepS;
  return r;
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
const gf = (x: number) => x.toFixed(0);

/** The roofline line; kernel names it (e.g. "bf16"), threads the step's. */
export function formatRoofline(r: Roofline, kernel: string, threads: number): string {
  const p = r.peak;
  let s = `roofline: product kernel peak ${gf(p.bestGflops)} GFLOP/s (${kernel}, [${p.N}x${p.K}]x[${p.K}x${p.T}], ${threads} threads)`;
  if (!r.products || r.boundS === undefined || r.ofBound === undefined || r.nonProductShare === undefined)
    return `${s}; the products' share of it and the step's bound need the per-op profile (--profile)`;
  const ph = r.products.phases.map((x) => `${x.phase} ${gf(x.gflops)} = ${pct(x.ofPeak)}`).join(", ");
  s += `; frozen products ${gf(r.products.gflops)} GFLOP/s = ${pct(r.products.ofPeak)} of peak (${ph})`;
  s += `; step at ${pct(r.ofBound)} of the products-at-peak bound (${r.boundS.toFixed(2)} s)`;
  return `${s}; non-product time ${pct(r.nonProductShare)} of the step`;
}

/** One line per measured shape: the best and median rate, and the number of timed runs. */
export function formatRates(rates: ShapeRate[]): string[] {
  return rates.map((x) => `  [${x.N}x${x.K}]x[${x.K}x${x.T}]: ${gf(x.bestGflops)} GFLOP/s best, ${gf(x.medianGflops)} median (${x.runs} runs)`);
}
