// text2sql's fused CPU ops (native/fused.h: causal attention and its backward, the SwiGLU
// backward): the forward against an independent float64 model, and the gradients against ggml's
// composition of the same maths (TEXT2SQL_FUSED=0), for each variant this CPU can run.
//
// Bounds. Both paths compute the same F32 products and ggml's softmax; they differ only in the
// order of the F32 sums (and FMA or not). On the tiny model the target log-probabilities of both
// sit about 6e-8 from float64 (measured on an AMD EPYC: ggml 5.7e-8, fused 5.5e-8 - 6.4e-8 by
// variant), so each path must be within 1e-5 of float64 (the bound of the llama.cpp agreement
// tests) and the fused one no further than 2x ggml's distance plus 1e-7. With every target adapted
// (and the LoRA products fused too), the gradients of the two paths agree to 8.8e-7 - 1.4e-6
// (‖Δ‖/‖g‖, llama and qwen3); the test asks 1e-5, and a mask or layout mistake gives O(1).
import { describe, expect, test } from "vitest";
import { LoraEngine, makeBatch } from "../src/engine/engine.js";
import { withEnv } from "./helpers/bf16-products.js";
import { FUSED_VARIANTS, fusedTokens, seededGradients, switchCases } from "./helpers/fused-variants.js";
import { llamaLogitsF64 } from "./helpers/llama-f64.js";
import { logSoftmax, randomize, relError, testModel } from "./helpers/models.js";

const VARIANTS = FUSED_VARIANTS;

const TOKENS = fusedTokens(7);

async function open(model: string, env: string | undefined, memory: "fast" | "lean" = "fast"): Promise<LoraEngine> {
  return withEnv("TEXT2SQL_FUSED", env, () =>
    LoraEngine.create({ model, device: "cpu", threads: 2, memory, lora: { r: 4, targetModules: ["q", "k", "v", "o", "gate", "up", "down"] } }),
  );
}

const gradients = (e: LoraEngine) => seededGradients(e, TOKENS);

describe("fused CPU ops: attention, SwiGLU", () => {
  test("each variant's log-probabilities are within the bound of float64, as close as ggml's composition", async () => {
    // eval graphs (logprobs) run the fused ops; logits graphs keep ggml's (llama.cpp's) composition
    const model = await testModel();
    const exact = logSoftmax(llamaLogitsF64(model, TOKENS, "none"));
    const want = [Float64Array.from(TOKENS.slice(1), (t, i) => exact[i]![t]!)];
    const batch = makeBatch([{ tokens: TOKENS }]);
    const logps = async (e: LoraEngine) => [(await e.logprobs(batch)).slice(1)];
    const ggml = await open(model, "0");
    expect(ggml.info.fusedKernel).toBe("ggml");
    const ggmlErr = relError(await logps(ggml), want);
    await ggml.dispose();
    expect(ggmlErr).toBeLessThanOrEqual(1e-5);
    for (const v of VARIANTS) {
      const e = await open(model, v.env);
      expect(e.info.fusedKernel).toBe(v.kernel);
      const err = relError(await logps(e), want);
      await e.dispose();
      expect(err, v.kernel).toBeLessThanOrEqual(1e-5);
      expect(err, v.kernel).toBeLessThanOrEqual(2 * ggmlErr + 1e-7);
    }
  });

  test("each variant's gradients equal ggml's composition within the bound, fast and lean (GQA, ragged blocks)", async () => {
    for (const family of ["llama", "qwen3"] as const) {
      const model = await testModel({ family });
      const ggml = await open(model, "0");
      const want = await gradients(ggml);
      await ggml.dispose();
      for (const v of VARIANTS) {
        for (const memory of ["fast", "lean"] as const) {
          const e = await open(model, v.env, memory);
          const got = await gradients(e);
          await e.dispose();
          expect(relError(got, want), `${family} ${v.kernel} ${memory}`).toBeLessThanOrEqual(1e-5);
        }
      }
    }
  });

  test("the default is the widest variant; 0 is ggml's composition; a head size the kernel does not take stays on ggml's", async () => {
    const model = await testModel();
    for (const [env, kernel] of switchCases()) {
      const e = await open(model, env);
      expect(e.info.fusedKernel, String(env)).toBe(kernel);
      const ops = await e.graphOps(8);
      await e.dispose();
      expect(
        ops.some((l) => l.startsWith("SOFT_MAX_BACK")),
        String(env),
      ).toBe(kernel === "ggml");
    }
    // the fused LoRA products (lora.h) take TEXT2SQL_FUSED's variant (TEXT2SQL_FUSED_LORA unset), and are off with it
    for (const v of [...VARIANTS, { env: "0", kernel: "ggml" }]) {
      const e = await open(model, v.env);
      expect(e.info.loraKernel, v.env).toBe(v.kernel);
      await e.dispose();
    }
    // head size 8 (64 / 8 heads): not a multiple of the kernel's 16 floats; the SwiGLU backward is still ours
    const narrow = await testModel({ nHead: 8, nHeadKv: 4 });
    const e = await open(narrow, undefined);
    expect(e.info.headDim).toBe(8);
    expect(e.info.fusedKernel).toBe(VARIANTS[0]!.kernel);
    const ops = await e.graphOps(8);
    await e.dispose();
    expect(ops.some((l) => l.startsWith("SOFT_MAX_BACK"))).toBe(true);
    expect(ops.some((l) => l.startsWith("SILU_BACK"))).toBe(false);
  });
});

describe("fused CPU ops: the RMS norms", () => {
  test("each variant's norms give ggml's RMS_NORM/MUL and MUL/RMS_NORM_BACK/ADD bit for bit: equal log-probabilities and gradients", async () => {
    // TEXT2SQL_FUSED_NORM=0 keeps every other fused op and puts the norms back on ggml's ops, so the
    // two runs differ in the norms alone; qwen3 adds the per-head norms of q and k
    for (const family of ["llama", "qwen3"] as const) {
      const model = await testModel({ family });
      const batch = makeBatch([{ tokens: TOKENS }]);
      for (const v of VARIANTS) {
        const run = async (norm: string | undefined) => {
          const e = await withEnv("TEXT2SQL_FUSED_NORM", norm, () => open(model, v.env));
          const ops = (await e.graphOps(8)).join("\n");
          const kernel = e.info.normKernel;
          const logp = await e.logprobs(batch);
          const g = await gradients(e);
          await e.dispose();
          return { ops, logp, g, kernel };
        };
        const want = await run("0");
        const got = await run(undefined);
        expect([want.kernel, got.kernel]).toEqual(["ggml", v.kernel]);
        expect(want.ops, `${family} ${v.kernel}`).toMatch(/^RMS_NORM_BACK/m);
        expect(got.ops, `${family} ${v.kernel}`).not.toMatch(/^RMS_NORM/m);
        expect(Array.from(got.logp), `${family} ${v.kernel} log-probabilities`).toEqual(Array.from(want.logp));
        got.g.forEach((t, i) => expect(Array.from(t), `${family} ${v.kernel} gradient ${i}`).toEqual(Array.from(want.g[i]!)));
      }
    }
  });
});

describe("fused CPU ops: the output head's cross-entropy", () => {
  test("losses and gradients equal ggml's softmax/sub path, also where a target's P underflows (exact log-softmax)", async () => {
    const model = await testModel();
    const batch = makeBatch([{ tokens: TOKENS.slice(0, 30) }]);
    const weights = Float32Array.from({ length: 30 }, (_, i) => (i === 0 ? 0 : 0.5 + (i % 3)));
    const run = async (env: string, temperature: number) => {
      const e = await open(model, env);
      await e.setAdapter(randomize(await e.getAdapter(), 17, 0.2));
      await e.zeroGrad();
      const st = await e.accumulateWeighted(batch, weights, { gradScale: 0.25, temperature });
      const g = (await e.getAdapter({ gradients: true })).map((t) => t.data);
      await e.dispose();
      return { loss: st.lossSum, g };
    };
    // temperature 1e-3: the logits / T spread over thousands, so most targets' P underflows F32 and
    // the loss takes the exact log-softmax. The gradients are compared at T = 1 only: at 1e-3 they
    // scale the rest of the graph's 1e-7 differences (fused attention, SwiGLU, LoRA) by 1/T.
    for (const temperature of [1, 1e-3]) {
      const want = await run("0", temperature);
      const got = await run(VARIANTS[0]!.env, temperature);
      expect(Number.isFinite(want.loss) && want.loss > 0).toBe(true);
      if (temperature < 1) expect(want.loss / 29, "most targets underflow").toBeGreaterThan(80);
      expect(Math.abs(got.loss - want.loss) / want.loss, `T=${temperature}`).toBeLessThanOrEqual(1e-5);
      if (temperature === 1) expect(relError(got.g, want.g)).toBeLessThanOrEqual(1e-5);
    }
  });
});
