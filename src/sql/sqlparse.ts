// Tokenizer and parser for the SQL dialect of the Spider text-to-SQL benchmark.
//
// This is a faithful TypeScript port of Spider's official `process_sql.py` (`tokenize` and
// `get_sql`), so that hardness levels and exact-set matching computed from its output agree with
// the published numbers. It deliberately keeps the reference's structure (tuples and index
// constants such as WHERE_OPS / AGG_OPS) and its quirks, which matter for the published counts:
//  - all `X AS Y` aliases of the whole query are collected up front into one global map;
//  - a comparison value that is neither a string, a number nor a sub-query is read as a column
//    after scanning forward to the next `,` `)` `and`, clause keyword or join keyword (so a
//    trailing `OR ...` after a column-valued comparison is swallowed, as in the reference);
//  - only one ORDER BY direction is kept (the last one seen);
//  - a set operation (INTERSECT/UNION/EXCEPT) nests to the right.
// Differences from the reference, none of which changes a Spider dev gold query: it also works
// without a schema (unqualified columns are then placed in the only FROM table, or kept as bare
// names); it accepts `FROM a, b` as a join and `<>` for `!=`; it is stricter on broken input
// (tables must be joined with JOIN or ',', keywords cannot name tables, SELECT needs a column, and
// leftover tokens are an error unless `allowTrailing` is set). Invalid input throws `SqlParseError`.
//
// Shapes (mirroring the reference's comments):
//   col_unit:  [agg_id, col_id, isDistinct]
//   val_unit:  [unit_op, col_unit1, col_unit2 | null]
//   table_unit: ["table_unit", table_id] | ["sql", sql]
//   cond_unit: [not_op, op_id, val_unit, val1, val2]
//   condition: [cond_unit1, "and" | "or", cond_unit2, ...]
//   sql: { select: [isDistinct, [agg_id, val_unit][]], from: { table_units, conds }, where,
//          groupBy: col_unit[], having, orderBy: [] | ["asc" | "desc", val_unit[]],
//          limit: number | null, intersect, union, except }
// Column ids are "__table.column__" (lower case), "__all__" for `*`; table ids are "__table__".

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

// ---------------------------------------------------------------------------------------------
// Tokenizer

/** Python's float() on the strings that occur in SQL (digits, exponent, inf/nan). */
function pyFloat(tok: string): number | undefined {
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(tok)) return Number(tok);
  if (/^[+-]?nan$/i.test(tok)) return NaN;
  if (/^[+-]?inf(inity)?$/i.test(tok)) return tok.startsWith("-") ? -Infinity : Infinity;
  return undefined;
}

/** Keywords after which a '-' starts a negative number rather than a subtraction. */
const PREFIX_KEYWORDS = new Set([
  "select",
  "distinct",
  "where",
  "and",
  "or",
  "not",
  "between",
  "in",
  "like",
  "is",
  "having",
  "on",
  "by",
  "limit",
  "when",
  "then",
  "else",
  "case",
  "exists",
]);

/** Whether a token ends an operand (so a following '-' is binary minus). */
function isOperand(tok: string | undefined): boolean {
  if (tok === undefined) return false;
  return tok === ")" || tok.startsWith('"') || (/^[\w.$@#]+$/.test(tok) && !PREFIX_KEYWORDS.has(tok));
}

/**
 * Splits a query the way `process_sql.tokenize` does: single quotes become double quotes, each
 * quoted string is one token (case kept, quotes kept), everything else is lower-cased and split
 * into words (`t1.name`, `2014`, `1.5` stay whole) and punctuation; `! = `, `> =`, `< =` merge.
 */
export function tokenize(query: string): string[] {
  const s = query.replace(/'/g, '"');
  const toks: string[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      const j = s.indexOf('"', i + 1);
      if (j < 0) throw new SqlParseError("Unexpected quote");
      toks.push(s.slice(i, j + 1));
      i = j + 1;
    } else if (/[\w.$@#]/.test(c)) {
      // A word: identifier, qualified name or number. A trailing '.' is split off as nltk does.
      let j = i;
      while (j < s.length && /[\w.$@#]/.test(s[j]!)) j++;
      let word = s.slice(i, j);
      if (word.length > 1 && word.endsWith(".") && !/^\d+\.$/.test(word)) {
        word = word.slice(0, -1);
        j--;
      }
      toks.push(word.toLowerCase());
      i = j;
    } else if ((c === "!" || c === ">" || c === "<") && s[i + 1] === "=") {
      toks.push(c + "=");
      i += 2;
    } else if (c === "<" && s[i + 1] === ">") {
      toks.push("!="); // `<>` is standard SQL for `!=`
      i += 2;
    } else if (c === "=" && s[i + 1] === "=") {
      toks.push("=");
      i += 2;
    } else if (c === "-" && /[\d.]/.test(s[i + 1] ?? "") && !isOperand(toks[toks.length - 1])) {
      // A negative number after an operator or keyword (e.g. `> -1`, `BETWEEN -50 AND 50`).
      let j = i + 1;
      while (j < s.length && /[\w.]/.test(s[j]!)) j++;
      toks.push(s.slice(i, j).toLowerCase());
      i = j;
    } else {
      toks.push(c);
      i++;
    }
  }
  return toks;
}

// ---------------------------------------------------------------------------------------------
// Schema

/** Words that cannot name a table. */
const RESERVED = new Set([...CLAUSE_KEYWORDS, ...JOIN_KEYWORDS, ...COND_OPS, ...WHERE_OPS, "group", "by", "having", "limit", "distinct"]);

/** Table name -> column names, all lower case (the reference's `Schema.schema`). */
export class Schema {
  readonly tables = new Map<string, string[]>();
  constructor(entry?: SpiderSchemaEntry) {
    if (!entry) return;
    entry.table_names_original.forEach((t) => this.tables.set(t.toLowerCase(), []));
    for (const [ti, col] of entry.column_names_original) {
      if (ti < 0) continue;
      this.tables.get(entry.table_names_original[ti]!.toLowerCase())!.push(col.toLowerCase());
    }
  }
  get hasTables(): boolean {
    return this.tables.size > 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Parser

class Parser {
  private readonly aliases = new Map<string, string>();

  constructor(
    private readonly toks: string[],
    private readonly schema: Schema,
  ) {
    // scan_alias + get_tables_with_alias: every `x AS y` anywhere in the query, then the tables.
    toks.forEach((t, i) => {
      if (t === "as" && i > 0 && i + 1 < toks.length) this.aliases.set(toks[i + 1]!, toks[i - 1]!);
    });
    for (const table of schema.tables.keys()) {
      if (this.aliases.has(table)) throw new SqlParseError(`Alias ${table} has the same name in table`);
      this.aliases.set(table, table);
    }
  }

  private tok(idx: number): string {
    const t = this.toks[idx];
    if (t === undefined) throw new SqlParseError("Unexpected end of query");
    return t;
  }

  private expect(idx: number, t: string): number {
    if (this.toks[idx] !== t) throw new SqlParseError(`Expected '${t}' at token ${idx}, got '${this.toks[idx] ?? "end"}'`);
    return idx + 1;
  }

  /** Alias or table name -> table name; without a schema an unknown name is its own table. */
  private table(name: string): string {
    const t = this.aliases.get(name);
    if (t !== undefined) return t;
    if (this.schema.hasTables) throw new SqlParseError(`Unknown table or alias: ${name}`);
    return name;
  }

  private parseCol(toks: string[], idx: number, defaultTables: string[]): [number, string] {
    const tok = toks[idx];
    if (tok === undefined) throw new SqlParseError("Unexpected end of query (column)");
    if (tok === "*") return [idx + 1, "__all__"];
    if (tok.includes(".")) {
      const [alias, col] = tok.split(".", 2) as [string, string];
      return [idx + 1, `__${this.table(alias)}.${col}__`];
    }
    if (!/^[a-z_$#@][\w$#@]*$|^\d*[a-z_][\w]*$/.test(tok)) throw new SqlParseError(`Error col: ${tok}`);
    if (!this.schema.hasTables) {
      // Without a schema an unqualified column can only be placed when one table is in scope.
      return [idx + 1, defaultTables.length === 1 ? `__${defaultTables[0]}.${tok}__` : `__${tok}__`];
    }
    for (const table of defaultTables) {
      if (this.schema.tables.get(table)?.includes(tok)) return [idx + 1, `__${table}.${tok}__`];
    }
    throw new SqlParseError(`Error col: ${tok}`);
  }

  private parseColUnit(toks: string[], start: number, defaultTables: string[]): [number, ColUnit] {
    let idx = start;
    let isBlock = false;
    let distinct = false;
    if (toks[idx] === "(") {
      isBlock = true;
      idx++;
    }
    const agg = AGG_OPS.indexOf(toks[idx] ?? "");
    if (agg > 0 && toks[idx + 1] === "(") {
      idx += 2;
      if (toks[idx] === "distinct") {
        idx++;
        distinct = true;
      }
      let col: string;
      [idx, col] = this.parseCol(toks, idx, defaultTables);
      if (toks[idx] !== ")") throw new SqlParseError(`Expected ')' after aggregate, got '${toks[idx] ?? "end"}'`);
      idx++;
      // Note: like the reference, an opening block '(' before an aggregate is not closed here.
      return [idx, [agg, col, distinct]];
    }
    if (toks[idx] === "distinct") {
      idx++;
      distinct = true;
    }
    let col: string;
    [idx, col] = this.parseCol(toks, idx, defaultTables);
    if (isBlock) {
      if (toks[idx] !== ")") throw new SqlParseError("Expected ')'");
      idx++;
    }
    return [idx, [0, col, distinct]];
  }

  private parseValUnit(start: number, defaultTables: string[]): [number, ValUnit] {
    let idx = start;
    let isBlock = false;
    if (this.toks[idx] === "(") {
      isBlock = true;
      idx++;
    }
    let col1: ColUnit;
    let col2: ColUnit | null = null;
    let op = 0;
    [idx, col1] = this.parseColUnit(this.toks, idx, defaultTables);
    const opIdx = UNIT_OPS.indexOf(this.toks[idx] ?? "");
    if (opIdx > 0) {
      op = opIdx;
      [idx, col2] = this.parseColUnit(this.toks, idx + 1, defaultTables);
    }
    if (isBlock) idx = this.expect(idx, ")");
    return [idx, [op, col1, col2]];
  }

  private parseTableUnit(idx: number): [number, string, string] {
    const name = this.tok(idx);
    if (!/^[\w$#@]+$/.test(name) || RESERVED.has(name)) throw new SqlParseError(`Expected a table at token ${idx}, got '${name}'`);
    const key = this.table(name);
    idx += this.toks[idx + 1] === "as" ? 3 : 1;
    return [idx, `__${key}__`, key];
  }

  private parseValue(start: number, defaultTables: string[]): [number, SqlValue] {
    let idx = start;
    let isBlock = false;
    if (this.toks[idx] === "(") {
      isBlock = true;
      idx++;
    }
    let val: SqlValue;
    const tok = this.tok(idx);
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
      // A column as value: the reference scans to the next separator and parses a col_unit there.
      let end = idx;
      while (end < this.toks.length) {
        const t = this.toks[end]!;
        if (t === "," || t === ")" || t === "and" || CLAUSE_KEYWORDS.includes(t) || JOIN_KEYWORDS.includes(t)) break;
        end++;
      }
      [, val] = this.parseColUnit(this.toks.slice(start, end), 0, defaultTables);
      idx = end;
    }
    if (isBlock) idx = this.expect(idx, ")");
    return [idx, val];
  }

  private parseCondition(start: number, defaultTables: string[]): [number, Condition] {
    let idx = start;
    const conds: Condition = [];
    while (idx < this.toks.length) {
      let valUnit: ValUnit;
      [idx, valUnit] = this.parseValUnit(idx, defaultTables);
      let not = false;
      if (this.toks[idx] === "not") {
        not = true;
        idx++;
      }
      const op = WHERE_OPS.indexOf(this.toks[idx] ?? "");
      if (op < 0) throw new SqlParseError(`Error condition: idx: ${idx}, tok: ${this.toks[idx] ?? "end"}`);
      idx++;
      let val1: SqlValue;
      let val2: SqlValue = null;
      [idx, val1] = this.parseValue(idx, defaultTables);
      if (op === WHERE_OPS.indexOf("between")) {
        idx = this.expect(idx, "and");
        [idx, val2] = this.parseValue(idx, defaultTables);
      }
      conds.push([not, op, valUnit, val1, val2]);
      const t = this.toks[idx];
      if (t === undefined || CLAUSE_KEYWORDS.includes(t) || t === ")" || t === ";" || JOIN_KEYWORDS.includes(t)) break;
      if (t === "and" || t === "or") {
        conds.push(t);
        idx++;
      }
    }
    return [idx, conds];
  }

  private parseSelect(start: number, defaultTables: string[]): [number, SpiderSql["select"]] {
    let idx = this.expect(start, "select");
    let distinct = false;
    if (this.toks[idx] === "distinct") {
      distinct = true;
      idx++;
    }
    const units: [number, ValUnit][] = [];
    while (idx < this.toks.length && !CLAUSE_KEYWORDS.includes(this.toks[idx]!)) {
      let agg = 0;
      const a = AGG_OPS.indexOf(this.toks[idx]!);
      if (a > 0) {
        agg = a;
        idx++;
      }
      let valUnit: ValUnit;
      [idx, valUnit] = this.parseValUnit(idx, defaultTables);
      units.push([agg, valUnit]);
      if (this.toks[idx] === ",") idx++;
    }
    if (units.length === 0) throw new SqlParseError("Empty SELECT list");
    return [idx, [distinct, units]];
  }

  private parseFrom(start: number): [number, TableUnit[], Condition, string[]] {
    let idx = this.toks.indexOf("from", start);
    if (idx < 0) throw new SqlParseError("'from' not found");
    idx++;
    const defaultTables: string[] = [];
    const tableUnits: TableUnit[] = [];
    const conds: Condition = [];
    while (idx < this.toks.length) {
      if (tableUnits.length > 0) {
        // Stricter than the reference, which also reads `FROM a b` as two tables.
        if (this.toks[idx] !== "join" && this.toks[idx] !== ",") {
          throw new SqlParseError(`Expected JOIN at token ${idx}, got '${this.toks[idx]}'`);
        }
        idx++;
      }
      let isBlock = false;
      if (this.toks[idx] === "(") {
        isBlock = true;
        idx++;
      }
      if (this.toks[idx] === "select") {
        let sub: SpiderSql;
        [idx, sub] = this.parseSql(idx);
        tableUnits.push(["sql", sub]);
      } else {
        let tableId: string;
        let name: string;
        [idx, tableId, name] = this.parseTableUnit(idx);
        tableUnits.push(["table_unit", tableId]);
        defaultTables.push(name);
      }
      if (this.toks[idx] === "on") {
        let these: Condition;
        [idx, these] = this.parseCondition(idx + 1, defaultTables);
        if (conds.length > 0) conds.push("and");
        conds.push(...these);
      }
      if (isBlock) idx = this.expect(idx, ")");
      const t = this.toks[idx];
      if (t !== undefined && (CLAUSE_KEYWORDS.includes(t) || t === ")" || t === ";")) break;
    }
    return [idx, tableUnits, conds, defaultTables];
  }

  private parseConditionClause(idx: number, keyword: string, defaultTables: string[]): [number, Condition] {
    if (this.toks[idx] !== keyword) return [idx, []];
    return this.parseCondition(idx + 1, defaultTables);
  }

  private parseGroupBy(start: number, defaultTables: string[]): [number, ColUnit[]] {
    const units: ColUnit[] = [];
    if (this.toks[start] !== "group") return [start, units];
    let idx = this.expect(start + 1, "by");
    while (idx < this.toks.length && !this.isClauseEnd(this.toks[idx]!)) {
      let unit: ColUnit;
      [idx, unit] = this.parseColUnit(this.toks, idx, defaultTables);
      units.push(unit);
      if (this.toks[idx] !== ",") break;
      idx++;
    }
    return [idx, units];
  }

  private parseOrderBy(start: number, defaultTables: string[]): [number, SpiderSql["orderBy"]] {
    if (this.toks[start] !== "order") return [start, []];
    let idx = this.expect(start + 1, "by");
    const units: ValUnit[] = [];
    let dir: "asc" | "desc" = "asc";
    while (idx < this.toks.length && !this.isClauseEnd(this.toks[idx]!)) {
      let unit: ValUnit;
      [idx, unit] = this.parseValUnit(idx, defaultTables);
      units.push(unit);
      const t = this.toks[idx];
      if (t === "asc" || t === "desc") {
        dir = t;
        idx++;
      }
      if (this.toks[idx] !== ",") break;
      idx++;
    }
    return [idx, [dir, units]];
  }

  private isClauseEnd(t: string): boolean {
    return CLAUSE_KEYWORDS.includes(t) || t === ")" || t === ";";
  }

  private skipSemicolons(idx: number): number {
    while (this.toks[idx] === ";") idx++;
    return idx;
  }

  parseSql(start: number): [number, SpiderSql] {
    let idx = start;
    let isBlock = false;
    if (this.toks[idx] === "(") {
      isBlock = true;
      idx++;
    }
    // FROM first, to know the tables that unqualified columns refer to.
    const [fromEnd, tableUnits, fromConds, defaultTables] = this.parseFrom(start);
    const sql = emptySql();
    sql.from = { table_units: tableUnits, conds: fromConds };
    [, sql.select] = this.parseSelect(idx, defaultTables);
    idx = fromEnd;
    [idx, sql.where] = this.parseConditionClause(idx, "where", defaultTables);
    [idx, sql.groupBy] = this.parseGroupBy(idx, defaultTables);
    [idx, sql.having] = this.parseConditionClause(idx, "having", defaultTables);
    [idx, sql.orderBy] = this.parseOrderBy(idx, defaultTables);
    if (this.toks[idx] === "limit") {
      const n = Number.parseInt(this.tok(idx + 1), 10);
      if (!Number.isFinite(n)) throw new SqlParseError(`Bad LIMIT: ${this.toks[idx + 1]}`);
      sql.limit = n;
      idx += 2;
    }
    idx = this.skipSemicolons(idx);
    if (isBlock) idx = this.expect(idx, ")");
    idx = this.skipSemicolons(idx);
    const op = this.toks[idx];
    if (op === "intersect" || op === "union" || op === "except") {
      [idx, sql[op]] = this.parseSql(idx + 1);
    }
    return [idx, sql];
  }

  parseAll(allowTrailing: boolean): SpiderSql {
    const [idx, sql] = this.parseSql(0);
    const rest = this.skipSemicolons(idx);
    if (!allowTrailing && rest < this.toks.length) throw new SqlParseError(`Unexpected '${this.toks[rest]}' at token ${rest}`);
    return sql;
  }
}

export interface ParseOptions {
  /**
   * Ignore tokens left over after the query, as the reference does (a few train golds such as
   * `... ORDER BY count(*) >= 5` rely on it). Default false: leftovers are an error.
   */
  allowTrailing?: boolean;
}

/**
 * Parses one Spider query into the reference's structure (`process_sql.get_sql`). With a
 * tables.json entry, aliases and unqualified columns are resolved against the schema; without
 * one, names are used as they are. Throws `SqlParseError` on invalid input.
 */
export function parseSql(query: string, schema?: SpiderSchemaEntry | Schema, options: ParseOptions = {}): SpiderSql {
  const s = schema instanceof Schema ? schema : new Schema(schema);
  return new Parser(tokenize(query), s).parseAll(options.allowTrailing ?? false);
}
