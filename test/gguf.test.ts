import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GgmlType, GgufValueType, gv, readGguf, readTensorBytes, readTensorF32 } from "../src/formats/gguf.js";
import { bf16BitsToF32, bf16ToF32, f16BitsToF32, f16ToF32, f32ToBf16, f32ToBf16Bits, f32ToF16, f32ToF16Bits } from "../src/formats/float16.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import type { GgufValue } from "../src/formats/gguf.js";
import type { GgufTensorSpec } from "../src/formats/gguf-write.js";
import { llamaCppSourceDir, makeTestModel } from "../src/models/test-model.js";
import { llamaCppLogProbs, llamaCppTokenize } from "./helpers/llamacpp.js";

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "text2sql-gguf-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** f32 bit pattern -> value. */
function f32FromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}

describe("f16 conversion", () => {
  it("converts known values", () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff], // max finite
      [65519.99, 0x7bff], // still below the halfway point to 65536
      [65520, 0x7c00], // halfway: ties to even, which is Inf
      [1e6, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway between 0 and 2^-24: ties to even (0)
      [3 * 2 ** -25, 0x0002], // halfway between 1 and 2 ulps: ties to even (2)
      [2 ** -25 * 1.0001, 0x0001], // just above halfway rounds up
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and 1+2^-10: ties to even (1)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between odd and even: up to even
      [0.1, 0x2e66],
      [Math.PI, 0x4248],
    ];
    for (const [value, bits] of cases) {
      expect(f32ToF16Bits(value), `f16(${value})`).toBe(bits);
    }
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
  });

  it("round-trips every f16 bit pattern exactly", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) expect(back[h]! & 0x7e00).toBe(0x7e00);
      else if (back[h] !== h) expect(back[h], `bits 0x${h.toString(16)}`).toBe(h);
    }
  });

  it("rounds random values to the nearest f16, ties to even", () => {
    // Random f32 bit patterns across the whole f16 range, including subnormals.
    let seed = 12345;
    const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const values = new Float32Array(200_000);
    for (let i = 0; i < values.length; i++) {
      const exp = 100 + (rnd() % 44); // 2^-27 .. 2^16
      values[i] = f32FromBits(((rnd() & 1) << 31) | (exp << 23) | (rnd() & 0x7fffff));
    }
    const halves = f32ToF16(values);
    const decoded = f16ToF32(halves);
    for (let i = 0; i < values.length; i++) {
      const x = Math.abs(values[i]!);
      const h = halves[i]! & 0x7fff;
      const err = Math.abs(x - Math.abs(decoded[i]!));
      const down = h > 0 ? Math.abs(x - f16BitsToF32(h - 1)) : Infinity;
      const up = h < 0x7c00 ? Math.abs(x - f16BitsToF32(h + 1)) : Infinity;
      if (h === 0x7c00) {
        expect(x).toBeGreaterThanOrEqual(65520);
        continue;
      }
      if (!(err < down && err < up)) {
        // Not strictly closest: must be an exact tie resolved to the even pattern.
        expect(err === down || err === up, `value ${x} -> 0x${h.toString(16)}`).toBe(true);
        expect(h & 1).toBe(0);
      }
    }
  });
});

describe("bf16 conversion", () => {
  it("converts known values", () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(-2)).toBe(0xc000);
    expect(f32ToBf16Bits(0)).toBe(0x0000);
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(f32ToBf16Bits(Math.PI)).toBe(0x4049);
    expect(f32ToBf16Bits(f32FromBits(0x3f808000))).toBe(0x3f80); // tie -> even (down)
    expect(f32ToBf16Bits(f32FromBits(0x3f818000))).toBe(0x3f82); // tie -> even (up)
    expect(f32ToBf16Bits(f32FromBits(0x3f808001))).toBe(0x3f81); // above tie -> up
    expect(f32ToBf16Bits(f32FromBits(0x00008000))).toBe(0x0000); // subnormal tie -> even
    expect(f32ToBf16Bits(f32FromBits(0x7f7fffff))).toBe(0x7f80); // f32 max rounds to Inf
    const nan = f32ToBf16Bits(NaN);
    expect(Number.isNaN(bf16BitsToF32(nan))).toBe(true);
    // A NaN whose payload lives only in the low 16 bits must stay NaN, not become Inf.
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(f32FromBits(0x7f800001))))).toBe(true);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
  });

  it("round-trips every bf16 bit pattern exactly", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToBf16(bf16ToF32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (isNaN) expect(Number.isNaN(bf16BitsToF32(back[h]!))).toBe(true);
      else if (back[h] !== h) expect(back[h], `bits 0x${h.toString(16)}`).toBe(h);
    }
  });
});

describe("GGUF reader/writer", () => {
  const metadata: [string, GgufValue][] = [
    ["general.architecture", gv.str("llama")],
    ["test.u8", gv.u8(255)],
    ["test.i8", gv.i8(-128)],
    ["test.u16", gv.u16(65535)],
    ["test.i16", gv.i16(-32768)],
    ["test.u32", gv.u32(0xffffffff)],
    ["test.i32", gv.i32(-0x80000000)],
    ["test.f32", gv.f32(Math.fround(1e-5))],
    ["test.f64", gv.f64(Math.PI)],
    ["test.u64", gv.u64(2n ** 64n - 1n)],
    ["test.i64", gv.i64(-(2n ** 63n))],
    ["test.bool", gv.bool(true)],
    ["test.str", gv.str("héllo ▁wörld 你好 🦙")],
    ["test.empty_str", gv.str("")],
    ["test.strings", gv.strings(["<unk>", "<s>", "", "▁the", "给"])],
    ["test.f32s", gv.f32s([0, -1.5, 3.25, Math.fround(0.1)])],
    ["test.i32s", gv.i32s([1, -2, 3])],
    ["test.u32s", gv.u32s([])],
    ["test.u64s", { type: GgufValueType.ARRAY, itemType: GgufValueType.UINT64, value: new BigUint64Array([1n, 2n ** 60n]) }],
    ["test.f64s", { type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT64, value: new Float64Array([Math.E]) }],
    ["test.bools", { type: GgufValueType.ARRAY, itemType: GgufValueType.BOOL, value: [true, false, true] }],
    [
      "test.nested",
      {
        type: GgufValueType.ARRAY,
        itemType: GgufValueType.ARRAY,
        value: [
          { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: ["a", "b"] },
          { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value: new Int32Array([7]) },
        ],
      },
    ],
  ];

  const f32Data = Float32Array.from({ length: 3 * 5 }, (_, i) => i * 0.25 - 1);
  const f16Source = Float32Array.from({ length: 8 * 2 }, (_, i) => Math.sin(i) * 100);
  const bf16Bits = Uint16Array.from({ length: 4 * 3 * 2 }, (_, i) => f32ToBf16Bits(i - 10.5));
  const tensors: GgufTensorSpec[] = [
    { name: "a.f32", type: GgmlType.F32, ne: [3, 5], data: f32Data }, // 60 bytes: next offset needs padding
    { name: "b.f16", type: GgmlType.F16, ne: [8, 2], data: f16Source }, // converted from f32
    { name: "c.bf16", type: GgmlType.BF16, ne: [4, 3, 2], data: bf16Bits }, // raw bits
    { name: "d.1d", type: GgmlType.F32, ne: [7], data: new Float32Array([1, 2, 3, 4, 5, 6, 7]) },
    {
      name: "e.chunked",
      type: GgmlType.F16,
      ne: [4, 1, 1, 3],
      data: function* () {
        yield new Float32Array([1, 2, 3, 4]);
        yield new Float32Array([5, 6, 7, 8, 9, 10, 11, 12]);
      },
    },
  ];

  it("round-trips metadata and tensors", () => {
    const file = path.join(tmp, "roundtrip.gguf");
    writeGguf(file, { metadata, tensors });
    const g = readGguf(file);

    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.dataOffset % 32).toBe(0);
    expect([...g.metadata.keys()]).toEqual(metadata.map(([k]) => k));
    for (const [key, value] of metadata) expect(g.metadata.get(key), key).toEqual(value);
    // Typed arrays keep their type.
    expect(g.metadata.get("test.f32s")!.value).toBeInstanceOf(Float32Array);
    expect(g.metadata.get("test.i32s")!.value).toBeInstanceOf(Int32Array);

    expect(g.tensors.map((t) => [t.name, t.type, t.ne])).toEqual(tensors.map((t) => [t.name, t.type, [...t.ne]]));
    for (const t of g.tensors) expect(t.offset % 32, t.name).toBe(0);
    expect(g.tensors.map((t) => t.byteLength)).toEqual([60, 32, 48, 28, 24]);

    expect(readTensorF32(g, "a.f32")).toEqual(f32Data);
    expect(new Uint16Array(readTensorBytes(g, "b.f16").buffer)).toEqual(f32ToF16(f16Source));
    expect(readTensorF32(g, "b.f16")).toEqual(f16ToF32(f32ToF16(f16Source)));
    expect(new Uint16Array(readTensorBytes(g, "c.bf16").buffer)).toEqual(bf16Bits);
    expect(readTensorF32(g, "d.1d")).toEqual(new Float32Array([1, 2, 3, 4, 5, 6, 7]));
    expect(Array.from(readTensorF32(g, "e.chunked"))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    // Writing what was read reproduces the file byte for byte.
    const again = path.join(tmp, "roundtrip2.gguf");
    writeGguf(again, {
      metadata: g.metadata,
      tensors: g.tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne, data: readTensorBytes(g, t) })),
    });
    expect(fs.readFileSync(again).equals(fs.readFileSync(file))).toBe(true);
    expect(fs.statSync(file).size).toBe(g.dataOffset + g.tensors.at(-1)!.offset + 32);
  });

  it("honours general.alignment", () => {
    const file = path.join(tmp, "align64.gguf");
    writeGguf(file, { metadata: [["general.alignment", gv.u32(64)], ...metadata], tensors });
    const g = readGguf(file);
    expect(g.alignment).toBe(64);
    expect(g.dataOffset % 64).toBe(0);
    for (const t of g.tensors) expect(t.offset % 64).toBe(0);
    expect(readTensorF32(g, "d.1d")).toEqual(new Float32Array([1, 2, 3, 4, 5, 6, 7]));
  });

  it("reads and rewrites the llama.cpp vocab file byte for byte", () => {
    const vocabPath = path.join(llamaCppSourceDir(), "models", "ggml-vocab-llama-spm.gguf");
    const g = readGguf(vocabPath);
    const tokens = g.metadata.get("tokenizer.ggml.tokens")!;
    expect(tokens.type === GgufValueType.ARRAY && tokens.itemType === GgufValueType.STRING).toBe(true);
    expect((tokens.value as string[]).length).toBe(32000);
    expect((tokens.value as string[])[15043]).toBe("▁Hello");
    expect(g.metadata.get("tokenizer.ggml.scores")!.value).toBeInstanceOf(Float32Array);
    expect(g.metadata.get("tokenizer.ggml.token_type")!.value).toBeInstanceOf(Int32Array);
    const copy = path.join(tmp, "vocab-copy.gguf");
    writeGguf(copy, { metadata: g.metadata, tensors: [] });
    expect(fs.readFileSync(copy).equals(fs.readFileSync(vocabPath))).toBe(true);
  });

  it("rejects tensor data of the wrong size and leaves no file behind", () => {
    const file = path.join(tmp, "bad-size.gguf");
    expect(() => writeGguf(file, { metadata: [], tensors: [{ name: "x", type: GgmlType.F32, ne: [4], data: new Float32Array(3) }] })).toThrow(
      /tensor "x".*needs 16 bytes of data, got 12/,
    );
    expect(() => writeGguf(file, { metadata: [], tensors: [{ name: "x", type: GgmlType.F32, ne: [4], data: new Float32Array(5) }] })).toThrow(/got more/);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.includes("bad-size"))).toEqual([]);
  });

  it("rejects values that do not fit their type", () => {
    const file = path.join(tmp, "bad-value.gguf");
    expect(() => writeGguf(file, { metadata: [["k", gv.u8(256)]], tensors: [] })).toThrow(/"k".*256/);
    expect(() => writeGguf(file, { metadata: [["k", gv.u32(-1)]], tensors: [] })).toThrow(/"k"/);
    expect(() =>
      writeGguf(file, {
        metadata: [
          ["k", gv.str("a")],
          ["k", gv.str("b")],
        ],
        tensors: [],
      }),
    ).toThrow(/duplicate/);
  });

  describe("errors name the file and the problem", () => {
    let good: Buffer;
    beforeAll(() => {
      const file = path.join(tmp, "good.gguf");
      writeGguf(file, { metadata, tensors });
      good = fs.readFileSync(file);
    });
    const variant = (name: string, bytes: Uint8Array): string => {
      const file = path.join(tmp, name);
      fs.writeFileSync(file, bytes);
      return file;
    };

    it("bad magic", () => {
      const bytes = Buffer.from(good);
      bytes.write("GGML", 0, "latin1");
      const file = variant("bad-magic.gguf", bytes);
      expect(() => readGguf(file)).toThrow(`${file}: not a GGUF file (bad magic "GGML"`);
      const tiny = variant("tiny.gguf", Buffer.from("GG"));
      expect(() => readGguf(tiny)).toThrow(`${tiny}: not a GGUF file`);
    });

    it("unsupported version", () => {
      const bytes = Buffer.from(good);
      bytes.writeUInt32LE(7, 4);
      const file = variant("bad-version.gguf", bytes);
      expect(() => readGguf(file)).toThrow(`${file}: unsupported GGUF version 7`);
      bytes.writeUInt32LE(3 << 24, 4); // a big-endian file
      const be = variant("big-endian.gguf", bytes);
      expect(() => readGguf(be)).toThrow(/big-endian/);
    });

    it("truncated header or data", () => {
      // Cut inside the metadata, inside the tensor infos and inside the tensor data.
      const g = readGguf(path.join(tmp, "good.gguf"));
      const last = g.tensors.at(-1)!;
      const endOfData = g.dataOffset + last.offset + last.byteLength;
      for (const cut of [10, 30, 200, g.dataOffset - 8, g.dataOffset + 100, endOfData - 1]) {
        const file = variant(`cut-${cut}.gguf`, good.subarray(0, cut));
        expect(() => readGguf(file), `cut at ${cut}`).toThrow(`${file}: truncated GGUF file`);
      }
    });

    it("absurd lengths", () => {
      const bytes = Buffer.from(good);
      bytes.writeBigUInt64LE(2n ** 40n, 24); // length of the first key
      const file = variant("huge-key.gguf", bytes);
      expect(() => readGguf(file)).toThrow(`${file}: truncated GGUF file`);
    });
  });
});

describe("random test model + llama.cpp reference", { timeout: 120_000 }, () => {
  const tokens = [1, 15043, 3186]; // <s> ▁Hello ▁world
  let modelPath: string;
  let reference: Float32Array[];

  beforeAll(async () => {
    modelPath = await makeTestModel({ path: path.join(tmp, "model-f32.gguf") });
    reference = await llamaCppLogProbs(modelPath, tokens);
  });

  it("writes the expected llama layout with the real vocab", () => {
    const g = readGguf(modelPath);
    const vocab = readGguf(path.join(llamaCppSourceDir(), "models", "ggml-vocab-llama-spm.gguf"));
    for (const [key, value] of vocab.metadata) {
      if (key.startsWith("tokenizer.ggml.")) expect(g.metadata.get(key), key).toEqual(value);
    }
    const u32 = (key: string): unknown => g.metadata.get(key)?.value;
    expect(u32("general.architecture")).toBe("llama");
    expect(u32("llama.embedding_length")).toBe(64);
    expect(u32("llama.block_count")).toBe(2);
    expect(u32("llama.attention.head_count")).toBe(4);
    expect(u32("llama.attention.head_count_kv")).toBe(2);
    expect(u32("llama.rope.dimension_count")).toBe(16);
    expect(u32("llama.vocab_size")).toBe(32000);
    expect(u32("general.file_type")).toBe(0);
    const shapes = Object.fromEntries(g.tensors.map((t) => [t.name, t.ne]));
    expect(shapes["token_embd.weight"]).toEqual([64, 32000]);
    expect(shapes["blk.1.attn_k.weight"]).toEqual([64, 32]);
    expect(shapes["blk.1.ffn_down.weight"]).toEqual([128, 64]);
    expect(shapes["output.weight"]).toEqual([64, 32000]);
    expect(g.tensors).toHaveLength(1 + 2 * 9 + 2);
  });

  it("evaluates with llama.cpp to finite, non-trivial log-probabilities", () => {
    expect(reference).toHaveLength(tokens.length);
    for (const lp of reference) {
      expect(lp).toHaveLength(32000);
      let max = -Infinity;
      let sumP = 0;
      let mean = 0;
      for (const v of lp) {
        expect(Number.isFinite(v)).toBe(true);
        max = Math.max(max, v);
        sumP += Math.exp(v);
        mean += v / lp.length;
      }
      let variance = 0;
      for (const v of lp) variance += (v - mean) ** 2 / lp.length;
      expect(sumP).toBeCloseTo(1, 5);
      // Logit std of order 1-3: clearly not uniform, not saturated.
      expect(Math.sqrt(variance)).toBeGreaterThan(0.5);
      expect(Math.sqrt(variance)).toBeLessThan(5);
      expect(max).toBeLessThan(-0.5);
    }
    // Different contexts give different distributions.
    expect(maxAbsDiff(reference[1]!, reference[2]!)).toBeGreaterThan(0.1);
  });

  it("tokenizes SQL with the Llama-2 vocab (no BOS added)", async () => {
    const ids = await llamaCppTokenize(modelPath, "SELECT count(*) FROM head WHERE age > 56");
    expect(ids).toHaveLength(11);
    expect(ids).toEqual([5097, 2302, 22798, 3895, 2343, 5754, 5046, 1405, 29871, 29945, 29953]);
  });

  it("f16 and bf16 variants are the f32 model rounded", async () => {
    // Observed max |delta log-prob|: ~0.007 (f16), ~0.065 (bf16); llama.cpp also rounds the
    // activations to the weight type inside the matmuls.
    for (const [type, tolerance] of [
      ["f16", 0.02],
      ["bf16", 0.2],
    ] as const) {
      const p = await makeTestModel({ path: path.join(tmp, `model-${type}.gguf`), type });
      const g = readGguf(p);
      expect(g.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.type).toBe(type === "f16" ? GgmlType.F16 : GgmlType.BF16);
      expect(g.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!.type).toBe(GgmlType.F32);
      const lp = await llamaCppLogProbs(p, tokens);
      for (let i = 0; i < tokens.length; i++) {
        const d = maxAbsDiff(lp[i]!, reference[i]!);
        expect(d, `${type} position ${i}`).toBeLessThan(tolerance);
        expect(d).toBeGreaterThan(0);
      }
    }
  });

  it("supports tied embeddings", async () => {
    const p = await makeTestModel({ path: path.join(tmp, "model-tied.gguf"), tiedEmbeddings: true, seed: 2 });
    expect(readGguf(p).tensors.some((t) => t.name === "output.weight")).toBe(false);
    const lp = await llamaCppLogProbs(p, tokens);
    expect(lp.every((row) => row.every(Number.isFinite))).toBe(true);
  });

  it("applies a GGUF LoRA adapter like the merged weights (W + scale*alpha/r * B.A)", async () => {
    // Adapter on blk.0.attn_q and output: lora_a ne = [n_in, r], lora_b ne = [r, n_out].
    const base = readGguf(modelPath);
    const rank = 4;
    const alpha = 8;
    const scale = 0.75;
    const targets = ["blk.0.attn_q.weight", "output.weight"];
    let seed = 99;
    const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2;
    const adapterTensors: GgufTensorSpec[] = [];
    const merged = new Map<string, Float32Array>();
    for (const name of targets) {
      const [nIn, nOut] = base.tensors.find((t) => t.name === name)!.ne as [number, number];
      const a = Float32Array.from({ length: nIn * rank }, rnd);
      const b = Float32Array.from({ length: rank * nOut }, rnd);
      adapterTensors.push(
        { name: `${name}.lora_a`, type: GgmlType.F32, ne: [nIn, rank], data: a },
        { name: `${name}.lora_b`, type: GgmlType.F32, ne: [rank, nOut], data: b },
      );
      const w = readTensorF32(base, name).slice();
      const s = (scale * alpha) / rank;
      for (let o = 0; o < nOut; o++) {
        for (let i = 0; i < nIn; i++) {
          let acc = 0;
          for (let r = 0; r < rank; r++) acc += a[r * nIn + i]! * b[o * rank + r]!;
          w[o * nIn + i] += s * acc;
        }
      }
      merged.set(name, w);
    }
    const loraPath = path.join(tmp, "adapter.gguf");
    writeGguf(loraPath, {
      metadata: [
        ["general.architecture", gv.str("llama")],
        ["general.type", gv.str("adapter")],
        ["adapter.type", gv.str("lora")],
        ["adapter.lora.alpha", gv.f32(alpha)],
      ],
      tensors: adapterTensors,
    });
    const mergedPath = path.join(tmp, "model-merged.gguf");
    writeGguf(mergedPath, {
      metadata: base.metadata,
      tensors: base.tensors.map((t) => ({ ...t, data: merged.get(t.name) ?? readTensorBytes(base, t) })),
    });

    const withLora = await llamaCppLogProbs(modelPath, tokens, { loraPath, loraScale: scale });
    const withMerged = await llamaCppLogProbs(mergedPath, tokens);
    for (let i = 0; i < tokens.length; i++) {
      expect(maxAbsDiff(withLora[i]!, reference[i]!)).toBeGreaterThan(0.05); // the adapter does something
      expect(maxAbsDiff(withLora[i]!, withMerged[i]!)).toBeLessThan(1e-4); // ... and exactly this
    }
  });
});

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
