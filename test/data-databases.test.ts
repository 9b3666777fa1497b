// Rows with their SQLite databases: a CSV/JSONL db column (relative to the data file), data.db for
// every row, Spider's database/<db_id>/<db_id>.sqlite and BIRD's <split>_databases/ (evidence, SQL,
// the schema read from the database); a missing database or one that is not SQLite is an error
// naming the row's line and the path.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { DEFAULTS, loadConfig, type TrainConfig } from "../src/train/config.js";
import { jsonItemLines, readExamples } from "../src/train/data.js";
import { renderPrompt } from "../src/train/prompt.js";
import { makeBirdLayout, makeShopDb, makeSpiderLayout, SHOP_PAIRS } from "./helpers/db-layouts.js";
import { tempDir } from "./helpers/models.js";

const dataCfg = (over: Partial<TrainConfig["data"]> = {}): TrainConfig["data"] => ({ ...structuredClone(DEFAULTS.data), ...over });

describe("CSV and JSONL rows with a database", () => {
  test("a db column relative to the data file; data.db for the rows without one; JSONL's db field", async () => {
    const dir = tempDir();
    const own = makeShopDb(path.join(dir, "dbs", "own.sqlite"));
    const all = makeShopDb(path.join(dir, "all.sqlite"));
    const csv = path.join(dir, "d.csv");
    fs.writeFileSync(csv, "text_query,sql_command,db\nHow many?,SELECT count(*) FROM item,dbs/own.sqlite\nAnd sales?,SELECT count(*) FROM sale,\n");
    const rows = await readExamples(csv, dataCfg({ db: all }));
    expect(rows.map((r) => r.db)).toEqual([own, all]);
    expect((await readExamples(csv, dataCfg())).map((r) => r.db)).toEqual([own, undefined]);
    const jsonl = path.join(dir, "d.jsonl");
    fs.writeFileSync(jsonl, JSON.stringify({ question: "How many?", sql: "SELECT 1", db: "dbs/own.sqlite" }) + "\n");
    expect((await readExamples(jsonl, dataCfg()))[0].db).toBe(own);
  });

  test("a missing database, one that is not SQLite, a folder: errors naming the line and the path", async () => {
    const dir = tempDir();
    makeShopDb(path.join(dir, "ok.sqlite"));
    fs.writeFileSync(path.join(dir, "fake.sqlite"), "SQLite format 2\0 and then some bytes");
    fs.writeFileSync(path.join(dir, "short.sqlite"), "SQLite");
    fs.mkdirSync(path.join(dir, "folder.sqlite"));
    const csv = (db: string) => {
      const f = path.join(dir, `d-${path.basename(db)}.csv`);
      fs.writeFileSync(f, `text_query,sql_command,db\nok?,SELECT 1,ok.sqlite\nbad?,SELECT 1,${db}\n`);
      return f;
    };
    await expect(readExamples(csv("missing.sqlite"), dataCfg())).rejects.toThrow(
      `d-missing.sqlite.csv:3: database ${path.join(dir, "missing.sqlite")}: not found`,
    );
    await expect(readExamples(csv("fake.sqlite"), dataCfg())).rejects.toThrow(
      new RegExp(`d-fake\\.sqlite\\.csv:3: database ${path.join(dir, "fake.sqlite")}: not a SQLite database`),
    );
    await expect(readExamples(csv("short.sqlite"), dataCfg())).rejects.toThrow(/short\.sqlite\.csv:3: .*not a SQLite database/);
    await expect(readExamples(csv("folder.sqlite"), dataCfg())).rejects.toThrow(/folder\.sqlite\.csv:3: .*not a regular file/);
    const plain = path.join(dir, "plain.csv");
    fs.writeFileSync(plain, "text_query,sql_command\nok?,SELECT 1\n");
    await expect(readExamples(plain, dataCfg({ db: path.join(dir, "nope.sqlite") }))).rejects.toThrow(
      `data.db: database ${path.join(dir, "nope.sqlite")}: not found`,
    );
  });
});

describe("Spider and BIRD layouts", () => {
  test("Spider: database/<db_id>/<db_id>.sqlite beside the JSON (or data.db_dir), the schema from tables.json; none turns it off", async () => {
    const s = makeSpiderLayout();
    const rows = await readExamples(s.dev, dataCfg({ tables_path: s.tables }));
    expect(rows).toHaveLength(4);
    expect(rows.every((r) => r.db === s.db)).toBe(true);
    expect(rows[0].schema).toMatch(/^CREATE TABLE item \(\n {2}id number PRIMARY KEY/);
    expect(rows[1].source).toBe(`${s.dev}:7: item 1`); // the line the item starts on
    const moved = tempDir();
    fs.renameSync(path.join(s.dir, "database"), path.join(moved, "database"));
    expect((await readExamples(s.dev, dataCfg()))[0].db).toBeUndefined();
    const explicit = await readExamples(s.dev, dataCfg({ db_dir: path.join(moved, "database") }));
    expect(explicit[0].db).toBe(path.join(moved, "database", "shop", "shop.sqlite"));
    expect(explicit[0].schema).toMatch(/CREATE TABLE item/); // no tables.json: the database's own
    expect((await readExamples(s.dev, dataCfg({ db_dir: "none" })))[0].db).toBeUndefined();
  });

  test("Spider: a db_id without a database: in data.db_dir an error naming the item's line and the path; in the folder found by default, said and counted", async () => {
    const s = makeSpiderLayout();
    const items = JSON.parse(fs.readFileSync(s.dev, "utf8"));
    items[2].db_id = "gone";
    fs.writeFileSync(s.dev, JSON.stringify(items, null, 2));
    const line = jsonItemLines(fs.readFileSync(s.dev, "utf8"))[2];
    expect(line).toBe(12); // "[", then five lines per item
    const dbDir = path.join(s.dir, "database");
    await expect(readExamples(s.dev, dataCfg({ db_dir: dbDir }))).rejects.toThrow(
      `${s.dev}:12: item 2: database ${path.join(dbDir, "gone", "gone.sqlite")}: not found`,
    );
    const said: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((c: string | Uint8Array) => (said.push(String(c)), true)) as typeof process.stderr.write;
    let rows;
    try {
      rows = await readExamples(s.dev, dataCfg());
    } finally {
      process.stderr.write = write;
    }
    expect(rows.map((r) => !!r.db)).toEqual([true, true, false, true]);
    expect(said.join("")).toMatch(
      new RegExp(`data: ${s.dev}: 1 rows have no database \\(no <db_id>/<db_id>\\.sqlite under ${dbDir} for gone \\(1\\)\\); they are read without one`),
    );
  });

  test("BIRD: question, evidence, SQL and db_id; dev_databases/ beside dev.json; the schema read from the database; {evidence} in the template", async () => {
    const b = makeBirdLayout();
    const rows = await readExamples(b.dev, dataCfg());
    expect(rows.map((r) => [r.question, r.sql, r.evidence, r.db])).toEqual(SHOP_PAIRS.slice(0, 3).map(([q, s], i) => [q, s, i === 0 ? "" : `hint ${i}`, b.db]));
    expect(rows[0].schema).toBe(
      "CREATE TABLE item (\n  id INTEGER PRIMARY KEY,\n  name TEXT,\n  price REAL,\n  kind TEXT\n);\n" +
        "CREATE TABLE sale (\n  id INTEGER PRIMARY KEY,\n  item_id INTEGER,\n  qty INTEGER,\n  FOREIGN KEY (item_id) REFERENCES item(id)\n);",
    );
    const t = "{schema}\n-- {evidence}\nQ: {question}";
    expect(renderPrompt(t, rows[1])).toBe(`${rows[1].schema}\n-- hint 1\nQ: ${rows[1].question}`);
    expect(renderPrompt("{question} {evidence}", { question: "a {evidence} b", evidence: "E" })).toBe("a {evidence} b E");
    const cfg = loadConfig({ overrides: { "model.path": "builtin:tiny", "data.path": b.dev }, set: ["data.template=Q {question} E {evidence}"] });
    expect(cfg.data.template).toBe("Q {question} E {evidence}");
  });

  test("jsonItemLines: the line each top-level element starts on, strings with brackets and escapes skipped", () => {
    const text = '[\n  {"a": "x]\\"{"},\n  [1, 2],\n\n  3, "s"\n, {}]';
    expect(jsonItemLines(text)).toEqual([2, 3, 5, 5, 6]);
    expect(jsonItemLines("[]")).toEqual([]);
  });
});
