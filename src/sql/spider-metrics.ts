// Spider benchmark metrics: hardness levels, exact-set match and per-component match.
//
// A port of Spider's official `evaluation.py` (`Evaluator.eval_hardness`, `eval_exact_match`,
// `eval_partial_match` and the `rebuild_sql_val` / `rebuild_sql_col` normalisation), on the structure
// `parseSql` (src/sql/sqlparse.ts, a port of `process_sql.get_sql`) produces. The verdicts equal the
// official script's on every case of test/fixtures/spider-official-verdicts.json (recorded by
// scripts/record-spider-official.py). Its rules, quirks included:
//  - a prediction that does not parse is scored as an empty query (so it never matches);
//  - values are dropped from conditions, except inside sub-queries in FROM, which are compared as
//    they are (values, DISTINCT and columns not mapped through foreign keys);
//  - FROM is compared as the sorted list of tables and sub-queries: ON conditions are not compared;
//  - DISTINCT is ignored; foreign-key columns are identified with their group's first column;
//  - conditions are read by position (cond units at even places, AND/OR at odd places), as the
//    reference slices them, also when a query had two conditions with no AND/OR between them.
import {
  emptySql,
  isSql,
  parseSql,
  Schema,
  SqlParseError,
  WHERE_OPS,
  type ColUnit,
  type Condition,
  type CondUnit,
  type SpiderSchemaEntry,
  type SpiderSql,
  type TableUnit,
  type ValUnit,
} from "./sqlparse.js";

export type Hardness = "easy" | "medium" | "hard" | "extra";
export const HARDNESS_LEVELS: readonly Hardness[] = ["easy", "medium", "hard", "extra"];

/** The official partial-match components (`eval_partial_match`), in its order. */
export const PARTIAL_TYPES = ["select", "select(no AGG)", "where", "where(no OP)", "group(no Having)", "group", "order", "and/or", "IUEN", "keywords"] as const;
export type PartialType = (typeof PARTIAL_TYPES)[number];

const LIKE = WHERE_OPS.indexOf("like");
const IN = WHERE_OPS.indexOf("in");

type CondItem = Condition[number];
/** Python's `conds[::2]` and `conds[1::2]`. */
const evens = <T>(xs: T[]): T[] => xs.filter((_, i) => i % 2 === 0);
const odds = <T>(xs: T[]): T[] => xs.filter((_, i) => i % 2 === 1);

/** Python's `x[i]` on a cond unit or on a connector string found at a cond unit's place. */
function item(x: CondItem, i: number): unknown {
  if (typeof x !== "string") return x[i];
  if (i >= x.length) throw new SqlParseError(`string index out of range: '${x}'[${i}]`);
  return x[i];
}

/** Python's `==` on the parsed structures (numbers and booleans compare as numbers). */
export function pyEquals(a: unknown, b: unknown): boolean {
  if ((typeof a === "number" || typeof a === "boolean") && (typeof b === "number" || typeof b === "boolean")) return Number(a) === Number(b);
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((x, i) => pyEquals(x, (b as unknown[])[i]));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => k in b && pyEquals((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Python's `unit in label` then `label.remove(unit)`, over a prediction: the multiset hits. */
function multisetHits(pred: unknown[], label: unknown[]): number {
  const rest = [...label];
  let hits = 0;
  for (const p of pred) {
    const i = rest.findIndex((l) => pyEquals(p, l));
    if (i >= 0) {
      hits++;
      rest.splice(i, 1);
    }
  }
  return hits;
}

/** One part's score: the multiset hits of the predicted units against the gold ones (each first mapped by `key`). */
function partScore<T>(pred: T[], label: T[], key: (u: T) => unknown = (u) => u): boolean {
  return fullScore(multisetHits(pred.map(key), label.map(key)), pred.length, label.length);
}

/** `get_scores(...)` F1 == 1: same totals, and every predicted unit found. */
const fullScore = (hits: number, predTotal: number, labelTotal: number): boolean => predTotal === labelTotal && hits === predTotal;

// ---------------------------------------------------------------------------------------------
// Hardness (on the gold query as parsed, before normalisation)

/** Sub-queries used as comparison values (FROM ON, WHERE, HAVING) and set operations. */
export function nestedSql(sql: SpiderSql): SpiderSql[] {
  const nested: SpiderSql[] = [];
  for (const cu of [...evens(sql.from.conds), ...evens(sql.where), ...evens(sql.having)]) {
    const v1 = item(cu, 3);
    const v2 = item(cu, 4);
    if (isSql(v1)) nested.push(v1);
    if (isSql(v2)) nested.push(v2);
  }
  for (const op of [sql.intersect, sql.except, sql.union]) if (op) nested.push(op);
  return nested;
}

/** WHERE, GROUP BY, ORDER BY, LIMIT, each join, each OR, each LIKE. */
export function countComponent1(sql: SpiderSql): number {
  let count = 0;
  if (sql.where.length > 0) count++;
  if (sql.groupBy.length > 0) count++;
  if (sql.orderBy.length > 0) count++;
  if (sql.limit !== null) count++;
  if (sql.from.table_units.length > 0) count += sql.from.table_units.length - 1;
  const ao = [...odds(sql.from.conds), ...odds(sql.where), ...odds(sql.having)];
  count += ao.filter((t) => t === "or").length;
  const cus = [...evens(sql.from.conds), ...evens(sql.where), ...evens(sql.having)];
  count += cus.filter((cu) => item(cu, 1) === LIKE).length;
  return count;
}

/** Nested queries and set operations. */
export function countComponent2(sql: SpiderSql): number {
  return nestedSql(sql).length;
}

/** `has_agg(unit)`: `unit[0] != 0` (for a cond unit that is its NOT flag; for a connector, its first letter). */
function hasAgg(unit: unknown[] | string): boolean {
  const first = unit[0];
  return first !== 0 && first !== false;
}

/** Aggregates > 1, select columns > 1, where conditions > 1, group-by columns > 1. */
export function countOthers(sql: SpiderSql): number {
  // (reference) WHERE counts its cond units' NOT flags and HAVING its raw list, connectors included
  let agg = sql.select[1].filter(hasAgg).length;
  agg += evens(sql.where).filter(hasAgg).length;
  agg += sql.groupBy.filter(hasAgg).length;
  if (sql.orderBy.length === 2) {
    const units = sql.orderBy[1];
    agg += [...units.map((u) => u[1]), ...units.flatMap((u) => (u[2] ? [u[2]] : []))].filter(hasAgg).length;
  }
  agg += sql.having.filter(hasAgg).length;
  let count = 0;
  if (agg > 1) count++;
  if (sql.select[1].length > 1) count++;
  if (sql.where.length > 1) count++; // the raw list, connectors included
  if (sql.groupBy.length > 1) count++;
  return count;
}

/** Spider's difficulty level of a (gold) query, by the rules of `Evaluator.eval_hardness`. */
export function hardness(sql: string | SpiderSql, schema?: SpiderSchemaEntry | Schema): Hardness {
  const parsed = typeof sql === "string" ? parseSql(sql, schema) : sql;
  const c1 = countComponent1(parsed);
  const c2 = countComponent2(parsed);
  const others = countOthers(parsed);
  if (c1 <= 1 && others === 0 && c2 === 0) return "easy";
  if ((others <= 2 && c1 <= 1 && c2 === 0) || (c1 <= 2 && others < 2 && c2 === 0)) return "medium";
  if ((others > 2 && c1 <= 2 && c2 === 0) || (c1 > 2 && c1 <= 3 && others <= 2 && c2 === 0) || (c1 <= 1 && others === 0 && c2 <= 1)) return "hard";
  return "extra";
}

// ---------------------------------------------------------------------------------------------
// Normalisation before matching (`rebuild_sql_val` + `rebuild_sql_col`)

/**
 * Foreign-key map of a schema (`build_foreign_key_map`): every column of a foreign-key group maps
 * to the group's lowest-numbered column, so `T1.id = T2.t1_id` and `T2.t1_id = T1.id` agree.
 */
export function foreignKeyMap(entry: SpiderSchemaEntry): Map<string, string> {
  const cols = entry.column_names_original.map(([ti, c]) => (ti >= 0 ? `__${entry.table_names_original[ti]!.toLowerCase()}.${c.toLowerCase()}__` : "__all__"));
  const groups: Set<number>[] = [];
  for (const [k1, k2] of entry.foreign_keys ?? []) {
    let group = groups.find((g) => g.has(k1) || g.has(k2));
    if (!group) groups.push((group = new Set()));
    group.add(k1).add(k2);
  }
  const map = new Map<string, string>();
  for (const g of groups) {
    const sorted = [...g].sort((a, b) => a - b);
    for (const idx of sorted) map.set(cols[idx]!, cols[sorted[0]!]!);
  }
  return map;
}

/** A cond unit where the reference unpacks one (`not_op, op_id, val_unit, val1, val2 = cond_unit`). */
function unpack(x: CondItem): CondUnit {
  if (typeof x === "string") throw new SqlParseError(`cannot unpack '${x}' as a condition`);
  return x;
}

/** `rebuild_sql_val`: condition values become null, sub-queries used as values are rebuilt too. */
function dropValues(sql: SpiderSql): void {
  const cond = (c: Condition): void => {
    c.forEach((x, i) => {
      if (i % 2 !== 0) return;
      const cu = unpack(x);
      for (const k of [3, 4] as const) {
        const v = cu[k];
        if (isSql(v)) dropValues(v);
        else cu[k] = null;
      }
    });
  };
  cond(sql.from.conds);
  cond(sql.having);
  cond(sql.where);
  // (reference) sub-queries in FROM keep their values
  for (const op of [sql.intersect, sql.except, sql.union]) if (op) dropValues(op);
}

/** `rebuild_sql_col`: foreign-key columns mapped to their group's key, DISTINCT flags dropped. */
function mapColumns(sql: SpiderSql, valid: Set<string>, kmap: Map<string, string>): void {
  const col = (cu: ColUnit | null): void => {
    if (!cu) return;
    const k = kmap.get(cu[1]);
    if (k !== undefined && valid.has(cu[1])) cu[1] = k;
    cu[2] = null;
  };
  const val = (vu: ValUnit): void => {
    col(vu[1]);
    col(vu[2]);
  };
  const cond = (c: Condition): void => c.forEach((x, i) => i % 2 === 0 && val(unpack(x)[2]));
  sql.select[0] = null;
  sql.select[1].forEach(([, vu]) => val(vu));
  // (reference) sub-queries in FROM and in conditions keep their columns and DISTINCT flags
  cond(sql.from.conds);
  cond(sql.where);
  sql.groupBy.forEach(col);
  if (sql.orderBy.length === 2) sql.orderBy[1].forEach(val);
  cond(sql.having);
  // (reference) set operations use the outer query's valid columns
  for (const op of [sql.intersect, sql.except, sql.union]) if (op) mapColumns(op, valid, kmap);
}

/** Columns of the tables in FROM (`build_valid_col_units`). */
function validColumns(tableUnits: TableUnit[], schema: Schema): Set<string> {
  const prefixes = new Set(tableUnits.flatMap((tu) => (tu[0] === "table_unit" ? [tu[1].slice(0, -2)] : [])));
  const valid = new Set<string>();
  for (const id of schema.idMap.values()) if (id.includes(".") && prefixes.has(id.slice(0, id.indexOf(".")))) valid.add(id);
  return valid;
}

function normalise(sql: SpiderSql, schema: Schema, kmap: Map<string, string>): SpiderSql {
  const copy = structuredClone(sql);
  const valid = validColumns(copy.from.table_units, schema);
  dropValues(copy);
  mapColumns(copy, valid, kmap);
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Matching (`eval_partial_match` + `eval_exact_match`)

function keywords(sql: SpiderSql): string[] {
  const res = new Set<string>();
  if (sql.where.length > 0) res.add("where");
  if (sql.groupBy.length > 0) res.add("group");
  if (sql.having.length > 0) res.add("having");
  if (sql.orderBy.length > 0) res.add(sql.orderBy[0]!).add("order");
  if (sql.limit !== null) res.add("limit");
  if (sql.except) res.add("except");
  if (sql.union) res.add("union");
  if (sql.intersect) res.add("intersect");
  const ao = [...odds(sql.from.conds), ...odds(sql.where), ...odds(sql.having)];
  if (ao.includes("or")) res.add("or");
  const cus = [...evens(sql.from.conds), ...evens(sql.where), ...evens(sql.having)];
  if (cus.some((cu) => Boolean(item(cu, 0)))) res.add("not");
  if (cus.some((cu) => item(cu, 1) === IN)) res.add("in");
  if (cus.some((cu) => item(cu, 1) === LIKE)) res.add("like");
  return [...res];
}

/** Python's `set(a) == set(b)` on connectors (and on cond units misplaced among them). */
function sameSet(a: unknown[], b: unknown[]): boolean {
  const inB = (x: unknown) => b.some((y) => pyEquals(x, y));
  const inA = (y: unknown) => a.some((x) => pyEquals(x, y));
  return a.every(inB) && b.every(inA);
}

function partialMatch(pred: SpiderSql, label: SpiderSql): Record<PartialType, boolean> {
  // eval_sel
  const ps = pred.select[1];
  const ls = label.select[1];
  // eval_where
  const pw = evens(pred.where).map(unpack);
  const lw = evens(label.where).map(unpack);
  // eval_group: column names without their table
  const colName = (c: ColUnit): string => (c[1].includes(".") ? c[1].split(".")[1]! : c[1]);
  const pg = pred.groupBy.map(colName);
  const lg = label.groupBy.map(colName);
  // eval_having
  const pHas = pred.groupBy.length > 0;
  const lHas = label.groupBy.length > 0;
  const having =
    pHas === lHas &&
    (!lHas ||
      (pyEquals(
        pred.groupBy.map((c) => c[1]),
        label.groupBy.map((c) => c[1]),
      ) &&
        pyEquals(pred.having, label.having)));
  // eval_order
  const order =
    pred.orderBy.length > 0 === label.orderBy.length > 0 &&
    (label.orderBy.length === 0 || (pyEquals(pred.orderBy, label.orderBy) && (pred.limit === null) === (label.limit === null)));
  // eval_IUEN
  let lt = 0;
  let pt = 0;
  let cnt = 0;
  for (const op of ["intersect", "except", "union"] as const) {
    const p = pred[op];
    const l = label[op];
    if (p) pt++;
    if (l) lt++;
    if (p && l && exactOf(p, l)) cnt++;
  }
  // eval_keywords
  const pk = keywords(pred);
  const lk = keywords(label);
  return {
    select: partScore(ps, ls),
    "select(no AGG)": partScore(ps, ls, (u) => u[1]),
    where: partScore(pw, lw),
    "where(no OP)": partScore(pw, lw, (u) => u[2]),
    "group(no Having)": partScore(pg, lg),
    group: having,
    order,
    "and/or": sameSet(odds(pred.where), odds(label.where)),
    IUEN: fullScore(cnt, pt, lt),
    keywords: partScore(pk, lk),
  };
}

/** FROM as the sorted table lists (the final check of `eval_exact_match`). */
function sameTables(pred: SpiderSql, label: SpiderSql): boolean {
  if (label.from.table_units.length === 0) return true;
  const p = pred.from.table_units;
  const l = label.from.table_units;
  return p.length === l.length && multisetHits(p, l) === p.length;
}

/** `eval_exact_match` on normalised queries. */
function exactOf(pred: SpiderSql, label: SpiderSql): boolean {
  return Object.values(partialMatch(pred, label)).every(Boolean) && sameTables(pred, label);
}

/** What Spider's official evaluator says of one prediction. */
export interface SpiderVerdict {
  /** Exact-set match (`eval_exact_match`): the number Spider publishes as exact match. */
  exact: boolean;
  /** Each partial-match component whose F1 is 1 (a component both queries lack counts as matched). */
  partial: Record<PartialType, boolean>;
  /** FROM as table lists, the check exact match adds to the components (ON conditions not compared). */
  from: boolean;
  /** Whether the prediction parsed; one that does not is scored as an empty query. */
  parsed: boolean;
}

/**
 * Scores a prediction against a gold query exactly as Spider's `evaluation.py` does (values
 * ignored outside FROM sub-queries, DISTINCT ignored, aliases resolved, foreign keys identified
 * when the schema lists them). The gold query must parse (it throws `SqlParseError` otherwise, where
 * the reference stops). Where the reference itself would raise while comparing (conditions with no
 * AND/OR between them, in rare shapes), the prediction does not match.
 */
export function spiderVerdict(gold: string | SpiderSql, pred: string | SpiderSql, schema?: SpiderSchemaEntry): SpiderVerdict {
  const s = new Schema(schema);
  const kmap = schema ? foreignKeyMap(schema) : new Map<string, string>();
  const label = normalise(typeof gold === "string" ? parseSql(gold, s) : gold, s, kmap);
  let p: SpiderSql;
  let parsed = true;
  try {
    p = typeof pred === "string" ? parseSql(pred, s) : pred;
  } catch (e) {
    if (!(e instanceof SqlParseError)) throw e;
    p = emptySql();
    parsed = false;
  }
  try {
    const np = normalise(p, s, kmap);
    const partial = partialMatch(np, label);
    const from = sameTables(np, label);
    return { exact: Object.values(partial).every(Boolean) && from, partial, from, parsed };
  } catch (e) {
    if (!(e instanceof SqlParseError)) throw e;
    const partial = Object.fromEntries(PARTIAL_TYPES.map((t) => [t, false])) as Record<PartialType, boolean>;
    return { exact: false, partial, from: false, parsed };
  }
}

/** Which parts of a prediction match the gold query: a summary of the official components. */
export interface ComponentMatch {
  /** SELECT items as a multiset, with aggregates (official `select`; DISTINCT ignored). */
  select: boolean;
  /** FROM tables and sub-queries as a multiset; ON conditions are not compared (official). */
  from: boolean;
  /** WHERE conditions as a multiset, values ignored, and the same AND/OR set (official `where` and `and/or`). */
  where: boolean;
  /** GROUP BY columns and, with them, HAVING (official `group(no Having)` and `group`). */
  groupBy: boolean;
  /** ORDER BY items and direction, with LIMIT on both or neither (official `order`). */
  orderBy: boolean;
  /** LIMIT present on both or neither (not an official component; the official keywords include it). */
  limit: boolean;
  /** INTERSECT / UNION / EXCEPT: the same operations, each operand an exact match (official `IUEN`). */
  iuen: boolean;
  /** The same SQL keywords (official `keywords`). */
  keywords: boolean;
  /** Spider's official exact-set match. */
  all: boolean;
}

/**
 * Per-component match of a predicted query against the gold query, and the official exact match
 * (`all`). Unlike the official per-component F1, a prediction that does not parse matches no
 * component here (the official script counts the components both lack, such as GROUP BY, as
 * matched; `spiderVerdict` has those). The gold query must parse.
 */
export function componentMatch(gold: string | SpiderSql, pred: string | SpiderSql, schema?: SpiderSchemaEntry): ComponentMatch {
  const v = spiderVerdict(gold, pred, schema);
  if (!v.parsed) return { select: false, from: false, where: false, groupBy: false, orderBy: false, limit: false, iuen: false, keywords: false, all: false };
  const s = new Schema(schema);
  const g = typeof gold === "string" ? parseSql(gold, s) : gold;
  const p = typeof pred === "string" ? parseSql(pred, s) : pred;
  const o = v.partial;
  return {
    select: o.select,
    from: v.from,
    where: o.where && o["and/or"],
    groupBy: o["group(no Having)"] && o.group,
    orderBy: o.order,
    limit: (p.limit === null) === (g.limit === null),
    iuen: o.IUEN,
    keywords: o.keywords,
    all: v.exact,
  };
}

/** Spider's official exact-set match (`evaluation.py`'s `eval_exact_match`). */
export function exactMatch(gold: string | SpiderSql, pred: string | SpiderSql, schema?: SpiderSchemaEntry): boolean {
  return spiderVerdict(gold, pred, schema).exact;
}
