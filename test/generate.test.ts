// generateSql through node-llama-cpp: after an overfit run on a tiny model it returns exactly the
// trained SQL for each training question (training, export, loading and the prompt all agree).
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { disposeGenerators, extractSql, generateSql, SqlGenerator, validateSql } from "../src/serve/generate.js";
import { LoraEngine } from "../src/engine/engine.js";
import { readGguf } from "../src/formats/gguf.js";
import { tempDir, testModel } from "./helpers/models.js";
import { overfitAdapter, PAIRS, SCHEMA } from "./helpers/overfit.js";

afterAll(() => disposeGenerators());

describe("generateSql", () => {
  test("after an overfit run it returns exactly the trained SQL for every training question", async () => {
    const { outputDir, trainLoss } = await overfitAdapter();
    expect(trainLoss).toBeLessThan(0.01);
    // the adapter folder records the base model and the template
    const many = await new Promise<Awaited<ReturnType<SqlGenerator["generateMany"]>>>((resolve, reject) => {
      SqlGenerator.load({ adapter: outputDir, device: "cpu", parallel: 2, threads: 1 }).then(async (g) => {
        try {
          resolve(await g.generateMany(PAIRS.map(([question]) => ({ question, schema: SCHEMA }))));
        } finally {
          await g.dispose();
        }
      }, reject);
    });
    expect(many.map((r) => r.sql)).toEqual(PAIRS.map(([, sql]) => `${sql};`));
    for (const r of many) {
      // with a schema, decoding is constrained to its grammar by default: the trained answers hold
      expect(r).toMatchObject({ valid: true, constrained: true });
      expect(r.tokens).toBeGreaterThan(5);
      expect(r.ms).toBeGreaterThan(0);
    }
    // the one-call API, loaded once and reused
    const one = await generateSql({ question: PAIRS[0][0], adapter: path.join(outputDir, "final_model"), device: "cpu", threads: 1 });
    expect(one.sql).toBe(`${PAIRS[0][1]};`);
    expect(one.valid).toBeUndefined();
    expect(one.constrained).toBeUndefined();
    await expect(generateSql({ question: PAIRS[0][0], adapter: outputDir, device: "cpu", threads: 1, constrain: true })).rejects.toThrow(
      "constrain: constrained decoding needs a schema",
    );
  });

  test("50 questions at once over 4 parallel decoders give exactly the answers of one-at-a-time decoding", async () => {
    // guards against cross-talk between concurrent decodes (several sequences of one
    // node-llama-cpp 3.21.1 context corrupted ~10% of these answers; see SqlGenerator.load)
    const { outputDir } = await overfitAdapter();
    const g = await SqlGenerator.load({ adapter: outputDir, device: "cpu", parallel: 4, threads: 1 });
    try {
      expect(g.parallel).toBe(4);
      const rs = await g.generateMany(Array.from({ length: 50 }, (_, i) => ({ question: PAIRS[i % 4][0] })));
      rs.forEach((r, i) => expect(r.sql, `question ${i}`).toBe(`${PAIRS[i % 4][1]};`));
    } finally {
      await g.dispose();
    }
  });

  test("GRPO's sampler keeps the end token it sampled: the completion the loss is taken on ends with EOS (issue 27)", async () => {
    // node-llama-cpp does not yield an end-of-generation token unless asked (yieldEogToken); before
    // that was asked for, these completions ended on the SQL's last token and never trained stopping
    const { outputDir } = await overfitAdapter();
    const g = await SqlGenerator.load({ adapter: outputDir, device: "cpu", parallel: 1, threads: 1 });
    try {
      const eos = Number(readGguf(g.modelPath).metadata.get("tokenizer.ggml.eos_token_id")?.value);
      expect(Number.isInteger(eos)).toBe(true);
      for (const [i, [question, sql]] of PAIRS.entries()) {
        const r = await g.sampleIds(g.promptTokens(question), { maxTokens: 64, temperature: 0.2, seed: 1 + i });
        expect(r.ids.length, question).toBeLessThan(64);
        expect(r.ids[r.ids.length - 1], question).toBe(eos);
        expect(r.ids.slice(0, -1)).not.toContain(eos);
        expect(r.sql, question).toBe(`${sql};`);
      }
    } finally {
      await g.dispose();
    }
  }, 300_000);

  test("errors: an empty question, a missing adapter or model, an adapter for another base", async () => {
    const model = await testModel();
    await expect(generateSql({ question: "  ", model, device: "cpu" })).rejects.toThrow("question: expected a non-empty string");
    await expect(generateSql({ question: "q?", adapter: path.join(tempDir(), "nope"), device: "cpu" })).rejects.toThrow(/adapter: not found/);
    await expect(generateSql({ question: "q?", model: path.join(tempDir(), "nope.gguf"), device: "cpu" })).rejects.toThrow(/model: file not found/);
    await expect(generateSql({ question: "q?", adapter: tempDir(), device: "cpu" })).rejects.toThrow(/no adapter.gguf in/);
    // an adapter trained on the 64-wide test model, offered to a 128-wide one
    const e = await LoraEngine.create({ model, device: "cpu" });
    const file = path.join(tempDir(), "adapter.gguf");
    await e.saveAdapter(file);
    await e.dispose();
    const other = await testModel({ nEmbd: 128, nHead: 4, nHeadKv: 2, nFf: 256 });
    await expect(generateSql({ question: "q?", model: other, adapter: file, device: "cpu" })).rejects.toThrow(
      'adapter: the adapter does not fit this model: tensor "blk.0.attn_q.weight.lora_a" has shape [64, 8] but base tensor "blk.0.attn_q.weight" has shape [128, 128]',
    );
    await expect(generateSql({ question: "q?", model: other, adapter: model, device: "cpu" })).rejects.toThrow(/is not a GGUF LoRA adapter/);
  });
});

describe("SQL validation (prepared in an in-memory SQLite, never run)", () => {
  test("valid, unknown column, syntax error, and statements that would write", async () => {
    expect(await validateSql("SELECT name FROM head WHERE age > 56;", SCHEMA)).toEqual({ valid: true });
    expect(await validateSql("SELECT nme FROM head", SCHEMA)).toEqual({ valid: false, error: "no such column: nme" });
    expect((await validateSql("SELEC name FROM head", SCHEMA)).error).toMatch(/syntax error/);
    expect(await validateSql("DELETE FROM head", SCHEMA)).toMatchObject({ valid: false, error: expect.stringMatching(/not a read-only query/) });
    expect(await validateSql("WITH x AS (SELECT 1) SELECT * FROM x", SCHEMA)).toEqual({ valid: true });
    // double-quoted strings, as Spider writes them: read as strings as a default SQLite build does
    expect(await validateSql('SELECT name FROM head WHERE name = "Ann" AND "age" > 56', SCHEMA)).toEqual({ valid: true });
    expect(await validateSql('SELECT nme FROM head WHERE name = "Ann"', SCHEMA)).toEqual({ valid: false, error: "no such column: nme" });
    await expect(validateSql("SELECT 1", "CREATE TABL oops")).rejects.toThrow(/^schema: /);
  });

  test("extractSql takes the SQL after [/INST] up to the end of the first statement", () => {
    expect(extractSql(" SELECT 1 ")).toBe("SELECT 1;");
    expect(extractSql("[INST] q [/INST] SELECT a FROM t; SELECT b")).toBe("SELECT a FROM t;");
    expect(extractSql("SELECT ';' FROM t; junk")).toBe("SELECT ';' FROM t;");
    expect(extractSql("   ")).toBe("");
  });
});
