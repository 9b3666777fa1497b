// Bad input gets an Error, never a crash: both the TS validation and the C++ invariants behind it
// (the native calls are also exercised directly, bypassing the TS checks).
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { GgmlType, ggmlTensorByteLength, gv, readGguf, readTensorBytes } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import { LoraEngine, makeBatch } from "../src/engine/engine.js";
import { loadNative, type NativeEngineOptions } from "../src/engine/native.js";
import { tempDir, testModel } from "./helpers/models.js";

const nativeOpts = (o: Partial<NativeEngineOptions>): NativeEngineOptions => ({
  modelPath: "",
  device: "cpu",
  threads: 1,
  lean: false,
  checkpoint: false,
  profile: false,
  r: 8,
  alpha: 16,
  dropout: 0,
  rslora: false,
  seed: 1,
  targets: [0, 2],
  ...o,
});

describe("bad input gets an Error, never a crash", () => {
  let model: string;
  let dir: string;
  beforeAll(async () => {
    model = await testModel({ type: "f32" });
    dir = tempDir();
  });

  test("a missing model file", async () => {
    await expect(LoraEngine.create({ model: path.join(dir, "nope.gguf") })).rejects.toThrow(/model: file not found: .*nope\.gguf/);
    await expect(loadNative().createEngine(nativeOpts({ modelPath: path.join(dir, "nope.gguf") }))).rejects.toThrow(
      /createEngine: cannot open model file '.*nope\.gguf'/,
    );
  });

  test("a file that is not GGUF, and a truncated GGUF", async () => {
    const txt = path.join(dir, "model.txt");
    fs.writeFileSync(txt, "text_query,sql_command\nhow many heads?,SELECT count(*) FROM head\n");
    await expect(LoraEngine.create({ model: txt })).rejects.toThrow(/not a GGUF file/);
    const cut = path.join(dir, "cut.gguf");
    fs.writeFileSync(cut, fs.readFileSync(model).subarray(0, 4096));
    await expect(LoraEngine.create({ model: cut })).rejects.toThrow(/could not be read as GGUF|truncated/);
    const cut2 = path.join(dir, "cut2.gguf");
    const full = fs.readFileSync(model);
    fs.writeFileSync(cut2, full.subarray(0, full.length - 1000));
    await expect(LoraEngine.create({ model: cut2 })).rejects.toThrow(/truncated|could not be read as GGUF/);
  });

  test("the wrong architecture", async () => {
    const gpt2 = await testModel({ arch: "gpt2" });
    await expect(LoraEngine.create({ model: gpt2 })).rejects.toThrow(/architecture 'gpt2'; the text2sql engine supports llama \(.*\), qwen2 \(.*\), qwen3 \(/);
    // recognised families that stay refused say why
    await expect(LoraEngine.create({ model: await testModel({ arch: "qwen3moe" }) })).rejects.toThrow(
      /'qwen3moe' \(a mixture-of-experts model\).*supports llama/,
    );
    await expect(LoraEngine.create({ model: await testModel({ arch: "gemma3" }) })).rejects.toThrow(/'gemma3' \(a sliding-window attention model\)/);
  });

  test("a tensor the engine does not implement, or experts, are refused rather than ignored", async () => {
    const src = readGguf(model);
    const tensors = src.tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne, data: readTensorBytes(src, t) }));
    const withBias = path.join(dir, "o-bias.gguf");
    writeGguf(withBias, {
      metadata: src.metadata,
      tensors: [...tensors, { name: "blk.0.attn_output.bias", type: GgmlType.F32, ne: [64], data: new Uint8Array(256) }],
    });
    await expect(LoraEngine.create({ model: withBias })).rejects.toThrow(
      /has tensor 'blk\.0\.attn_output\.bias', which the text2sql engine does not implement/,
    );
    const moe = path.join(dir, "moe.gguf");
    writeGguf(moe, { metadata: new Map([...src.metadata, ["llama.expert_count", gv.u32(8)]]), tensors });
    await expect(LoraEngine.create({ model: moe })).rejects.toThrow(/mixture-of-experts model \(llama\.expert_count > 0\)/);
  });

  test("an unsupported tensor type names the tensor, its type and what is supported", async () => {
    const src = readGguf(model);
    const iq = path.join(dir, "iq4_nl.gguf");
    writeGguf(iq, {
      metadata: src.metadata,
      tensors: src.tensors.map((t) =>
        t.name === "blk.1.attn_v.weight"
          ? { name: t.name, type: GgmlType.IQ4_NL, ne: t.ne, data: new Uint8Array(ggmlTensorByteLength(GgmlType.IQ4_NL, t.ne)) }
          : { name: t.name, type: t.type, ne: t.ne, data: readTensorBytes(src, t) },
      ),
    });
    // Q8_0 ... Q6_K are trainable (engine-quant.test.ts); IQ*, TQ* and the other types are not
    await expect(LoraEngine.create({ model: iq })).rejects.toThrow(/tensor "blk\.1\.attn_v\.weight" has type IQ4_NL.*supported: F32, F16, BF16, Q8_0/);
  });

  test("r <= 0 and other bad LoRA options", async () => {
    await expect(LoraEngine.create({ model, lora: { r: 0 } })).rejects.toThrow("lora.r: expected an integer >= 1, got 0");
    await expect(LoraEngine.create({ model, lora: { r: -2 } })).rejects.toThrow(/lora\.r/);
    await expect(LoraEngine.create({ model, lora: { dropout: 1 } })).rejects.toThrow(/lora\.dropout: expected a number in \[0, 1\), got 1/);
    await expect(LoraEngine.create({ model, device: "tpu" as never })).rejects.toThrow(/device: expected one of auto, cpu, cuda, metal, got "tpu"/);
    await expect(loadNative().createEngine(nativeOpts({ modelPath: model, r: 0 }))).rejects.toThrow(/createEngine: lora\.r must be a positive integer, got 0/);
    await expect(loadNative().createEngine(nativeOpts({ modelPath: model, r: -1 }))).rejects.toThrow(/lora\.r must be a positive integer/);
  });

  test("an unknown target", async () => {
    await expect(LoraEngine.create({ model, lora: { targetModules: ["q_proj", "qkv_proj"] } })).rejects.toThrow(/unknown module "qkv_proj"/);
    expect(() => loadNative().createEngine(nativeOpts({ modelPath: model, targets: [7] }))).toThrow(/LoRA target index 7 is out of range \[0, 7\)/);
  });

  test("a device this build lacks", async () => {
    await expect(LoraEngine.create({ model, device: process.platform === "darwin" ? "cuda" : "metal" })).rejects.toThrow(/has no (CUDA|Metal) backend/);
  });

  describe("with an engine", () => {
    test("a sequence longer than the context, and a token id >= vocab", async () => {
      const e = await LoraEngine.create({ model, device: "cpu" });
      const long = makeBatch([{ tokens: Array.from({ length: e.info.nCtx + 10 }, (_, i) => 100 + i) }]);
      await expect(e.accumulate(long, 10)).rejects.toThrow(`needs ${e.info.nCtx + 10} tokens but the model's context length is ${e.info.nCtx}`);
      await expect(e.logits(Array.from({ length: e.info.nCtx + 1 }, () => 5))).rejects.toThrow(/exceed the model's context length/);
      const bad = makeBatch([{ tokens: [1, 2, 32000, 4] }]);
      await expect(e.evaluate(bad)).rejects.toThrow("token id 32000 at sequence 0, position 2 is outside the vocabulary [0, 32000)");
      await expect(e.logits([1, -1])).rejects.toThrow(/token id -1/);
      await expect(e.accumulate(makeBatch([{ tokens: [1, 2, 3], mask: [1, 1, 1] }]), 3)).rejects.toThrow(/mask\[0\]\[0\]: expected 0/);
      await expect(e.accumulate(makeBatch([{ tokens: [1, 2, 3] }]), 0)).rejects.toThrow(/divisor: expected a positive number/);
      await expect(e.step({ lr: Number.NaN })).rejects.toThrow(/step: lr: expected a number >= 0, got NaN/);
      // the C++ side checks the same invariants when called directly
      const native = await loadNative().createEngine(nativeOpts({ modelPath: model }));
      const seqLen = e.info.nCtx + 10;
      await expect(native.accumulate(new Int32Array(seqLen).fill(7), new Uint8Array(seqLen).fill(1).fill(0, 0, 1), 1, seqLen, 1)).rejects.toThrow(
        /accumulate: sequence 0 needs/,
      );
      await expect(native.evaluate(Int32Array.from([1, 2, 99999]), Uint8Array.from([0, 1, 1]), 1, 3)).rejects.toThrow(/evaluate: token id 99999/);
      await expect(native.logits(Int32Array.from([1, 32000]))).rejects.toThrow(/logits: token id 32000/);
      expect(() => native.accumulate(new Int32Array(4), new Uint8Array(3), 1, 4, 1)).toThrow(/tokens and mask must both hold/);
      expect(() => native.setAdapter([{ name: "blk.0.attn_q.weight.lora_a", ne: [3, 3], data: new Float32Array(9) }])).toThrow(
        /has shape \[3, 3\] but the model needs \[64, 8\]/,
      );
      native.dispose();
      expect(() => native.info()).toThrow(/disposed/);
      await e.dispose();
      await expect(e.evaluate(bad)).rejects.toThrow(/disposed/);
    });

    test("an adapter file that does not fit names the tensor and both shapes", async () => {
      const a = await LoraEngine.create({ model, device: "cpu", lora: { r: 4, alpha: 8 } });
      const file = path.join(dir, "r4.gguf");
      await a.saveAdapter(file);
      await a.dispose();
      const b = await LoraEngine.create({ model, device: "cpu", lora: { r: 8, alpha: 8 } });
      await expect(b.loadAdapter(file)).rejects.toThrow(/tensor 'blk\.0\.attn_q\.weight\.lora_a' has shape \[64, 4\] but the model needs \[64, 8\]/);
      await expect(b.loadAdapter(model)).rejects.toThrow(/is not a GGUF LoRA adapter/);
      await b.dispose();
    });
  });
});

describe("resources", () => {
  test("RSS stays flat over 50 steps", async () => {
    const model = await testModel({ type: "f32" });
    const e = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ["q", "v", "down"], dropout: 0.05 } });
    const batch = makeBatch([{ tokens: Array.from({ length: 48 }, (_, i) => 100 + i * 7) }, { tokens: Array.from({ length: 30 }, (_, i) => 300 + i) }]);
    const step = async () => {
      await e.accumulate(batch, 76);
      await e.step({ lr: 1e-3, maxGradNorm: 1 });
      await e.evaluate(batch);
    };
    for (let i = 0; i < 10; i++) await step(); // warm up allocators
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 50; i++) await step();
    const grown = process.memoryUsage().rss - before;
    // one leaked graph context per call would be ~1.7 MB, 150 calls ~250 MB
    expect(grown).toBeLessThan(24 * 1024 * 1024);
    await e.dispose();
  });
});
