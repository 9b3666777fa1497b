// `text2sql eval`: what matters for text-to-SQL. Exact-set match and component match (Spider's
// rules), execution accuracy on SQLite (read-only, timed out, row multisets, DISTINCT taken out
// as the official test-suite evaluator does unless keepDistinct), a table by Spider hardness, error
// categories, and the seed's teacher-forced eval loss and token accuracy. Examples that cannot be
// executed (no database, a gold query that fails on it) are counted and named, never scored.
import fs from "node:fs";
import path from "node:path";
import { DEFAULT_TEMPLATE, DEFAULTS } from "../train/config.js";
import { jsonItemLines, readDataText, readExamples, readSpiderTables, spiderSchemas, type Example } from "../train/data.js";
import { readUserText } from "../util/user-file.js";
import { LoraEngine, makeBatch } from "../engine/engine.js";
import { executionMatch, GoldQueryError } from "../sql/exec-metrics.js";
import { closeAll, MAX_QUERY_MAX_BYTES } from "../sql/query-process.js";
import { isSingleReadQuery } from "../sql/sql-text.js";
import { SqlGenerator } from "../serve/generate.js";
import type { CandidateReport } from "../serve/candidates.js";
import { warn } from "../engine/system.js";
import { resolveAdapter } from "../adapters/folder.js";
import { encodeExample, Tokenizer } from "../train/prompt.js";
import { componentMatch, hardness, HARDNESS_LEVELS, type Hardness } from "../sql/spider-metrics.js";
import type { SpiderSchemaEntry } from "../sql/sqlparse.js";
import { loadAdapterInto } from "../adapters/save-load.js";
import { resolveModelPath } from "../models/model-path.js";

export interface EvalOptions {
  /** Spider JSON ({db_id, question, query}[]) or any CSV/JSONL the trainer reads */
  data: string;
  /** Spider tables.json: schemas for the prompt and for parsing */
  tables?: string;
  /** databases as <dir>/<db_id>/<db_id>.sqlite, for execution accuracy */
  dbDir?: string;
  /** CSV/JSONL data: one SQLite database for every example without its own `db` column */
  db?: string;
  /** run DISTINCT as written (the official evaluator's keep_distinct); default: taken out of both queries */
  keepDistinct?: boolean;
  /** score these predictions (one SQL per line, in the dataset's order) instead of generating */
  predictions?: string;
  /** adapter (file or trainer output folder) to generate with and to compute eval loss */
  adapter?: string;
  /** base model: a GGUF or any model.path form (see resolveModelPath); default: the adapter's recorded base */
  model?: string;
  /** prompt template (default: the adapter's, else the seed's) */
  template?: string;
  output: string;
  limit?: number;
  parallel?: number;
  threads?: number;
  /** wall-clock limit per query in ms (gold, prediction, and each candidate; default 5000) */
  timeoutMs?: number;
  /** byte cap of each query's result (gold, prediction, each candidate), counted as its rows stream (default 64 MiB); past it the query fails alone */
  maxBytes?: number;
  /**
   * with dbDir: decode this many candidates per question (greedy + sampled), run them on the
   * example's database and keep the answer most of them agree on (see serve/candidates.ts)
   */
  candidates?: number;
  onProgress?: (phase: "generate" | "score" | "loss", done: number, total: number) => void;
}

interface Item {
  question: string;
  gold: string;
  /** "file:line", for messages */
  source: string;
  /** the example's own database (CSV/JSONL `db` column, or --db) */
  db?: string;
  dbId?: string;
  schema?: string;
  entry?: SpiderSchemaEntry;
}

export interface EvalRow {
  i: number;
  db_id?: string;
  question: string;
  gold: string;
  prediction: string;
  hardness: Hardness | "unknown";
  exact: boolean;
  components: Record<string, boolean>;
  execution?: boolean;
  category?: string;
  error?: string;
  /** with candidates: the vote (candidates, failed, killed at the timeout, votes per result) and the greedy answer */
  candidates?: { n: number; failed: number; timedOut: number; votes: number[]; changed: boolean; greedy: string; greedyExecution?: boolean };
}

export interface EvalReport {
  examples: number;
  exactMatch: number;
  componentMatch: Record<string, number>;
  executionAccuracy: number | null;
  /**
   * how execution was scored: on how many examples, whether DISTINCT was kept, and the examples
   * left out (no database: by db_id; a gold query that fails on its database: by example)
   */
  execution: {
    scored: number;
    keepDistinct: boolean;
    noDatabase: { examples: number; byDatabase: Record<string, number> };
    goldFailed: { i: number; source: string; error: string }[];
  };
  byHardness: Record<string, { count: number; exact: number; execution: number | null }>;
  errors: Record<string, number>;
  evalLoss: number | null;
  tokenAccuracy: number | null;
  /**
   * with candidates: examples voted on (others had no database and were decoded greedily),
   * candidates that failed or were killed, answers the vote changed, and the greedy answers'
   * execution accuracy on the voted examples next to the voted answers'
   */
  candidates?: {
    perQuestion: number;
    examples: number;
    noDatabase: number;
    failed: number;
    timedOut: number;
    changed: number;
    executionAccuracy: number | null;
    greedyExecutionAccuracy: number | null;
  };
  output: { report: string; predictions: string };
}

/** Spider JSON items, with each database's schema (CREATE TABLE text and parser entry) from tables.json. */
function readSpiderItems(o: EvalOptions): Item[] {
  const dbs = o.tables ? readSpiderTables(o.tables, "--tables") : [];
  const tables = o.tables ? spiderSchemas(dbs) : undefined;
  const entries = new Map<string, SpiderSchemaEntry>(dbs.map((e) => [e.db_id, e as unknown as SpiderSchemaEntry]));
  const text = readDataText(o.data, "--data");
  let arr: { db_id?: string; question?: string; query?: string }[];
  try {
    arr = JSON.parse(text) as typeof arr;
  } catch (err) {
    throw new Error(`--data: ${o.data}: invalid JSON (${(err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(arr)) throw new Error(`${o.data}: expected a Spider JSON array of {db_id, question, query}`);
  const lines = jsonItemLines(text);
  return arr.map((x, i) => {
    if (typeof x.question !== "string" || typeof x.query !== "string") throw new Error(`${o.data}: item ${i} lacks question or query`);
    if (x.db_id && tables && !tables.has(x.db_id)) throw new Error(`${o.data}: item ${i}: db_id '${x.db_id}' is not in ${o.tables}`);
    return {
      question: x.question,
      gold: x.query,
      source: `${o.data}:${lines[i] ?? "?"}`,
      dbId: x.db_id,
      schema: x.db_id ? tables?.get(x.db_id) : undefined,
      entry: x.db_id ? entries.get(x.db_id) : undefined,
    };
  });
}

async function loadItems(o: EvalOptions): Promise<Item[]> {
  const items = o.data.endsWith(".json")
    ? readSpiderItems(o)
    : (await readExamples(o.data, { ...structuredClone(DEFAULTS.data), db: o.db ?? null }, "--data")).map((e: Example) => ({
        question: e.question,
        gold: e.sql,
        source: e.source,
        db: e.db,
        schema: e.schema,
      }));
  return o.limit ? items.slice(0, o.limit) : items;
}

/** A predictions file may have at most this many bytes (Spider dev's 1034 predictions are about 100 KB). */
export const MAX_PREDICTIONS_BYTES = 256 * 2 ** 20;

function readPredictions(file: string, n: number): string[] {
  const text = readUserText(file, { label: "--predictions", maxBytes: MAX_PREDICTIONS_BYTES, what: "a predictions file" });
  const lines = text.replace(/\r\n/g, "\n").replace(/\n$/, "").split("\n");
  // a count that differs means the lines and the examples are not paired (an extra line, or a query
  // split over two lines, shifts every later example): refuse rather than score the wrong pairs
  if (lines.length !== n) throw new Error(`--predictions: ${file} has ${lines.length} lines but the dataset has ${n} examples (one SQL per line, in order)`);
  return lines;
}

/** Teacher-forced eval loss and token accuracy of the adapter on the items (the seed's metrics). */
async function tokenMetrics(o: EvalOptions, items: Item[], template: string): Promise<{ loss: number; accuracy: number } | null> {
  // with an adapter: its recorded LoRA settings; the base model alone: a fresh adapter (B = 0)
  const a = o.adapter ? resolveAdapter(o.adapter) : undefined;
  const model = o.model ?? a?.baseModel;
  if (!model) return null;
  const engine = await LoraEngine.create({ model, device: "cpu", threads: o.threads ?? 0, lora: a?.lora });
  const tok = await Tokenizer.load(model);
  try {
    if (a) await loadAdapterInto(engine, a.adapterFile!);
    let lossSum = 0,
      n = 0,
      correct = 0;
    for (const [i, it] of items.entries()) {
      const e = encodeExample(
        tok,
        { question: it.question, sql: it.gold, schema: it.schema, source: `${o.data}:${i}` },
        { template, maxSeqLen: engine.info.nCtx, tooLong: "truncate", lossOn: "completion" },
      );
      if (e) {
        const st = await engine.evaluate(makeBatch([e]));
        lossSum += st.lossSum;
        n += st.nTokens;
        correct += st.nCorrect;
      }
      o.onProgress?.("loss", i + 1, items.length);
    }
    return n ? { loss: lossSum / n, accuracy: correct / n } : null;
  } finally {
    await tok.dispose();
    await engine.dispose();
  }
}

/** The example's database file (its own, or under dbDir), if it exists. */
function databaseOf(o: EvalOptions, it: Item): string | undefined {
  if (it.db) return it.db;
  const db = o.dbDir && it.dbId ? path.join(o.dbDir, it.dbId, `${it.dbId}.sqlite`) : undefined;
  return db && fs.existsSync(db) ? db : undefined;
}

/** Predictions generated in parallel with the adapter; with candidates, voted on each example's database. */
async function generatePredictions(o: EvalOptions, items: Item[]): Promise<{ preds: string[]; template: string; votes: (CandidateReport | undefined)[] }> {
  if (!o.adapter && !o.model) throw new Error("give --predictions, or --adapter/--model to generate them");
  if (o.candidates !== undefined && !o.dbDir) throw new Error("candidates: voting runs the candidates on the databases; give --db-dir");
  const dbs = items.map((it) => (o.candidates !== undefined ? databaseOf(o, it) : undefined));
  const missing = o.candidates !== undefined ? dbs.filter((d) => !d).length : 0;
  if (missing) warn(`--candidates: ${missing} of ${items.length} examples have no database under ${o.dbDir}; those are decoded greedily, without a vote`);
  const g = await SqlGenerator.load({
    adapter: o.adapter,
    model: o.model,
    template: o.template,
    parallel: o.parallel ?? 4,
    threads: o.threads,
    device: "cpu",
  });
  try {
    const preds = new Array<string>(items.length);
    const votes = new Array<CandidateReport | undefined>(items.length);
    let done = 0;
    await Promise.all(
      items.map(async (it, i) => {
        const db = dbs[i];
        const vote = db ? { db, candidates: o.candidates, queryTimeoutMs: o.timeoutMs ?? 5000, queryMaxBytes: o.maxBytes } : {};
        const r = await g.generate({ question: it.question, schema: it.schema, validate: false, ...vote });
        preds[i] = r.sql;
        votes[i] = r.candidates;
        o.onProgress?.("generate", ++done, items.length);
      }),
    );
    return { preds, template: g.template, votes };
  } finally {
    await g.dispose();
  }
}

export async function evaluateSql(o: EvalOptions): Promise<EvalReport> {
  if (o.maxBytes !== undefined && (!Number.isSafeInteger(o.maxBytes) || o.maxBytes < 1 || o.maxBytes > MAX_QUERY_MAX_BYTES)) {
    throw new TypeError(`maxBytes: expected an integer from 1 to ${MAX_QUERY_MAX_BYTES}, got ${JSON.stringify(o.maxBytes)}`);
  }
  if (o.model) o = { ...o, model: await resolveModelPath(o.model, { label: "model" }) };
  const items = await loadItems(o);
  if (items.length === 0) throw new Error(`${o.data}: no examples`);
  fs.mkdirSync(o.output, { recursive: true });

  // predictions: from a file, or generated in parallel with the adapter
  let preds: string[];
  let template = o.template ?? DEFAULT_TEMPLATE;
  let votes: (CandidateReport | undefined)[] = [];
  if (o.predictions) {
    if (o.candidates !== undefined) throw new Error("candidates: votes on generated candidates; with --predictions there is nothing to generate");
    preds = readPredictions(o.predictions, items.length);
  } else {
    const g = await generatePredictions(o, items);
    preds = g.preds;
    template = g.template;
    votes = g.votes;
  }

  const { rows, errors, execution } = await scoreRows(o, items, preds, votes);
  const tm = o.predictions ? null : await tokenMetrics(o, items, template);
  const frac = (xs: boolean[]) => (xs.length ? xs.filter(Boolean).length / xs.length : 0);
  const byHardness: EvalReport["byHardness"] = {};
  for (const h of [...HARDNESS_LEVELS, "unknown"] as const) {
    const rs = rows.filter((r) => r.hardness === h);
    if (rs.length === 0 && h === "unknown") continue;
    const ex = rs.filter((r) => r.execution !== undefined);
    byHardness[h] = { count: rs.length, exact: frac(rs.map((r) => r.exact)), execution: ex.length ? frac(ex.map((r) => r.execution!)) : null };
  }
  const comp: Record<string, number> = {};
  for (const k of Object.keys(rows[0].components)) comp[k] = frac(rows.map((r) => r.components[k]));
  const executed = rows.filter((r) => r.execution !== undefined);
  const voted = rows.filter((r) => r.candidates);
  const report: EvalReport = {
    examples: rows.length,
    exactMatch: frac(rows.map((r) => r.exact)),
    componentMatch: comp,
    executionAccuracy: executed.length ? frac(executed.map((r) => r.execution!)) : null,
    execution,
    byHardness,
    errors,
    evalLoss: tm?.loss ?? null,
    tokenAccuracy: tm?.accuracy ?? null,
    ...(o.candidates !== undefined && !o.predictions
      ? {
          candidates: {
            perQuestion: o.candidates,
            examples: voted.length,
            noDatabase: rows.length - voted.length,
            failed: voted.reduce((s, r) => s + r.candidates!.failed, 0),
            timedOut: voted.reduce((s, r) => s + r.candidates!.timedOut, 0),
            changed: voted.filter((r) => r.candidates!.changed).length,
            executionAccuracy: voted.length ? frac(voted.map((r) => r.execution!)) : null,
            greedyExecutionAccuracy: voted.length ? frac(voted.map((r) => r.candidates!.greedyExecution!)) : null,
          },
        }
      : {}),
    output: { report: path.join(o.output, "eval.json"), predictions: path.join(o.output, "predictions.jsonl") },
  };
  fs.writeFileSync(report.output.predictions, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  fs.writeFileSync(report.output.report, JSON.stringify(report, null, 2) + "\n");
  return report;
}

/** One example's exact-set and component match, and its Spider hardness. */
function matchRow(i: number, it: Item, pred: string): EvalRow {
  let level: Hardness | "unknown" = "unknown";
  try {
    level = hardness(it.gold, it.entry);
  } catch {
    // a gold query Spider's own parser cannot read either
  }
  let cm: ReturnType<typeof componentMatch> | null = null;
  let goldError: string | undefined;
  try {
    cm = componentMatch(it.gold, pred, it.entry);
  } catch (err) {
    // a gold query that Spider's parser cannot read (it fails in the reference too): no set match
    goldError = `gold query does not parse: ${(err as Error).message}`;
  }
  const none = { select: false, from: false, where: false, groupBy: false, orderBy: false, limit: false, iuen: false };
  return {
    i,
    db_id: it.dbId,
    question: it.question,
    gold: it.gold,
    prediction: pred,
    hardness: level,
    exact: cm?.all ?? false,
    components: cm ? { select: cm.select, from: cm.from, where: cm.where, groupBy: cm.groupBy, orderBy: cm.orderBy, limit: cm.limit, iuen: cm.iuen } : none,
    ...(goldError ? { category: "gold_unparsed", error: goldError } : {}),
  };
}

/**
 * Scores every example: exact and component match, and execution on its database when it has
 * one. An example without a database, or whose gold query fails on it (said once, with its line),
 * is left out of execution accuracy and counted in `execution`.
 */
async function scoreRows(o: EvalOptions, items: Item[], preds: string[], votes: (CandidateReport | undefined)[]) {
  const rows: EvalRow[] = [];
  const errors: Record<string, number> = {};
  const execution: EvalReport["execution"] = { scored: 0, keepDistinct: !!o.keepDistinct, noDatabase: { examples: 0, byDatabase: {} }, goldFailed: [] };
  const ex = { timeoutMs: o.timeoutMs, maxBytes: o.maxBytes, keepDistinct: o.keepDistinct };
  try {
    for (const [i, it] of items.entries()) {
      const pred = preds[i].trim();
      const row = matchRow(i, it, pred);
      const db = databaseOf(o, it);
      if (db) {
        const r = await execMatch(db, it.gold, pred, ex);
        if ("goldError" in r) {
          warn(`${it.source}: the gold query fails on ${db}; the example is left out of execution accuracy (${r.goldError})`);
          execution.goldFailed.push({ i, source: it.source, error: r.goldError });
          row.category = "gold_failed";
          row.error = r.goldError;
        } else {
          execution.scored++;
          row.execution = r.match;
          if (!r.match) {
            row.category = r.category;
            row.error = r.error;
          }
          const v = votes[i];
          if (v) row.candidates = await candidateRow(v, r.match, (greedy) => execMatch(db, it.gold, greedy, ex).then((x) => "match" in x && x.match));
        }
      } else if (o.dbDir || o.db || items.some((x) => x.db)) {
        execution.noDatabase.examples++;
        const key = it.dbId ?? "(none)";
        execution.noDatabase.byDatabase[key] = (execution.noDatabase.byDatabase[key] ?? 0) + 1;
      }
      if (row.category) errors[row.category] = (errors[row.category] ?? 0) + 1;
      rows.push(row);
      o.onProgress?.("score", i + 1, items.length);
    }
  } finally {
    await closeAll();
  }
  return { rows, errors, execution };
}

/** Execution match of one prediction (a non-query scores wrong without running). */
async function execMatch(
  db: string,
  gold: string,
  pred: string,
  o: { timeoutMs?: number; maxBytes?: number; keepDistinct?: boolean },
): Promise<{ match: boolean; category?: string; error?: string } | { goldError: string }> {
  const q = isSingleReadQuery(pred);
  const opts = { timeoutMs: o.timeoutMs ?? 5000, maxBytes: o.maxBytes, keepDistinct: o.keepDistinct };
  try {
    if (q.ok) return await executionMatch(db, gold, pred, opts);
    await executionMatch(db, gold, gold, opts); // a gold query that fails leaves the example out, whatever the prediction
    return { match: false, category: "not_a_query", error: q.why };
  } catch (err) {
    if (err instanceof GoldQueryError) return { goldError: err.message };
    throw err;
  }
}

/** An example's vote, with the greedy answer's execution match (run only when the vote changed the answer). */
async function candidateRow(
  v: CandidateReport,
  match: boolean,
  greedyMatch: (greedy: string) => Promise<boolean>,
): Promise<NonNullable<EvalRow["candidates"]>> {
  return {
    n: v.n,
    failed: v.failed,
    timedOut: v.timedOut,
    votes: v.votes.map((x) => x.votes),
    changed: v.changed,
    greedy: v.greedySql,
    greedyExecution: v.changed ? await greedyMatch(v.greedySql) : match,
  };
}

/** How execution was scored: the DISTINCT rule, and the examples left out and why. */
function executionLines(r: EvalReport): string[] {
  const x = r.execution;
  if (x.scored === 0 && x.noDatabase.examples === 0 && x.goldFailed.length === 0) return [];
  const out = [
    `                 on ${x.scored} of ${r.examples} examples; ` +
      (x.keepDistinct
        ? "DISTINCT kept as written (--keep-distinct, the official keep_distinct)"
        : "DISTINCT taken out of both queries (the official test-suite evaluator's default; --keep-distinct keeps it)"),
  ];
  if (x.noDatabase.examples) {
    const by = Object.entries(x.noDatabase.byDatabase)
      .map(([db, n]) => `${db} ${n}`)
      .join(", ");
    out.push(`skipped          ${x.noDatabase.examples} examples whose database file is missing (by db_id: ${by}; no <db_id>/<db_id>.sqlite under --db-dir)`);
  }
  if (x.goldFailed.length) {
    const first = x.goldFailed.slice(0, 3).map((g) => g.source);
    out.push(
      `skipped          ${x.goldFailed.length} examples whose gold query fails on its database (${first.join(", ")}${x.goldFailed.length > 3 ? ", ..." : ""})`,
    );
  }
  return out;
}

export function formatEvalReport(r: EvalReport): string {
  const pct = (x: number | null) => (x === null ? "   n/a" : `${(100 * x).toFixed(1).padStart(5)}%`);
  const lines = [
    `examples         ${r.examples}`,
    `exact match      ${pct(r.exactMatch)} (Spider's official exact-set match)`,
    `execution        ${pct(r.executionAccuracy)}${r.executionAccuracy === null && r.execution.noDatabase.examples === 0 && r.execution.goldFailed.length === 0 ? " (no databases: pass --db-dir <dir>/<db_id>/<db_id>.sqlite)" : ""}`,
    ...executionLines(r),
    `eval loss        ${r.evalLoss === null ? "n/a" : r.evalLoss.toFixed(4)}   token accuracy ${pct(r.tokenAccuracy)}`,
    `components       ${Object.entries(r.componentMatch)
      .map(([k, v]) => `${k} ${pct(v).trim()}`)
      .join(", ")}`,
    "",
    "hardness   count    exact   execution",
    ...Object.entries(r.byHardness).map(([h, v]) => `${h.padEnd(8)} ${String(v.count).padStart(7)}   ${pct(v.exact)}   ${pct(v.execution)}`),
  ];
  const errs = Object.entries(r.errors);
  if (errs.length) lines.push("", `errors           ${errs.map(([k, v]) => `${k} ${v}`).join(", ")}`);
  const c = r.candidates;
  if (c) {
    lines.push(
      "",
      `candidates       ${c.perQuestion} per question on ${c.examples} examples${c.noDatabase ? ` (${c.noDatabase} without a database: greedy)` : ""}; ` +
        `${c.failed} failed, ${c.timedOut} killed at the timeout; the vote changed ${c.changed} answers`,
      `execution        voted ${pct(c.executionAccuracy).trim()}, greedy ${pct(c.greedyExecutionAccuracy).trim()} (on the voted examples)`,
    );
  }
  lines.push("", `report           ${r.output.report}`, `per example      ${r.output.predictions}`);
  return lines.join("\n");
}
