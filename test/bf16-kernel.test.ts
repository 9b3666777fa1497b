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
import { describe, expect, test } from "vitest";
import { LoraEngine } from "../src/engine/engine.js";
import { loadNative } from "../src/engine/native.js";
import {
  batchGradients,
  productsOnly,
  cpuHasFlag,
  expectActivationsRoundedAsGgml,
  expectSwappedPairOutsideBound,
  expectWithinBound,
  inputs,
  run,
  withEnv,
  type Case,
} from "./helpers/bf16-products.js";
import { relError, testModel } from "./helpers/models.js";

const hasBf16 = cpuHasFlag("avx512_bf16");

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
        const ours = await expectWithinBound("avx512", c);
        const { w, x } = inputs(c, c.K * 7 + c.N + c.T);
        // Wᵀ·dy from panels packed once (fast mode) sums in the same order as packed per call (lean)
        if (transpose) expect(await run("avx512-packed", c, w, x)).toEqual(ours);
      });
    }
  }

  test("activations are rounded to BF16 as ggml rounds them (round to nearest even)", () => expectActivationsRoundedAsGgml("avx512"));

  test("the bound has teeth: one swapped weight pair is far outside it", () => expectSwappedPairOutsideBound("avx512"));
});

test.runIf(!hasBf16)("the AVX512-BF16 kernel tests are skipped: /proc/cpuinfo has no avx512_bf16 here", async () => {
  expect(hasBf16).toBe(false);
  await expect(loadNative().amxMatmulTest("avx512", false, new Uint16Array(4), new Float32Array(2), 2, 2, 1, 1)).rejects.toThrow(/AVX512-BF16/);
});

// The engine: the kernel is on by default where the CPU has AVX512_BF16 (and no usable AMX);
// TEXT2SQL_AVX512BF16=0 (read when an engine is created) gives today's path, ggml's mul_mat.
describe.skipIf(!hasBf16)("a BF16 engine through the AVX512-BF16 kernel", () => {
  const ALL = ["q", "k", "v", "o", "gate", "up", "down"];

  /** LoRA gradients of one batch (random adapter), the kernel, the packed/transposed bytes and the profile's product names. */
  async function grads(env: { amx?: string; bf16?: string }, lean = false) {
    return withEnv("TEXT2SQL_AMX", env.amx, () =>
      withEnv("TEXT2SQL_AVX512BF16", env.bf16, async () => {
        const e = await productsOnly(async () =>
          LoraEngine.create({
            model: await testModel({ type: "bf16" }),
            device: "cpu",
            memory: lean ? "lean" : "fast",
            profile: true,
            lora: { targetModules: ALL, r: 4 },
          }),
        );
        const g = await batchGradients(e);
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

  test("the SwiGLU ops write the BF16 inputs of down, gate and up themselves: the same gradients bit for bit, fewer roundings", async () => {
    // q and v adapted: down (forward), gate and up (backward) read their inputs only as the
    // kernel's BF16 A, which fused.swiglu_bf16 / swiglu_back_bf16 write; TEXT2SQL_FUSED_BF16=0 makes
    // the F32 tensors and rounds them (bf16k.round) as before. nFf 120 (not a multiple of 16) keeps
    // the F32 path.
    const run = async (bf16: string | undefined, nFf = 128, memory: "fast" | "lean" = "fast") =>
      withEnv("TEXT2SQL_FUSED_BF16", bf16, async () => {
        const e = await LoraEngine.create({
          model: await testModel({ type: "bf16", nFf }),
          device: "cpu",
          memory,
          profile: true,
          lora: { targetModules: ["q", "v"], r: 4 },
        });
        const g = await batchGradients(e);
        const ops = e.takeProfile().map((p) => p.op);
        await e.dispose();
        return { g, ops };
      });
    for (const memory of ["fast", "lean"] as const) {
      const off = await run("0", 128, memory);
      const on = await run(undefined, 128, memory);
      expect(on.g, memory).toEqual(off.g);
      expect(
        off.ops.some((o) => o.includes("swiglu_bf16") || o.includes("swiglu_back_bf16")),
        memory,
      ).toBe(false);
      expect(on.ops.filter((o) => /FUSED swiglu(_back)?_bf16 /.test(o)).length, memory).toBe(2);
    }
    const ragged = await run(undefined, 120);
    expect(ragged.ops.some((o) => o.includes("_bf16"))).toBe(false);
  });

  test("gradients: lean equals fast exactly, packed panels take the transposed copies' bytes, and agree with ggml's to summation order", async () => {
    const fast = await grads({});
    const lean = await grads({}, true);
    const ggml = await grads({ amx: "0" });
    const f32 = await withEnv("TEXT2SQL_AMX", "0", async () => {
      const e = await productsOnly(async () =>
        LoraEngine.create({ model: await testModel({ type: "f32" }), device: "cpu", lora: { targetModules: ALL, r: 4 } }),
      );
      const g = await batchGradients(e);
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
