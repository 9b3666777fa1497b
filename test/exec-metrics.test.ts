import Database from "better-sqlite3";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executionMatch, sameResult, schemaFromSqlite } from "../src/sql/exec-metrics.js";
import { closeAll, runReadOnly } from "../src/sql/query-process.js";
import { hasOrderBy, isSingleReadQuery, removeDistinct } from "../src/sql/sql-text.js";

let dir: string;
let dbFile: string;
let schemaDb: string;

function snapshot(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    const tables = db.prepare("SELECT name, sql FROM sqlite_master ORDER BY name").all();
    const singer = db.prepare("SELECT * FROM singer ORDER BY id").all();
    const concert = db.prepare("SELECT * FROM concert ORDER BY id").all();
    return JSON.stringify({ tables, singer, concert });
  } finally {
    db.close();
  }
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "exec-metrics-"));
  dbFile = path.join(dir, "concerts.sqlite");
  const db = new Database(dbFile);
  db.exec(`
    CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER, rating REAL);
    CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(id), year INTEGER, city TEXT);
    INSERT INTO singer VALUES (1, 'Ann', 'France', 30, 4.0), (2, 'Bob', 'USA', 45, 3.5), (3, 'Cid', 'France', 22, 5),
                              (4, 'Dee', 'USA', 30, 4.0), (5, 'Eve', 'Spain', 51, NULL);
    INSERT INTO concert VALUES (1, 1, 2014, 'Paris'), (2, 1, 2015, 'Lyon'), (3, 2, 2014, 'Boston'), (4, 3, 2016, 'Paris'),
                               (5, 4, 2015, 'Austin'), (6, 2, 2015, 'Boston');
  `);
  db.close();

  schemaDb = path.join(dir, "school.sqlite");
  const s = new Database(schemaDb);
  s.exec(`
    CREATE TABLE teacher (teacher_id int, name varchar(40), PRIMARY KEY (teacher_id));
    CREATE TABLE course (
      course_id INTEGER PRIMARY KEY,
      title text,
      teacher_id int,
      credits,
      FOREIGN KEY (teacher_id) REFERENCES teacher(teacher_id)
    );
  `);
  s.close();
});

afterAll(async () => {
  await closeAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("isSingleReadQuery", () => {
  it("accepts one SELECT or WITH query, with a trailing semicolon and comments", () => {
    expect(isSingleReadQuery("SELECT 1").ok).toBe(true);
    expect(isSingleReadQuery("  select * from t ;  \n").ok).toBe(true);
    expect(isSingleReadQuery("-- the count\n/* c */ SELECT count(*) FROM t; -- done").ok).toBe(true);
    expect(isSingleReadQuery("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT x FROM c").ok).toBe(true);
    expect(isSingleReadQuery("WITH a AS (SELECT 1), b AS MATERIALIZED (SELECT 2) SELECT * FROM a, b").ok).toBe(true);
    expect(isSingleReadQuery("SELECT 'a;b', \"x;\" FROM t").ok).toBe(true);
    expect(isSingleReadQuery("SELECT replace(name, 'a', 'b') FROM t").ok).toBe(true);
  });

  it("rejects writes, DDL, pragmas and several statements", () => {
    for (const sql of [
      "DELETE FROM t",
      "INSERT INTO t VALUES (1)",
      "UPDATE t SET a = 1",
      "CREATE TABLE x (a)",
      "DROP TABLE t",
      "ATTACH DATABASE 'x.db' AS x",
      "PRAGMA table_info(t)",
      "VACUUM",
      "SELECT 1; DELETE FROM t",
      "SELECT 1; SELECT 2",
      "WITH a AS (SELECT 1) DELETE FROM t",
      "WITH a(x) AS (SELECT 1) INSERT INTO t SELECT x FROM a",
      "",
      "  ; ",
      "-- only a comment",
      "SELEC 1",
    ]) {
      const r = isSingleReadQuery(sql);
      expect(r.ok, sql).toBe(false);
      expect(r.why, sql).toBeTruthy();
    }
  });
});

describe("hasOrderBy", () => {
  it("finds ORDER BY only at the top level", () => {
    expect(hasOrderBy("SELECT name FROM singer ORDER BY age DESC")).toBe(true);
    expect(hasOrderBy("select a from t union select b from u order\n by 1")).toBe(true);
    expect(hasOrderBy("SELECT name FROM singer")).toBe(false);
    expect(hasOrderBy("SELECT * FROM (SELECT name FROM singer ORDER BY age LIMIT 3)")).toBe(false);
    expect(hasOrderBy("SELECT row_number() OVER (ORDER BY age) FROM singer")).toBe(false);
    expect(hasOrderBy("SELECT 'order by' FROM t -- order by x")).toBe(false);
    expect(hasOrderBy('SELECT "order" FROM t /* ORDER BY */')).toBe(false);
  });
});

describe("sameResult", () => {
  it("compares rows as multisets, in order only when asked", () => {
    expect(sameResult([[1], [2]], [[2], [1]], { ordered: false })).toBe(true);
    expect(sameResult([[1], [2]], [[2], [1]], { ordered: true })).toBe(false);
    expect(sameResult([[1], [1], [2]], [[1], [2], [2]], { ordered: false })).toBe(false);
    expect(sameResult([[1], [1]], [[1]], { ordered: false })).toBe(false);
    expect(sameResult([], [], { ordered: true })).toBe(true);
  });

  it("compares values: numbers numerically, strings exactly, null with null", () => {
    expect(sameResult([[1, null, "a"]], [[1.0, null, "a"]], { ordered: true })).toBe(true);
    expect(sameResult([["1"]], [[1]], { ordered: true })).toBe(false);
    expect(sameResult([["a"]], [["A"]], { ordered: true })).toBe(false);
    expect(sameResult([[null]], [[0]], { ordered: true })).toBe(false);
  });

  it("accepts any column order", () => {
    expect(
      sameResult(
        [
          [1, "a", 2.5],
          [2, "b", 3],
        ],
        [
          ["b", 3, 2],
          ["a", 2.5, 1],
        ],
        { ordered: false },
      ),
    ).toBe(true);
    expect(
      sameResult(
        [
          [1, "a"],
          [2, "b"],
        ],
        [
          ["b", 1],
          ["a", 2],
        ],
        { ordered: false },
      ),
    ).toBe(false);
    expect(sameResult([[1, 2]], [[1]], { ordered: false })).toBe(false);
    // columns with the same values: the induced permutation is wrong, another one is right
    expect(
      sameResult(
        [
          [1, 2],
          [2, 1],
          [1, 1],
        ],
        [
          [2, 1],
          [1, 2],
          [1, 1],
        ],
        { ordered: true },
      ),
    ).toBe(true);
    expect(
      sameResult(
        [
          [1, 2, 3],
          [2, 3, 1],
          [3, 1, 2],
        ],
        [
          [3, 1, 2],
          [1, 2, 3],
          [2, 3, 1],
        ],
        { ordered: true },
      ),
    ).toBe(true);
  });
});

describe("runReadOnly", () => {
  it("returns columns and raw rows", async () => {
    const r = await runReadOnly(dbFile, "SELECT name, age FROM singer WHERE country = 'USA' ORDER BY id;");
    expect(r).toEqual({
      ok: true,
      columns: ["name", "age"],
      rows: [
        ["Bob", 45],
        ["Dee", 30],
      ],
    });
  });

  it("categorises errors", async () => {
    const cat = async (sql: string) => {
      const r = await runReadOnly(dbFile, sql);
      return r.ok ? "ok" : r.category;
    };
    expect(await cat("SELEC name FROM singer")).toBe("syntax");
    expect(await cat("SELECT name FROM")).toBe("syntax");
    expect(await cat("(SELECT name FROM singer)")).toBe("syntax");
    expect(await cat("SELECT 'abc FROM singer")).toBe("syntax");
    expect(await cat("SELECT name FROM singers")).toBe("no_such_table");
    expect(await cat("SELECT nme FROM singer")).toBe("no_such_column");
    expect(await cat("DELETE FROM singer")).toBe("not_a_query");
    expect(await cat("SELECT * FROM singer WHERE id = ?")).toBe("error");
    const missing = await runReadOnly(path.join(dir, "missing.sqlite"), "SELECT 1");
    expect(missing).toMatchObject({ ok: false, category: "error" });
  });

  it('reads double-quoted words that name nothing as strings, as default SQLite builds do (Spider writes `name = "Bob"`)', async () => {
    // better-sqlite3 builds SQLite with SQLITE_DQS=0: the query alone is refused
    const raw = new Database(dbFile, { readonly: true });
    expect(() => raw.prepare('SELECT name FROM singer WHERE country = "USA"')).toThrow(/no such column: "USA" - should this be a string literal/);
    raw.close();
    expect(await runReadOnly(dbFile, 'SELECT "name", age FROM singer WHERE "country" = "USA" AND name != "O\'Neil ""x""" ORDER BY id')).toEqual({
      ok: true,
      columns: ["name", "age"],
      rows: [
        ["Bob", 45],
        ["Dee", 30],
      ],
    });
    // a quoted word of that text inside a comment or a single-quoted string stays as it was
    expect(await runReadOnly(dbFile, `SELECT count(*), '"USA"' FROM singer WHERE country = "USA" -- "USA"`)).toEqual({
      ok: true,
      columns: ["count(*)", "'\"USA\"'"],
      rows: [[2, '"USA"']],
    });
    // a misspelt unquoted column is still an error
    expect(await runReadOnly(dbFile, 'SELECT nme FROM singer WHERE country = "USA"')).toMatchObject({ ok: false, category: "no_such_column" });
    expect(await executionMatch(dbFile, "SELECT name FROM singer WHERE country = 'France'", 'SELECT name FROM singer WHERE country = "France"')).toEqual({
      match: true,
    });
  });

  it("refuses results over maxRows", async () => {
    const r = await runReadOnly(dbFile, "SELECT * FROM concert", { maxRows: 3 });
    expect(r).toEqual({ ok: false, category: "too_large", error: "result too large (more than 3 rows)" });
    expect(await runReadOnly(dbFile, "SELECT * FROM concert", { maxRows: 6 })).toMatchObject({ ok: true });
  });

  it("times out a runaway query, stays responsive and recovers", async () => {
    const started = Date.now();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 20);
    const r = await runReadOnly(dbFile, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c", {
      timeoutMs: 300,
    });
    clearInterval(timer);
    const took = Date.now() - started;
    expect(r).toMatchObject({ ok: false, category: "timeout" });
    expect(took).toBeLessThan(3000);
    expect(ticks).toBeGreaterThan(3); // the main thread kept running timers meanwhile
    expect(await runReadOnly(dbFile, "SELECT count(*) FROM singer", { timeoutMs: 300 })).toEqual({ ok: true, columns: ["count(*)"], rows: [[5]] });
    const m = await executionMatch(dbFile, "SELECT name FROM singer", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c", {
      timeoutMs: 300,
    });
    expect(m).toMatchObject({ match: false, category: "timeout" });
    expect(await executionMatch(dbFile, "SELECT name FROM singer", "SELECT name FROM singer")).toEqual({ match: true });
  });

  it("runs queries on one database one at a time, each with its own timeout", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => runReadOnly(dbFile, `SELECT ${i} AS i, count(*) FROM concert`, { timeoutMs: 2000 })));
    results.forEach((r, i) => expect(r).toEqual({ ok: true, columns: ["i", "count(*)"], rows: [[i, 6]] }));
  });
});

describe("closeAll", () => {
  it("stops the query processes; a later query starts a new one", async () => {
    expect(await runReadOnly(dbFile, "SELECT 1")).toMatchObject({ ok: true });
    await closeAll();
    await closeAll();
    expect(await runReadOnly(dbFile, "SELECT 2 AS two")).toEqual({ ok: true, columns: ["two"], rows: [[2]] });
  });
});

describe("executionMatch", () => {
  const golds = [
    "SELECT name FROM singer WHERE country = 'France'",
    "SELECT count(*) FROM singer",
    "SELECT name, age FROM singer ORDER BY age DESC",
    "SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id GROUP BY T1.id",
    "SELECT avg(rating) FROM singer WHERE rating IS NOT NULL",
    "SELECT city FROM concert WHERE year = 2015",
  ];

  it("scores the gold queries 100%", async () => {
    const scores = await Promise.all(golds.map((g) => executionMatch(dbFile, g, g)));
    expect(scores.every((s) => s.match)).toBe(true);
  });

  it("scores a wrong filter wrong", async () => {
    expect(await executionMatch(dbFile, golds[0], "SELECT name FROM singer WHERE country = 'USA'")).toEqual({ match: false, category: "wrong" });
  });

  it("matches reordered columns and an alias-renamed query", async () => {
    expect(await executionMatch(dbFile, "SELECT name, age FROM singer", "SELECT age, name FROM singer")).toEqual({ match: true });
    expect(
      await executionMatch(dbFile, golds[3], "SELECT count(*) AS n, s.name AS who FROM concert c JOIN singer s ON s.id = c.singer_id GROUP BY s.name"),
    ).toEqual({ match: true });
  });

  it("lets rows come in any order only when gold has no top-level ORDER BY", async () => {
    expect(await executionMatch(dbFile, "SELECT name FROM singer", "SELECT name FROM singer ORDER BY name DESC")).toEqual({ match: true });
    expect(await executionMatch(dbFile, "SELECT name FROM singer ORDER BY age, id", "SELECT name FROM singer ORDER BY id")).toEqual({
      match: false,
      category: "wrong",
    });
    expect(await executionMatch(dbFile, "SELECT name FROM singer ORDER BY age, id", "SELECT name FROM singer ORDER BY age ASC, id ASC")).toEqual({
      match: true,
    });
    // a sub-query's ORDER BY does not make the outer result ordered
    expect(
      await executionMatch(dbFile, "SELECT name FROM (SELECT name FROM singer ORDER BY age, id LIMIT 2)", "SELECT name FROM singer WHERE age < 31 AND id <> 4"),
    ).toEqual({ match: true });
  });

  it("counts duplicates; DISTINCT is taken out of both queries unless keepDistinct (exec_eval.py's default)", async () => {
    const keep = { keepDistinct: true };
    expect(await executionMatch(dbFile, "SELECT city FROM concert", "SELECT DISTINCT city FROM concert", keep)).toEqual({ match: false, category: "wrong" });
    expect(await executionMatch(dbFile, "SELECT DISTINCT city FROM concert", "SELECT city FROM concert GROUP BY city", keep)).toEqual({ match: true });
    // the official default: both run without DISTINCT
    expect(await executionMatch(dbFile, "SELECT city FROM concert", "SELECT DISTINCT city FROM concert")).toEqual({ match: true });
    expect(await executionMatch(dbFile, "SELECT DISTINCT city FROM concert", "SELECT city FROM concert GROUP BY city")).toEqual({
      match: false,
      category: "wrong",
    });
    expect(await executionMatch(dbFile, "SELECT count(DISTINCT city) FROM concert", "SELECT count(city) FROM concert")).toEqual({ match: true });
    expect(await executionMatch(dbFile, "SELECT count(DISTINCT city) FROM concert", "SELECT count(city) FROM concert", keep)).toEqual({
      match: false,
      category: "wrong",
    });
  });

  it("removeDistinct drops every DISTINCT keyword token and nothing else", () => {
    expect(removeDistinct("SELECT DISTINCT a FROM t")).toBe("SELECT  a FROM t");
    expect(removeDistinct("select count(distinct a), Distinct_b FROM t WHERE x = 'DISTINCT' AND \"distinct\" = 1 -- distinct")).toBe(
      "select count( a), Distinct_b FROM t WHERE x = 'DISTINCT' AND \"distinct\" = 1 -- distinct",
    );
    expect(removeDistinct("SELECT a FROM (SELECT DISTINCT a FROM t) UNION SELECT DISTINCT b FROM u")).toBe(
      "SELECT a FROM (SELECT  a FROM t) UNION SELECT  b FROM u",
    );
  });

  it("reports the prediction's error category", async () => {
    const g = golds[0];
    expect(await executionMatch(dbFile, g, "SELECT name FROM singer WHERE")).toMatchObject({ match: false, category: "syntax" });
    expect(await executionMatch(dbFile, g, "SELECT name FROM singers")).toMatchObject({ match: false, category: "no_such_table" });
    expect(await executionMatch(dbFile, g, "SELECT nam FROM singer")).toMatchObject({ match: false, category: "no_such_column" });
    expect(await executionMatch(dbFile, g, "SELECT name FROM singer WHERE country = 'Peru'")).toEqual({ match: false, category: "empty" });
    expect(await executionMatch(dbFile, "SELECT name FROM singer WHERE age > 100", "SELECT name FROM singer WHERE age > 200")).toEqual({ match: true });
    const e = await executionMatch(dbFile, g, "SELECT name FROM singer; SELECT 1");
    expect(e.match).toBe(false);
    expect(e.category).toBe("not_a_query");
    expect(e.error).toBeTruthy();
  });

  it("never runs writing queries: they score not_a_query and the database is unchanged", async () => {
    const before = snapshot(dbFile);
    for (const pred of [
      "DELETE FROM singer",
      "DROP TABLE concert",
      "INSERT INTO singer VALUES (9, 'Zed', 'Peru', 20, 1)",
      "UPDATE singer SET name = 'x'",
      "SELECT 1; DELETE FROM singer",
      "SELECT name FROM singer WHERE country = 'France'; DELETE FROM singer;",
      "WITH x AS (SELECT 1) DELETE FROM singer",
      "CREATE TABLE evil (a)",
      "PRAGMA user_version = 5",
      "ATTACH DATABASE ':memory:' AS evil",
      "VACUUM",
    ]) {
      expect(await executionMatch(dbFile, golds[0], pred), pred).toMatchObject({ match: false, category: "not_a_query" });
    }
    expect(snapshot(dbFile)).toBe(before);
    const db = new Database(dbFile, { readonly: true });
    expect(db.pragma("user_version", { simple: true })).toBe(0);
    db.close();
  });

  it("throws when the gold query fails, naming the database and the query", async () => {
    await expect(executionMatch(dbFile, "SELECT nope FROM singer", "SELECT 1")).rejects.toThrow(/concerts\.sqlite.*SELECT nope FROM singer/s);
  });
});

describe("schemaFromSqlite", () => {
  // PRAGMA table_info reports SQLite's standard type names (INT, INTEGER, REAL, TEXT, BLOB, ANY) in
  // upper case and every other declared type as written
  it("writes CREATE TABLE statements with keys, tables sorted by name", () => {
    expect(schemaFromSqlite(schemaDb)).toBe(
      [
        "CREATE TABLE course (",
        "  course_id INTEGER PRIMARY KEY,",
        "  title TEXT,",
        "  teacher_id INT,",
        "  credits,",
        "  FOREIGN KEY (teacher_id) REFERENCES teacher(teacher_id)",
        ");",
        "CREATE TABLE teacher (",
        "  teacher_id INT PRIMARY KEY,",
        "  name varchar(40)",
        ");",
      ].join("\n"),
    );
  });

  it("does not touch the file", () => {
    const before = fs.readFileSync(schemaDb);
    schemaFromSqlite(schemaDb);
    expect(fs.readFileSync(schemaDb).equals(before)).toBe(true);
  });
});
