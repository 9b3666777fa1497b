// Hugging Face checkpoint -> GGUF conversion (src/convert.ts). The fixtures are our tiny random
// GGUFs turned into HF folders by scripts/make-hf-checkpoint.ts (q/k rows un-permuted, HF names,
// a SentencePiece tokenizer.model built from the GGUF vocabulary); converting them back must
// give the original tensors byte for byte, the same tokenizer and the same logits.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Token } from "node-llama-cpp";
import { convertHfToGguf } from "../src/models/convert/convert.js";
import { LoraEngine } from "../src/engine/engine.js";
import { GgmlType, GgufValueType, readGguf, readTensorBytes, type GgufFile, type GgufValue } from "../src/formats/gguf.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToBf16Bits, f32ToF16 } from "../src/formats/float16.js";
import { permuteRows, permuteRowsBytes } from "../src/formats/llama-layout.js";
import { cpuLlama } from "../src/train/prompt.js";
import { openHfWeights, readSafetensorsHeader } from "../src/formats/safetensors.js";
import { encodeSentencePieceModel, parseSentencePieceModel, SentencePieceModelType } from "../src/models/convert/sentencepiece.js";
import { makeHfCheckpoint } from "../scripts/make-hf-checkpoint.js";
import { llamaCppLogProbs } from "./helpers/llamacpp.js";
import { familyModel } from "./helpers/family-model.js";
import { startHubServer } from "./helpers/hub-server.js";
import { resolveModelPath } from "../src/models/model-path.js";
import { tempDir, testModel } from "./helpers/models.js";

// "[INST] Generate SQL ..." style tokens: BOS then ordinary ids (as in engine-llamacpp.test.ts)
const TOKENS = [1, 518, 25580, 29962, 3251, 403, 3758, 363, 278, 1494, 1139, 29889, 894, 29901, 1128, 1784];

const TOKENIZER_KEYS = [
  "tokenizer.ggml.model",
  "tokenizer.ggml.tokens",
  "tokenizer.ggml.scores",
  "tokenizer.ggml.token_type",
  "tokenizer.ggml.bos_token_id",
  "tokenizer.ggml.eos_token_id",
  "tokenizer.ggml.unknown_token_id",
  "tokenizer.ggml.padding_token_id",
  "tokenizer.ggml.add_bos_token",
  "tokenizer.ggml.add_eos_token",
];

// every fixture folder (tens of MB each) is removed at the end
const dirs: string[] = [];
function hfDir(): string {
  const d = tempDir("t2s-hf-");
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Metadata value in a form toEqual compares exactly (typed arrays become plain arrays). */
function plain(v: GgufValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (v.type === GgufValueType.ARRAY) return { itemType: v.itemType, value: Array.from(v.value as ArrayLike<unknown>) };
  return { type: v.type, value: v.value };
}

function tensorsOf(file: GgufFile): Map<string, { type: number; ne: number[]; bytes: Uint8Array }> {
  return new Map(file.tensors.map((t) => [t.name, { type: t.type, ne: t.ne, bytes: readTensorBytes(file, t) }]));
}

function f32Of(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

function u8(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Convert `gguf` to an HF folder and back; returns the folder and the converted file. */
async function roundTrip(gguf: string, opts: Omit<Parameters<typeof makeHfCheckpoint>[0], "gguf" | "dir">, outtype?: "auto" | "bf16" | "f16" | "f32") {
  const dir = hfDir();
  await makeHfCheckpoint({ gguf, dir, ...opts });
  const out = path.join(dir, "converted.gguf");
  const result = await convertHfToGguf(dir, out, { outtype });
  return { dir, out, result };
}

describe("sentencepiece protobuf", () => {
  test("encode -> parse keeps pieces, scores, types, ids and normalizer flags; negative ids survive", () => {
    const pieces = [
      { piece: "<unk>", score: 0, type: 2 },
      { piece: "<s>", score: 0, type: 3 },
      { piece: "</s>", score: 0, type: 3 },
      { piece: "<0x00>", score: 0, type: 6 },
      { piece: "▁the", score: -1.5, type: 1 },
      { piece: "中文", score: -1e9, type: 4 },
      { piece: "🙂", score: -3.25, type: 5 },
      { piece: "\uFEFF", score: -7, type: 1 },
    ];
    const bytes = encodeSentencePieceModel({
      pieces,
      modelType: SentencePieceModelType.BPE,
      vocabSize: 7,
      byteFallback: true,
      unkId: 0,
      bosId: 1,
      eosId: 2,
      padId: -1,
      normalizerName: "identity",
      addDummyPrefix: false,
      removeExtraWhitespaces: false,
      escapeWhitespaces: true,
    });
    const m = parseSentencePieceModel(bytes);
    expect(m.pieces).toEqual(pieces);
    expect(m).toMatchObject({
      modelType: 2,
      vocabSize: 7,
      byteFallback: true,
      unkId: 0,
      bosId: 1,
      eosId: 2,
      padId: -1,
      normalizerName: "identity",
      addDummyPrefix: false,
      removeExtraWhitespaces: false,
      escapeWhitespaces: true,
    });
    // proto defaults when the specs are empty
    const d = parseSentencePieceModel(encodeSentencePieceModel({ pieces }));
    expect(d).toMatchObject({
      modelType: SentencePieceModelType.UNIGRAM,
      unkId: 0,
      bosId: 1,
      eosId: 2,
      padId: -1,
      addDummyPrefix: true,
      removeExtraWhitespaces: true,
      byteFallback: false,
    });
    expect(parseSentencePieceModel(encodeSentencePieceModel({ pieces, padId: -12345, bosId: 2 ** 31 - 1 }))).toMatchObject({
      padId: -12345,
      bosId: 2 ** 31 - 1,
    });
  });

  test("unknown fields of every wire type are skipped, at every level", () => {
    // hand-built messages: key = field << 3 | wire
    const varint = (n: number): number[] => {
      const out: number[] = [];
      while (n >= 0x80) {
        out.push((n & 0x7f) | 0x80);
        n >>>= 7;
      }
      out.push(n);
      return out;
    };
    const len = (field: number, body: number[]): number[] => [...varint((field << 3) | 2), ...varint(body.length), ...body];
    const junk = (field: number): number[] => [
      ...varint((field << 3) | 0),
      ...varint(300), // varint
      ...varint(((field + 1) << 3) | 1),
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8, // fixed64
      ...len(field + 2, [9, 9, 9]), // length-delimited
      ...varint(((field + 3) << 3) | 5),
      1,
      2,
      3,
      4, // fixed32
    ];
    const str = (s: string): number[] => [...new TextEncoder().encode(s)];
    const f32 = (x: number): number[] => [...new Uint8Array(new Float32Array([x]).buffer)];
    const piece = (p: string, score: number, type?: number): number[] =>
      len(1, [...junk(7), ...len(1, str(p)), ...varint((2 << 3) | 5), ...f32(score), ...(type ? [...varint(3 << 3), type] : []), ...junk(200)]);
    const bytes = new Uint8Array([
      ...junk(20),
      ...piece("<unk>", 0, 2),
      ...piece("▁a", -2),
      ...len(2, [
        ...junk(5),
        ...varint(3 << 3),
        2,
        ...varint(35 << 3),
        1,
        ...varint(43 << 3),
        ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ...junk(60),
      ]),
      ...len(3, [...len(1, str("identity")), ...junk(10), ...varint(3 << 3), 0]),
      ...len(4, junk(1)), // self_test_data
      ...junk(100),
    ]);
    const m = parseSentencePieceModel(bytes);
    expect(m.pieces).toEqual([
      { piece: "<unk>", score: 0, type: 2 },
      { piece: "▁a", score: -2, type: 1 },
    ]);
    expect(m).toMatchObject({ modelType: 2, byteFallback: true, padId: -1, normalizerName: "identity", addDummyPrefix: false });
    // truncation is an error, not a silent partial parse
    expect(() => parseSentencePieceModel(bytes.subarray(0, bytes.length - 2), "x.model")).toThrow(/x\.model: not a valid SentencePiece model/);
  });
});

describe("permuteRowsBytes", () => {
  test("matches peft.ts permuteRows on f32 rows and inverts itself; works on 2-byte rows", () => {
    const rows = 16,
      cols = 3,
      nHead = 2;
    const data = Float32Array.from({ length: rows * cols }, (_, i) => i);
    const ref = permuteRows(data, rows, cols, nHead);
    const got = permuteRowsBytes(u8(data), cols * 4, rows / nHead);
    expect(Array.from(f32Of(got))).toEqual(Array.from(ref));
    expect(Array.from(f32Of(permuteRowsBytes(got, cols * 4, rows / nHead, true)))).toEqual(Array.from(data));
    const bits = f32ToBf16(data);
    const got16 = permuteRowsBytes(u8(bits), cols * 2, rows / nHead);
    expect(Array.from(new Uint16Array(got16.buffer))).toEqual(Array.from(f32ToBf16(ref)));
  });
});

describe("convertHfToGguf", () => {
  let orig: string;
  let origFile: GgufFile;
  beforeAll(async () => {
    orig = await testModel({ type: "f32" });
    origFile = readGguf(orig);
  });

  for (const variant of [
    { name: "one file", shards: 1 },
    { name: "3 shards", shards: 3 },
  ] as const) {
    test(`f32 round trip (${variant.name}): every tensor byte-identical, same hyperparameters and tokenizer metadata`, async () => {
      const { dir, out, result } = await roundTrip(orig, { dtype: "f32", shards: variant.shards });
      if (variant.shards > 1) {
        expect(fs.existsSync(path.join(dir, "model.safetensors.index.json"))).toBe(true);
        expect(openHfWeights(dir).files).toHaveLength(3);
      }
      expect(result).toMatchObject({ file: out, outtype: "f32", nTensors: origFile.tensors.length, warnings: [] });
      const conv = readGguf(out);
      expect(conv.tensors.map((t) => t.name)).toEqual(origFile.tensors.map((t) => t.name));
      const a = tensorsOf(origFile);
      for (const [name, t] of tensorsOf(conv)) {
        const o = a.get(name)!;
        expect({ name, type: t.type, ne: t.ne }).toEqual({ name, type: o.type, ne: o.ne });
        expect(Buffer.compare(Buffer.from(t.bytes), Buffer.from(o.bytes)), name).toBe(0);
      }
      // every metadata key of the original (but its name) comes back with the same type and value
      for (const [key, v] of origFile.metadata) {
        if (key === "general.name") continue;
        expect(plain(conv.metadata.get(key)), key).toEqual(plain(v));
      }
      for (const key of TOKENIZER_KEYS) expect(plain(conv.metadata.get(key)), key).toEqual(plain(origFile.metadata.get(key)));
      expect(conv.metadata.get("general.name")?.value).toBe(path.basename(dir));
    });
  }

  test("tied embeddings: no lm_head in the checkpoint, no output.weight in the GGUF, tensors identical", async () => {
    const tied = await testModel({ type: "f32", tiedEmbeddings: true });
    const { dir, out } = await roundTrip(tied, { dtype: "f32" });
    expect(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")).tie_word_embeddings).toBe(true);
    expect(openHfWeights(dir).tensors.has("lm_head.weight")).toBe(false);
    const conv = readGguf(out);
    expect(conv.tensors.some((t) => t.name === "output.weight")).toBe(false);
    const a = tensorsOf(readGguf(tied));
    for (const [name, t] of tensorsOf(conv)) expect(Buffer.compare(Buffer.from(t.bytes), Buffer.from(a.get(name)!.bytes)), name).toBe(0);
  });

  for (const dtype of ["bf16", "f16"] as const) {
    test(`${dtype} checkpoint: auto keeps ${dtype.toUpperCase()}, equal to the f32 original rounded; norms become F32`, async () => {
      const { out, result } = await roundTrip(orig, { dtype });
      expect(result.outtype).toBe(dtype);
      expect(result.warnings).toEqual([]);
      const conv = readGguf(out);
      expect(conv.metadata.get("general.file_type")?.value).toBe(dtype === "bf16" ? 32 : 1);
      const round = dtype === "bf16" ? f32ToBf16 : f32ToF16;
      const a = tensorsOf(origFile);
      for (const [name, t] of tensorsOf(conv)) {
        const o = a.get(name)!;
        const rounded = round(f32Of(o.bytes));
        if (o.ne.length === 1) {
          // the checkpoint stores norms in 16 bits; the GGUF stores them as exact F32 of those
          expect(t.type, name).toBe(GgmlType.F32);
          const back = (dtype === "bf16" ? bf16ToF32 : f16ToF32)(rounded);
          expect(Buffer.compare(Buffer.from(t.bytes), Buffer.from(u8(back))), name).toBe(0);
        } else {
          expect(t.type, name).toBe(dtype === "bf16" ? GgmlType.BF16 : GgmlType.F16);
          expect(Buffer.compare(Buffer.from(t.bytes), Buffer.from(u8(rounded))), name).toBe(0);
        }
      }
    });
  }

  test("outtype on request: bf16 -> f32 is exact; bf16 -> f16 warns about values beyond 65504, naming the tensor and the count", async () => {
    const dir = hfDir();
    await makeHfCheckpoint({ gguf: orig, dir, dtype: "bf16" });
    // plant two values outside the F16 range in one tensor
    const victim = readSafetensorsHeader(path.join(dir, "model.safetensors")).tensors.find((t) => t.name === "model.layers.1.mlp.up_proj.weight")!;
    const fd = fs.openSync(victim.file, "r+");
    const patch = Buffer.alloc(2);
    patch.writeUInt16LE(f32ToBf16Bits(1e5));
    fs.writeSync(fd, patch, 0, 2, victim.offset + 2 * 10);
    patch.writeUInt16LE(f32ToBf16Bits(-7e4));
    fs.writeSync(fd, patch, 0, 2, victim.offset + 2 * 200);
    fs.closeSync(fd);

    const f32 = await convertHfToGguf(dir, path.join(dir, "f32.gguf"), { outtype: "f32" });
    expect(f32).toMatchObject({ outtype: "f32", warnings: [] });
    const f32File = readGguf(f32.file);
    const bf16Ref = tensorsOf(readGguf((await convertHfToGguf(dir, path.join(dir, "auto.gguf"))).file));
    for (const [name, t] of tensorsOf(f32File)) {
      expect(t.type, name).toBe(GgmlType.F32);
      const r = bf16Ref.get(name)!;
      const want = r.type === GgmlType.BF16 ? bf16ToF32(new Uint16Array(r.bytes.buffer, r.bytes.byteOffset, r.bytes.length / 2)) : f32Of(r.bytes);
      expect(Buffer.compare(Buffer.from(t.bytes), Buffer.from(u8(want))), name).toBe(0);
    }
    expect(f32Of(readTensorBytes(f32File, "blk.1.ffn_up.weight"))[10]).toBe(99840); // 1e5 in bf16

    const logs: string[] = [];
    const f16 = await convertHfToGguf(dir, path.join(dir, "f16.gguf"), { outtype: "f16", log: (m) => logs.push(m) });
    expect(f16.outtype).toBe("f16");
    expect(f16.warnings).toHaveLength(1);
    expect(f16.warnings[0]).toMatch(/model\.layers\.1\.mlp\.up_proj\.weight: 2 value\(s\) exceed the F16 range/);
    expect(logs.some((l) => l.startsWith("warning:") && l.includes("up_proj"))).toBe(true);
    const h = new Uint16Array(readTensorBytes(readGguf(f16.file), "blk.1.ffn_up.weight").buffer);
    expect([h[10], h[200]]).toEqual([0x7c00, 0xfc00]); // +Inf, -Inf
  });

  test("tokenization: the converted GGUF and the original tokenize tricky strings identically through node-llama-cpp", async () => {
    const { out } = await roundTrip(orig, { dtype: "bf16", shards: 2 });
    // transformers-style added_tokens_decoder makes <unk>/<s>/</s> CONTROL with score -1000, as llama.cpp's converter does
    const { out: out2 } = await roundTrip(orig, { dtype: "f32", addedTokensDecoder: true });
    const strings = [
      "",
      " ",
      "hello",
      " hello",
      "  two leading spaces",
      "multiple   spaces  inside",
      "trailing ",
      "line\nbreak\n\nand\r\nCRLF",
      "\ttab\tseparated",
      "café, naïve, élan",
      "中文字符测试",
      "emoji 🙂🚀 and 👩‍👩‍👧",
      "rare chars 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ 𠀀 \u0001",
      "\uFEFFbyte order mark",
      "a\uFEFF",
      "<s>",
      "</s>",
      "<s>[INST] hi [/INST]</s>",
      "<unk>",
      "SELECT name FROM singer WHERE country = 'France' AND note = \"it's\";",
      "SELECT count(*) FROM t WHERE a >= 10 -- comment\n  ORDER BY b DESC;",
    ];
    const llama = await cpuLlama();
    const load = (p: string) => llama.loadModel({ modelPath: p, vocabOnly: true });
    const [mo, mc, mc2] = await Promise.all([load(orig), load(out), load(out2)]);
    try {
      for (const s of strings) {
        for (const special of [false, true]) {
          const want = [...mo.tokenize(s, special)];
          expect([...mc.tokenize(s, special)], `${JSON.stringify(s)} special=${special}`).toEqual(want);
          expect([...mc2.tokenize(s, special)], `${JSON.stringify(s)} special=${special} (added_tokens_decoder)`).toEqual(want);
        }
        expect(mc.detokenize(mc.tokenize(s) as Token[])).toBe(mo.detokenize(mo.tokenize(s) as Token[]));
      }
      expect([mc.tokens.bos, mc.tokens.eos]).toEqual([mo.tokens.bos, mo.tokens.eos]);
    } finally {
      await Promise.all([mo.dispose(), mc.dispose(), mc2.dispose()]);
    }
    const c2 = readGguf(out2);
    expect(Array.from((c2.metadata.get("tokenizer.ggml.token_type")!.value as Int32Array).slice(0, 4))).toEqual([3, 3, 3, 6]);
    expect(Array.from((c2.metadata.get("tokenizer.ggml.scores")!.value as Float32Array).slice(0, 3))).toEqual([-1000, -1000, -1000]);
  });

  test("logits: the converted model equals the original exactly, through llama.cpp and through our engine", async () => {
    const { out } = await roundTrip(orig, { dtype: "f32", shards: 3 });
    const [ref, got] = [await llamaCppLogProbs(orig, TOKENS), await llamaCppLogProbs(out, TOKENS)];
    expect(got.map((r) => Array.from(r))).toEqual(ref.map((r) => Array.from(r)));
    const logits = async (model: string): Promise<number[][]> => {
      const engine = await LoraEngine.create({ model, device: "cpu" });
      try {
        return (await engine.logits(TOKENS)).map((r) => Array.from(r));
      } finally {
        await engine.dispose();
      }
    };
    const [a, b] = [await logits(orig), await logits(out)];
    expect(b).toEqual(a);
    // not vacuous: a different model differs
    const other = await testModel({ type: "f32", seed: 2 });
    expect(await logits(other)).not.toEqual(a);
  });

  test("metadata from the HF side: chat template, pad token, rope scaling, llama3 rope_freqs, general.name", async () => {
    const dir = hfDir();
    await makeHfCheckpoint({ gguf: orig, dir, dtype: "bf16", chatTemplate: "{% for m in messages %}{{ m.content }}{% endfor %}" });
    const tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ ...tc, pad_token: "</s>" }));
    const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, rope_scaling: { type: "linear", factor: 2 }, rope_theta: 500000 }));
    let g = readGguf((await convertHfToGguf(dir, path.join(dir, "a.gguf"), { name: "tiny" })).file);
    expect(g.metadata.get("tokenizer.chat_template")?.value).toBe("{% for m in messages %}{{ m.content }}{% endfor %}");
    expect(g.metadata.get("tokenizer.ggml.padding_token_id")?.value).toBe(2);
    expect(g.metadata.get("llama.rope.scaling.type")?.value).toBe("linear");
    expect(g.metadata.get("llama.rope.scaling.factor")?.value).toBe(2);
    expect(g.metadata.get("llama.rope.freq_base")?.value).toBe(500000);
    expect(g.metadata.get("general.name")?.value).toBe("tiny");

    const llama3 = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, rope_scaling: llama3 }));
    g = readGguf((await convertHfToGguf(dir, path.join(dir, "b.gguf"))).file);
    expect(g.metadata.has("llama.rope.scaling.type")).toBe(false);
    const freqs = f32Of(readTensorBytes(g, "rope_freqs.weight"));
    expect(freqs).toHaveLength(8); // head_dim 16 / 2
    // high frequencies untouched, low ones divided by the factor, smooth in between
    expect(freqs[0]).toBe(1);
    expect(freqs[7]).toBe(8);
    expect(Array.from(freqs).every((x, i) => i === 0 || x >= freqs[i - 1]!)).toBe(true);
    // and our engine loads it (it applies rope_freqs)
    const engine = await LoraEngine.create({ model: g.path, device: "cpu" });
    await engine.dispose();

    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, rope_scaling: { rope_type: "yarn", factor: 4 } }));
    await expect(convertHfToGguf(dir, path.join(dir, "c.gguf"))).rejects.toThrow(/RoPE scaling "yarn" is not supported; supported: none, linear, llama3/);
  });

  test("errors: unsupported architecture, tokenizer.json of an unknown pre-tokenizer, missing shard, unknown tensor, bad outtype; no partial file", async () => {
    const dir = hfDir();
    await makeHfCheckpoint({ gguf: orig, dir, dtype: "f32", shards: 2 });
    const configFile = path.join(dir, "config.json");
    const config = fs.readFileSync(configFile, "utf8");
    const out = path.join(dir, "x.gguf");

    fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(config), architectures: ["GPT2LMHeadModel"], model_type: "gpt2" }));
    await expect(convertHfToGguf(dir, out)).rejects.toThrow(
      /config\.json: architecture "GPT2LMHeadModel" is not supported; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM/,
    );
    fs.writeFileSync(configFile, config);

    fs.renameSync(path.join(dir, "tokenizer.model"), path.join(dir, "tokenizer.model.bak"));
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ model: { type: "BPE" } }));
    await expect(convertHfToGguf(dir, out)).rejects.toThrow(
      /tokenizer\.json: unknown pre-tokenizer \(none\); supported: llama-bpe \(Llama 3\.x\), qwen2 \(Qwen2, Qwen2\.5, Qwen2\.5-Coder, Qwen3\)/,
    );
    fs.rmSync(path.join(dir, "tokenizer.json"));
    await expect(convertHfToGguf(dir, out)).rejects.toThrow(/no tokenizer\.model/);
    fs.renameSync(path.join(dir, "tokenizer.model.bak"), path.join(dir, "tokenizer.model"));

    const shard2 = path.join(dir, "model-00002-of-00002.safetensors");
    fs.renameSync(shard2, `${shard2}.bak`);
    await expect(convertHfToGguf(dir, out)).rejects.toThrow(/missing weight file\(s\) model-00002-of-00002\.safetensors/);
    fs.renameSync(`${shard2}.bak`, shard2);

    const indexFile = path.join(dir, "model.safetensors.index.json");
    const index = JSON.parse(fs.readFileSync(indexFile, "utf8"));
    const renamed = Object.fromEntries(
      Object.entries(index.weight_map as Record<string, string>).map(([k, v]) => [k.replace("model.norm.weight", "model.final_norm.weight"), v]),
    );
    const st = path.join(dir, renamed["model.final_norm.weight"]!);
    const buf = fs.readFileSync(st);
    const hlen = Number(buf.readBigUInt64LE(0));
    const head = buf
      .subarray(8, 8 + hlen)
      .toString("utf8")
      .replace('"model.norm.weight"', '"model.final_norm.weight"');
    expect(Buffer.byteLength(head)).toBe(hlen + 6); // 6 more characters: rewrite the length
    const newHead = Buffer.from(head + " ".repeat((8 - (Buffer.byteLength(head) % 8)) % 8));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(newHead.length));
    fs.writeFileSync(st, Buffer.concat([len, newHead, buf.subarray(8 + hlen)]));
    fs.writeFileSync(indexFile, JSON.stringify({ ...index, weight_map: renamed }));
    await expect(convertHfToGguf(dir, out)).rejects.toThrow(
      /tensor model\.final_norm\.weight is not a llama weight \(expected model\.embed_tokens, model\.layers\.N\.\{input_layernorm\.weight, /,
    );

    await expect(convertHfToGguf(dir, out, { outtype: "q4_0" as never })).rejects.toThrow(/outtype must be auto, bf16, f16, f32 or q8_0/);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith(".gguf") || f.endsWith(".tmp"))).toEqual([]);
  });

  test("an interrupted conversion leaves no GGUF behind", async () => {
    const dir = hfDir();
    await makeHfCheckpoint({ gguf: orig, dir, dtype: "bf16" });
    // truncate the weights after the header was read: the read fails mid-way through writing
    const st = path.join(dir, "model.safetensors");
    const out = path.join(dir, "y.gguf");
    let calls = 0;
    await expect(
      convertHfToGguf(dir, out, {
        onProgress: () => {
          if (++calls === 3) fs.truncateSync(st, 4096);
        },
      }),
    ).rejects.toThrow(/unexpected end of file/);
    expect(fs.readdirSync(dir).filter((f) => f.includes(".gguf"))).toEqual([]);
  });
});

describe("convertHfToGguf: Llama 3, Qwen2, Qwen3 with BPE tokenizers", () => {
  const cases = [
    { name: "llama (Llama 3 vocabulary, untied)", o: { arch: "llama", vocab: "llama-bpe" } },
    { name: "llama (Llama 3 vocabulary, tied, as Llama 3.2 1B)", o: { arch: "llama", vocab: "llama-bpe", tied: true } },
    { name: "qwen2 (tied, biases)", o: { arch: "qwen2", vocab: "qwen2", tied: true } },
    { name: "qwen3 (q/k norms, head_dim 32 with 64 embd and 4 heads)", o: { arch: "qwen3", vocab: "qwen2", headDim: 32 } },
  ] as const;
  test.each(cases)("$name: every tensor byte-identical, same metadata, llama.cpp evaluates it", async ({ o }) => {
    const gguf = familyModel(o);
    const dir = hfDir();
    const { files } = await makeHfCheckpoint({ gguf, dir, dtype: "f32" });
    expect(files).toContain("tokenizer.json");
    expect(files).not.toContain("tokenizer.model");
    const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    expect(config.architectures).toEqual([{ llama: "LlamaForCausalLM", qwen2: "Qwen2ForCausalLM", qwen3: "Qwen3ForCausalLM" }[o.arch]]);
    const st = new Set(readSafetensorsHeader(path.join(dir, "model.safetensors")).tensors.map((t) => t.name));
    if (o.arch === "qwen2") expect(st.has("model.layers.1.self_attn.v_proj.bias")).toBe(true);
    if (o.arch === "qwen3") expect(st.has("model.layers.0.self_attn.k_norm.weight")).toBe(true);
    expect(st.has("lm_head.weight")).toBe(!("tied" in o));

    const out = path.join(dir, "converted.gguf");
    const r = await convertHfToGguf(dir, out);
    expect(r.warnings).toEqual([]);
    const a = readGguf(gguf);
    const b = readGguf(out);
    const ta = tensorsOf(a);
    const tb = tensorsOf(b);
    expect([...tb.keys()].sort()).toEqual([...ta.keys()].sort());
    for (const [n, t] of ta) {
      expect(tb.get(n)!.ne, n).toEqual(t.ne);
      expect(Buffer.from(tb.get(n)!.bytes).equals(Buffer.from(t.bytes)), n).toBe(true);
    }
    for (const [k, v] of a.metadata) {
      if (k === "general.name") continue;
      const [pa, pb] = [plain(v), plain(b.metadata.get(k))];
      expect(
        JSON.stringify(pb, (_, x: unknown) => (typeof x === "bigint" ? String(x) : x)) ===
          JSON.stringify(pa, (_, x: unknown) => (typeof x === "bigint" ? String(x) : x)),
        k,
      ).toBe(true);
    }
    // the only keys added: Llama 3's post-processor adds BOS (gguf-py writes add_bos_token from it)
    const added = [...b.metadata.keys()].filter((k) => !a.metadata.has(k));
    expect(added.sort()).toEqual(o.vocab === "llama-bpe" ? ["tokenizer.ggml.add_bos_token"] : []);
    if (o.vocab === "llama-bpe") expect(b.metadata.get("tokenizer.ggml.add_bos_token")!.value).toBe(true);

    // byte-identical tensors and metadata: llama.cpp loading the converted file and evaluating it
    // is what is left to check (a vocabulary this size takes seconds to load, so once)
    const lp = await llamaCppLogProbs(out, [100, 2000, 30000, 5]);
    expect(lp.length).toBe(4);
    expect(lp.every((row) => row.every((x) => Number.isFinite(x) && x < 0))).toBe(true);
  });

  test("refused: MoE, multimodal, sliding window, Gemma; attention bias on Qwen3; a bias tensor Llama lacks", async () => {
    const gguf = familyModel({ arch: "qwen3", vocab: "qwen2" });
    const dir = hfDir();
    await makeHfCheckpoint({ gguf, dir, dtype: "f32" });
    const configFile = path.join(dir, "config.json");
    const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as Record<string, unknown>;
    const out = path.join(dir, "x.gguf");
    const tryWith = async (patch: Record<string, unknown>, re: RegExp): Promise<void> => {
      fs.writeFileSync(configFile, JSON.stringify({ ...config, ...patch }));
      await expect(convertHfToGguf(dir, out)).rejects.toThrow(re);
      expect(fs.existsSync(out)).toBe(false);
    };
    await tryWith(
      { architectures: ["Qwen3MoeForCausalLM"], model_type: "qwen3_moe" },
      /config\.json: architecture "Qwen3MoeForCausalLM" is not supported \(Qwen3-MoE is a mixture-of-experts model\); supported: LlamaForCausalLM/,
    );
    await tryWith({ num_experts: 8 }, /config\.json: "num_experts" is set: mixture-of-experts models are not supported/);
    await tryWith({ vision_config: { depth: 2 } }, /config\.json: "vision_config" is set: multimodal models are not supported/);
    await tryWith({ use_sliding_window: true }, /config\.json: use_sliding_window is true: sliding-window attention is not supported/);
    await tryWith(
      { architectures: ["Gemma2ForCausalLM"], model_type: "gemma2" },
      /not supported \(Gemma 2 uses sliding-window attention and logit soft-capping\); supported: .*Qwen3ForCausalLM/,
    );
    await tryWith({ attention_bias: true }, /config\.json: attention_bias is set; qwen3 checkpoints with attention bias tensors are not supported/);
    await tryWith(
      { architectures: ["LlamaForCausalLM"], model_type: "llama", head_dim: undefined },
      /model\.safetensors: .*self_attn\.q_norm\.weight is not a llama weight|has no such/,
    );
  });
});

describe("hub: a Qwen2 repository is pulled and converted; a ready-made qwen2 GGUF comes as it is", () => {
  test("owner/name with tokenizer.json converts to a qwen2 GGUF; hf:owner/repo/file.gguf is downloaded unchanged", async () => {
    const gguf = familyModel({ arch: "qwen2", vocab: "qwen2", tied: true });
    const src = hfDir();
    const tpl =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    const { files } = await makeHfCheckpoint({ gguf, dir: src, dtype: "bf16", chatTemplate: tpl });
    const hub = await startHubServer([
      { id: "Qwen/tiny-qwen2", files: files.map((name) => ({ name, path: path.join(src, name) })) },
      { id: "owner/ggufs", files: [{ name: "qwen2-f32.gguf", path: gguf }] },
    ]);
    const saved = { home: process.env.TEXT2SQL_HOME, endpoint: process.env.HF_ENDPOINT, offline: process.env.HF_HUB_OFFLINE };
    const home = hfDir();
    process.env.TEXT2SQL_HOME = home;
    process.env.HF_ENDPOINT = hub.url;
    delete process.env.HF_HUB_OFFLINE;
    try {
      const converted = await resolveModelPath("Qwen/tiny-qwen2", { yes: true, log: () => {}, onProgress: () => {} });
      const g = readGguf(converted);
      expect(g.metadata.get("general.architecture")!.value).toBe("qwen2");
      expect(g.metadata.get("tokenizer.ggml.pre")!.value).toBe("qwen2");
      expect(g.metadata.get("tokenizer.chat_template")!.value).toBe(tpl);
      expect(g.metadata.get("general.source.huggingface.repository")?.value).toBe("Qwen/tiny-qwen2");
      expect(g.tensors.find((t) => t.name === "blk.0.attn_q.bias")?.type).toBe(GgmlType.F32);
      expect(g.tensors.find((t) => t.name === "blk.0.attn_q.weight")?.type).toBe(GgmlType.BF16);
      expect(g.tensors.some((t) => t.name === "output.weight")).toBe(false);

      const downloaded = await resolveModelPath("hf:owner/ggufs/qwen2-f32.gguf", { yes: true, log: () => {}, onProgress: () => {} });
      expect(fs.readFileSync(downloaded).equals(fs.readFileSync(gguf))).toBe(true);
    } finally {
      await hub.close();
      for (const [k, v] of [
        ["TEXT2SQL_HOME", saved.home],
        ["HF_ENDPOINT", saved.endpoint],
        ["HF_HUB_OFFLINE", saved.offline],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
