// Issue 13: the engine on the other model families (Llama 3 with tied embeddings and llama3 RoPE
// scaling, Qwen2 with q/k/v biases and NEOX RoPE, Qwen3 with per-head q/k norms and a head size
// that is not n_embd / n_head). Tier 3: our logits against llama.cpp's on the same tiny random
// GGUF with the family's real vocabulary, with fresh and with random adapters on all seven targets
// (llama.cpp loading our adapter.gguf). Tier 2: finite differences through every new op, and the
// memory modes (lean, checkpoint) giving the same gradients.
import { beforeAll, describe, expect, test } from "vitest";
import path from "node:path";
import { LoraEngine, makeBatch } from "../src/engine/engine.js";
import type { TestFamily } from "../src/models/test-model.js";
import { llamaCppLogProbs, llamaCppTokenize } from "./helpers/llamacpp.js";
import { checkCentralDifferences } from "./helpers/grad-check.js";
import { logSoftmax, randomize, relError, rng, tempDir, testModel } from "./helpers/models.js";

const ALL = ["q", "k", "v", "o", "gate", "up", "down"];
const TEXT = "How many heads are older than 56? SELECT count(*) FROM head WHERE age > 56";
const FAMILIES: { family: TestFamily; arch: string; bos?: number; headDim: number }[] = [
  { family: "llama3", arch: "llama", bos: 128000, headDim: 16 },
  { family: "qwen2", arch: "qwen2", headDim: 16 },
  { family: "qwen3", arch: "qwen3", headDim: 32 },
];

async function familyTokens(model: string, bos: number | undefined): Promise<number[]> {
  const ids = await llamaCppTokenize(model, TEXT);
  return bos === undefined ? ids : [bos, ...ids];
}

for (const { family, arch, bos, headDim } of FAMILIES) {
  describe(`${family}: logits agree with llama.cpp`, () => {
    let model: string;
    let tokens: number[];
    let base: Float32Array[]; // llama.cpp's log-probabilities of the base model
    beforeAll(async () => {
      model = await testModel({ family, type: "f32" });
      tokens = await familyTokens(model, bos);
      base = await llamaCppLogProbs(model, tokens);
    });

    test("the model is what the family has (architecture, head size, tied head)", async () => {
      const e = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL, r: 4 } });
      expect(e.info.arch).toBe(arch);
      expect(e.info.headDim).toBe(headDim);
      expect(e.info.nVocab).toBeGreaterThan(100000);
      // tied: the output head is token_embd, transposed once (fast mode keeps a transposed copy
      // of every matrix): the copies are the layers' matrices plus one [n_vocab, n_embd]
      const { nEmbd, nHead, nHeadKv, nFf, nLayer, nVocab } = e.info;
      const perLayer = 2 * nEmbd * headDim * nHead + 2 * nEmbd * headDim * nHeadKv + 3 * nEmbd * nFf;
      expect(e.memoryInfo().transposedBytes).toBe(4 * (nLayer * perLayer + nVocab * nEmbd));
      await e.dispose();
      expect(tokens.length).toBeGreaterThan(12);
    });

    test("a fresh adapter leaves the model unchanged: our logits equal llama.cpp's (rel. error <= 1e-5)", async () => {
      const engine = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL } });
      const ours = logSoftmax(await engine.logits(tokens));
      await engine.dispose();
      expect(relError(ours, base)).toBeLessThanOrEqual(1e-5);
      // not vacuous: another seed of the same family is far off
      const other = await LoraEngine.create({ model: await testModel({ family, type: "f32", seed: 2 }), device: "cpu" });
      expect(relError(logSoftmax(await other.logits(tokens)), base)).toBeGreaterThan(0.1);
      await other.dispose();
    });

    test("random adapters on all seven targets agree with llama.cpp loading our adapter.gguf", async () => {
      const engine = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL, r: 4, alpha: 8 } });
      await engine.setAdapter(randomize(await engine.getAdapter(), 7, 0.3));
      const ours = logSoftmax(await engine.logits(tokens));
      const file = path.join(tempDir(), "adapter.gguf");
      await engine.saveAdapter(file);
      await engine.dispose();
      const ref = await llamaCppLogProbs(model, tokens, { loraPath: file, loraScale: 1 });
      expect(relError(ours, ref)).toBeLessThanOrEqual(1e-5);
      expect(relError(ours, base)).toBeGreaterThan(1e-2);
    });
  });
}

/** Two sequences of in-vocabulary ids; the first three tokens of each are prompt. */
function sequences(n: number, seed: number) {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const len = 7 + ((i * 3) % 5);
    const tokens = Array.from({ length: len }, () => 100 + Math.floor((r() + 1) * 50000));
    return { tokens, mask: tokens.map((_, j) => (j >= 3 ? 1 : 0)) };
  });
}

for (const { family } of FAMILIES) {
  describe(`${family}: gradients`, () => {
    test("dLoss/dA and dLoss/dB of every target agree with central differences", async () => {
      const model = await testModel({ family, type: "f32" });
      const engine = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL, r: 2, alpha: 4 } });
      const seqs = sequences(2, 5);
      const N = seqs.reduce((n, s) => n + s.mask.slice(1).reduce((a: number, b) => a + b, 0), 0);
      const { checked } = await checkCentralDifferences(engine, makeBatch(seqs), N, { random: 1 });
      expect(checked).toBe(2 * 7 * 2 * 2);
      await engine.dispose();
    });

    test("lean and checkpointed graphs give the same gradients as the fast one", async () => {
      const model = await testModel({ family, type: "f32" });
      const batch = makeBatch(sequences(2, 9));
      const N = 10;
      const grads = async (memory: "fast" | "lean", checkpoint: boolean) => {
        const e = await LoraEngine.create({ model, device: "cpu", memory, checkpointing: checkpoint, lora: { targetModules: ALL, r: 2 } });
        await e.setAdapter(randomize(await e.getAdapter(), 4, 0.2));
        await e.accumulate(batch, N);
        const g = (await e.getAdapter({ gradients: true })).flatMap((t) => Array.from(t.data));
        await e.dispose();
        return g;
      };
      const ref = await grads("fast", false);
      expect(Math.max(...ref.map(Math.abs))).toBeGreaterThan(1e-3);
      for (const [memory, checkpoint] of [
        ["lean", false],
        ["fast", true],
      ] as const) {
        const g = await grads(memory, checkpoint);
        expect(relError([g], [ref]), `${memory}${checkpoint ? " checkpoint" : ""}`).toBeLessThan(1e-6);
      }
    });
  });
}

test("builtin:tiny-<family> names a tiny model of that family; an unknown builtin lists them", async () => {
  const { resolveModelPath } = await import("../src/models/model-path.js");
  const home = process.env.TEXT2SQL_HOME;
  process.env.TEXT2SQL_HOME = tempDir("t2s-home-");
  try {
    const file = await resolveModelPath("builtin:tiny-qwen3", { log: () => {} });
    const e = await LoraEngine.create({ model: file, device: "cpu" });
    expect([e.info.arch, e.info.nEmbd, e.info.headDim]).toEqual(["qwen3", 128, 64]);
    await e.dispose();
    await expect(resolveModelPath("builtin:tiny-gemma", { log: () => {} })).rejects.toThrow(
      /unknown builtin model 'builtin:tiny-gemma'; available: builtin:tiny, builtin:tiny-llama3, builtin:tiny-qwen2, builtin:tiny-qwen3/,
    );
  } finally {
    if (home === undefined) delete process.env.TEXT2SQL_HOME;
    else process.env.TEXT2SQL_HOME = home;
  }
});
