// Spider benchmark metrics: hardness levels, exact-set match and per-component match.
//
// A TypeScript port of the rules in Spider's official `evaluation.py` (`Evaluator.eval_hardness`,
// `eval_exact_match`, `eval_partial_match` and the `rebuild_sql_*` normalisation), working on
// the structure produced by `parseSql` (src/sqlparse.ts, a port of `process_sql.get_sql`).
// Quirks of the reference that change the published numbers are kept and marked "(reference)".
import {
  isCondUnit,
  isSql,
  parseSql,
  Schema,
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

const LIKE = WHERE_OPS.indexOf("like");
const IN = WHERE_OPS.indexOf("in");

const condUnits = (c: Condition): CondUnit[] => c.filter(isCondUnit);
const connectors = (c: Condition): string[] => c.filter((x): x is "and" | "or" => typeof x === "string");

/** Gold queries are parsed like the reference (leftover tokens ignored), predictions strictly. */
function toSql(sql: string | SpiderSql, schema?: SpiderSchemaEntry | Schema, gold = true): SpiderSql {
  return typeof sql === "string" ? parseSql(sql, schema, { allowTrailing: gold }) : sql;
}

// ---------------------------------------------------------------------------------------------
// Hardness

/** Sub-queries used as comparison values (FROM ON, WHERE, HAVING) and set operations. */
export function nestedSql(sql: SpiderSql): SpiderSql[] {
  const nested: SpiderSql[] = [];
  for (const cu of [...condUnits(sql.from.conds), ...condUnits(sql.where), ...condUnits(sql.having)]) {
    if (isSql(cu[3])) nested.push(cu[3]);
    if (isSql(cu[4])) nested.push(cu[4]);
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
  const ao = [...connectors(sql.from.conds), ...connectors(sql.where), ...connectors(sql.having)];
  count += ao.filter((t) => t === "or").length;
  const cus = [...condUnits(sql.from.conds), ...condUnits(sql.where), ...condUnits(sql.having)];
  count += cus.filter((cu) => cu[1] === LIKE).length;
  return count;
}

/** Nested queries and set operations. */
export function countComponent2(sql: SpiderSql): number {
  return nestedSql(sql).length;
}

/** Aggregates > 1, select columns > 1, where conditions > 1, group-by columns > 1. */
export function countOthers(sql: SpiderSql): number {
  // `has_agg(unit)` is `unit[0] != 0` (reference): for select items and col_units that is the
  // aggregate; for WHERE cond_units it is the NOT flag, and HAVING is counted as the raw list,
  // so each of its `and`/`or` connectors counts as one and each cond_unit counts if negated.
  const hasAgg = (unit: unknown): boolean => {
    const first = Array.isArray(unit) ? unit[0] : typeof unit === "string" ? unit[0] : undefined;
    return first !== 0 && first !== false && first !== undefined;
  };
  let agg = 0;
  agg += sql.select[1].filter(hasAgg).length;
  agg += condUnits(sql.where).filter(hasAgg).length;
  agg += sql.groupBy.filter(hasAgg).length;
  const ob = sql.orderBy;
  if (ob.length === 2) {
    const units = ob[1];
    agg += [...units.map((u) => u[1]), ...units.map((u) => u[2]).filter((u) => u !== null)].filter(hasAgg).length;
  }
  agg += sql.having.filter(hasAgg).length;
  let count = 0;
  if (agg > 1) count++;
  if (sql.select[1].length > 1) count++;
  if (sql.where.length > 1) count++; // the raw list, connectors included: >= 2 conditions
  if (sql.groupBy.length > 1) count++;
  return count;
}

/** Spider's difficulty level of a (gold) query, by the rules of `Evaluator.eval_hardness`. */
export function hardness(sql: string | SpiderSql, schema?: SpiderSchemaEntry | Schema): Hardness {
  const parsed = toSql(sql, schema);
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

/** Values (numbers, strings, column operands) become null; sub-queries are normalised too. */
function dropValues(sql: SpiderSql): void {
  const cond = (c: Condition): void => {
    c.forEach((cu, i) => {
      if (!isCondUnit(cu)) return;
      for (const k of [3, 4] as const) {
        const v = cu[k];
        if (isSql(v)) dropValues(v);
        else cu[k] = null;
      }
      c[i] = cu;
    });
  };
  cond(sql.from.conds);
  cond(sql.where);
  cond(sql.having);
  // Spider keeps values inside FROM sub-queries; they are ignored here too, for consistency.
  for (const tu of sql.from.table_units) if (tu[0] === "sql") dropValues(tu[1]);
  for (const op of [sql.intersect, sql.except, sql.union]) if (op) dropValues(op);
}

/** Foreign-key columns mapped to their group's key and DISTINCT flags dropped (reference). */
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
  const cond = (c: Condition): void => condUnits(c).forEach((cu) => val(cu[2]));
  sql.select[0] = null;
  sql.select[1].forEach(([, vu]) => val(vu));
  cond(sql.from.conds);
  cond(sql.where);
  cond(sql.having);
  sql.groupBy.forEach(col);
  const ob = sql.orderBy;
  if (ob.length === 2) ob[1].forEach(val);
  // Set operations use the outer query's valid columns (reference).
  for (const op of [sql.intersect, sql.except, sql.union]) if (op) mapColumns(op, valid, kmap);
}

/** Columns of the tables in FROM (`build_valid_col_units`). */
function validColumns(tableUnits: TableUnit[], schema: Schema): Set<string> {
  const valid = new Set<string>();
  for (const tu of tableUnits) {
    if (tu[0] !== "table_unit") continue;
    const table = tu[1].slice(2, -2);
    for (const c of schema.tables.get(table) ?? []) valid.add(`__${table}.${c}__`);
  }
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

/** Canonical text of any part of the structure, for equality tests. */
const key = (x: unknown): string => JSON.stringify(x);

/** Multiset intersection size of two lists of canonical keys. */
function multisetHits(pred: string[], label: string[]): number {
  const rest = [...label];
  let hits = 0;
  for (const p of pred) {
    const i = rest.indexOf(p);
    if (i >= 0) {
      hits++;
      rest.splice(i, 1);
    }
  }
  return hits;
}

/** `get_scores(...) == 1`: same number of units and every predicted unit found. */
const fullScore = (hits: number, predTotal: number, labelTotal: number): boolean => predTotal === labelTotal && hits === predTotal;

function setEquals(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

function keywords(sql: SpiderSql): Set<string> {
  const res = new Set<string>();
  if (sql.where.length > 0) res.add("where");
  if (sql.groupBy.length > 0) res.add("group");
  if (sql.having.length > 0) res.add("having");
  const ob = sql.orderBy;
  if (ob.length === 2) res.add(ob[0]).add("order");
  if (sql.limit !== null) res.add("limit");
  if (sql.except) res.add("except");
  if (sql.union) res.add("union");
  if (sql.intersect) res.add("intersect");
  const all: Condition = [...sql.from.conds, ...sql.where, ...sql.having];
  if (connectors(all).includes("or")) res.add("or");
  const cus = condUnits(all);
  if (cus.some((cu) => cu[0])) res.add("not");
  if (cus.some((cu) => cu[1] === IN)) res.add("in");
  if (cus.some((cu) => cu[1] === LIKE)) res.add("like");
  return res;
}

/** Which parts of a prediction match the gold query (Spider's partial exact-set match). */
export interface ComponentMatch {
  /** SELECT items as a multiset (with aggregates; DISTINCT ignored). */
  select: boolean;
  /** FROM: the multiset of tables/sub-queries and the first join condition's column. */
  from: boolean;
  /** WHERE conditions as a multiset (values ignored) and the same AND/OR connectors. */
  where: boolean;
  /** GROUP BY columns (as a multiset of column names) and, with them, HAVING. */
  groupBy: boolean;
  /** ORDER BY items and direction, and LIMIT present on both or neither. */
  orderBy: boolean;
  /** LIMIT present on both or neither (the value is ignored, like all values). */
  limit: boolean;
  /** INTERSECT / UNION / EXCEPT: same operations, each operand an exact match. */
  iuen: boolean;
  /** Same SQL keywords (where, group, having, order, asc/desc, limit, set ops, or, not, in, like). */
  keywords: boolean;
  /** Every component matches: Spider's exact-set match. */
  all: boolean;
}

function matchSql(pred: SpiderSql, label: SpiderSql): ComponentMatch {
  // select (eval_sel)
  const ps = pred.select[1].map(key);
  const ls = label.select[1].map(key);
  const select = fullScore(multisetHits(ps, ls), ps.length, ls.length);

  // where (eval_where) and and/or (eval_and_or)
  const pw = condUnits(pred.where).map(key);
  const lw = condUnits(label.where).map(key);
  const where = fullScore(multisetHits(pw, lw), pw.length, lw.length) && setEquals(new Set(connectors(pred.where)), new Set(connectors(label.where)));

  // group (eval_group: column names without their table) and having (eval_having)
  const colName = (c: ColUnit): string => (c[1].includes(".") ? c[1].split(".")[1]! : c[1]);
  const pg = pred.groupBy.map(colName);
  const lg = label.groupBy.map(colName);
  const groupNoHaving = fullScore(multisetHits(pg, lg), pg.length, lg.length);
  const pHas = pred.groupBy.length > 0;
  const lHas = label.groupBy.length > 0;
  const having =
    pHas === lHas && (!lHas || (key(pred.groupBy.map((c) => c[1])) === key(label.groupBy.map((c) => c[1])) && key(pred.having) === key(label.having)));
  const groupBy = groupNoHaving && having;

  // order (eval_order)
  const limit = (pred.limit === null) === (label.limit === null);
  const orderBy = pred.orderBy.length > 0 === label.orderBy.length > 0 && (label.orderBy.length === 0 || (key(pred.orderBy) === key(label.orderBy) && limit));

  // set operations (eval_IUEN)
  const iuen = (["intersect", "except", "union"] as const).every((op) => {
    const p = pred[op];
    const l = label[op];
    if (!p || !l) return !p && !l;
    return matchSql(p, l).all;
  });

  const kw = setEquals(keywords(pred), keywords(label));

  // from (the table check at the end of eval_exact_match)
  let from = true;
  if (label.from.table_units.length > 0) {
    const tables = (s: SpiderSql): string[] => s.from.table_units.map(key).sort();
    const firstCond = (s: SpiderSql): string => {
      const cu = s.from.conds[0];
      return cu && isCondUnit(cu) ? key([cu[2][1], cu[3]]) : "";
    };
    from = key(tables(pred)) === key(tables(label)) && (label.from.table_units.length > 1 ? firstCond(pred) === firstCond(label) : true);
  }

  const all = select && where && groupBy && orderBy && limit && iuen && kw && from;
  return { select, from, where, groupBy, orderBy, limit, iuen, keywords: kw, all };
}

/**
 * Per-component match of a predicted query against the gold one, after Spider's normalisation:
 * case, whitespace and table aliases do not matter (columns are resolved to their tables), values
 * are ignored, DISTINCT is ignored, and foreign-key columns are identified when the schema lists
 * foreign keys. A prediction that does not parse matches nothing (like the reference, it is
 * scored as an empty query). The gold query must parse.
 */
export function componentMatch(gold: string | SpiderSql, pred: string | SpiderSql, schema?: SpiderSchemaEntry): ComponentMatch {
  const s = new Schema(schema);
  const kmap = schema ? foreignKeyMap(schema) : new Map<string, string>();
  const label = toSql(gold, s);
  let p: SpiderSql;
  try {
    p = toSql(pred, s, false);
  } catch {
    // a prediction that does not parse matches nothing (compared as an empty query, Spider's script
    // scores the components it lacks, such as GROUP BY or LIMIT, as matched when the gold lacks them too)
    return { select: false, from: false, where: false, groupBy: false, orderBy: false, limit: false, iuen: false, keywords: false, all: false };
  }
  return matchSql(normalise(p, s, kmap), normalise(label, s, kmap));
}

/** Spider's exact-set match (values ignored): every component of `componentMatch` matches. */
export function exactMatch(gold: string | SpiderSql, pred: string | SpiderSql, schema?: SpiderSchemaEntry): boolean {
  return componentMatch(gold, pred, schema).all;
}
