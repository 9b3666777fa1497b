// Agreement with Spider's official evaluation.py: on every mutated prediction of
// test/fixtures/spider-official-verdicts.json (recorded once by scripts/record-spider-official.py,
// running the official script), our exact match, partial components, parse verdict and the gold
// query's hardness must equal the official ones; on the random strings of
// test/fixtures/spider-official-tokens.json, our tokens must equal process_sql.tokenize's. Gold queries and schemas come from ../shared/spider
// (not committed); the test skips when it is missing.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { executionMatch } from "../src/sql/exec-metrics.js";
import { closeAll } from "../src/sql/query-process.js";
import { hardness, PARTIAL_TYPES, spiderVerdict } from "../src/sql/spider-metrics.js";
import { parseSql, SqlParseError, tokenize, type SpiderSchemaEntry } from "../src/sql/sqlparse.js";

interface Case {
  dev: number;
  kind: string;
  gold: string;
  pred: string;
  hardness: string;
  parses: boolean;
  exact: number;
  partial: string;
}
interface Fixture {
  partialTypes: string[];
  goldHardness: string[];
  /** one letter per train gold query: e, m, h, x, or "!" where it does not parse */
  trainHardness: string;
  cases: Case[];
}

const fixture = JSON.parse(fs.readFileSync(path.resolve("test/fixtures/spider-official-verdicts.json"), "utf8")) as Fixture;
const spider = path.resolve("../shared/spider");
const hasSpider = fs.existsSync(path.join(spider, "dev.json")) && fs.existsSync(path.join(spider, "tables.json"));

describe("the official tokenizer", () => {
  test("process_sql.tokenize (nltk's Treebank rules) agrees on 1,500 random strings of the characters it treats specially", () => {
    const fx = JSON.parse(fs.readFileSync(path.resolve("test/fixtures/spider-official-tokens.json"), "utf8")) as { cases: [string, string[] | string][] };
    expect(fx.cases).toHaveLength(1500);
    const diff: string[] = [];
    for (const [text, want] of fx.cases) {
      let got: string[] | string;
      try {
        got = tokenize(text);
      } catch (e) {
        if (!(e instanceof SqlParseError)) throw e;
        got = "AssertionError"; // the reference's "Unexpected quote"
      }
      if (JSON.stringify(got) !== JSON.stringify(want)) diff.push(`${JSON.stringify(text)}: ours ${JSON.stringify(got)}, official ${JSON.stringify(want)}`);
    }
    expect(diff).toEqual([]);
  });
});

describe("the recorded verdicts", () => {
  test("cover every mutation kind the issue names, with both verdicts and parse failures", () => {
    expect(fixture.partialTypes).toEqual([...PARTIAL_TYPES]);
    expect(fixture.cases.length).toBeGreaterThanOrEqual(400);
    const kinds = new Set(fixture.cases.map((c) => c.kind));
    for (const k of ["gold", "swap_select_col", "op_gt_lt", "add_join", "remove_join", "on_other_column", "alias_rename", "value_str", "from_sub_value"]) {
      expect(kinds).toContain(k);
    }
    for (const k of [
      "eq_nospace_str",
      "op_ltgt",
      "op_double_eq",
      "comma_join_on",
      "trailing_query",
      "truncate",
      "keyword_mixed",
      "order_flip",
      "setop_change",
    ]) {
      expect(kinds).toContain(k);
    }
    expect(fixture.cases.filter((c) => c.exact === 1).length).toBeGreaterThan(100);
    expect(fixture.cases.filter((c) => c.exact === 0 && c.parses).length).toBeGreaterThan(100);
    expect(fixture.cases.filter((c) => !c.parses).length).toBeGreaterThan(100);
  });
});

describe.skipIf(!hasSpider)("agreement with Spider's official evaluation.py", () => {
  const dev = hasSpider ? (JSON.parse(fs.readFileSync(path.join(spider, "dev.json"), "utf8")) as { db_id: string; query: string }[]) : [];
  const tables = new Map(
    hasSpider
      ? (JSON.parse(fs.readFileSync(path.join(spider, "tables.json"), "utf8")) as (SpiderSchemaEntry & { db_id: string })[]).map((t) => [t.db_id, t])
      : [],
  );

  test("the gold queries are the ones the verdicts were recorded on", () => {
    const stale = fixture.cases.filter((c) => createHash("sha256").update(dev[c.dev]!.query).digest("hex").slice(0, 12) !== c.gold);
    expect(stale.map((c) => c.dev)).toEqual([]);
  });

  test("hardness of every dev gold query equals the official one", () => {
    const ours = dev.map((ex) => hardness(ex.query, tables.get(ex.db_id)));
    const diff = ours.flatMap((h, i) => (h === fixture.goldHardness[i] ? [] : [`dev ${i}: ours ${h}, official ${fixture.goldHardness[i]}`]));
    expect(diff).toEqual([]);
  });

  test.skipIf(!fs.existsSync(path.join(spider, "train_spider.json")))(
    "hardness of every train gold query equals the official one (and the one the official parser cannot read fails here too)",
    () => {
      const train = JSON.parse(fs.readFileSync(path.join(spider, "train_spider.json"), "utf8")) as { db_id: string; query: string }[];
      expect(train).toHaveLength(fixture.trainHardness.length);
      const letter = { easy: "e", medium: "m", hard: "h", extra: "x" } as const;
      const ours = train.map((ex) => {
        try {
          return letter[hardness(ex.query, tables.get(ex.db_id))];
        } catch (e) {
          if (!(e instanceof SqlParseError)) throw e;
          return "!";
        }
      });
      const diff = ours.flatMap((h, i) => (h === fixture.trainHardness[i] ? [] : [`train ${i}: ours ${h}, official ${fixture.trainHardness[i]}`]));
      expect(diff).toEqual([]);
    },
  );

  test("exact match, parse verdict and every partial component agree on every prediction", () => {
    const diff: string[] = [];
    for (const c of fixture.cases) {
      const ex = dev[c.dev]!;
      const schema = tables.get(ex.db_id);
      let parses = true;
      try {
        parseSql(c.pred, schema);
      } catch (e) {
        if (!(e instanceof SqlParseError)) throw e;
        parses = false;
      }
      const v = spiderVerdict(ex.query, c.pred, schema);
      const partial = PARTIAL_TYPES.map((t) => (v.partial[t] ? "1" : "0")).join("");
      const got = { exact: v.exact ? 1 : 0, parses, partial, hardness: hardness(ex.query, schema) };
      const want = { exact: c.exact, parses: c.parses, partial: c.partial, hardness: c.hardness };
      if (JSON.stringify(got) !== JSON.stringify(want))
        diff.push(`dev ${c.dev} ${c.kind}: ${c.pred}\n  ours ${JSON.stringify(got)}\n  official ${JSON.stringify(want)}`);
    }
    const agreement = (fixture.cases.length - diff.length) / fixture.cases.length;
    if (diff.length) console.log(`${diff.length} disagreements\n${diff.slice(0, 15).join("\n")}`);
    expect(diff).toEqual([]);
    expect(agreement).toBe(1);
  });
});

// Execution match on DISTINCT: test/fixtures/spider-official-exec-distinct.json holds the verdicts
// of test-suite-sql-eval's eval_exec_match (recorded by scripts/record-spider-exec-distinct.py) on
// predictions that differ from their gold only in DISTINCT, with keep_distinct off (the default:
// DISTINCT taken out of both queries) and on. Ours must give the same verdict for both settings.
interface DistinctCase {
  dev: number;
  db_id: string;
  kind: string;
  gold: string;
  pred: string;
  default: number;
  keep_distinct: number;
}
const distinct = JSON.parse(fs.readFileSync(path.resolve("test/fixtures/spider-official-exec-distinct.json"), "utf8")) as { cases: DistinctCase[] };
const hasDbs = fs.existsSync(path.join(spider, "database", "concert_singer", "concert_singer.sqlite"));

describe.skipIf(!hasDbs)("execution match on DISTINCT agrees with exec_eval.py (../shared/spider/database)", () => {
  afterAll(() => closeAll());

  test("every recorded case, with keep_distinct off and on; the cases cover both verdicts of each setting", async () => {
    const kinds = new Set(distinct.cases.map((c) => c.kind));
    expect([...kinds].sort()).toEqual(["add", "count", "drop", "group"]);
    for (const key of ["default", "keep_distinct"] as const) expect(new Set(distinct.cases.map((c) => c[key]))).toEqual(new Set([0, 1]));
    const diff: string[] = [];
    for (const c of distinct.cases) {
      const db = path.join(spider, "database", c.db_id, `${c.db_id}.sqlite`);
      for (const keepDistinct of [false, true]) {
        const got = (await executionMatch(db, c.gold, c.pred, { keepDistinct })).match ? 1 : 0;
        const want = keepDistinct ? c.keep_distinct : c.default;
        if (got !== want) diff.push(`dev ${c.dev} ${c.kind} keep_distinct=${keepDistinct}: ours ${got}, official ${want}: ${c.pred}`);
      }
    }
    expect(diff).toEqual([]);
  });
});
