// Schema linking (src/sql/schema-linking.ts): which tables stay when a schema does not fit, and
// how it does on Spider's dev set against dropping tables from the end (scripts/schema-recall.ts).
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { goldTables, schemaRecall } from "../scripts/schema-recall.js";
import { linkSchema, readTable, scoreTables, words } from "../src/sql/schema-linking.js";
import { loadConfig } from "../src/train/config.js";
import { readSpiderTables } from "../src/train/data.js";
import { encodeExample, Tokenizer } from "../src/train/prompt.js";
import { testModel } from "./helpers/models.js";

const table = (name: string, cols: string[], fks: string[] = []) =>
  `CREATE TABLE ${name} (\n${[...cols.map((c) => `  ${c} text`), ...fks.map((f) => `  FOREIGN KEY (${f}_id) REFERENCES ${f}(id)`)].join(",\n")}\n);`;

const schema = [
  table("airport", ["id", "airport_code", "city"]),
  table("airline", ["id", "airline_name", "country"]),
  table("flight", ["id", "flight_no", "departure_date"], ["airline", "airport"]),
  table("employee", ["id", "full_name", "salary"]),
  table("concert", ["id", "concert_name", "year"], ["singer"]),
  table("singer", ["id", "singer_name", "age"]),
].join("\n");

/** a budget of `n` statements, whatever they hold (one statement is one "\n"-joined piece) */
const atMost = (n: number) => (s: string) => s.split(/(?<=;)\n/).length <= n;
const names = (s: string) => [...s.matchAll(/CREATE TABLE (\w+)/g)].map((m) => m[1]);

describe("schema linking", () => {
  test("reads names, columns and foreign keys; words split snake_case and camelCase and lose plurals", () => {
    const t = readTable(
      `CREATE TABLE IF NOT EXISTS "Flight Log" (\n  "fl id" INTEGER PRIMARY KEY,\n  LegNo number REFERENCES leg(id),\n  PRIMARY KEY (x, y),\n  FOREIGN KEY (a) REFERENCES [Air Port](b)\n);`,
    );
    expect(t).toMatchObject({ name: "Flight Log", columns: ["fl id", "LegNo"], references: ["leg", "air port"] });
    expect(words("StudentID dept_name Cities classes heads")).toEqual(["student", "id", "dept", "name", "city", "class", "head"]);
    expect(readTable("CREATE INDEX i ON t(x);").name).toBe("");
  });

  test("a table named at the end of the schema is kept; the unrelated first tables go", () => {
    const linked = linkSchema(schema, "What is the age of the oldest singer?", atMost(2));
    expect(names(linked.schema)).toEqual(["concert", "singer"]); // singer, then its FK neighbour concert
    expect(linked.kept).toEqual([4, 5]);
    expect(linked.dropped).toEqual(["airport", "airline", "flight", "employee"]);
  });

  test("the foreign-key neighbour that joins two matched tables comes next", () => {
    const q = "Which airlines fly out of airports in the city of Aberdeen?";
    const scores = scoreTables(schema.split(/(?<=;)\n/).map(readTable), q);
    expect(scores[0]).toBeGreaterThan(0); // airport
    expect(scores[1]).toBeGreaterThan(0); // airline
    expect(scores[2]).toBe(0); // flight: no word of the question
    expect(names(linkSchema(schema, q, atMost(3)).schema)).toEqual(["airport", "airline", "flight"]);
    expect(names(linkSchema(schema, q, atMost(2)).schema)).toEqual(["airport", "airline"]);
  });

  test("deterministic; a schema that fits is unchanged; a question that matches nothing keeps the first tables", () => {
    const q = "How many concerts were held each year?";
    const a = linkSchema(schema, q, atMost(3));
    expect(linkSchema(schema, q, atMost(3))).toEqual(a);
    expect(linkSchema(schema, q, () => true)).toEqual({ schema, kept: [0, 1, 2, 3, 4, 5], dropped: [] });
    expect(names(linkSchema(schema, "zzz?", atMost(2)).schema)).toEqual(["airport", "airline"]);
    expect(linkSchema(schema, q, () => false)).toMatchObject({ schema: "", kept: [] });
  });

  test("encodeExample keeps the schema's related tables when it truncates", async () => {
    const tok = await Tokenizer.load(await testModel());
    const ex = { question: "What is the age of the oldest singer?", sql: "SELECT max(age) FROM singer", schema, source: "x:1" };
    const o = { template: "[INST] {schema}\nQuestion: {question} [/INST]", maxSeqLen: 10_000, tooLong: "truncate" as const, lossOn: "completion" as const };
    const full = encodeExample(tok, ex, o)!;
    expect(full.tablesDropped).toBe(0);
    const two = schema
      .split(/(?<=;)\n/)
      .slice(4)
      .join("\n"); // concert and singer
    const room = encodeExample(tok, { ...ex, schema: two }, o)!.tokens.length;
    const cut = encodeExample(tok, ex, { ...o, maxSeqLen: room })!;
    expect(cut.truncated).toBe(true);
    expect(cut.tablesDropped).toBe(4);
    expect(cut.tokens.length).toBe(room);
    expect(tok.decode(cut.tokens)).toContain("CREATE TABLE singer");
    expect(tok.decode(cut.tokens)).not.toContain("CREATE TABLE airport"); // the first one, unrelated
    await tok.dispose();
  });
});

const spider = path.resolve("../shared/spider");
const hasSpider = fs.existsSync(path.join(spider, "dev.json")) && fs.existsSync(path.join(spider, "tables.json"));

describe.skipIf(!hasSpider)("Spider dev (../shared/spider)", () => {
  test("gold tables kept at 512 tokens: linking keeps more than dropping from the end (the README's numbers)", async () => {
    const tables = readSpiderTables(path.join(spider, "tables.json"));
    const dev = JSON.parse(fs.readFileSync(path.join(spider, "dev.json"), "utf8")) as { question: string; query: string; db_id: string }[];
    const concert = tables.find((t) => t.db_id === "concert_singer")!;
    expect(
      [...goldTables("SELECT T2.name FROM concert AS T1 JOIN singer AS T2 WHERE T1.stadium_id IN (SELECT stadium_id FROM stadium)", concert)].sort(),
    ).toEqual(["concert", "singer", "stadium"]);
    const template = loadConfig({ file: "configs/config_spider_schema.yaml" }).data.template;
    const tok = await Tokenizer.load(await testModel());
    const r = schemaRecall(tok, template, dev, tables, [512]);
    await tok.dispose();
    // 164 schemas cut; gold tables all kept: 941 (91.0%) dropping from the end, 1,029 (99.5%) linked
    expect(r).toMatchObject({ examples: 1034, unparsed: 0, cut: [164], before: [941], after: [1029] });
  }, 60_000);
});
