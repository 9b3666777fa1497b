// The schema grammar of constrained decoding (src/sql/sql-grammar.ts), checked with llama.cpp's own
// GBNF engine: it accepts the quickstart's and Spider dev's gold queries (Spider skips without
// ../shared) and refuses identifiers the schema does not have, columns of tables not in the FROM,
// aliases that were not declared, and statements other than one SELECT.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { keywordRule, parseSchema, sqlGrammar, type SchemaInfo } from "../src/sql/sql-grammar.js";
import { GbnfFollower, parseGbnf } from "../src/formats/gbnf.js";
import { gbnfMatcher, type GbnfMatcher } from "./helpers/gbnf.js";
import { testModel } from "./helpers/models.js";
import { QUICKSTART_SCHEMA, quickstartExamples } from "./helpers/quickstart.js";
import { SCHEMA } from "./helpers/overfit.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const SPIDER = path.resolve(ROOT, "../shared/spider");

let m: GbnfMatcher;
beforeAll(async () => {
  m = await gbnfMatcher(await testModel());
});
afterAll(() => m?.dispose());

describe("reading a schema", () => {
  test("tables, columns (quoted names too) and foreign keys; table constraints, indexes and views are no columns", () => {
    const info = parseSchema(
      'CREATE TABLE "a b" ("x""y" INT, [z] TEXT, `w` REAL, PRIMARY KEY (z), CONSTRAINT c UNIQUE (w));\n' +
        "CREATE TABLE IF NOT EXISTS main.t2 (id INTEGER REFERENCES \"a b\"(z), v TEXT CHECK (v <> ','), FOREIGN KEY (v) REFERENCES t3(q));\n" +
        "CREATE INDEX i ON t2(v);\nCREATE VIEW vv AS SELECT 1;\nCREATE TABLE t3 (q TEXT);",
    );
    expect(info.tables).toEqual([
      { name: "a b", columns: ['x"y', "z", "w"] },
      { name: "t2", columns: ["id", "v"] },
      { name: "t3", columns: ["q"] },
    ]);
    expect(info.links).toEqual([
      ["t2", "a b"],
      ["t2", "t3"],
    ]);
    expect(info.notes).toEqual(["view vv left out (its columns are not known without running it)"]);
  });

  test("hostile schema text is refused before it is read, never run", () => {
    expect(() => parseSchema("ATTACH 'x.db' AS x")).toThrow(/^schema: statement 1/);
    expect(() => parseSchema("CREATE TABLE t AS SELECT 1")).toThrow(/runs a query/);
    expect(() => sqlGrammar(parseSchema("CREATE INDEX i ON t(x)"))).toThrow("schema: no tables with columns");
  });
});

describe("the grammar (llama.cpp's GBNF engine)", () => {
  test("names it cannot write (a quote or control character) are left out and said so; what is left is closed with real names", async () => {
    const built = sqlGrammar(
      parseSchema('CREATE TABLE "we""ird" (a INT); CREATE TABLE t ("col ""q""" INT, "p|q" INT, "ünï😀" INT); CREATE TABLE u ("""" INT);'),
    );
    expect(built.notes).toEqual([
      'table "we\\"ird" left out: its name cannot be written (a quote or control character)',
      'column "col \\"q\\"" of t left out: a quote or control character in the name',
      'table "u" left out: no column of it can be written (a quote or control character)',
    ]);
    const g = await m.grammar(built.gbnf);
    expect(m.refusal(g, 'SELECT "p|q", "ünï😀" FROM t')).toBeNull();
    // no rule is left that no text could match: the shortest close of a bare SELECT names t
    const f = new GbnfFollower(parseGbnf(built.gbnf));
    f.feed("SELECT ");
    expect(f.completion(keywordRule)).toBe("0 FROM t");
    expect(() => sqlGrammar(parseSchema('CREATE TABLE "a""b" (x INT)'))).toThrow(
      'schema: no tables with columns to constrain the SQL to (table "a\\"b" left out: its name cannot be written (a quote or control character))',
    );
  });

  test("accepts every gold query of the quickstart dataset and the overfit pairs' schema", async () => {
    const g = await m.grammar(sqlGrammar(parseSchema(QUICKSTART_SCHEMA)).gbnf);
    const gold = (await quickstartExamples()).map((e) => e.sql);
    expect(gold.length).toBeGreaterThan(250);
    const refused = gold.filter((sql) => m.refusal(g, sql) !== null);
    expect(refused).toEqual([]);
    const small = await m.grammar(sqlGrammar(parseSchema(SCHEMA)).gbnf);
    for (const sql of [
      "SELECT count(*) FROM head WHERE age > 56",
      "SELECT name , age FROM head ORDER BY age DESC",
      "select AVG(budget) from department where state = 'Texas';",
      "SELECT -age, age - 1, -(age * 2) FROM head WHERE age > -5 AND age BETWEEN -50 AND 50 AND age - 1 < 3 - age",
    ])
      expect(m.refusal(small, sql), sql).toBeNull();
  });

  test("refuses unknown identifiers, columns outside the FROM, undeclared aliases, ambiguity and other statements", async () => {
    const g = await m.grammar(sqlGrammar(parseSchema(QUICKSTART_SCHEMA)).gbnf);
    const refused: [string, string][] = [
      ["SELECT nme FROM employees", "SELECT nme"],
      ["SELECT name FROM employes", "SELECT name FROM employes"],
      ["SELECT salary FROM departments", "SELECT salary FROM departments<end>"],
      ["SELECT e.name FROM employees AS T1", "SELECT e.name FROM employees AS T"],
      ["SELECT name FROM employees AS e JOIN departments AS d ON e.department_id = d.id", "SELECT name FROM employees AS e JOIN"],
      ["SELECT T1.name FROM employees AS T1 JOIN courses AS T2", "SELECT T1.name FROM employees AS T1 JOIN courses"],
      ["DELETE FROM employees", "DE"],
      // what SQLite would refuse to prepare: aggregates in WHERE or nested, sum(*), a column
      // position in ORDER BY, set operations over different column counts, a 2-column sub-query
      ["SELECT name FROM employees WHERE count(*) > 1", "SELECT name FROM employees WHERE count"],
      ["SELECT max(count(*)) FROM employees", "SELECT max(count"],
      ["SELECT sum(*) FROM employees", "SELECT sum(*)"],
      ["SELECT name FROM employees ORDER BY 2", "SELECT name FROM employees ORDER BY 2"],
      ["SELECT name FROM employees UNION SELECT name, city FROM customers", "SELECT name FROM employees UNION SELECT name,"],
      ["SELECT name FROM employees WHERE id IN (SELECT id, name FROM departments)", "SELECT name FROM employees WHERE id IN (SELECT id,"],
      ["SELECT name FROM employees; DROP TABLE employees", "SELECT name FROM employees; D"],
      // an arithmetic "-" before a negative number would write "--", a comment to SQLite
      ["SELECT salary --1 FROM employees", "SELECT salary --"],
      ["SELECT salary - -1 FROM employees", "SELECT salary - -"],
    ];
    for (const [sql, upTo] of refused) expect(m.refusal(g, sql), sql).toBe(upTo);
  });

  test("sub-queries in FROM, SELECT * over set operations, aliases that go on in sub-queries, reversed aliases, tabs, self-joins", async () => {
    const built = sqlGrammar(parseSchema(QUICKSTART_SCHEMA));
    expect(built).toMatchObject({ complete: true, loose: [] }); // every join of the quickstart schema is checked column by column
    const g = await m.grammar(built.gbnf);
    const join = "FROM employees AS T1 JOIN departments AS T2 ON T1.department_id = T2.id";
    for (const sql of [
      "SELECT count(*) FROM (SELECT name FROM employees UNION SELECT name FROM customers)",
      "SELECT count(*) FROM (SELECT * FROM employees WHERE salary > 10) AS T1",
      "SELECT * FROM employees WHERE salary > 10 UNION SELECT * FROM employees WHERE hire_year < 2000",
      `SELECT T1.name ${join} WHERE T2.id IN (SELECT T3.id FROM departments AS T3 JOIN employees AS T4 ON T3.id = T4.department_id)`,
      `SELECT T1.name ${join} EXCEPT SELECT T4.name FROM departments AS T3 JOIN employees AS T4 ON T3.id = T4.department_id`,
      "SELECT T1.name FROM departments AS T2 JOIN employees AS T1 ON T1.department_id = T2.id",
      "SELECT\tname FROM employees WHERE salary >\t10",
    ])
      expect(m.refusal(g, sql), sql).toBeNull();
    const refused: [string, string][] = [
      // * over two different FROMs (their column counts differ)
      ["SELECT * FROM employees UNION SELECT * FROM departments", "SELECT * FROM employees UNION SELECT * FROM depart"],
      // an alias that goes on from T3 only in a sub-query or after a set operation, and only as declared
      ["SELECT T3.name FROM employees AS T3", "SELECT T3.name FROM employees"], // (T3 of a 3-table join)
      [
        `SELECT T1.name ${join} WHERE T2.id IN (SELECT T3.id FROM departments AS T4)`,
        `SELECT T1.name ${join} WHERE T2.id IN (SELECT T3.id FROM departments AS T4)`,
      ],
      // what is selected from a sub-query in FROM: only count(*) or *
      ["SELECT name FROM (SELECT name FROM employees)", "SELECT name FROM ("],
      ["SELECT count(*) FROM (DELETE FROM employees)", "SELECT count(*) FROM (DE"],
    ];
    for (const [sql, upTo] of refused) expect(m.refusal(g, sql), sql).toBe(upTo);
    // a key-like column holding a table's name links the two tables, without a foreign key
    const trips = await m.grammar(sqlGrammar(parseSchema("CREATE TABLE station (id INT, name TEXT); CREATE TABLE trip (id INT, start_station_id INT);")).gbnf);
    expect(m.refusal(trips, "SELECT T1.name FROM station AS T1 JOIN trip AS T2 ON T1.id = T2.start_station_id")).toBeNull();
    // a table with a foreign key to itself may be joined with itself
    const self = await m.grammar(sqlGrammar(parseSchema("CREATE TABLE staff (id INT PRIMARY KEY, name TEXT, boss INT REFERENCES staff(id));")).gbnf);
    expect(m.refusal(self, "SELECT T2.name FROM staff AS T1 JOIN staff AS T2 ON T1.boss = T2.id WHERE T1.name = 'Ann'")).toBeNull();
    expect(m.refusal(self, "SELECT T2.name FROM staff AS T1 JOIN staff AS T2 ON T1.boss = T2.id WHERE T1.nme")).toBe(
      "SELECT T2.name FROM staff AS T1 JOIN staff AS T2 ON T1.boss = T2.id WHERE T1.nme",
    );
  });

  test("joins past maxScopes are loose: any of the schema's tables and columns, never a name it does not have", async () => {
    const built = sqlGrammar(parseSchema(QUICKSTART_SCHEMA), { maxScopes: 30 });
    expect(built).toMatchObject({ complete: false, loose: [2, 3, 4, 5, 6] });
    expect(built.notes.join("\n")).toContain("joins of 2 to 6 tables are loose");
    const g = await m.grammar(built.gbnf);
    const join = "FROM customers AS T1 JOIN orders AS T2 ON T1.id = T2.customer_id JOIN products AS T3 ON T2.product_id = T3.id";
    expect(m.refusal(g, `SELECT T1.name, T3.price ${join} WHERE T3.category = 'x'`)).toBeNull();
    const refused: [string, string][] = [
      [`SELECT T1.nme ${join}`, "SELECT T1.nme"],
      ["SELECT T1.name FROM customers AS T1 JOIN ordrs", "SELECT T1.name FROM customers AS T1 JOIN ordrs"],
      [`SELECT T4.name ${join}`, `SELECT T4.name ${join}<end>`], // T4 is not declared
      ["SELECT name FROM employees AS T1; DROP TABLE x", "SELECT name FROM employees AS T1; D"],
    ];
    for (const [sql, upTo] of refused) expect(m.refusal(g, sql), sql).toBe(upTo);
  });

  test("a complete statement is always near: any prefix ends by closing what is open", async () => {
    const g = await m.grammar(sqlGrammar(parseSchema(QUICKSTART_SCHEMA)).gbnf);
    for (const [prefix, end] of [
      ["SELECT name FROM employees WHERE department_id IN (SELECT id FROM departments WHERE name = 'Sa", "')"],
      ["SELECT count(*) FROM (SELECT name FROM employees WHERE salary > (SELECT avg(salary", ") FROM employees))"],
      ["SELECT name, salary, hire_year, id, department_id, name", " FROM employees"],
      ["SELECT e.name FROM employees AS e JOIN departments AS d ON e.department_id = d.id WHERE (d.budget > 1 OR (e.salary", " > 2))"],
    ]) {
      expect(m.refusal(g, prefix + end), prefix + end).toBeNull();
    }
  });
});

// Spider dev: every gold query against its own schema (CREATE TABLE text made from tables.json)
interface SpiderTables {
  db_id: string;
  table_names_original: string[];
  column_names_original: [number, string][];
  foreign_keys: [number, number][];
}

function spiderSchemaText(t: SpiderTables): string {
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return t.table_names_original
    .map((name, ti) => {
      const cols = t.column_names_original
        .map(([tab, c], ci) => ({ tab, c, ci }))
        .filter((x) => x.tab === ti)
        .map(({ c, ci }) => {
          const fk = t.foreign_keys.find(([from]) => from === ci);
          const ref = fk ? ` REFERENCES ${q(t.table_names_original[t.column_names_original[fk[1]][0]])}(${q(t.column_names_original[fk[1]][1])})` : "";
          return `${q(c)} TEXT${ref}`;
        });
      return `CREATE TABLE ${q(name)} (${cols.join(", ")});`;
    })
    .join("\n");
}

describe.skipIf(!fs.existsSync(path.join(SPIDER, "dev.json")))("Spider dev gold queries", () => {
  test("the grammar of each database accepts every one of its gold queries", { timeout: 1_200_000 }, async () => {
    const tables = new Map((JSON.parse(fs.readFileSync(path.join(SPIDER, "tables.json"), "utf8")) as SpiderTables[]).map((t) => [t.db_id, t]));
    const dev = JSON.parse(fs.readFileSync(path.join(SPIDER, "dev.json"), "utf8")) as { db_id: string; query: string }[];
    const byDb = new Map<string, string[]>();
    for (const d of dev) byDb.set(d.db_id, [...(byDb.get(d.db_id) ?? []), d.query]);
    let accepted = 0;
    const refused: string[] = [];
    const refusedSql: string[] = [];
    const [unfollowed, unclosed] = [[] as string[], [] as string[]];
    let closes = 0;
    for (const [db, queries] of byDb) {
      const info: SchemaInfo = parseSchema(spiderSchemaText(tables.get(db)!));
      const built = sqlGrammar(info);
      const g = await m.grammar(built.gbnf);
      const t0 = performance.now();
      const gbnf = parseGbnf(built.gbnf);
      for (const [k, sql] of queries.entries()) {
        const why = m.refusal(g, sql);
        if (why === null) accepted++;
        else {
          refused.push(`${db}: ${sql}\n    refused at: ${why.slice(-40)}`);
          refusedSql.push(sql);
        }
        // the closes of constrained decoding (src/formats/gbnf.ts): the query is followed to a
        // complete statement, and (one in ten) a cut of it closed is a text llama.cpp accepts
        const f = new GbnfFollower(gbnf);
        if (!f.feed(sql) || !f.complete) unfollowed.push(`${db}: ${sql}`);
        if (k % 10 === 0) {
          const cut = new GbnfFollower(gbnf);
          cut.feed(sql.slice(0, Math.ceil(sql.length / 2)));
          const closed = sql.slice(0, Math.ceil(sql.length / 2)) + cut.completion(keywordRule);
          if (m.refusal(g, closed) !== null) unclosed.push(`${db}: ${closed}`);
          closes++;
        }
      }
      console.log(`${db}: ${built.scopes} scopes, ${queries.length} queries in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    console.log(
      `Spider dev: the grammar accepts ${accepted} of ${dev.length} gold queries (${((100 * accepted) / dev.length).toFixed(1)}%)\n${refused.join("\n")}`,
    );
    expect(refusedSql).toEqual([]);
    expect(accepted).toBe(dev.length);
    expect(unfollowed).toEqual([]);
    expect(unclosed).toEqual([]);
    expect(closes).toBeGreaterThan(100);
  });
});
