// Data: CSV (streamed), JSONL, Spider JSON; bad input names the file, the line and the problem;
// BOM and CRLF are handled; duplicates are counted; the split is deterministic by seed.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { DEFAULTS, loadConfig, type TrainConfig } from "../src/train/config.js";
import { findInvalidUtf8, loadDataset, readExamples, splitSizes } from "../src/train/data.js";
import { encodeExample, Tokenizer } from "../src/train/prompt.js";
import { prepareData } from "../src/train/trainer.js";
import { tempDir, testModel } from "./helpers/models.js";

const spider = path.resolve("../shared/spider");
const hasSpider = fs.existsSync(path.join(spider, "spider_text_sql.csv"));

function file(name: string, content: string | Buffer): string {
  const f = path.join(tempDir(), name);
  fs.writeFileSync(f, content);
  return f;
}

const dataCfg = (over: Partial<TrainConfig["data"]> = {}): TrainConfig["data"] => ({ ...structuredClone(DEFAULTS.data), ...over });

describe("reading data", () => {
  test("CSV with a BOM and CRLF line ends, quoted fields with commas and newlines", async () => {
    const f = file("d.csv", '\uFEFFtext_query,sql_command\r\nHow many heads?,SELECT count(*) FROM head\r\n"Name, age?","SELECT name ,  age\r\nFROM head"\r\n');
    const rows = await readExamples(f, dataCfg());
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ question: "How many heads?", sql: "SELECT count(*) FROM head", source: `${f}:2` });
    expect(rows[1].question).toBe("Name, age?");
  });

  test("other column names by config", async () => {
    const f = file("d.csv", "q,s\nWho?,SELECT 1\n");
    expect(await readExamples(f, dataCfg({ columns: { question: "q", sql: "s", schema: null, db: "db" } }))).toHaveLength(1);
  });

  test("bad CSV: unterminated quote, missing column, empty field, wrong field count, invalid UTF-8", async () => {
    const quote = file("q.csv", 'text_query,sql_command\nok?,SELECT 1\n"broken,SELECT 2\nnext,SELECT 3\n');
    await expect(readExamples(quote, dataCfg())).rejects.toThrow(new RegExp(`${quote}:\\d+: unterminated quote`));
    const missing = file("m.csv", "question,sql_command\nok?,SELECT 1\n");
    await expect(readExamples(missing, dataCfg())).rejects.toThrow(`${missing}:1: missing column 'text_query' (the header has: question, sql_command)`);
    const empty = file("e.csv", "text_query,sql_command\nok?,SELECT 1\nwhat?,\n");
    await expect(readExamples(empty, dataCfg())).rejects.toThrow(`${empty}:3: empty sql_command`);
    const fields = file("f.csv", "text_query,sql_command\nok?,SELECT 1,extra\n");
    await expect(readExamples(fields, dataCfg())).rejects.toThrow(new RegExp(`${fields}:2: wrong number of fields`));
    const utf = file("u.csv", Buffer.concat([Buffer.from("text_query,sql_command\nok?,SELECT 1\ncaf"), Buffer.from([0xe9]), Buffer.from("?,SELECT 2\n")]));
    await expect(readExamples(utf, dataCfg())).rejects.toThrow(`${utf}:3: invalid UTF-8 (byte 0xe9`);
    await expect(readExamples(path.join(tempDir(), "none.csv"), dataCfg())).rejects.toThrow(/^data file: file not found: .*none\.csv$/);
  });

  test("JSONL, and its errors with line numbers", async () => {
    const ok = file("d.jsonl", '{"question": "Who?", "sql": "SELECT 1"}\n\n{"text_query": "Why?", "sql_command": "SELECT 2"}\r\n');
    expect((await readExamples(ok, dataCfg())).map((r) => r.sql)).toEqual(["SELECT 1", "SELECT 2"]);
    const bad = file("b.jsonl", '{"question": "Who?", "sql": "SELECT 1"}\n{"question": "Why?", "sql": \n');
    await expect(readExamples(bad, dataCfg())).rejects.toThrow(`${bad}:2: invalid JSON`);
    const noSql = file("n.jsonl", '{"question": "Who?"}\n');
    await expect(readExamples(noSql, dataCfg())).rejects.toThrow(`${noSql}:1: missing or empty SQL`);
  });

  test("Spider JSON with tables.json gives CREATE TABLE schemas with keys", async () => {
    const tables = file(
      "tables.json",
      JSON.stringify([
        {
          db_id: "company",
          table_names_original: ["dept", "emp"],
          column_names_original: [
            [-1, "*"],
            [0, "id"],
            [0, "name"],
            [1, "id"],
            [1, "dept_id"],
          ],
          column_types: ["text", "number", "text", "number", "number"],
          primary_keys: [1, 3],
          foreign_keys: [[4, 1]],
        },
      ]),
    );
    const d = file("train.json", JSON.stringify([{ db_id: "company", question: "How many departments?", query: "SELECT count(*) FROM dept" }]));
    const rows = await readExamples(d, dataCfg({ tables_path: tables }));
    expect(rows[0].schema).toBe(
      "CREATE TABLE dept (\n  id number PRIMARY KEY,\n  name text\n);\nCREATE TABLE emp (\n  id number PRIMARY KEY,\n  dept_id number,\n  FOREIGN KEY (dept_id) REFERENCES dept(id)\n);",
    );
    const unknown = file("u.json", JSON.stringify([{ db_id: "nope", question: "Q?", query: "SELECT 1" }]));
    await expect(readExamples(unknown, dataCfg({ tables_path: tables }))).rejects.toThrow(/item 0: db_id 'nope' is not in tables.json/);
  });

  test("findInvalidUtf8 finds the first bad sequence and accepts valid text", () => {
    expect(findInvalidUtf8(Buffer.from("héllo ✓ 😀"))).toBe(-1);
    expect(findInvalidUtf8(Uint8Array.from([0x61, 0xc3]))).toBe(1); // cut off
    expect(findInvalidUtf8(Uint8Array.from([0x61, 0xc0, 0x80]))).toBe(1); // overlong
    expect(findInvalidUtf8(Uint8Array.from([0xed, 0xa0, 0x80]))).toBe(0); // surrogate
  });
});

describe("splitting", () => {
  test("90/5/5 is deterministic by seed; shuffle: false keeps file order; duplicates are counted", async () => {
    expect(splitSizes(8034, [0.9, 0.05, 0.05])).toEqual({ train: 7230, eval: 402, test: 402 });
    const rows = Array.from({ length: 100 }, (_, i) => `q${i % 97}?,SELECT ${i % 97}`);
    const f = file("d.csv", ["text_query,sql_command", ...rows].join("\n"));
    const a = await loadDataset(dataCfg({ path: f }));
    const b = await loadDataset(dataCfg({ path: f }));
    const c = await loadDataset(dataCfg({ path: f, seed: 7 }));
    expect(a.report).toMatchObject({ rows: 100, duplicates: 3, split: { train: 90, eval: 5, test: 5 } });
    expect(a.train.map((r) => r.source)).toEqual(b.train.map((r) => r.source));
    expect(a.train.map((r) => r.source)).not.toEqual(c.train.map((r) => r.source));
    const kept = await loadDataset(dataCfg({ path: f, shuffle: false }));
    expect(kept.train[0].source).toBe(`${f}:2`);
    expect(kept.test[4].source).toBe(`${f}:101`);
  });
});

describe("tokenizing", () => {
  test("BOS + prompt + SQL + EOS, loss on the SQL and EOS; long rows skipped or truncated", async () => {
    const tok = await Tokenizer.load(await testModel());
    const ex = { question: "How many heads?", sql: "SELECT count(*) FROM head", source: "x:2" };
    const o = { template: DEFAULTS.data.template, maxSeqLen: 256, tooLong: "skip" as const, lossOn: "completion" as const };
    const e = encodeExample(tok, ex, o)!;
    const prompt = tok.encode("[INST] Generate SQL for the following question. Question: How many heads? [/INST]");
    const sql = tok.encode("SELECT count(*) FROM head");
    expect(e.tokens).toEqual([tok.bos, ...prompt, ...sql, tok.eos]);
    expect(e.mask).toEqual([0, ...prompt.map(() => 0), ...sql.map(() => 1), 1]);
    expect(tok.decode(e.tokens.slice(e.promptLen))).toContain("SELECT count(*) FROM head");
    expect(encodeExample(tok, ex, { ...o, lossOn: "all" })!.mask).toEqual(e.tokens.map((_, i) => (i ? 1 : 0)));
    expect(encodeExample(tok, ex, { ...o, maxSeqLen: 20 })).toBeNull();
    const cut = encodeExample(tok, ex, { ...o, maxSeqLen: 20, tooLong: "truncate" })!;
    expect(cut.tokens).toHaveLength(20);
    expect(cut.truncated).toBe(true);
    expect(cut.tokens.slice(-sql.length - 1)).toEqual([...sql, tok.eos]);
    // a schema in the prompt loses whole tables from its end first
    const schema = Array.from({ length: 12 }, (_, i) => `CREATE TABLE t${i} (\n  id number PRIMARY KEY,\n  name text\n);`).join("\n");
    const st = { ...o, template: "[INST] Schema:\n{schema}\nQuestion: {question} [/INST]", tooLong: "truncate" as const, maxSeqLen: 120 };
    const full = encodeExample(tok, { ...ex, schema }, { ...st, maxSeqLen: 10_000 })!;
    expect(full.tokens.length).toBeGreaterThan(120);
    const fit = encodeExample(tok, { ...ex, schema }, st)!;
    expect(fit.tokens.length).toBeLessThanOrEqual(120);
    expect(fit.tablesDropped).toBeGreaterThan(0);
    expect(tok.decode(fit.tokens)).toContain("[INST] Schema:"); // the start of the prompt is kept
    expect(tok.decode(fit.tokens)).toContain("CREATE TABLE t0");
    expect(tok.decode(fit.tokens)).not.toContain("CREATE TABLE t11");
    await tok.dispose();
  });
});

describe.skipIf(!hasSpider)("the seed's Spider CSV (../shared/spider)", () => {
  test("dry run: 8,034 rows, 7,230 / 402 / 402, token lengths under the seed's template", async () => {
    const cfg = loadConfig({ file: "configs/config_spider.yaml", overrides: { "data.path": path.join(spider, "spider_text_sql.csv") } });
    // TinyLlama's tokenizer is the Llama SPM vocabulary that the test models carry
    const { summary: s, train } = await prepareData(cfg, await testModel());
    expect(s.rows).toBe(8034);
    expect(s.split).toEqual({ train: 7230, eval: 402, test: 402 });
    expect(s.duplicates).toBe(21);
    expect(s.overMaxSeqLen).toBe(2);
    expect(s.totalTokens).toMatchObject({ p50: 65, p95: 127, max: 290 });
    expect(s.totalTokens.mean).toBeCloseTo(72.7, 1);
    expect(s.promptTokens.mean).toBeCloseTo(33.0, 1);
    expect(s.promptTokens.max).toBe(81);
    expect(s.completionTokens.mean).toBeCloseTo(37.6, 1);
    expect(train.length + s.skippedTooLong).toBeGreaterThanOrEqual(7228);
  });
});
