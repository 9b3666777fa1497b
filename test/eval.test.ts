// text2sql eval end to end: a tiny model and adapter, a Spider-format dataset and SQLite databases
// we make; a predictions file scored without generating; and Spider dev's gold queries.
import Database from "better-sqlite3";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { evaluateSql, formatEvalReport } from "../src/eval/eval.js";
import { tempDir } from "./helpers/models.js";
import { overfitAdapter, PAIRS, SCHEMA } from "./helpers/overfit.js";

const spider = path.resolve("../shared/spider");
const hasSpiderDbs = fs.existsSync(path.join(spider, "database", "concert_singer", "concert_singer.sqlite"));
const hasSpider = fs.existsSync(path.join(spider, "dev.json"));

/** A Spider-style dataset over one database "company" holding the overfit pairs' tables. */
function makeDataset(): { dir: string; data: string; tables: string; dbDir: string } {
  const dir = tempDir("t2s-eval-");
  const dbDir = path.join(dir, "database");
  fs.mkdirSync(path.join(dbDir, "company"), { recursive: true });
  const db = new Database(path.join(dbDir, "company", "company.sqlite"));
  db.exec(SCHEMA);
  db.exec(`INSERT INTO head VALUES (1, 'Ann', 60), (2, 'Bob', 45), (3, 'Cid', 70);
    INSERT INTO department VALUES (1, 'Texas', 100.0), (2, 'Texas', 300.0), (3, 'Ohio', 50.0);
    INSERT INTO singer VALUES (1, 'Edith', 'France'), (2, 'Joe', 'USA'), (3, 'Yves', 'France');`);
  db.close();
  const tables = path.join(dir, "tables.json");
  fs.writeFileSync(
    tables,
    JSON.stringify([
      {
        db_id: "company",
        table_names_original: ["head", "department", "singer"],
        table_names: ["head", "department", "singer"],
        column_names_original: [
          [-1, "*"],
          [0, "id"],
          [0, "name"],
          [0, "age"],
          [1, "id"],
          [1, "state"],
          [1, "budget"],
          [2, "id"],
          [2, "name"],
          [2, "country"],
        ],
        column_names: [
          [-1, "*"],
          [0, "id"],
          [0, "name"],
          [0, "age"],
          [1, "id"],
          [1, "state"],
          [1, "budget"],
          [2, "id"],
          [2, "name"],
          [2, "country"],
        ],
        column_types: ["text", "number", "text", "number", "number", "text", "number", "number", "text", "text"],
        primary_keys: [1, 4, 7],
        foreign_keys: [],
      },
    ]),
  );
  const data = path.join(dir, "dev.json");
  fs.writeFileSync(data, JSON.stringify(PAIRS.map(([question, query]) => ({ db_id: "company", question, query }))));
  return { dir, data, tables, dbDir };
}

describe("text2sql eval", () => {
  test("generates with the adapter and scores 100% on every metric for the trained questions", async () => {
    const { outputDir } = await overfitAdapter();
    const d = makeDataset();
    const out = path.join(d.dir, "out");
    const r = await evaluateSql({ data: d.data, tables: d.tables, dbDir: d.dbDir, adapter: outputDir, output: out, threads: 1 });
    expect(r.examples).toBe(4);
    expect(r.exactMatch).toBe(1);
    expect(r.executionAccuracy).toBe(1);
    expect(Object.values(r.componentMatch).every((v) => v === 1)).toBe(true);
    expect(r.evalLoss).toBeLessThan(0.05);
    expect(r.tokenAccuracy).toBe(1);
    const rows = fs
      .readFileSync(path.join(out, "predictions.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.map((x) => x.prediction)).toEqual(PAIRS.map(([, s]) => `${s};`));
    expect(JSON.parse(fs.readFileSync(path.join(out, "eval.json"), "utf8")).exactMatch).toBe(1);
  });

  test("scores a predictions file without generating: wrong, reordered, writing and broken queries as the rules say", async () => {
    const d = makeDataset();
    const preds = path.join(d.dir, "preds.sql");
    fs.writeFileSync(
      preds,
      [
        "SELECT count(*) FROM head WHERE age > 40", // wrong value: exact-set match ignores values, execution does not
        "SELECT age , name FROM head ORDER BY age DESC", // columns reordered: the same set, the same rows
        "DELETE FROM department", // writes: wrong without running
        "SELECT name FROM singers WHERE country = 'France'", // no such table
      ].join("\n") + "\n",
    );
    const r = await evaluateSql({ data: d.data, tables: d.tables, dbDir: d.dbDir, predictions: preds, output: path.join(d.dir, "out") });
    const rows = fs
      .readFileSync(r.output.predictions, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.map((x) => x.exact)).toEqual([true, true, false, false]);
    expect(rows.map((x) => x.execution)).toEqual([false, true, false, false]);
    expect(rows[2].category).toBe("not_a_query");
    expect(rows[3].category).toBe("no_such_table");
    expect(r.errors).toMatchObject({ not_a_query: 1, no_such_table: 1, wrong: 1 });
    // the database was not touched
    const db = new Database(path.join(d.dbDir, "company", "company.sqlite"), { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM department").get()).toEqual({ n: 3 });
    db.close();
    await expect(evaluateSql({ data: d.data, tables: d.tables, predictions: path.join(d.dir, "none.sql"), output: d.dir })).rejects.toThrow(
      /--predictions: file not found/,
    );
    fs.writeFileSync(preds, "SELECT 1\n");
    await expect(evaluateSql({ data: d.data, tables: d.tables, predictions: preds, output: d.dir })).rejects.toThrow(
      /has 1 lines but the dataset has 4 examples/,
    );
  });
});

describe("execution: what is left out, and the DISTINCT rule", () => {
  test("a gold query that fails on its database: said once with its line, the example left out and counted; --keep-distinct is said", async () => {
    const d = makeDataset();
    const items = JSON.parse(fs.readFileSync(d.data, "utf8"));
    items[1].query = "SELECT name FROM nowhere";
    items.push({ db_id: "elsewhere", question: "Any?", query: "SELECT 1" });
    fs.writeFileSync(d.data, JSON.stringify(items, null, 2));
    const preds = path.join(d.dir, "preds.sql");
    fs.writeFileSync(preds, [...items.map((x: { query: string }) => x.query)].join("\n") + "\n");
    const warned: string[] = [];
    const errWrite = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((c: string | Uint8Array) => (warned.push(String(c)), true)) as typeof process.stderr.write;
    let r;
    try {
      r = await evaluateSql({ data: d.data, dbDir: d.dbDir, predictions: preds, output: path.join(d.dir, "out") });
    } finally {
      process.stderr.write = errWrite;
    }
    const said = warned.filter((w) => /the gold query fails/.test(w));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(
      new RegExp(`${d.data.replace(/[.]/g, "\\.")}:7: the gold query fails on .*company\\.sqlite; the example is left out of execution accuracy`),
    );
    expect(r.execution).toMatchObject({ scored: 3, keepDistinct: false, noDatabase: { examples: 1, byDatabase: { elsewhere: 1 } } });
    expect(r.execution.goldFailed).toHaveLength(1);
    expect(r.execution.goldFailed[0]).toMatchObject({ i: 1, source: `${d.data}:7` });
    expect(r.executionAccuracy).toBe(1);
    expect(r.errors).toMatchObject({ gold_failed: 1 });
    const text = formatEvalReport(r);
    expect(text).toMatch(/on 3 of 5 examples; DISTINCT taken out of both queries/);
    expect(text).toMatch(/skipped +1 examples whose database file is missing \(by db_id: elsewhere 1;/);
    expect(text).toMatch(/skipped +1 examples whose gold query fails on its database \(.*dev\.json:7\)/);
    const kept = await evaluateSql({ data: d.data, dbDir: d.dbDir, predictions: preds, output: path.join(d.dir, "out2"), keepDistinct: true });
    expect(kept.execution.keepDistinct).toBe(true);
    expect(formatEvalReport(kept)).toMatch(/DISTINCT kept as written \(--keep-distinct/);
  });
});

describe("the eval command", () => {
  test("text2sql eval --data --tables --db-dir --predictions --output --json", () => {
    const d = makeDataset();
    const preds = path.join(d.dir, "gold.sql");
    fs.writeFileSync(preds, PAIRS.map(([, s]) => s).join("\n") + "\n");
    const out = path.join(d.dir, "report");
    const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
    const stdout = execFileSync(
      process.execPath,
      ["dist/src/cli/main.js", "eval", "--data", d.data, "--tables", d.tables, "--db-dir", d.dbDir, "--predictions", preds, "--output", out, "--json"],
      { cwd: ROOT, encoding: "utf8" },
    );
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ examples: 4, exactMatch: 1, executionAccuracy: 1, errors: {} });
    expect(fs.existsSync(path.join(out, "eval.json"))).toBe(true);
    const text = execFileSync(
      process.execPath,
      ["dist/src/cli/main.js", "eval", "--data", d.data, "--tables", d.tables, "--predictions", preds, "--output", out],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(text).toMatch(/exact match +100\.0%/);
    expect(text).toMatch(/execution +n\/a \(no databases/);
  });
});

describe.skipIf(!hasSpider)("Spider dev gold (../shared/spider)", () => {
  test("gold predictions: exact match 100%, hardness easy 248 / medium 446 / hard 174 / extra 166", async () => {
    const dir = tempDir("t2s-gold-");
    const dev = JSON.parse(fs.readFileSync(path.join(spider, "dev.json"), "utf8")) as { query: string }[];
    const preds = path.join(dir, "gold.sql");
    fs.writeFileSync(preds, dev.map((x) => x.query.replace(/\s+/g, " ")).join("\n") + "\n");
    const r = await evaluateSql({ data: path.join(spider, "dev.json"), tables: path.join(spider, "tables.json"), predictions: preds, output: dir });
    expect(r.examples).toBe(1034);
    expect(r.exactMatch).toBe(1);
    expect(r.executionAccuracy).toBeNull(); // no databases in ../shared
    expect(Object.fromEntries(Object.entries(r.byHardness).map(([h, v]) => [h, v.count]))).toEqual({ easy: 248, medium: 446, hard: 174, extra: 166 });
  });

  test.skipIf(!hasSpiderDbs)(
    "text2sql eval --db-dir ../shared/spider/database, gold predictions: EX 100% on the 972 examples whose database is there, wta_1's 62 skipped and said",
    { timeout: 180_000 },
    () => {
      const dir = tempDir("t2s-gold-ex-");
      const dev = JSON.parse(fs.readFileSync(path.join(spider, "dev.json"), "utf8")) as { query: string }[];
      const preds = path.join(dir, "gold.sql");
      fs.writeFileSync(preds, dev.map((x) => x.query.replace(/\s+/g, " ")).join("\n") + "\n");
      const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
      const args = ["--data", path.join(spider, "dev.json"), "--tables", path.join(spider, "tables.json"), "--db-dir", path.join(spider, "database")];
      const text = execFileSync(process.execPath, ["dist/src/cli/main.js", "eval", ...args, "--predictions", preds, "--output", dir], {
        cwd: ROOT,
        encoding: "utf8",
      });
      expect(text).toMatch(/execution +100\.0%/);
      expect(text).toMatch(/on 972 of 1034 examples; DISTINCT taken out of both queries/);
      expect(text).toMatch(/skipped +62 examples whose database file is missing \(by db_id: wta_1 62;/);
      const r = JSON.parse(fs.readFileSync(path.join(dir, "eval.json"), "utf8"));
      expect(r.executionAccuracy).toBe(1);
      expect(r.execution).toEqual({ scored: 972, keepDistinct: false, noDatabase: { examples: 62, byDatabase: { wta_1: 62 } }, goldFailed: [] });
      expect(r.errors).toEqual({});
    },
  );

  test("train gold: the one query Spider's parser cannot read is reported, not fatal", async () => {
    const dir = tempDir("t2s-gold-");
    const train = JSON.parse(fs.readFileSync(path.join(spider, "train_spider.json"), "utf8")) as { query: string }[];
    const preds = path.join(dir, "gold.sql");
    fs.writeFileSync(preds, train.map((x) => x.query.replace(/\s+/g, " ")).join("\n") + "\n");
    const r = await evaluateSql({ data: path.join(spider, "train_spider.json"), tables: path.join(spider, "tables.json"), predictions: preds, output: dir });
    expect(r.examples).toBe(7000);
    expect(r.errors).toEqual({ gold_unparsed: 1 });
    expect(r.byHardness.unknown.count).toBe(1);
    expect(r.exactMatch).toBeGreaterThan(0.999);
  });
});
