// text2sql's AVX512-BF16 GEMM of the frozen-weight products (native/bf16k*.cpp), on CPUs whose
// /proc/cpuinfo lists avx512_bf16 (skipped elsewhere, and said so). Reference: the exact (float64)
// product of the same BF16 weights and BF16-rounded activations, and ggml's own BF16 mul_mat.
//
// Bound: every product of two BF16 values is exact in F32 (8-bit significands: 16 bits of
// product fit F32's 24), and vdpbf16ps adds them in F32, so the kernel differs from the exact
// sum only by the rounding of its F32 additions. For any order of summing K terms,
// |fl(Σ) − Σ| ≤ γ_K · Σ|w·x| with γ_K = K·u / (1 − K·u), u = 2⁻²⁴ (Higham, Accuracy and
// Stability, 2nd ed., eq. 4.4). So ours and ggml's tinyBLAS (vdpbf16ps too) are each within
// γ_K·Σ|w·x| of exact, elementwise, and within 2·γ_K·Σ|w·x| of each other: summation order only.
// A wrong packing, K-block, panel or edge moves an element by a whole term or more (far above it;
// the swapped-pair test shows the bound catches one). vdpbf16ps treats BF16 denormals as zero;
// these inputs have none.
import fs from "node:fs";
import { describe, expect, test } from "vitest";
import { LoraEngine } from "../src/engine/engine.js";
import { loadNative } from "../src/engine/native.js";
import { bf16BitsToF32, f32ToBf16Bits } from "../src/formats/float16.js";
import { randomize, relError, rng, testModel } from "./helpers/models.js";

const U = 2 ** -24;
const gamma = (k: number) => (k * U) / (1 - k * U);

interface Case {
  K: number;
  N: number;
  T: number;
  transpose: boolean;
}

type Kernel = "avx512" | "avx512-packed" | "ggml";

function inputs(c: Case, seed: number, bf16x = true): { w: Uint16Array; x: Float32Array } {
  const r = rng(seed);
  const w = Uint16Array.from({ length: c.K * c.N }, () => f32ToBf16Bits(r() * 0.5));
  const x = Float32Array.from({ length: c.K * c.T }, () => (bf16x ? bf16BitsToF32(f32ToBf16Bits(r() * 2)) : r() * 2));
  return { w, x };
}

/** exact[t][n] and Σ|w·x| of the BF16-rounded inputs, in float64 (w [N rows of K], or [K rows of N] transposed). */
function exact(c: Case, w: Uint16Array, x: Float32Array): { y: Float64Array; abs: Float64Array } {
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
function worst(got: Float32Array, want: ArrayLike<number>, abs: Float64Array, K: number, factor: number): number {
  let m = 0;
  for (let i = 0; i < got.length; i++) m = Math.max(m, Math.abs(got[i]! - want[i]!) / (factor * gamma(K) * abs[i]! + 1e-30));
  return m;
}

function run(kernel: Kernel, c: Case, w: Uint16Array, x: Float32Array, threads = 2): Promise<Float32Array> {
  return loadNative().amxMatmulTest(kernel, c.transpose, w, x, c.K, c.N, c.T, threads);
}

const hasBf16 = (() => {
  try {
    return /^flags\s*:.*\savx512_bf16(\s|$)/m.test(fs.readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
})();

// The kernel's blocks: 8 rows (tokens) x 3 panels of 16 columns, K-blocks of 512 (256 pairs).
// Ragged everywhere: odd K (a half pair), K past one and two K-blocks, N not a multiple of 16 or
// 48, T = 1, 7, 9 (not a multiple of 8), 255; and whole blocks for contrast.
const SHAPES: Omit<Case, "transpose">[] = [
  { K: 37, N: 7, T: 7 },
  { K: 100, N: 50, T: 1 },
  { K: 300, N: 33, T: 255 },
  { K: 1100, N: 100, T: 9 },
  { K: 2081, N: 61, T: 17 },
  { K: 64, N: 48, T: 16 },
];

describe.skipIf(!hasBf16)("AVX512-BF16 kernel (this CPU has avx512_bf16)", () => {
  for (const transpose of [false, true]) {
    for (const s of SHAPES) {
      const c = { ...s, transpose };
      const name = `${transpose ? "Wᵀ·dy" : "W·x"} K=${c.K} N=${c.N} T=${c.T}`;
      test(`${name}: within γ_K·Σ|w·x| of exact and 2·γ_K·Σ|w·x| of ggml's BF16 mul_mat`, async () => {
        const { w, x } = inputs(c, c.K * 7 + c.N + c.T);
        const ref = exact(c, w, x);
        const ours = await run("avx512", c, w, x);
        const ggml = await run("ggml", c, w, x);
        expect(worst(ours, ref.y, ref.abs, c.K, 1)).toBeLessThanOrEqual(1);
        expect(worst(ggml, ref.y, ref.abs, c.K, 1)).toBeLessThanOrEqual(1);
        expect(worst(ours, ggml, ref.abs, c.K, 2)).toBeLessThanOrEqual(1);
        // one thread and two share out the panels differently but each element's sum is the same
        expect(await run("avx512", c, w, x, 1)).toEqual(ours);
        // Wᵀ·dy from panels packed once (fast mode) sums in the same order as packed per call (lean)
        if (transpose) expect(await run("avx512-packed", c, w, x)).toEqual(ours);
      });
    }
  }

  test("activations are rounded to BF16 as ggml rounds them (round to nearest even)", async () => {
    for (const transpose of [false, true]) {
      const c = { K: 96, N: 40, T: 9, transpose };
      const { w, x } = inputs(c, 5, false);
      const ref = exact(c, w, x);
      const ours = await run("avx512", c, w, x);
      expect(worst(ours, ref.y, ref.abs, c.K, 1)).toBeLessThanOrEqual(1);
      expect(worst(ours, await run("ggml", c, w, x), ref.abs, c.K, 2)).toBeLessThanOrEqual(1);
    }
  });

  test("the bound has teeth: one swapped weight pair is far outside it", async () => {
    const c = { K: 100, N: 50, T: 7, transpose: false };
    const { w, x } = inputs(c, 11);
    const ref = exact(c, w, x);
    const bad = w.slice();
    [bad[3], bad[4]] = [bad[4]!, bad[3]!];
    expect(worst(await run("avx512", c, bad, x), ref.y, ref.abs, c.K, 1)).toBeGreaterThan(10);
  });
});

test.runIf(!hasBf16)("the AVX512-BF16 kernel tests are skipped: /proc/cpuinfo has no avx512_bf16 here", async () => {
  expect(hasBf16).toBe(false);
  await expect(loadNative().amxMatmulTest("avx512", false, new Uint16Array(4), new Float32Array(2), 2, 2, 1, 1)).rejects.toThrow(/AVX512-BF16/);
});

// The engine: the kernel is on by default where the CPU has AVX512_BF16 (and no usable AMX);
// TEXT2SQL_AVX512BF16=0 (read when an engine is created) gives today's path, ggml's mul_mat.
describe.skipIf(!hasBf16)("a BF16 engine through the AVX512-BF16 kernel", () => {
  const ALL = ["q", "k", "v", "o", "gate", "up", "down"];

  async function withEnv<T>(name: string, value: string | undefined, f: () => Promise<T>): Promise<T> {
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

  /** LoRA gradients of one batch (random adapter), the kernel, the packed/transposed bytes and the profile's product names. */
  async function grads(env: { amx?: string; bf16?: string }, lean = false) {
    return withEnv("TEXT2SQL_AMX", env.amx, () =>
      withEnv("TEXT2SQL_AVX512BF16", env.bf16, async () => {
        const e = await LoraEngine.create({
          model: await testModel({ type: "bf16" }),
          device: "cpu",
          memory: lean ? "lean" : "fast",
          profile: true,
          lora: { targetModules: ALL, r: 4 },
        });
        await e.setAdapter(randomize(await e.getAdapter(), 17, 0.2));
        const r = rng(3);
        const tokens = Int32Array.from({ length: 26 }, () => 2 + Math.floor(((r() + 1) / 2) * 31000));
        const mask = Uint8Array.from({ length: 26 }, (_, i) => (i % 13 === 0 ? 0 : 1));
        await e.accumulate({ tokens, mask, nSeq: 2, seqLen: 13 }, 24);
        const g = (await e.getAdapter({ gradients: true })).flatMap((t) => Array.from(t.data));
        const products = e
          .takeProfile()
          .filter((p) => p.flop > 0 && /\((frozen weight|output head)\)/.test(p.op))
          .map((p) => `${p.phase} ${p.op}`);
        const out = { g, kernel: e.info.matmulKernel, packedBytes: e.memoryInfo().transposedBytes, products };
        await e.dispose();
        return out;
      }),
    );
  }

  test("on by default; TEXT2SQL_AVX512BF16=0 runs ggml's tinyBLAS as before, with the same gradients as TEXT2SQL_AMX=0", async () => {
    const ours = await grads({});
    const off = await grads({ bf16: "0" });
    const ggml = await grads({ amx: "0" });
    expect([ours.kernel, off.kernel, ggml.kernel]).toEqual(["avx512-bf16", "ggml", "ggml"]);
    // the profile names the kernel of every product: W·x and Wᵀ·dy of the layers and the head
    for (const p of ["forward BF16 W·x", "backward BF16 Wᵀ·dy"]) {
      for (const what of ["frozen weight", "output head"]) expect(ours.products).toContain(`${p} bf16 x f32 (${what}) [avx512-bf16]`);
    }
    expect(ours.products.every((p) => p.endsWith("[avx512-bf16]"))).toBe(true);
    expect(off.products.length).toBeGreaterThan(0);
    expect(off.products.every((p) => /MUL_MAT bf16 x f32 \((frozen weight|output head)\) \[tinyBLAS bf16 /.test(p))).toBe(true);
    // switched off, the engine is today's: the same graph, the same sums
    expect(off.g).toEqual(ggml.g);
    expect(off.products.slice().sort()).toEqual(ggml.products.slice().sort());
  });

  test("gradients: lean equals fast exactly, packed panels take the transposed copies' bytes, and agree with ggml's to summation order", async () => {
    const fast = await grads({});
    const lean = await grads({}, true);
    const ggml = await grads({ amx: "0" });
    const f32 = await withEnv("TEXT2SQL_AMX", "0", async () => {
      const e = await LoraEngine.create({ model: await testModel({ type: "f32" }), device: "cpu", lora: { targetModules: ALL, r: 4 } });
      await e.setAdapter(randomize(await e.getAdapter(), 17, 0.2));
      const r = rng(3);
      const tokens = Int32Array.from({ length: 26 }, () => 2 + Math.floor(((r() + 1) / 2) * 31000));
      const mask = Uint8Array.from({ length: 26 }, (_, i) => (i % 13 === 0 ? 0 : 1));
      await e.accumulate({ tokens, mask, nSeq: 2, seqLen: 13 }, 24);
      const g = (await e.getAdapter({ gradients: true })).flatMap((t) => Array.from(t.data));
      await e.dispose();
      return g;
    });
    expect(fast.packedBytes).toBe(ggml.packedBytes);
    expect(lean.g).toEqual(fast.g);
    // BF16 rounding of the weights and activations moves the gradients (vs the F32 model) by
    // `rounding`; two kernels with the same BF16 inputs differ only by summation order and the
    // roundings it flips downstream, 10x less (as test/amx-kernel.test.ts bounds the AMX kernel);
    // a wrong packing or edge gives O(1)
    const rounding = relError([ggml.g], [f32]);
    expect(relError([fast.g], [f32])).toBeLessThan(4e-2);
    expect(relError([fast.g], [ggml.g])).toBeLessThan(rounding / 10);
  });
});
