// The AMX-BF16 kernel of the frozen-weight products (native/amx*.cpp), checked on any CPU through
// its emulated tile unit, and on the real tiles where the CPU has them. Reference: the exact
// (float64) product of the same BF16 weights and BF16-rounded activations.
//
// Bound: every product of two BF16 values is exact in F32, so a kernel differs from the exact
// result only by the rounding of its F32 additions. For any order of summing K terms,
// |fl(Σ) − Σ| ≤ γ_K · Σ|w·x| with γ_K = K·u / (1 − K·u), u = 2⁻²⁴ (Higham, Accuracy and
// Stability, 2nd ed., eq. 4.4). So each kernel is within γ_K·Σ|w·x| of exact, elementwise, and
// ours and ggml's BF16 mul_mat are within 2·γ_K·Σ|w·x| of each other: summation order only. A
// wrong packing, block or edge would move an element by a whole term or more (far above it).
import { describe, expect, test } from "vitest";
import { LoraEngine } from "../src/engine/engine.js";
import { llamaLogitsF64 } from "./helpers/llama-f64.js";
import { llamaCppLogProbs } from "./helpers/llamacpp.js";
import {
  batchGradients,
  productsOnly,
  cpuHasFlag,
  exact,
  expectActivationsRoundedAsGgml,
  expectSwappedPairOutsideBound,
  expectWithinBound,
  inputs,
  run,
  withEnv,
  worst,
  type Case,
} from "./helpers/bf16-products.js";
import { logSoftmax, relError, testModel } from "./helpers/models.js";

// odd shapes: K not a multiple of 32, rows (N) not a multiple of 16, T = 1, 7, 255, 1,024; and
// whole blocks for contrast
const SHAPES: Omit<Case, "transpose">[] = [
  { K: 100, N: 50, T: 1 },
  { K: 37, N: 7, T: 7 },
  { K: 64, N: 48, T: 255 },
  { K: 300, N: 33, T: 255 },
  { K: 70, N: 17, T: 1024 },
  { K: 32, N: 16, T: 16 },
];

describe("AMX-BF16 kernel on the emulated tile unit", () => {
  for (const transpose of [false, true]) {
    for (const s of SHAPES) {
      const c = { ...s, transpose };
      test(`${transpose ? "Wᵀ·dy" : "W·x"} K=${c.K} N=${c.N} T=${c.T}: equals ggml's BF16 mul_mat to F32 summation order`, async () => {
        await expectWithinBound("emulate", c);
      });
    }
  }

  test("activations are rounded to BF16 as ggml rounds them (round to nearest even)", () => expectActivationsRoundedAsGgml("emulate"));

  test("the bound has teeth: one swapped weight pair is far outside it", () => expectSwappedPairOutsideBound("emulate"));
});

const hasAmx = cpuHasFlag("amx_bf16");

describe.skipIf(!hasAmx)("AMX-BF16 kernel on the real tile unit (this CPU has amx_bf16)", () => {
  for (const transpose of [false, true]) {
    for (const s of SHAPES) {
      const c = { ...s, transpose };
      test(`${transpose ? "Wᵀ·dy" : "W·x"} K=${c.K} N=${c.N} T=${c.T}: within the bound of exact and of the emulation`, async () => {
        const { w, x } = inputs(c, c.K * 7 + c.N + c.T);
        const ref = exact(c, w, x);
        const amx = await run("amx", c, w, x);
        expect(worst(amx, ref.y, ref.abs, c.K, 1)).toBeLessThanOrEqual(1);
        expect(worst(amx, await run("emulate", c, w, x), ref.abs, c.K, 2)).toBeLessThanOrEqual(1);
      });
    }
  }
});

test.runIf(!hasAmx)("the real-tile tests are skipped: /proc/cpuinfo has no amx_bf16 here (emulated tiles only)", () => {
  expect(hasAmx).toBe(false);
});

// The engine with the kernel forced on through the emulation (TEXT2SQL_AMX=emulate, read when an
// engine is created): the same graph hooks, packing and custom ops as on an AMX CPU.
describe("a BF16 engine through the emulated AMX kernel", () => {
  const ALL = ["q", "k", "v", "o", "gate", "up", "down"];
  const TOKENS = [1, 518, 25580, 29962, 3251, 403, 3758, 363, 278, 1494, 1139, 29889, 894, 29901, 1128, 1784];

  const withAmx = <T>(mode: string, f: () => Promise<T>) => withEnv("TEXT2SQL_AMX", mode, f);

  /** LoRA gradients of one batch (random adapter), the kernel used and the packed/transposed bytes. */
  async function grads(type: "f32" | "bf16", amx: string, lean = false) {
    return withAmx(amx, async () => {
      const e = await productsOnly(async () =>
        LoraEngine.create({
          model: await testModel({ type }),
          device: "cpu",
          memory: lean ? "lean" : "fast",
          lora: { targetModules: ALL, r: 4 },
        }),
      );
      const g = await batchGradients(e);
      const out = { g, kernel: e.info.matmulKernel, packedBytes: e.memoryInfo().transposedBytes };
      await e.dispose();
      return out;
    });
  }

  test("gradients: lean equals fast exactly, and the kernel moves them 10x less than BF16 weight rounding does", async () => {
    const emu = await grads("bf16", "emulate");
    const emuLean = await grads("bf16", "emulate", true);
    const ggml = await grads("bf16", "0");
    const f32 = await grads("f32", "emulate");
    expect([emu.kernel, emuLean.kernel, ggml.kernel, f32.kernel]).toEqual(["amx-bf16-emulated", "amx-bf16-emulated", "ggml", "ggml"]);
    // the packed copies take the place of the transposed ones, byte for byte at these shapes
    expect(emu.packedBytes).toBe(ggml.packedBytes);
    expect(emuLean.g).toEqual(emu.g);
    const rounding = relError([ggml.g], [f32.g]); // measured 1.5e-2 (engine-grad's test bounds it by 4e-2)
    expect(relError([emu.g], [f32.g])).toBeLessThan(4e-2);
    // two kernels with BF16 activations differ by summation order and the roundings it flips
    // (measured 4.5e-4); a wrong packing or edge gives O(1)
    expect(relError([emu.g], [ggml.g])).toBeLessThan(rounding / 10);
  });

  // As for F16 (engine-llamacpp.test.ts): each kernel with BF16 activations is within
  // 2·‖rbf16 − exact‖ of the float64 model of the same BF16 weights (rbf16: that model rounding
  // every product input to BF16), and llama.cpp (ggml's BF16 path everywhere: its AMX buffer
  // takes no BF16 weights) too.
  test("logits: ours through the kernel and llama.cpp agree with a float64 model of the same BF16 GGUF", async () => {
    const model = await testModel({ type: "bf16" });
    const ours = await withAmx("emulate", async () => {
      const e = await LoraEngine.create({ model, device: "cpu" });
      const l = logSoftmax(await e.logits(TOKENS));
      await e.dispose();
      return l;
    });
    const exact = logSoftmax(llamaLogitsF64(model, TOKENS, "none").map((r) => Float32Array.from(r)));
    const rbf16 = logSoftmax(llamaLogitsF64(model, TOKENS, "bf16").map((r) => Float32Array.from(r)));
    const bound = 2 * relError(rbf16, exact);
    expect(relError(ours, exact)).toBeLessThanOrEqual(bound);
    expect(relError(await llamaCppLogProbs(model, TOKENS), exact)).toBeLessThanOrEqual(bound);
  });
});
