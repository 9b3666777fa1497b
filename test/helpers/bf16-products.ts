// The BF16 product kernels' tests (amx-kernel, bf16-kernel): seeded inputs, the exact float64
// product with Σ|w·x|, the γ_K summation bound (the tests' headers derive it), and the test hook.
import fs from "node:fs";
import { expect } from "vitest";
import type { LoraEngine } from "../../src/engine/engine.js";
import { loadNative, type NativeMatmulKernel } from "../../src/engine/native.js";
import { bf16BitsToF32, f32ToBf16Bits } from "../../src/formats/float16.js";
import { randomize, rng } from "./models.js";

const U = 2 ** -24;
/** γ_K = K·u / (1 − K·u), u = 2⁻²⁴: the bound of summing K terms in F32, relative to Σ|terms|. */
export const gamma = (k: number) => (k * U) / (1 - k * U);

/** y = W·x (W [N rows of K]) or Wᵀ·x (transpose: W [K rows of N]), x [T rows of K]. */
export interface Case {
  K: number;
  N: number;
  T: number;
  transpose: boolean;
}

/** Seeded BF16 weights and activations (bf16-representable unless `bf16x` is false). */
export function inputs(c: Case, seed: number, bf16x = true): { w: Uint16Array; x: Float32Array } {
  const r = rng(seed);
  const w = Uint16Array.from({ length: c.K * c.N }, () => f32ToBf16Bits(r() * 0.5));
  const x = Float32Array.from({ length: c.K * c.T }, () => (bf16x ? bf16BitsToF32(f32ToBf16Bits(r() * 2)) : r() * 2));
  return { w, x };
}

/** exact[t][n] and Σ|w·x| of the BF16-rounded inputs, in float64. */
export function exact(c: Case, w: Uint16Array, x: Float32Array): { y: Float64Array; abs: Float64Array } {
  const { K, N, T } = c;
  const wf = Float64Array.from(w, (b) => bf16BitsToF32(b));
  const xf = Float64Array.from(x, (v) => bf16BitsToF32(f32ToBf16Bits(v)));
  const y = new Float64Array(N * T);
  const abs = new Float64Array(N * T);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = (c.transpose ? wf[k * N + n]! : wf[n * K + k]!) * xf[t * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      y[t * N + n] = s;
      abs[t * N + n] = a;
    }
  }
  return { y, abs };
}

/** The largest |got − want| / (factor·γ_K·Σ|w·x|) over all elements (≤ 1 within the bound). */
export function worst(got: Float32Array, want: ArrayLike<number>, abs: Float64Array, K: number, factor: number): number {
  let m = 0;
  for (let i = 0; i < got.length; i++) m = Math.max(m, Math.abs(got[i]! - want[i]!) / (factor * gamma(K) * abs[i]! + 1e-30));
  return m;
}

/** The kernel test hook (amxMatmulTest) on one case. */
export function run(kernel: NativeMatmulKernel | "avx512-packed", c: Case, w: Uint16Array, x: Float32Array, threads = 2): Promise<Float32Array> {
  return loadNative().amxMatmulTest(kernel, c.transpose, w, x, c.K, c.N, c.T, threads);
}

/** Activations given in F32 are rounded to BF16 as ggml rounds them (round to nearest even): `kernel` within the bound of exact and of ggml, W·x and Wᵀ·x. */
export async function expectActivationsRoundedAsGgml(kernel: NativeMatmulKernel): Promise<void> {
  for (const transpose of [false, true]) {
    const c = { K: 96, N: 40, T: 9, transpose };
    const { w, x } = inputs(c, 5, false);
    const ref = exact(c, w, x);
    const ours = await run(kernel, c, w, x);
    expect(worst(ours, ref.y, ref.abs, c.K, 1)).toBeLessThanOrEqual(1);
    expect(worst(ours, await run("ggml", c, w, x), ref.abs, c.K, 2)).toBeLessThanOrEqual(1);
  }
}

/** The bound has teeth: `kernel` on weights with one swapped pair is far outside it. */
export async function expectSwappedPairOutsideBound(kernel: NativeMatmulKernel): Promise<void> {
  const c = { K: 100, N: 50, T: 7, transpose: false };
  const { w, x } = inputs(c, 11);
  const ref = exact(c, w, x);
  const bad = w.slice();
  [bad[3], bad[4]] = [bad[4]!, bad[3]!];
  expect(worst(await run(kernel, c, bad, x), ref.y, ref.abs, c.K, 1)).toBeGreaterThan(10);
}

/** Whether /proc/cpuinfo's flags list `flag` (false where it cannot be read). */
export function cpuHasFlag(flag: string): boolean {
  try {
    return new RegExp(`^flags\\s*:.*\\s${flag}(\\s|$)`, "m").test(fs.readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
}

/**
 * `kernel` on case `c` (seeded by its shape): within γ_K·Σ|w·x| of exact, ggml's BF16 mul_mat
 * too, the two within 2·γ_K·Σ|w·x| of each other, and one thread gives the same sums as two.
 * Resolves to the kernel's result.
 */
export async function expectWithinBound(kernel: NativeMatmulKernel, c: Case): Promise<Float32Array> {
  const { w, x } = inputs(c, c.K * 7 + c.N + c.T);
  const ref = exact(c, w, x);
  const ours = await run(kernel, c, w, x);
  const ggml = await run("ggml", c, w, x);
  expect(worst(ours, ref.y, ref.abs, c.K, 1)).toBeLessThanOrEqual(1);
  expect(worst(ggml, ref.y, ref.abs, c.K, 1)).toBeLessThanOrEqual(1);
  expect(worst(ours, ggml, ref.abs, c.K, 2)).toBeLessThanOrEqual(1);
  // one thread and two share out the work differently but each element's sum is the same
  expect(await run(kernel, c, w, x, 1)).toEqual(ours);
  return ours;
}

/** `f` with the environment variable `name` set to `value` (undefined: unset), put back after (the kernel switches are read when an engine is created). */
export async function withEnv<T>(name: string, value: string | undefined, f: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return await f();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

/**
 * f with the rest of the graph in ggml's composition (TEXT2SQL_FUSED=0, TEXT2SQL_FUSED_LORA=0):
 * the gradient tests of the BF16 product kernels bound the kernels alone. The fused attention's F32 sums (1e-7 from
 * ggml's, test/fused-kernel.test.ts) flip BF16 roundings downstream on their own: over six seeds
 * of these tests' batch, ‖ours − ggml‖ / ‖ggml − F32 model‖ spans 0.003-0.153 with the fused ops
 * and 0.046-0.089 without (AMD EPYC, AVX512-BF16 kernel).
 */
export function productsOnly<T>(f: () => Promise<T>): Promise<T> {
  // the fused LoRA products (native/lora.h) have their own switch
  return withEnv("TEXT2SQL_FUSED", "0", () => withEnv("TEXT2SQL_FUSED_LORA", "0", f));
}

/** The LoRA gradients, flattened, of one seeded batch (2 sequences of 13 tokens) under a seeded random adapter. */
export async function batchGradients(e: LoraEngine): Promise<number[]> {
  await e.setAdapter(randomize(await e.getAdapter(), 17, 0.2));
  const r = rng(3);
  const tokens = Int32Array.from({ length: 26 }, () => 2 + Math.floor(((r() + 1) / 2) * 31000));
  const mask = Uint8Array.from({ length: 26 }, (_, i) => (i % 13 === 0 ? 0 : 1));
  await e.accumulate({ tokens, mask, nSeq: 2, seqLen: 13 }, 24);
  return (await e.getAdapter({ gradients: true })).flatMap((t) => Array.from(t.data));
}
