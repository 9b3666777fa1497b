// Merged-model export: a GGUF LoRA folded into its base (W' = W + alpha/r · B·A) must behave like
// the base with the adapter, in our engine and in llama.cpp.
import { beforeAll, describe, expect, test } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { LoraEngine } from "../src/engine/engine.js";
import { GgmlType, gv, readGguf, readTensorBytes, readTensorF32 } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import type { GgufFile, GgufValue } from "../src/formats/gguf.js";
import { mergeAdapter } from "../src/adapters/merge.js";
import { llamaCppLogProbs } from "./helpers/llamacpp.js";
import { logSoftmax, randomize, relError, rng, tempDir, testModel } from "./helpers/models.js";

const TOKENS = [1, 518, 25580, 29962, 3251, 403, 3758, 363, 278, 1494, 1139, 29889, 894, 29901, 1128, 1784];
const ALL = ["q", "k", "v", "o", "gate", "up", "down"];
const R = 4;
const ALPHA = 8;

const fileType = (f: GgufFile): unknown => f.metadata.get("general.file_type")?.value;
const typesOf = (f: GgufFile): { matrices: Set<number>; vectors: Set<number> } => ({
  matrices: new Set(f.tensors.filter((t) => t.ne.length >= 2).map((t) => t.type)),
  vectors: new Set(f.tensors.filter((t) => t.ne.length < 2).map((t) => t.type)),
});

describe("mergeAdapter", () => {
  let dir: string;
  let base: string; // F32 test model
  let adapter: string; // r 4, alpha 8, random non-zero on all 7 targets
  let merged: string; // base + adapter as F32
  let withAdapter: Float32Array[]; // our engine's logits on base + adapter

  beforeAll(async () => {
    dir = tempDir("t2s-merge-");
    base = await testModel();
    const engine = await LoraEngine.create({ model: base, device: "cpu", lora: { r: R, alpha: ALPHA, targetModules: ALL } });
    await engine.setAdapter(randomize(await engine.getAdapter(), 3, 0.3));
    withAdapter = await engine.logits(TOKENS);
    adapter = path.join(dir, "adapter.gguf");
    await engine.saveAdapter(adapter);
    await engine.dispose();
    merged = path.join(dir, "merged-f32.gguf");
    const progress: [number, number][] = [];
    const res = await mergeAdapter({ model: base, adapter, out: merged, type: "f32", onProgress: (d, t) => progress.push([d, t]) });
    const n = readGguf(base).tensors.length;
    expect(res).toMatchObject({ out: path.resolve(merged), type: "f32", tensors: n, merged: 7 * 2, f16Overflows: 0, warnings: [] });
    expect(progress.length).toBe(n);
    expect(progress.at(-1)).toEqual([n, n]);
  }, 120_000);

  test("the merged weights are W + alpha/r · B·A, and everything else is copied", () => {
    const b = readGguf(base);
    const m = readGguf(merged);
    const a = readGguf(adapter);
    // all metadata (tokenizer included) is the base's
    expect([...m.metadata.keys()]).toEqual([...b.metadata.keys()]);
    for (const [k, v] of b.metadata) expect(m.metadata.get(k), k).toEqual(v);
    expect(m.tensors.map((t) => [t.name, t.ne, t.type])).toEqual(b.tensors.map((t) => [t.name, t.ne, t.type]));
    // an un-adapted tensor is copied byte for byte
    expect(Buffer.from(readTensorBytes(m, "token_embd.weight")).equals(Buffer.from(readTensorBytes(b, "token_embd.weight")))).toBe(true);
    // an adapted one, by the naive formula in float64
    for (const name of ["blk.0.attn_k.weight", "blk.1.ffn_down.weight"]) {
      const info = b.tensors.find((t) => t.name === name)!;
      const [nIn, nOut] = info.ne as [number, number];
      const W = readTensorF32(b, name);
      const A = readTensorF32(a, `${name}.lora_a`); // [r][n_in]
      const B = readTensorF32(a, `${name}.lora_b`); // [n_out][r]
      const want = new Float64Array(W.length);
      for (let o = 0; o < nOut; o++) {
        for (let i = 0; i < nIn; i++) {
          let s = 0;
          for (let k = 0; k < R; k++) s += B[o * R + k] * A[k * nIn + i];
          want[o * nIn + i] = W[o * nIn + i] + (ALPHA / R) * s;
        }
      }
      const got = readTensorF32(m, name);
      expect(relError([got], [want])).toBeLessThan(1e-7);
      expect(relError([W], [want])).toBeGreaterThan(1e-2); // the adapter is not negligible
    }
  });

  test("our engine: merged model with a fresh adapter = base with the adapter (rel. error <= 1e-5)", async () => {
    const engine = await LoraEngine.create({ model: merged, device: "cpu", lora: { r: R, alpha: ALPHA, targetModules: ALL } });
    const got = await engine.logits(TOKENS);
    await engine.dispose();
    const err = relError(logSoftmax(got), logSoftmax(withAdapter));
    const errRaw = relError(got, withAdapter);
    console.log(`engine: merged vs base+adapter rel. error: log-softmax ${err.toExponential(2)}, raw logits ${errRaw.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-5);
    expect(errRaw).toBeLessThanOrEqual(1e-5);
    // not vacuous: the base alone is far off
    const plain = await LoraEngine.create({ model: base, device: "cpu" });
    const baseLogits = await plain.logits(TOKENS);
    await plain.dispose();
    expect(relError(logSoftmax(baseLogits), logSoftmax(withAdapter))).toBeGreaterThan(1e-2);
  }, 60_000);

  test("llama.cpp: merged model = base + adapter.gguf (rel. error <= 1e-5)", async () => {
    const ref = await llamaCppLogProbs(base, TOKENS, { loraPath: adapter });
    const got = await llamaCppLogProbs(merged, TOKENS);
    const err = relError(got, ref);
    console.log(`llama.cpp: merged vs base+adapter rel. error ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-5);
    expect(relError(await llamaCppLogProbs(base, TOKENS), ref)).toBeGreaterThan(1e-2);
  }, 60_000);

  test("token_embd and output LoRAs (llama.cpp's embedding layout) merge to what llama.cpp computes", async () => {
    const b = readGguf(base);
    const [nEmbd, nVocab] = b.tensors.find((t) => t.name === "token_embd.weight")!.ne as [number, number];
    const r = rng(11);
    const rand = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, () => r() * s);
    const file = path.join(dir, "embd-adapter.gguf");
    const metadata: [string, GgufValue][] = [
      ["general.type", gv.str("adapter")],
      ["general.architecture", gv.str("llama")],
      ["adapter.type", gv.str("lora")],
      ["adapter.lora.alpha", gv.f32(6)],
    ];
    writeGguf(file, {
      metadata,
      tensors: [
        { name: "token_embd.weight.lora_a", type: GgmlType.F32, ne: [3, nVocab], data: rand(3 * nVocab, 0.5) },
        { name: "token_embd.weight.lora_b", type: GgmlType.F32, ne: [3, nEmbd], data: rand(3 * nEmbd, 0.5) },
        { name: "output.weight.lora_a", type: GgmlType.F32, ne: [nEmbd, 3], data: rand(3 * nEmbd, 0.3) },
        { name: "output.weight.lora_b", type: GgmlType.F32, ne: [3, nVocab], data: rand(3 * nVocab, 0.3) },
      ],
    });
    const out = path.join(dir, "merged-embd.gguf");
    const res = await mergeAdapter({ model: base, adapter: file, out });
    expect(res.merged).toBe(2);
    const ref = await llamaCppLogProbs(base, TOKENS, { loraPath: file });
    const err = relError(await llamaCppLogProbs(out, TOKENS), ref);
    console.log(`llama.cpp: token_embd/output merge rel. error ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-5);
    expect(relError(await llamaCppLogProbs(base, TOKENS), ref)).toBeGreaterThan(1e-2);
  }, 60_000);

  test("output types: default f16 or the base's wider type, --type overrides, norms stay F32", async () => {
    const f16 = await testModel({ type: "f16" });
    const bf16 = await testModel({ type: "bf16" });
    const cases: [string, string, "f16" | "bf16" | "f32" | undefined, number, string, number][] = [
      ["f32 base, default", base, undefined, GgmlType.F32, "f32", 0],
      ["f16 base, default", f16, undefined, GgmlType.F16, "f16", 1],
      ["bf16 base, default", bf16, undefined, GgmlType.BF16, "bf16", 32],
      ["f32 base, type f16", base, "f16", GgmlType.F16, "f16", 1],
      ["f32 base, type bf16", base, "bf16", GgmlType.BF16, "bf16", 32],
      ["f16 base, type f32", f16, "f32", GgmlType.F32, "f32", 0],
      ["bf16 base, type f16", bf16, "f16", GgmlType.F16, "f16", 1],
    ];
    const ref = readGguf(merged);
    for (const [label, model, type, want, wantName, wantFt] of cases) {
      const out = path.join(dir, `types-${label.replace(/\W+/g, "-")}.gguf`);
      const res = await mergeAdapter({ model, adapter, out, type });
      expect(res.type, label).toBe(wantName);
      const f = readGguf(out);
      const { matrices, vectors } = typesOf(f);
      expect([...matrices], label).toEqual([want]);
      expect([...vectors], label).toEqual([GgmlType.F32]);
      expect(fileType(f), label).toBe(wantFt);
      // the same merge up to the storage precision (the test models are one F32 model rounded)
      const name = "blk.0.attn_q.weight";
      const tol = want === GgmlType.F32 && model === base ? 1e-7 : 1e-2;
      expect(relError([readTensorF32(f, name)], [readTensorF32(ref, name)]), label).toBeLessThan(tol);
    }
  }, 60_000);

  test("F16 overflow is counted and reported", async () => {
    // an adapter that pushes one weight far beyond 65504: B·A = 1e5 · e_0 e_0ᵀ on attn_q
    const a = readGguf(adapter);
    const out = path.join(dir, "big-adapter.gguf");
    const tensors = a.tensors.map((t) => {
      const data = readTensorF32(a, t);
      if (t.name === "blk.0.attn_q.weight.lora_a" || t.name === "blk.0.attn_q.weight.lora_b") {
        data.fill(0);
        data[0] = t.name.endsWith("_a") ? 1e5 : 1;
      }
      return { name: t.name, type: t.type, ne: t.ne, data };
    });
    writeGguf(out, { metadata: a.metadata, tensors });
    const res = await mergeAdapter({ model: base, adapter: out, out: path.join(dir, "overflow.gguf"), type: "f16" });
    expect(res.f16Overflows).toBe(1);
    expect(res.warnings).toHaveLength(1);
    expect(res.warnings[0]).toMatch(/blk\.0\.attn_q\.weight: 1 value.*65504/);
  }, 30_000);

  describe("errors", () => {
    test("an adapter that does not fit the base names the tensor and both shapes", async () => {
      const small = await testModel({ nEmbd: 32, nHead: 4, nHeadKv: 2 });
      const out = path.join(dir, "nofit.gguf");
      await expect(mergeAdapter({ model: small, adapter, out })).rejects.toThrow(
        /tensor "blk\.0\.attn_q\.weight\.lora_a" has shape \[64, 4\] but base tensor "blk\.0\.attn_q\.weight" has shape \[32, 32\]/,
      );
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    });

    test("a missing adapter file", async () => {
      const missing = path.join(dir, "nope", "adapter.gguf");
      await expect(mergeAdapter({ model: base, adapter: missing, out: path.join(dir, "x.gguf") })).rejects.toThrow(`adapter file not found: ${missing}`);
    });

    test("a base of another or an unsupported architecture, or itself an adapter", async () => {
      const qwen = await testModel({ arch: "qwen2" });
      await expect(mergeAdapter({ model: qwen, adapter, out: path.join(dir, "x.gguf") })).rejects.toThrow(
        /adapter for architecture "llama" but the model .* is "qwen2"/,
      );
      const gpt2 = await testModel({ arch: "gpt2" });
      await expect(mergeAdapter({ model: gpt2, adapter, out: path.join(dir, "x.gguf") })).rejects.toThrow(
        /architecture "gpt2" is not supported; supported: llama \(.*\), qwen2 \(.*\), qwen3/,
      );
      await expect(mergeAdapter({ model: adapter, adapter, out: path.join(dir, "x.gguf") })).rejects.toThrow(/is an adapter/);
    });

    test("a model given as the adapter, a bad type, out = model", async () => {
      await expect(mergeAdapter({ model: base, adapter: base, out: path.join(dir, "x.gguf") })).rejects.toThrow(/not a GGUF LoRA adapter/);
      await expect(mergeAdapter({ model: base, adapter, out: path.join(dir, "x.gguf"), type: "q8" as "f16" })).rejects.toThrow(
        /type: expected one of f16, bf16, f32, got "q8"/,
      );
      await expect(mergeAdapter({ model: base, adapter, out: base })).rejects.toThrow(/out must differ from the model/);
    });

    test("an unpaired or inconsistent-rank adapter", async () => {
      const a = readGguf(adapter);
      const all = a.tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne, data: readTensorF32(a, t) }));
      const unpaired = path.join(dir, "unpaired.gguf");
      writeGguf(unpaired, { metadata: a.metadata, tensors: all.filter((t) => t.name !== "blk.1.attn_v.weight.lora_b") });
      await expect(mergeAdapter({ model: base, adapter: unpaired, out: path.join(dir, "x.gguf") })).rejects.toThrow(
        /"blk\.1\.attn_v\.weight\.lora_a" has no matching "blk\.1\.attn_v\.weight\.lora_b"/,
      );
      // r = 2 on one pair, 4 elsewhere
      const mixed = path.join(dir, "mixed-r.gguf");
      const cut = all.map((t) => {
        if (t.name === "blk.1.attn_v.weight.lora_a") return { ...t, ne: [t.ne[0], 2], data: t.data.subarray(0, t.ne[0] * 2) };
        if (t.name === "blk.1.attn_v.weight.lora_b") {
          const nOut = t.ne[1];
          const d = new Float32Array(2 * nOut);
          for (let o = 0; o < nOut; o++) d.set(t.data.subarray(o * 4, o * 4 + 2), o * 2);
          return { ...t, ne: [2, nOut], data: d };
        }
        return t;
      });
      writeGguf(mixed, { metadata: a.metadata, tensors: cut });
      await expect(mergeAdapter({ model: base, adapter: mixed, out: path.join(dir, "x.gguf") })).rejects.toThrow(
        /inconsistent LoRA rank: "blk\.1\.attn_v\.weight" has r = 2/,
      );
      expect(fs.existsSync(path.join(dir, "x.gguf"))).toBe(false);
    });
  });
});
