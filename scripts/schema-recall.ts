/**
 * npm run schema-recall [-- --spider <dir>] [--limit N]: how often the tables a gold query uses
 * all stay in the prompt when a Spider schema is cut to a budget, by dropping tables from the end
 * of the schema (the old truncation) and by schema linking (src/sql/schema-linking.ts).
 *
 * Prompts are those of configs/config_spider_schema.yaml's template, tokenized with the Llama SPM
 * vocabulary (builtin:tiny's, the same as TinyLlama's); a budget counts BOS + prompt tokens, every
 * count is exact (the prompt is tokenized whole for each try). The gold query's tables are those of
 * every FROM of its parse (src/sql/sqlparse.ts, sub-queries included). An example whose schema
 * fits the budget keeps every table; an example whose gold query does not parse is left out.
 * Prints a markdown table: per budget, the share of examples whose schema had to be cut, and the
 * share whose gold tables were all kept before and after.
 */
import fs from "node:fs";
import path from "node:path";
import { resolveModelPath } from "../src/models/model-path.js";
import { linkSchema, splitSchema } from "../src/sql/schema-linking.js";
import { parseSql, SqlParseError } from "../src/sql/sqlparse.js";
import { loadConfig } from "../src/train/config.js";
import { readSpiderTables, spiderSchemas, type SpiderTables } from "../src/train/data.js";
import { keepTables, renderPrompt, Tokenizer } from "../src/train/prompt.js";

export const BUDGETS = [512, 1024, 2048];

interface Item {
  question: string;
  query: string;
  db_id: string;
}

/** Lower-case names of the tables in every FROM of a parsed query (a deep walk for table units). */
export function goldTables(query: string, entry: SpiderTables): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown): void => {
    if (!Array.isArray(v)) {
      if (v && typeof v === "object") Object.values(v).forEach(walk);
      return;
    }
    if (v[0] === "table_unit" && typeof v[1] === "string") out.add(v[1].replace(/^__|__$/g, ""));
    else v.forEach(walk);
  };
  walk(parseSql(query, entry, { allowTrailing: true }));
  return out;
}

export interface Recall {
  examples: number;
  /** examples left out: the gold query does not parse against its schema (one train query names a table its schema lacks) */
  unparsed: number;
  /** examples whose schema did not fit, per budget */
  cut: number[];
  before: number[];
  after: number[];
}

/** Recall of the gold tables at each budget, before (drop from the end) and after (linking). */
export function schemaRecall(tok: Tokenizer, template: string, items: Item[], tables: SpiderTables[], budgets = BUDGETS): Recall {
  const schemas = spiderSchemas(tables);
  const entries = new Map(tables.map((t) => [t.db_id, t]));
  const r: Recall = { examples: 0, unparsed: 0, cut: budgets.map(() => 0), before: budgets.map(() => 0), after: budgets.map(() => 0) };
  for (const it of items) {
    const schema = schemas.get(it.db_id)!;
    const entry = entries.get(it.db_id)!;
    let gold: Set<string>;
    try {
      gold = goldTables(it.query, entry);
    } catch (err) {
      if (!(err instanceof SqlParseError)) throw err;
      r.unparsed++;
      continue;
    }
    r.examples++;
    const names = entry.table_names_original.map((t) => t.toLowerCase());
    const has = (kept: number[]) => [...gold].every((g) => kept.some((i) => names[i] === g));
    const count = (s: string) => 1 + tok.encode(renderPrompt(template, { question: it.question, schema: s })).length;
    const full = count(schema);
    const n = splitSchema(schema).length;
    budgets.forEach((budget, b) => {
      if (full <= budget) {
        r.before[b]!++;
        r.after[b]!++;
        return;
      }
      r.cut[b]!++;
      // before: the most leading tables that fit (the binary search encodeExample used to do)
      let lo = 0;
      let hi = n - 1;
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        if (count(keepTables(schema, mid)) <= budget) lo = mid;
        else hi = mid - 1;
      }
      const first = lo > 0 && count(keepTables(schema, lo)) <= budget ? lo : 0;
      if (has(Array.from({ length: first }, (_, i) => i))) r.before[b]!++;
      if (has(linkSchema(schema, it.question, (s) => count(s) <= budget).kept)) r.after[b]!++;
    });
  }
  return r;
}

const pct = (k: number, n: number) => `${((100 * k) / n).toFixed(1)}%`;

export function recallTable(rows: [string, Recall][], budgets = BUDGETS): string {
  const lines = rows.flatMap(([name, r]) =>
    budgets.map(
      (budget, b) =>
        `| ${name} | ${r.examples.toLocaleString("en-US")}${r.unparsed ? ` (+${r.unparsed} unparsed, left out)` : ""} | ${budget.toLocaleString("en-US")} | ` +
        `${pct(r.cut[b]!, r.examples)} | ${pct(r.before[b]!, r.examples)} | ${pct(r.after[b]!, r.examples)} |`,
    ),
  );
  return ["| split | examples | budget | cut | kept before | kept after linking |", "|---|---|---|---|---|---|", ...lines].join("\n");
}

async function main(): Promise<void> {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const dir = arg("--spider") ?? "../shared/spider";
  const limit = Number(arg("--limit") ?? Infinity);
  const template = loadConfig({ file: "configs/config_spider_schema.yaml" }).data.template;
  const tables = readSpiderTables(path.join(dir, "tables.json"));
  const tok = await Tokenizer.load(await resolveModelPath("builtin:tiny"));
  const rows: [string, Recall][] = [];
  const t0 = Date.now();
  for (const [name, file] of [
    ["train", "train_spider.json"],
    ["dev", "dev.json"],
  ] as const) {
    const items = (JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as Item[]).slice(0, limit);
    rows.push([name, schemaRecall(tok, template, items, tables)]);
  }
  await tok.dispose();
  console.log(recallTable(rows));
  console.log(`\n(${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
