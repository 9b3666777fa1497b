// Merging a GGUF LoRA into a base of each other family (Llama 3 with a tied head and rope_freqs,
// Qwen2 with q/k/v biases, Qwen3 with q/k norms): the merged model, with no adapter, gives the
// base-with-adapter logits in our engine and in llama.cpp; a LoRA on a tied token_embd is refused.
import { describe, expect, test } from "vitest";
import path from "node:path";
import { LoraEngine } from "../src/engine/engine.js";
import { GgmlType, gv, readGguf, readTensorBytes } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import { mergeAdapter } from "../src/adapters/merge.js";
import type { TestFamily } from "../src/models/test-model.js";
import { llamaCppLogProbs } from "./helpers/llamacpp.js";
import { logSoftmax, randomize, relError, tempDir, testModel } from "./helpers/models.js";

const ALL = ["q", "k", "v", "o", "gate", "up", "down"];
const TOKENS = [9707, 1246, 1657, 14629, 525, 9014, 1091, 220];

describe.each(["llama3", "qwen2", "qwen3"] as TestFamily[])("%s", (family) => {
  test("merged = base + adapter, in our engine and in llama.cpp (rel. error <= 1e-5); extra tensors copied", async () => {
    const dir = tempDir("t2s-merge-fam-");
    const base = await testModel({ family, type: "f32" });
    const engine = await LoraEngine.create({ model: base, device: "cpu", lora: { r: 4, alpha: 8, targetModules: ALL } });
    await engine.setAdapter(randomize(await engine.getAdapter(), 3, 0.3));
    const withAdapter = await engine.logits(TOKENS);
    const adapter = path.join(dir, "adapter.gguf");
    await engine.saveAdapter(adapter);
    await engine.dispose();
    const merged = path.join(dir, "merged.gguf");
    const res = await mergeAdapter({ model: base, adapter, out: merged, type: "f32" });
    expect(res.merged).toBe(7 * 2);

    // the family's own tensors (biases, q/k norms, rope_freqs) are copied byte for byte; no output.weight appears
    const b = readGguf(base);
    const m = readGguf(merged);
    const extra = b.tensors.filter((t) => /\.bias$|_norm\.weight$|rope_freqs/.test(t.name) && !/^(blk\.\d+\.(attn|ffn)_norm|output_norm)/.test(t.name));
    expect(extra.length).toBeGreaterThan(0);
    for (const t of extra) expect(Buffer.from(readTensorBytes(m, t.name)).equals(Buffer.from(readTensorBytes(b, t.name))), t.name).toBe(true);
    expect(m.tensors.some((t) => t.name === "output.weight")).toBe(false);

    const plain = await LoraEngine.create({ model: merged, device: "cpu" });
    const got = await plain.logits(TOKENS);
    await plain.dispose();
    expect(relError(got, withAdapter)).toBeLessThanOrEqual(1e-5);
    const ref = await llamaCppLogProbs(base, TOKENS, { loraPath: adapter });
    expect(relError(await llamaCppLogProbs(merged, TOKENS), ref)).toBeLessThanOrEqual(1e-5);
    expect(relError(logSoftmax(got), ref)).toBeLessThanOrEqual(1e-5);
  });
});

test("a LoRA on token_embd of a model whose output head is tied to it is refused", async () => {
  const dir = tempDir("t2s-merge-tied-");
  const base = await testModel({ family: "qwen2", type: "f32" });
  const [nEmbd, nVocab] = readGguf(base).tensors.find((t) => t.name === "token_embd.weight")!.ne as [number, number];
  const file = path.join(dir, "embd.gguf");
  writeGguf(file, {
    metadata: [
      ["general.type", gv.str("adapter")],
      ["general.architecture", gv.str("qwen2")],
      ["adapter.type", gv.str("lora")],
      ["adapter.lora.alpha", gv.f32(2)],
    ],
    tensors: [
      { name: "token_embd.weight.lora_a", type: GgmlType.F32, ne: [2, nVocab], data: new Float32Array(2 * nVocab) },
      { name: "token_embd.weight.lora_b", type: GgmlType.F32, ne: [2, nEmbd], data: new Float32Array(2 * nEmbd) },
    ],
  });
  await expect(mergeAdapter({ model: base, adapter: file, out: path.join(dir, "m.gguf") })).rejects.toThrow(
    /adapts token_embd\.weight, which this model ties to its output head .*never an adapter target/,
  );
});
