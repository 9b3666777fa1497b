// Execution accuracy for Spider-style evaluation: run the gold and the predicted query on the
// example's SQLite database and compare the results (as the test-suite evaluation does: row
// multisets, row order only when the gold query has a top-level ORDER BY, columns in any order,
// and, by default, DISTINCT taken out of both queries, as exec_eval.py does unless keep_distinct).
// Queries run through query-process.ts: one SELECT/WITH only, read-only, in a killable child.
import { createRequire } from "node:module";
import { runReadOnly, type RunOptions } from "./query-process.js";
import { hasOrderBy, removeDistinct } from "./sql-text.js";

// ---------------------------------------------------------------------------------------------
// Comparing results

/** A value's identity for comparison: numbers numerically (1 == 1.0), strings exactly, null == null. */
function valueKey(v: unknown): string {
  if (v === null || v === undefined) return "z";
  if (typeof v === "number") return `n${Object.is(v, -0) ? 0 : v}`;
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? `n${Number(v)}` : `n${v}`;
  if (typeof v === "string") return `s${v}`;
  if (v instanceof Uint8Array) return `b${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex")}`;
  if (typeof v === "boolean") return `n${v ? 1 : 0}`;
  return `o${JSON.stringify(v)}`;
}

const rowKey = (keys: readonly string[]) => JSON.stringify(keys);

function counts(items: Iterable<string>): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of items) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

function sameCounts(a: Map<string, number>, b: Map<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, n] of a) if (b.get(k) !== n) return false;
  return true;
}

/** At most this many column permutations are tried beyond the one induced by column contents (6!). */
const MAX_PERMUTATIONS = 720;

/**
 * Whether two results are the same: rows as multisets (duplicates count), in order only when
 * `ordered`; columns in any order (some permutation of pred's columns must make the rows equal).
 */
export function sameResult(gold: readonly (readonly unknown[])[], pred: readonly (readonly unknown[])[], opts: { ordered: boolean }): boolean {
  if (gold.length === 0 && pred.length === 0) return true;
  if (gold.length !== pred.length) return false;
  const width = gold[0].length;
  if (gold.some((r) => r.length !== width) || pred.some((r) => r.length !== width)) return false;
  const g = gold.map((r) => r.map(valueKey));
  const p = pred.map((r) => r.map(valueKey));

  // quick rejection: each row's values, column order ignored
  const sortedRow = (r: string[]) => rowKey([...r].sort());
  if (opts.ordered) {
    for (let i = 0; i < g.length; i++) if (sortedRow(g[i]) !== sortedRow(p[i])) return false;
  } else if (!sameCounts(counts(g.map(sortedRow)), counts(p.map(sortedRow)))) {
    return false;
  }

  const goldRows = g.map(rowKey);
  const goldCounts = opts.ordered ? undefined : counts(goldRows);
  const matches = (perm: readonly number[]): boolean => {
    const rows = p.map((r) => rowKey(perm.map((j) => r[j])));
    if (opts.ordered) return rows.every((r, i) => r === goldRows[i]);
    return sameCounts(goldCounts!, counts(rows));
  };

  // a column of pred can stand for a column of gold only if they hold the same multiset of values
  const colSig = (rows: string[][], j: number) => rowKey(rows.map((r) => r[j]).sort());
  const gSig = Array.from({ length: width }, (_, j) => colSig(g, j));
  const pSig = Array.from({ length: width }, (_, j) => colSig(p, j));
  const candidates = gSig.map((s) => pSig.flatMap((t, j) => (t === s ? [j] : [])));
  if (candidates.some((c) => c.length === 0)) return false;

  // first the permutation induced by the column multisets (first unused match), like test-suite eval
  const used = new Set<number>();
  const induced: number[] = [];
  for (const c of candidates) {
    const j = c.find((x) => !used.has(x));
    if (j === undefined) return false;
    used.add(j);
    induced.push(j);
  }
  if (matches(induced)) return true;

  // then the other permutations that respect the column multisets, at most MAX_PERMUTATIONS
  let budget = MAX_PERMUTATIONS;
  const perm: number[] = [];
  const taken = new Set<number>();
  const search = (i: number): boolean => {
    if (i === width) {
      budget--;
      return matches(perm);
    }
    for (const j of candidates[i]) {
      if (budget <= 0) return false;
      if (taken.has(j)) continue;
      taken.add(j);
      perm.push(j);
      const found = search(i + 1);
      perm.pop();
      taken.delete(j);
      if (found) return true;
    }
    return false;
  };
  return search(0);
}

// ---------------------------------------------------------------------------------------------
// Execution match

export type ExecCategory = "syntax" | "no_such_table" | "no_such_column" | "timeout" | "not_a_query" | "too_large" | "empty" | "error" | "wrong";
export interface ExecMatch {
  match: boolean;
  category?: ExecCategory;
  error?: string;
}

/** A gold query that fails on its database: the example cannot be scored (it is skipped, not counted wrong). */
export class GoldQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GoldQueryError";
  }
}

export interface ExecMatchOptions extends RunOptions {
  /** compare rows in order (default: when the gold query has a top-level ORDER BY) */
  ordered?: boolean;
  /**
   * run the queries as written; by default every DISTINCT is taken out of both first, as the
   * official test-suite evaluator does unless its --keep_distinct is given
   */
  keepDistinct?: boolean;
}

/**
 * Runs the gold and the predicted query on the database and compares the results (rows ordered
 * only when the gold query has a top-level ORDER BY, unless `ordered` is given; DISTINCT taken out
 * of both unless `keepDistinct`). A gold query that fails throws a GoldQueryError; a prediction that
 * fails or differs is reported by category.
 */
export async function executionMatch(dbFile: string, goldSql: string, predSql: string, opts: ExecMatchOptions = {}): Promise<ExecMatch> {
  const goldRun = opts.keepDistinct ? goldSql : removeDistinct(goldSql);
  const predRun = opts.keepDistinct ? predSql : removeDistinct(predSql);
  const gold = await runReadOnly(dbFile, goldRun, opts);
  if (!gold.ok) throw new GoldQueryError(`gold query failed on ${dbFile} (${gold.category}: ${gold.error}): ${goldSql}`);
  const pred = await runReadOnly(dbFile, predRun, opts);
  if (!pred.ok) return { match: false, category: pred.category, error: pred.error };
  if (pred.rows.length === 0 && gold.rows.length > 0) return { match: false, category: "empty" };
  const ordered = opts.ordered ?? hasOrderBy(goldRun);
  return sameResult(gold.rows, pred.rows, { ordered }) ? { match: true } : { match: false, category: "wrong" };
}

// ---------------------------------------------------------------------------------------------
// Schema text

type SqliteCtor = typeof import("better-sqlite3");

function loadSqlite(): SqliteCtor {
  try {
    return createRequire(import.meta.url)("better-sqlite3") as SqliteCtor;
  } catch (err) {
    throw new Error(
      `reading a SQLite schema needs better-sqlite3's native module, which did not load (${(err as Error).message.split("\n")[0]}); ` +
        "approve and build it with: npm install-scripts approve better-sqlite3 && npm rebuild better-sqlite3",
      { cause: err },
    );
  }
}

interface ColumnInfo {
  cid: number;
  name: string;
  type: string;
  pk: number;
}
interface ForeignKeyInfo {
  id: number;
  seq: number;
  table: string;
  from: string;
  to: string | null;
}

/**
 * The database's tables as CREATE TABLE statements in the style of `spiderSchemas()` (tables
 * sorted by name, columns in declared order with their declared types, PRIMARY KEY on key columns,
 * FOREIGN KEY clauses in declared order), read through PRAGMA table_info / foreign_key_list.
 */
export function schemaFromSqlite(dbFile: string): string {
  const Database = loadSqlite();
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    db.pragma("query_only = ON");
    const tables = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").pluck().all() as string[]
    ).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const columns = (t: string) => (db.prepare("SELECT cid, name, type, pk FROM pragma_table_info(?)").all(t) as ColumnInfo[]).sort((a, b) => a.cid - b.cid);
    const stmts = tables.map((table) => {
      const lines = columns(table).map((c) => `  ${c.name}${c.type ? ` ${c.type}` : ""}${c.pk > 0 ? " PRIMARY KEY" : ""}`);
      const fks = db.prepare('SELECT id, seq, "table", "from", "to" FROM pragma_foreign_key_list(?)').all(table) as ForeignKeyInfo[];
      // SQLite numbers foreign keys from the last declared one: highest id first is declared order
      const ids = [...new Set(fks.map((f) => f.id))].sort((a, b) => b - a);
      for (const id of ids) {
        const parts = fks.filter((f) => f.id === id).sort((a, b) => a.seq - b.seq);
        const parent = parts[0].table;
        let to = parts.map((f) => f.to);
        if (to.some((c) => c === null)) {
          // REFERENCES parent without columns: the parent's primary key
          const pk = columns(parent)
            .filter((c) => c.pk > 0)
            .sort((a, b) => a.pk - b.pk)
            .map((c) => c.name);
          to = pk.length === parts.length ? pk : to.map((c) => c ?? "");
        }
        lines.push(`  FOREIGN KEY (${parts.map((f) => f.from).join(", ")}) REFERENCES ${parent}(${to.join(", ")})`);
      }
      return `CREATE TABLE ${table} (\n${lines.join(",\n")}\n);`;
    });
    return stmts.join("\n");
  } finally {
    db.close();
  }
}
