// The roofline of bench:step (src/engine/matmul-bench.ts): the arithmetic and the line on made-up
// profiles whose answers are worked out by hand, the step's product shapes, the argument checks,
// and the addon's microbenchmark on a small product.
import { expect, test } from "vitest";
import { benchMatmul, benchReps, formatRoofline, roofline, rooflineKernel, shapeRate, stepProductShapes, type ShapeRate } from "../src/engine/matmul-bench.js";
import type { NativeProfileEntry } from "../src/engine/native.js";

const rate = (K: number, N: number, best: number): ShapeRate => ({ K, N, T: 256, runs: 5, bestGflops: best, medianGflops: best - 10 });

// one step: forward products 1e12 flop in 2.5 s (400 GFLOP/s), backward 1e12 in 5 s (200), head
// 0.5e12 in 1.25 s (400), attention 1 s (not a frozen-weight product), in a 10 s step
const profile: NativeProfileEntry[] = [
  { phase: "forward", op: "MUL_MAT bf16 x f32 (frozen weight) [tinyBLAS bf16]", count: 154, ms: 2500, flop: 1e12 },
  { phase: "backward", op: "MUL_MAT bf16 x f32 (frozen weight) [tinyBLAS bf16]", count: 154, ms: 5000, flop: 1e12 },
  { phase: "forward", op: "MUL_MAT bf16 x f32 (output head) [tinyBLAS bf16]", count: 1, ms: 1250, flop: 0.5e12 },
  { phase: "forward", op: "MUL_MAT f32 x f32 (attention)", count: 44, ms: 1000, flop: 1e11 },
  { phase: "backward", op: "CONT f32", count: 300, ms: 250, flop: 0 },
];

test("roofline: peak, the products' rate and share, the bound and the non-product time", () => {
  const r = roofline([rate(2048, 2048, 450), rate(2048, 5632, 500), rate(5632, 2048, 480)], 10, profile);
  expect(r.peak.N).toBe(5632); // the fastest shape
  // products: 2.5e12 flop in 8.75 s = 285.7 GFLOP/s = 57% of 500
  expect(r.products!.gflops).toBeCloseTo(2.5e12 / 8.75 / 1e9, 6);
  expect(r.products!.ofPeak).toBeCloseTo(2.5e12 / 8.75 / 1e9 / 500, 9);
  // forward: 1.5e12 in 3.75 s = 400 (80%); backward 1e12 in 5 s = 200 (40%)
  const fwd = r.products!.phases.find((p) => p.phase === "forward")!;
  const bwd = r.products!.phases.find((p) => p.phase === "backward")!;
  expect(fwd.gflops).toBeCloseTo(400, 9);
  expect(fwd.ofPeak).toBeCloseTo(0.8, 9);
  expect(bwd.gflops).toBeCloseTo(200, 9);
  // bound: 10 - 8.75 + 2.5e12 / 500e9 = 1.25 + 5 = 6.25 s, 62.5% of the step; non-product 12.5%
  expect(r.boundS).toBeCloseTo(6.25, 9);
  expect(r.ofBound).toBeCloseTo(0.625, 9);
  expect(r.nonProductShare).toBeCloseTo(0.125, 9);
  const line = formatRoofline(r, "bf16, tinyBLAS bf16", 2);
  expect(line).toBe(
    "roofline: product kernel peak 500 GFLOP/s (bf16, tinyBLAS bf16, [5632x2048]x[2048x256], 2 threads); " +
      "frozen products 286 GFLOP/s = 57% of peak (forward 400 = 80%, backward 200 = 40%); " +
      "step at 63% of the products-at-peak bound (6.25 s); non-product time 13% of the step",
  );
});

test("roofline without a profile gives the peak and says what the rest needs", () => {
  const r = roofline([rate(2048, 2048, 410)], 4.2);
  expect(r.products).toBeUndefined();
  expect(r.boundS).toBeUndefined();
  expect(formatRoofline(r, "bf16", 2)).toBe(
    "roofline: product kernel peak 410 GFLOP/s (bf16, [2048x2048]x[2048x256], 2 threads); the products' share of it and the step's bound need the per-op profile (--profile)",
  );
  expect(() => roofline([], 1)).toThrow(/no measured shapes/);
  expect(() => roofline([rate(1, 1, 1)], 0)).toThrow(/positive step time, got 0/);
});

test("shapeRate: best and median GFLOP/s of timed runs", () => {
  // 2·2048·2048·256 = 2.147e9 flop; 5 ms -> 429.5 GFLOP/s; median of [5, 6, 8, 10] is 6 ms
  const s = shapeRate({ K: 2048, N: 2048 }, 256, [8, 5, 10, 6]);
  expect(s.bestGflops).toBeCloseTo((2 * 2048 * 2048 * 256) / 0.005 / 1e9, 9);
  expect(s.medianGflops).toBeCloseTo((2 * 2048 * 2048 * 256) / 0.006 / 1e9, 9);
  expect(s.runs).toBe(4);
  expect(() => shapeRate({ K: 1, N: 1 }, 1, [1, 0])).toThrow(/positive run times/);
  expect(benchReps({ K: 2048, N: 32000 }, 256)).toBe(3);
  expect(benchReps({ K: 2048, N: 256 }, 256)).toBe(30);
  expect(benchReps({ K: 2048, N: 5632 }, 256)).toBe(17);
});

test("the step's product shapes at TinyLlama size, and the kernel to measure", () => {
  const shapes = stepProductShapes({ nEmbd: 2048, nHead: 32, nHeadKv: 4, headDim: 64, nFf: 5632, nVocab: 32000 });
  const key = (s: { K: number; N: number }) => `${s.K}x${s.N}`;
  expect(shapes.map(key).sort()).toEqual(["2048x2048", "2048x256", "256x2048", "2048x5632", "5632x2048", "2048x32000", "32000x2048"].sort());
  expect(rooflineKernel({ matmulKernel: "ggml", weightType: "bf16", device: "CPU" })).toEqual({ kernel: "ggml", type: "bf16" });
  expect(rooflineKernel({ matmulKernel: "amx-bf16", weightType: "bf16", device: "CPU" })).toEqual({ kernel: "amx", type: "bf16" });
  expect(rooflineKernel({ matmulKernel: "avx512-bf16", weightType: "bf16", device: "CPU" })).toEqual({ kernel: "avx512", type: "bf16" });
  expect(rooflineKernel({ matmulKernel: "q8_0-vnni", weightType: "q8_0", device: "CPU" })).toEqual({ reason: expect.stringMatching(/q8_0-vnni/) });
  expect(rooflineKernel({ matmulKernel: "ggml", weightType: "bf16", device: "CUDA0" })).toEqual({ reason: expect.stringMatching(/CUDA0/) });
});

test("benchMatmul checks its arguments before the addon, naming the option", async () => {
  const ok = { kernel: "ggml" as const, type: "bf16" as const, K: 64, N: 32, T: 16, threads: 1, reps: 2 };
  await expect(benchMatmul({ ...ok, K: 0 })).rejects.toThrow("K: expected an integer from 1 to 1048576, got 0");
  await expect(benchMatmul({ ...ok, reps: 1.5 })).rejects.toThrow("reps: expected an integer from 1 to 1000, got 1.5");
  await expect(benchMatmul({ ...ok, kernel: "amx", type: "f16" })).rejects.toThrow('type: expected bf16 for the amx kernel, got "f16"');
  await expect(benchMatmul({ ...ok, type: "q8_0" as "bf16" })).rejects.toThrow('type: expected f32, f16 or bf16, got "q8_0"');
});

test("benchMatmul times the kernel: one positive time per timed run", async () => {
  for (const type of ["bf16", "f16", "f32"] as const) {
    const ms = await benchMatmul({ kernel: "ggml", type, K: 256, N: 128, T: 32, threads: 1, reps: 3 });
    expect(ms).toHaveLength(3);
    for (const x of ms) expect(x).toBeGreaterThan(0);
  }
  const em = await benchMatmul({ kernel: "emulate", type: "bf16", K: 64, N: 32, T: 16, threads: 1, reps: 2 });
  expect(em).toHaveLength(2);
});
