// Parser for the SQL dialect of the Spider text-to-SQL benchmark: a port of Spider's official
// `process_sql.py` (`get_sql`), step for step, so that hardness levels and exact-set match computed
// from its output equal the official `evaluation.py` verdicts, quirks included:
//  - the text is split by `process_sql.tokenize` (src/sql/spider-tokenize.ts, nltk's rules): so
//    `a="x"`, `a<>b`, `a==b` and `1,2` fail to parse, while `> =` reads as `>=`;
//  - every `x AS y` of the whole query goes into one alias map up front (a column alias that is
//    also a table name fails the query);
//  - FROM takes `t1 JOIN t2 ON ...`, also `t1 t2` and a JOIN without ON, but not `t1 , t2`;
//  - a comparison value that is neither a string, a number nor a sub-query is read as a column
//    after scanning to the next `,` `)` `and`, clause or join keyword (a trailing `OR ...` is
//    swallowed); conditions without AND/OR between them are kept side by side;
//  - only the last ORDER BY direction is kept; LIMIT takes an integer only; a set operation nests
//    to the right; tokens left after a complete query are ignored.
// Any error the reference would raise (an assertion, a missing key, an index past the end, a
// number that does not convert) throws `SqlParseError` here.
//
// With a tables.json entry the names resolve as in the reference. Without one (our extension, for
// datasets without tables.json) any table name is taken as written, an unqualified column goes to the
// only FROM table or stays a bare name, and SQL keywords still cannot name tables.
//
// Shapes (the reference's tuples as arrays):
//   col_unit:  [agg_id, col_id, isDistinct]
//   val_unit:  [unit_op, col_unit1, col_unit2 | null]
//   table_unit: ["table_unit", table_id] | ["sql", sql]
//   cond_unit: [not_op, op_id, val_unit, val1, val2]
//   condition: [cond_unit1, "and" | "or", cond_unit2, ...]
//   sql: { select: [isDistinct, [agg_id, val_unit][]], from: { table_units, conds }, where,
//          groupBy: col_unit[], having, orderBy: [] | ["asc" | "desc", val_unit[]],
//          limit: number | null, intersect, union, except }
// Column ids are "__table.column__" (lower case), "__all__" for `*`; table ids are "__table__".
import { spiderTokenize, SpiderTokenizeError } from "./spider-tokenize.js";

export const CLAUSE_KEYWORDS = ["select", "from", "where", "group", "order", "limit", "intersect", "union", "except"];
export const JOIN_KEYWORDS = ["join", "on", "as"];
export const WHERE_OPS = ["not", "between", "=", ">", "<", ">=", "<=", "!=", "in", "like", "is", "exists"];
export const UNIT_OPS = ["none", "-", "+", "*", "/"];
export const AGG_OPS = ["none", "max", "min", "count", "sum", "avg"];
export const COND_OPS = ["and", "or"];
export const SQL_OPS = ["intersect", "union", "except"] as const;
export const ORDER_OPS = ["desc", "asc"];

/** `[agg_id, col_id, isDistinct]`; isDistinct is null once DISTINCT is disabled for matching. */
export type ColUnit = [agg: number, col: string, distinct: boolean | null];
/** `[unit_op, col_unit1, col_unit2]`: a column, or two columns joined by + - * /. */
export type ValUnit = [op: number, col1: ColUnit, col2: ColUnit | null];
/** A comparison value: a number, a quoted string (quotes kept), a sub-query, a column, or null. */
export type SqlValue = number | string | SpiderSql | ColUnit | null;
export type CondUnit = [not: boolean, op: number, val: ValUnit, val1: SqlValue, val2: SqlValue];
/** Cond units and connectors; normally alternating, but side by side where the query had no AND/OR. */
export type Condition = (CondUnit | "and" | "or")[];
export type TableUnit = ["table_unit", string] | ["sql", SpiderSql];

export interface SpiderSql {
  select: [distinct: boolean | null, units: [agg: number, val: ValUnit][]];
  from: { table_units: TableUnit[]; conds: Condition };
  where: Condition;
  groupBy: ColUnit[];
  having: Condition;
  orderBy: [] | [dir: "asc" | "desc", units: ValUnit[]];
  limit: number | null;
  intersect: SpiderSql | null;
  union: SpiderSql | null;
  except: SpiderSql | null;
}

/** One entry of Spider's tables.json (only the fields used here). */
export interface SpiderSchemaEntry {
  db_id?: string;
  table_names_original: string[];
  column_names_original: [number, string][];
  foreign_keys?: [number, number][];
}

export class SqlParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SqlParseError";
  }
}

/** An empty SQL, used by the reference evaluator when a prediction does not parse. */
export function emptySql(): SpiderSql {
  return {
    select: [false, []],
    from: { table_units: [], conds: [] },
    where: [],
    groupBy: [],
    having: [],
    orderBy: [],
    limit: null,
    intersect: null,
    union: null,
    except: null,
  };
}

export function isSql(v: unknown): v is SpiderSql {
  return typeof v === "object" && v !== null && !Array.isArray(v) && "select" in v;
}

export function isCondUnit(v: CondUnit | "and" | "or"): v is CondUnit {
  return typeof v !== "string";
}

/** The tokens of a query as Spider's parser sees them (`process_sql.tokenize`). */
export function tokenize(query: string): string[] {
  try {
    return spiderTokenize(query);
  } catch (e) {
    if (e instanceof SpiderTokenizeError) throw new SqlParseError(e.message);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Python semantics the reference relies on

/** Python's float() on a lower-case token: digits with `_` between them, exponent, inf/nan. */
export function pyFloat(tok: string): number | undefined {
  const d = "\\d(?:_?\\d)*";
  if (new RegExp(`^[+-]?(?:${d}(?:\\.(?:${d})?)?|\\.${d})(?:e[+-]?${d})?$`).test(tok)) return Number(tok.replace(/_/g, ""));
  const m = /^([+-]?)(inf|infinity|nan)$/.exec(tok);
  if (m) return m[2] === "nan" ? NaN : m[1] === "-" ? -Infinity : Infinity;
  return undefined;
}

/** Python's int() on a token. */
function pyInt(tok: string): number {
  if (!/^[+-]?\d(?:_?\d)*$/.test(tok)) throw new SqlParseError(`invalid literal for int(): '${tok}'`);
  return Number(tok.replace(/_/g, ""));
}

/** `toks[i]`, raising like Python's IndexError past the end. */
function at(toks: string[], i: number): string {
  const t = toks[i];
  if (t === undefined) throw new SqlParseError(`Unexpected end of query (token ${i} of ${toks.length})`);
  return t;
}

function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new SqlParseError(message);
}

/** An optional '(' at `idx` (the reference's isBlock): the index after it, and whether it was there. */
function openBlock(toks: string[], idx: number): [number, boolean] {
  return at(toks, idx) === "(" ? [idx + 1, true] : [idx, false];
}

/** The ')' that closes a block openBlock found (none to close when `isBlock` is false): the index after it. */
function closeBlock(toks: string[], idx: number, isBlock: boolean): number {
  if (!isBlock) return idx;
  check(at(toks, idx) === ")", "Expected ')'");
  return idx + 1;
}

const isClause = (t: string | undefined) => t !== undefined && CLAUSE_KEYWORDS.includes(t);

// ---------------------------------------------------------------------------------------------
// Schema

/** SQL words that cannot name a table when there is no schema to check against. */
const RESERVED = new Set([...CLAUSE_KEYWORDS, ...JOIN_KEYWORDS, ...COND_OPS, ...WHERE_OPS, ...AGG_OPS, "by", "having", "distinct", "asc", "desc"]);

/** The reference's `Schema`: table -> columns (lower case) and the id map of tables and columns. */
export class Schema {
  readonly tables = new Map<string, string[]>();
  readonly idMap = new Map<string, string>([["*", "__all__"]]);
  constructor(entry?: SpiderSchemaEntry) {
    if (!entry) return;
    entry.table_names_original.forEach((t) => this.tables.set(t.toLowerCase(), []));
    for (const [ti, col] of entry.column_names_original) {
      if (ti < 0) continue;
      this.tables.get(entry.table_names_original[ti]!.toLowerCase())!.push(col.toLowerCase());
    }
    for (const [t, cols] of this.tables) for (const c of cols) this.idMap.set(`${t}.${c}`, `__${t}.${c}__`);
    for (const t of this.tables.keys()) this.idMap.set(t, `__${t}__`);
  }
  get hasTables(): boolean {
    return this.tables.size > 0;
  }
  /** `schema.idMap[key]`; without a schema, any table or table.column key names itself. */
  id(key: string): string {
    const id = this.idMap.get(key);
    if (id !== undefined) return id;
    if (!this.hasTables && /^[^.\s]+(\.[^.\s]+)?$/.test(key)) return `__${key}__`;
    throw new SqlParseError(`Unknown table or column: ${key}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Parser: one method per function of process_sql.py, same names, same control flow.

class Parser {
  private readonly aliases = new Map<string, string>();

  constructor(
    private readonly toks: string[],
    private readonly schema: Schema,
  ) {
    // scan_alias + get_tables_with_alias
    toks.forEach((t, i) => {
      if (t !== "as") return;
      const next = at(toks, i + 1);
      this.aliases.set(next, i === 0 ? toks[toks.length - 1]! : toks[i - 1]!);
    });
    for (const table of schema.tables.keys()) {
      check(!this.aliases.has(table), `Alias ${table} has the same name in table`);
      this.aliases.set(table, table);
    }
  }

  /** `tables_with_alias[name]`; without a schema an unknown name that is not a keyword is a table. */
  private table(name: string): string {
    const t = this.aliases.get(name);
    if (t !== undefined) return t;
    if (!this.schema.hasTables && /^[a-z_][\w$]*$/.test(name) && !RESERVED.has(name)) return name;
    throw new SqlParseError(`Unknown table or alias: ${name}`);
  }

  private parseCol(toks: string[], start: number, defaultTables: string[]): [number, string] {
    const tok = at(toks, start);
    if (tok === "*") return [start + 1, this.schema.id(tok)];
    if (tok.includes(".")) {
      const parts = tok.split(".");
      check(parts.length === 2, `too many values to unpack: ${tok}`);
      return [start + 1, this.schema.id(`${this.table(parts[0]!)}.${parts[1]!}`)];
    }
    check(defaultTables.length > 0, "Default tables should not be None or empty");
    if (!this.schema.hasTables) {
      const only = defaultTables.length === 1 ? this.table(defaultTables[0]!) : undefined;
      return [start + 1, only !== undefined ? `__${only}.${tok}__` : `__${tok}__`];
    }
    for (const alias of defaultTables) {
      const table = this.table(alias);
      const cols = this.schema.tables.get(table);
      if (cols === undefined) throw new SqlParseError(`Unknown table: ${table}`);
      if (cols.includes(tok)) return [start + 1, this.schema.id(`${table}.${tok}`)];
    }
    throw new SqlParseError(`Error col: ${tok}`);
  }

  private parseColUnit(toks: string[], start: number, defaultTables: string[]): [number, ColUnit] {
    let idx = start;
    let isBlock: boolean;
    let distinct = false;
    [idx, isBlock] = openBlock(toks, idx);
    const agg = AGG_OPS.indexOf(at(toks, idx));
    if (agg >= 0) {
      idx++;
      check(idx < toks.length && toks[idx] === "(", `Expected '(' after ${AGG_OPS[agg]}`);
      idx++;
      if (at(toks, idx) === "distinct") {
        idx++;
        distinct = true;
      }
      let col: string;
      [idx, col] = this.parseCol(toks, idx, defaultTables);
      check(idx < toks.length && toks[idx] === ")", "Expected ')' after an aggregate");
      // like the reference, a block '(' opened before an aggregate is not closed here
      return [idx + 1, [agg, col, distinct]];
    }
    if (at(toks, idx) === "distinct") {
      idx++;
      distinct = true;
    }
    let col: string;
    [idx, col] = this.parseCol(toks, idx, defaultTables);
    idx = closeBlock(toks, idx, isBlock);
    return [idx, [0, col, distinct]];
  }

  private parseValUnit(start: number, defaultTables: string[]): [number, ValUnit] {
    const toks = this.toks;
    const [afterOpen, isBlock] = openBlock(toks, start);
    let idx = afterOpen;
    let col1: ColUnit;
    let col2: ColUnit | null = null;
    let op = 0;
    [idx, col1] = this.parseColUnit(toks, idx, defaultTables);
    if (idx < toks.length && UNIT_OPS.includes(toks[idx]!)) {
      op = UNIT_OPS.indexOf(toks[idx]!);
      [idx, col2] = this.parseColUnit(toks, idx + 1, defaultTables);
    }
    idx = closeBlock(toks, idx, isBlock);
    return [idx, [op, col1, col2]];
  }

  private parseTableUnit(start: number): [number, string, string] {
    const key = this.table(at(this.toks, start));
    const idx = start + 1 < this.toks.length && this.toks[start + 1] === "as" ? start + 3 : start + 1;
    return [idx, this.schema.id(key), key];
  }

  private parseValue(start: number, defaultTables: string[]): [number, SqlValue] {
    const toks = this.toks;
    const [afterOpen, isBlock] = openBlock(toks, start);
    let idx = afterOpen;
    let val: SqlValue;
    const tok = at(toks, idx);
    const num = pyFloat(tok);
    if (tok === "select") {
      [idx, val] = this.parseSql(idx);
    } else if (tok.includes('"')) {
      val = tok;
      idx++;
    } else if (num !== undefined) {
      val = num;
      idx++;
    } else {
      let end = idx;
      while (end < toks.length) {
        const t = toks[end]!;
        if (t === "," || t === ")" || t === "and" || isClause(t) || JOIN_KEYWORDS.includes(t)) break;
        end++;
      }
      // the reference parses the slice from `start`, before any '(' it skipped
      [, val] = this.parseColUnit(toks.slice(start, end), 0, defaultTables);
      idx = end;
    }
    idx = closeBlock(toks, idx, isBlock);
    return [idx, val];
  }

  private parseCondition(start: number, defaultTables: string[]): [number, Condition] {
    const toks = this.toks;
    let idx = start;
    const conds: Condition = [];
    while (idx < toks.length) {
      let valUnit: ValUnit;
      [idx, valUnit] = this.parseValUnit(idx, defaultTables);
      let not = false;
      if (at(toks, idx) === "not") {
        not = true;
        idx++;
      }
      check(idx < toks.length && WHERE_OPS.includes(toks[idx]!), `Error condition: idx: ${idx}, tok: ${toks[idx] ?? "end"}`);
      const op = WHERE_OPS.indexOf(toks[idx]!);
      idx++;
      let val1: SqlValue;
      let val2: SqlValue = null;
      [idx, val1] = this.parseValue(idx, defaultTables);
      if (op === WHERE_OPS.indexOf("between")) {
        check(at(toks, idx) === "and", "Expected 'and' in BETWEEN");
        [idx, val2] = this.parseValue(idx + 1, defaultTables);
      }
      conds.push([not, op, valUnit, val1, val2]);
      const t = toks[idx];
      if (t !== undefined && (isClause(t) || t === ")" || t === ";" || JOIN_KEYWORDS.includes(t))) break;
      if (t === "and" || t === "or") {
        conds.push(t);
        idx++;
      }
    }
    return [idx, conds];
  }

  private parseSelect(start: number, defaultTables: string[]): [number, SpiderSql["select"]] {
    const toks = this.toks;
    check(at(toks, start) === "select", "'select' not found");
    let idx = start + 1;
    let distinct = false;
    if (toks[idx] === "distinct") {
      distinct = true;
      idx++;
    }
    const units: [number, ValUnit][] = [];
    while (idx < toks.length && !isClause(toks[idx])) {
      let agg = 0;
      if (AGG_OPS.includes(toks[idx]!)) {
        agg = AGG_OPS.indexOf(toks[idx]!);
        idx++;
      }
      let valUnit: ValUnit;
      [idx, valUnit] = this.parseValUnit(idx, defaultTables);
      units.push([agg, valUnit]);
      if (toks[idx] === ",") idx++;
    }
    return [idx, [distinct, units]];
  }

  private parseFrom(start: number): [number, TableUnit[], Condition, string[]] {
    const toks = this.toks;
    const from = toks.indexOf("from", start);
    check(from >= 0, "'from' not found");
    let idx = from + 1;
    const defaultTables: string[] = [];
    const tableUnits: TableUnit[] = [];
    const conds: Condition = [];
    while (idx < toks.length) {
      let isBlock: boolean;
      [idx, isBlock] = openBlock(toks, idx);
      if (at(toks, idx) === "select") {
        let sub: SpiderSql;
        [idx, sub] = this.parseSql(idx);
        tableUnits.push(["sql", sub]);
      } else {
        if (toks[idx] === "join") idx++;
        let tableId: string;
        let name: string;
        [idx, tableId, name] = this.parseTableUnit(idx);
        tableUnits.push(["table_unit", tableId]);
        defaultTables.push(name);
      }
      if (toks[idx] === "on") {
        let these: Condition;
        [idx, these] = this.parseCondition(idx + 1, defaultTables);
        if (conds.length > 0) conds.push("and");
        conds.push(...these);
      }
      idx = closeBlock(toks, idx, isBlock);
      const t = toks[idx];
      if (t !== undefined && (isClause(t) || t === ")" || t === ";")) break;
    }
    return [idx, tableUnits, conds, defaultTables];
  }

  private parseConditionClause(idx: number, keyword: "where" | "having", defaultTables: string[]): [number, Condition] {
    if (this.toks[idx] !== keyword) return [idx, []];
    return this.parseCondition(idx + 1, defaultTables);
  }

  private parseGroupBy(start: number, defaultTables: string[]): [number, ColUnit[]] {
    const toks = this.toks;
    const units: ColUnit[] = [];
    if (toks[start] !== "group") return [start, units];
    check(at(toks, start + 1) === "by", "Expected 'by' after 'group'");
    let idx = start + 2;
    while (idx < toks.length && !this.isClauseEnd(toks[idx]!)) {
      let unit: ColUnit;
      [idx, unit] = this.parseColUnit(toks, idx, defaultTables);
      units.push(unit);
      if (toks[idx] !== ",") break;
      idx++;
    }
    return [idx, units];
  }

  private parseOrderBy(start: number, defaultTables: string[]): [number, SpiderSql["orderBy"]] {
    const toks = this.toks;
    if (toks[start] !== "order") return [start, []];
    check(at(toks, start + 1) === "by", "Expected 'by' after 'order'");
    let idx = start + 2;
    const units: ValUnit[] = [];
    let dir: "asc" | "desc" = "asc";
    while (idx < toks.length && !this.isClauseEnd(toks[idx]!)) {
      let unit: ValUnit;
      [idx, unit] = this.parseValUnit(idx, defaultTables);
      units.push(unit);
      const t = toks[idx];
      if (t === "asc" || t === "desc") {
        dir = t;
        idx++;
      }
      if (toks[idx] !== ",") break;
      idx++;
    }
    return [idx, [dir, units]];
  }

  private isClauseEnd(t: string): boolean {
    return isClause(t) || t === ")" || t === ";";
  }

  private skipSemicolons(idx: number): number {
    while (this.toks[idx] === ";") idx++;
    return idx;
  }

  parseSql(start: number): [number, SpiderSql] {
    const toks = this.toks;
    const [afterOpen, isBlock] = openBlock(toks, start);
    let idx = afterOpen;
    // FROM first, for the tables that unqualified columns refer to
    const [fromEnd, tableUnits, fromConds, defaultTables] = this.parseFrom(start);
    const sql = emptySql();
    sql.from = { table_units: tableUnits, conds: fromConds };
    [, sql.select] = this.parseSelect(idx, defaultTables);
    idx = fromEnd;
    [idx, sql.where] = this.parseConditionClause(idx, "where", defaultTables);
    [idx, sql.groupBy] = this.parseGroupBy(idx, defaultTables);
    [idx, sql.having] = this.parseConditionClause(idx, "having", defaultTables);
    [idx, sql.orderBy] = this.parseOrderBy(idx, defaultTables);
    if (toks[idx] === "limit") {
      idx += 2;
      sql.limit = pyInt(at(toks, idx - 1));
    }
    idx = this.skipSemicolons(idx);
    idx = closeBlock(toks, idx, isBlock);
    idx = this.skipSemicolons(idx);
    const op = toks[idx];
    if (op === "intersect" || op === "union" || op === "except") {
      [idx, sql[op]] = this.parseSql(idx + 1);
    }
    return [idx, sql];
  }
}

export interface ParseOptions {
  /**
   * Ignore tokens left over after a complete query, as the reference does (default true). False is
   * stricter than Spider: leftovers are an error.
   */
  allowTrailing?: boolean;
}

/**
 * Parses one Spider query into the reference's structure (`process_sql.get_sql`). With a
 * tables.json entry, aliases and columns resolve against the schema as in the reference; without
 * one, names are used as they are. Throws `SqlParseError` where the reference raises.
 */
export function parseSql(query: string, schema?: SpiderSchemaEntry | Schema, options: ParseOptions = {}): SpiderSql {
  const s = schema instanceof Schema ? schema : new Schema(schema);
  const toks = tokenize(query);
  let idx: number;
  let sql: SpiderSql;
  try {
    [idx, sql] = new Parser(toks, s).parseSql(0);
  } catch (e) {
    // the reference raises RecursionError past 1,000 Python frames (about 200 nested queries)
    if (e instanceof RangeError) throw new SqlParseError("query nests too deeply");
    throw e;
  }
  if (options.allowTrailing === false && idx < toks.length) throw new SqlParseError(`Unexpected '${toks[idx]}' at token ${idx}`);
  return sql;
}
