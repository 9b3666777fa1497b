// SQL text, read without running it: a tokenizer that skips comments and keeps quoted text whole,
// the check that a query is one read-only SELECT/WITH statement, top-level ORDER BY, DISTINCT taken out
// (the official execution match's default), and the check
// that schema text from outside holds only definitions (CREATE TABLE / INDEX / VIEW), and SQLite's
// legacy double-quoted strings for a SQLite built without them.

// ---------------------------------------------------------------------------------------------
// SQL text scanning (comments and quoted text skipped)

interface Token {
  kind: "word" | "quoted" | "string" | "punct" | "other";
  /** lower-cased for words */
  text: string;
  /** where the token starts in the SQL text */
  at: number;
}

/** Splits SQL into tokens, skipping whitespace and comments. Unterminated text runs to the end. */
function tokens(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === "-" && sql[i + 1] === "-") {
      const e = sql.indexOf("\n", i);
      i = e < 0 ? n : e + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      const e = sql.indexOf("*/", i + 2);
      i = e < 0 ? n : e + 2;
    } else if (c === "'" || c === '"' || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c;
      let j = i + 1;
      for (;;) {
        const e = sql.indexOf(close, j);
        if (e < 0) {
          j = n;
          break;
        }
        if (close !== "]" && sql[e + 1] === close) {
          j = e + 2; // doubled quote
          continue;
        }
        j = e + 1;
        break;
      }
      out.push({ kind: c === "'" ? "string" : "quoted", text: sql.slice(i, j), at: i });
      i = j;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j])) j++;
      out.push({ kind: "word", text: sql.slice(i, j).toLowerCase(), at: i });
      i = j;
    } else if (c === "(" || c === ")" || c === ";" || c === ",") {
      out.push({ kind: "punct", text: c, at: i });
      i++;
    } else {
      let j = i + 1;
      while (j < n && !/[\s'"`[(),;A-Za-z_\u0080-\uffff]/.test(sql[j]) && !(sql[j] === "-" && sql[j + 1] === "-") && !(sql[j] === "/" && sql[j + 1] === "*"))
        j++;
      out.push({ kind: "other", text: sql.slice(i, j), at: i });
      i = j;
    }
  }
  return out;
}

/** Index just past the parenthesised group that opens at `i` (tokens[i] is "("). */
function skipGroup(toks: Token[], i: number): number {
  let depth = 0;
  for (let k = i; k < toks.length; k++) {
    const t = toks[k];
    if (t.kind !== "punct") continue;
    if (t.text === "(") depth++;
    else if (t.text === ")" && --depth === 0) return k + 1;
  }
  return toks.length;
}

const isName = (t: Token | undefined) => !!t && (t.kind === "word" || t.kind === "quoted" || t.kind === "string");

/**
 * True only for one SELECT or WITH … SELECT statement (a trailing semicolon, whitespace and
 * comments are ignored). Anything else — several statements, INSERT/UPDATE/DELETE, DDL, ATTACH,
 * PRAGMA, VACUUM, a WITH that ends in a write — is rejected with the reason in `why`.
 */
export function isSingleReadQuery(sql: string): { ok: boolean; why?: string } {
  const { ok, why } = checkQuery(sql);
  return why === undefined ? { ok } : { ok, why };
}

/** Words that begin an SQLite statement. */
const STATEMENT_WORDS = new Set([
  "alter",
  "analyze",
  "attach",
  "begin",
  "commit",
  "create",
  "delete",
  "detach",
  "drop",
  "end",
  "explain",
  "insert",
  "pragma",
  "reindex",
  "release",
  "replace",
  "rollback",
  "savepoint",
  "select",
  "update",
  "vacuum",
  "values",
  "with",
]);

/** isSingleReadQuery, plus `syntax` when the text cannot begin any SQLite statement (so it need not run). */
export function checkQuery(sql: string): { ok: boolean; why?: string; syntax?: boolean } {
  const all = tokens(sql);
  const semi = all.findIndex((t) => t.kind === "punct" && t.text === ";");
  const toks = semi < 0 ? all : all.slice(0, semi);
  if (semi >= 0 && all.slice(semi + 1).some((t) => !(t.kind === "punct" && t.text === ";"))) {
    return { ok: false, why: "more than one statement" };
  }
  if (toks.length === 0) return { ok: false, why: "empty query" };
  const first = toks[0];
  if (first.kind !== "word" || !STATEMENT_WORDS.has(first.text)) {
    return { ok: false, why: `syntax error: no SQL statement begins with ${JSON.stringify(first.text)}`, syntax: true };
  }
  if (first.text === "select") return { ok: true };
  if (first.text !== "with") return { ok: false, why: `not a query: ${first.text.toUpperCase()} statements are not run (only SELECT/WITH)` };
  // WITH [RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] (…) [, …] then the main statement
  let i = 1;
  if (toks[i]?.kind === "word" && toks[i].text === "recursive") i++;
  for (;;) {
    if (!isName(toks[i])) return { ok: true }; // malformed: SQLite reports the syntax error
    i++;
    if (toks[i]?.text === "(") i = skipGroup(toks, i);
    if (toks[i]?.text !== "as") return { ok: true };
    i++;
    if (toks[i]?.text === "not") i++;
    if (toks[i]?.text === "materialized") i++;
    if (toks[i]?.text !== "(") return { ok: true };
    i = skipGroup(toks, i);
    if (toks[i]?.kind === "punct" && toks[i].text === ",") {
      i++;
      continue;
    }
    break;
  }
  const main = toks[i];
  if (!main || (main.kind === "word" && main.text === "select")) return { ok: true };
  if (main.kind === "word") return { ok: false, why: `not a query: WITH … ${main.text.toUpperCase()} is not run (only SELECT/WITH)` };
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------
// Schema text from outside: only definitions, checked before SQLite sees it

/** A schema longer than this (characters) is refused before it is parsed. */
export const MAX_SCHEMA_CHARS = 1_000_000;
/**
 * A schema with more statements than this is refused. SQLite finds each new table's entry by
 * scanning its catalogue, so building n tables costs n² (10,000 took 5 s here, 2,000 take 0.2 s);
 * a prompt's context holds far fewer tables than this anyway.
 */
export const MAX_SCHEMA_STATEMENTS = 2_000;

/** The statements of an SQL text (split at top-level semicolons; comments and quoted text kept whole). */
function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let first: Token | undefined;
  let last: Token | undefined;
  for (const t of tokens(sql)) {
    if (t.kind === "punct" && t.text === ";") {
      if (first && last) out.push(sql.slice(first.at, last.at + last.text.length));
      first = last = undefined;
    } else {
      first ??= t;
      last = t;
    }
  }
  if (first && last) out.push(sql.slice(first.at, last.at + last.text.length));
  return out;
}

const snippet = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s.replace(/\s+/g, " "));

/**
 * Splits schema text into its statements and checks that each one only defines something:
 * `CREATE [TEMP] TABLE name (...)`, `CREATE [UNIQUE] INDEX` or `CREATE [TEMP] VIEW`. Anything else
 * (ATTACH, VACUUM, PRAGMA, INSERT, DROP, a trigger, a virtual table, `CREATE TABLE ... AS SELECT`,
 * which runs a query) throws an Error starting with `schema: ` that names the statement.
 */
export function schemaStatements(schema: string): string[] {
  if (schema.length > MAX_SCHEMA_CHARS) throw new Error(`schema: ${schema.length} characters, more than the ${MAX_SCHEMA_CHARS} allowed`);
  const stmts = splitStatements(schema);
  if (stmts.length > MAX_SCHEMA_STATEMENTS) throw new Error(`schema: ${stmts.length} statements, more than the ${MAX_SCHEMA_STATEMENTS} allowed`);
  stmts.forEach((stmt, i) => {
    const why = definitionProblem(tokens(stmt));
    if (why)
      throw new Error(
        `schema: statement ${i + 1} (${snippet(stmt)}): ${why}; a schema may only hold CREATE TABLE (with column definitions), CREATE INDEX and CREATE VIEW statements`,
      );
  });
  return stmts;
}

/** Why a statement's tokens are not a plain table/index/view definition, or undefined when they are. */
function definitionProblem(toks: Token[]): string | undefined {
  const word = (k: number, ...w: string[]) => toks[k]?.kind === "word" && w.includes(toks[k].text);
  if (!word(0, "create")) return `${toks[0].kind === "word" ? toks[0].text.toUpperCase() : "this"} statements are not allowed`;
  let i = 1;
  if (word(i, "temp", "temporary")) i++;
  if (word(i, "unique")) i++;
  if (word(i, "index")) return toks[i - 1].text === "temp" || toks[i - 1].text === "temporary" ? "CREATE TEMP INDEX is not SQL" : undefined;
  if (toks[i - 1].text === "unique") return "UNIQUE goes with INDEX only";
  if (word(i, "view")) return undefined;
  if (!word(i, "table")) return `CREATE ${toks[i]?.text.toUpperCase() ?? ""} is not allowed`.trimEnd();
  i++;
  if (word(i, "if") && word(i + 1, "not") && word(i + 2, "exists")) i += 3;
  if (isName(toks[i])) i++;
  if (toks[i]?.kind === "other" && toks[i].text === "." && isName(toks[i + 1])) i += 2;
  if (toks[i]?.kind === "punct" && toks[i].text === "(") return undefined;
  if (word(i, "as")) return "CREATE TABLE ... AS SELECT runs a query";
  return "expected the table's name and then its column list in parentheses";
}

/** True when the query has ORDER BY at the top level (outside parentheses, strings and comments). */
export function hasOrderBy(sql: string): boolean {
  let depth = 0;
  const toks = tokens(sql);
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k];
    if (t.kind === "punct") {
      if (t.text === "(") depth++;
      else if (t.text === ")") depth = Math.max(0, depth - 1);
    } else if (depth === 0 && t.kind === "word" && t.text === "order" && toks[k + 1]?.kind === "word" && toks[k + 1].text === "by") {
      return true;
    }
  }
  return false;
}

/**
 * The query with every DISTINCT keyword taken out, as Spider's test-suite evaluator does by
 * default (`remove_distinct` in exec_eval.py: every token whose text is "distinct" dropped, so
 * `count(DISTINCT x)` becomes `count( x)`); quoted names, strings and comments are left as they are.
 */
export function removeDistinct(sql: string): string {
  let out = "";
  let from = 0;
  for (const t of tokens(sql)) {
    if (t.kind !== "word" || t.text !== "distinct") continue;
    out += sql.slice(from, t.at);
    from = t.at + t.text.length;
  }
  return out + sql.slice(from);
}

/** The SQL tokenizer, for readers of schema text (src/sql/sql-grammar.ts): words are lower-cased in `text`. */
// ---------------------------------------------------------------------------------------------
// Double-quoted strings

/** SQLite's refusal of a double-quoted word that names nothing, in a build without double-quoted strings. */
const DQS_REFUSAL = /^no such column: "([\s\S]*)" - should this be a string literal in single-quotes\?$/;

/**
 * SQLite's legacy double-quoted strings, as Spider's queries write them (`WHERE name = "Bob"`): a
 * default SQLite build reads a double-quoted word that names no column as a string literal, but
 * better-sqlite3 builds SQLite without that (SQLITE_DQS=0), so the query fails with SQLite's
 * "no such column: "Bob" - should this be a string literal in single-quotes?". Given that error,
 * returns the SQL with every double-quoted word of that text written as a single-quoted string
 * (what a default build would have read), to be prepared again; undefined for any other error.
 * Words of the same text that did name a column elsewhere in the query become strings too.
 */
export function withDoubleQuotedStrings(sql: string, error: string): string | undefined {
  const m = DQS_REFUSAL.exec(error);
  if (!m) return undefined;
  const refused = m[1];
  let out = "";
  let last = 0;
  for (const t of tokens(sql)) {
    if (t.kind !== "quoted" || !t.text.startsWith('"') || t.text.length < 2 || !t.text.endsWith('"')) continue;
    if (t.text.slice(1, -1).replace(/""/g, '"') !== refused) continue;
    out += sql.slice(last, t.at) + "'" + refused.replace(/'/g, "''") + "'";
    last = t.at + t.text.length;
  }
  return last === 0 ? undefined : out + sql.slice(last);
}

/** How many double-quoted words one query may have read as strings (each costs one more prepare). */
export const MAX_DOUBLE_QUOTED_STRINGS = 64;

export { tokens as sqlTokens, type Token as SqlToken };
