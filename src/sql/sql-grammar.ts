// Schema-constrained decoding's grammar: the tables, columns and foreign keys of a schema (read
// from CREATE TABLE text without running it, or from a live SQLite file through the read-only
// query process), and a GBNF grammar of the SQLite SELECT dialect Spider uses whose identifiers
// are only that schema's. Each SELECT is bound to one FROM scope (a table, or a foreign-key chain
// of joined tables, each unaliased, aliased T1..Tn, or aliased by its initial): its columns can only
// be columns of the scope's tables, so what the grammar accepts names no column SQLite would miss.
import { runReadOnly, type RunOptions } from "./query-process.js";
import { schemaStatements, sqlTokens, type SqlToken } from "./sql-text.js";

export interface SchemaTable {
  name: string;
  columns: string[];
}

export interface SchemaInfo {
  tables: SchemaTable[];
  /** the tables of each foreign key (referencing, referenced): a pair twice for two foreign keys */
  links: [string, string][];
  /** what was left out while reading (views, whose columns are not known without running them) */
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Reading a schema

/** A name token's text: quotes removed ("a""b" → a"b, [x] → x, `x` → x, 'x' → x); words as written. */
function nameOf(stmt: string, t: SqlToken): string {
  const raw = stmt.slice(t.at, t.at + t.text.length);
  if (t.kind === "word") return raw;
  const q = raw[0];
  const close = q === "[" ? "]" : q;
  const inner = raw.endsWith(close) && raw.length >= 2 ? raw.slice(1, -1) : raw.slice(1);
  return q === "[" ? inner : inner.split(q + q).join(q);
}

const isNameToken = (t: SqlToken | undefined): t is SqlToken => !!t && (t.kind === "word" || t.kind === "quoted" || t.kind === "string");
const TABLE_CONSTRAINTS = new Set(["constraint", "primary", "unique", "check", "foreign"]);

/**
 * Tables, columns and foreign-key links of schema text. The text is hostile: it is first checked
 * to hold only CREATE TABLE / INDEX / VIEW statements (schemaStatements, which throws an Error
 * starting with `schema: `), then only tokenized here, never run. Views are left out (noted).
 */
export function parseSchema(schema: string): SchemaInfo {
  const tables = new Map<string, SchemaTable>();
  const refs: [string, string][] = [];
  const notes: string[] = [];
  for (const stmt of schemaStatements(schema)) {
    const toks = sqlTokens(stmt);
    const word = (k: number, w: string) => toks[k]?.kind === "word" && toks[k].text === w;
    let i = 1;
    if (word(i, "temp") || word(i, "temporary")) i++;
    if (word(i, "view")) {
      notes.push(`view ${isNameToken(toks[i + 1]) ? nameOf(stmt, toks[i + 1]) : "?"} left out (its columns are not known without running it)`);
      continue;
    }
    if (!word(i, "table")) continue; // an index adds no names
    i++;
    if (word(i, "if") && word(i + 1, "not") && word(i + 2, "exists")) i += 3;
    let name = nameOf(stmt, toks[i]);
    i++;
    if (toks[i]?.text === "." && isNameToken(toks[i + 1])) {
      name = nameOf(stmt, toks[i + 1]);
      i += 2;
    }
    const table: SchemaTable = { name, columns: [] };
    // the items of the column list: split at commas at depth 1
    let depth = 0;
    let item: SqlToken[] = [];
    const endItem = () => {
      const head = item[0];
      if (head && isNameToken(head) && !(head.kind === "word" && TABLE_CONSTRAINTS.has(head.text))) {
        const col = nameOf(stmt, head);
        if (!table.columns.some((c) => c.toLowerCase() === col.toLowerCase())) table.columns.push(col);
      }
      const r = item.findIndex((t) => t.kind === "word" && t.text === "references");
      if (r >= 0 && isNameToken(item[r + 1])) refs.push([name, nameOf(stmt, item[r + 1])]);
      item = [];
    };
    for (; i < toks.length; i++) {
      const t = toks[i];
      if (t.kind === "punct" && t.text === "(") {
        if (depth++ === 0) continue;
      } else if (t.kind === "punct" && t.text === ")") {
        if (--depth === 0) break;
      } else if (depth === 1 && t.kind === "punct" && t.text === ",") {
        endItem();
        continue;
      }
      if (depth >= 1) item.push(t);
    }
    endItem();
    if (!tables.has(name.toLowerCase()) && table.columns.length > 0) tables.set(name.toLowerCase(), table);
  }
  const links: [string, string][] = [];
  for (const [a, b] of refs) {
    const ta = tables.get(a.toLowerCase());
    const tb = tables.get(b.toLowerCase());
    if (ta && tb && ta !== tb) links.push([ta.name, tb.name]);
  }
  return { tables: [...tables.values()], links, notes };
}

/**
 * Tables, columns and foreign-key links of a live SQLite file, read through the read-only query
 * process (the file is opened read-only, with a timeout; nothing in it is run but this query).
 */
export async function schemaFromDatabase(file: string, opts: RunOptions = {}): Promise<SchemaInfo> {
  const cols = await runReadOnly(
    file,
    "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.rowid, p.cid",
    opts,
  );
  if (!cols.ok) throw new Error(`schema: cannot read the tables of ${file}: ${cols.error}`);
  const tables = new Map<string, SchemaTable>();
  for (const [t, c] of cols.rows as [string, string][]) {
    let table = tables.get(t.toLowerCase());
    if (!table) tables.set(t.toLowerCase(), (table = { name: t, columns: [] }));
    table.columns.push(c);
  }
  const fks = await runReadOnly(
    file,
    "SELECT m.name, f.\"table\" FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS f WHERE m.type = 'table'",
    opts,
  );
  const links: [string, string][] = [];
  if (fks.ok) {
    for (const [a, b] of fks.rows as [string, string][]) {
      const ta = tables.get(a.toLowerCase());
      const tb = tables.get(String(b).toLowerCase());
      if (ta && tb && ta !== tb) links.push([ta.name, tb.name]);
    }
  }
  return { tables: [...tables.values()], links, notes: fks.ok ? [] : [`foreign keys not read (${fks.error})`] };
}

// ---------------------------------------------------------------------------------------------
// GBNF pieces

/** A GBNF string literal. */
function lit(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/** Case-insensitive GBNF for a word: letters as [aA], other characters as literals. */
function ci(word: string): string {
  const parts: string[] = [];
  let run = "";
  for (const ch of word) {
    const lo = ch.toLowerCase();
    const up = ch.toUpperCase();
    if (lo !== up && lo.length === 1 && up.length === 1) {
      if (run) parts.push(lit(run));
      run = "";
      parts.push(`[${lo}${up}]`);
    } else run += ch;
  }
  if (run) parts.push(lit(run));
  return parts.join(" ");
}

/**
 * Case-insensitive alternatives over words, as a trie (common prefixes shared): llama.cpp keeps one
 * parse stack per live alternative, so a trie keeps the stacks few.
 */
function trie(words: string[]): string {
  const uniq = [...new Map(words.map((w) => [w.toLowerCase(), w])).values()];
  if (uniq.length === 0) return '"\\x00"'; // nothing matches (never used for an empty set)
  const build = (ws: string[], at: number): string => {
    const ends = ws.some((w) => w.length === at);
    const groups = new Map<string, string[]>();
    for (const w of ws) if (w.length > at) groups.set(w[at].toLowerCase(), [...(groups.get(w[at].toLowerCase()) ?? []), w]);
    const alts = [...groups.values()].map((g) => {
      // a chain shared by every word of the group
      let end = at + 1;
      while (g.every((w) => w.length > end && w[end].toLowerCase() === g[0][end].toLowerCase())) end++;
      const rest = build(g, end);
      const head = ci(g[0].slice(at, end));
      return rest ? `${head} ${rest}` : head;
    });
    if (alts.length === 0) return "";
    const body = alts.length === 1 ? alts[0] : `(${alts.join(" | ")})`;
    return ends ? `(${body})?` : body;
  };
  return build(uniq, 0);
}

/** SQLite words that cannot be bare identifiers (they are quoted in the grammar). */
const RESERVED = new Set(
  (
    "add all alter and as asc between by case check collate column commit constraint create cross current_date current_time current_timestamp " +
    "default deferrable delete desc distinct drop else escape except exists foreign from full glob group having if in index inner insert " +
    "intersect into is isnull join left like limit natural not notnull null on or order outer primary references right select set table " +
    "then to transaction union unique update using values when where"
  ).split(" "),
);

/** An identifier's forms: bare (plain names that are no keyword), "quoted", `quoted` and [bracketed]. */
function identifier(all: string[]): string {
  const names = all.filter((n) => n.length > 0);
  const bare = names.filter((n) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(n) && !RESERVED.has(n.toLowerCase()));
  const quotable = names.filter((n) => !/["`\]]/.test(n) && ![...n].some((c) => c.charCodeAt(0) < 0x20));
  const alts: string[] = [];
  if (bare.length) alts.push(trie(bare));
  if (quotable.length) {
    const t = trie(quotable);
    alts.push(`"\\"" ${t} "\\""`, `"\`" ${t} "\`"`, `"[" ${t} "]"`);
  }
  return alts.length === 1 ? alts[0] : `(${alts.join(" | ")})`;
}

/** A keyword (words joined by whitespace) in upper, lower or capitalized case. */
function K(w: string): string {
  const forms = [w.toUpperCase(), w.toLowerCase(), w.replace(/\b[a-z]/g, (c) => c.toUpperCase())];
  const one = (f: string) => f.split(" ").map(lit).join(" sp ");
  return `(${[...new Set(forms)].map(one).join(" | ")})`;
}

/** Rules shared by every scope. */
function commonRules(): string[] {
  return [
    // bounded (Spider's gold SQL has up to 3 spaces in a row and 28 characters in a literal): a
    // model that wanders into spaces or a string still has to close it and go on
    `ws ::= " "{0,3}`,
    `sp ::= " "{1,3}`,
    `num ::= "-"? [0-9]{1,15} ("." [0-9]{1,8})?`,
    `int ::= [0-9]{1,9}`,
    `str ::= "'" ([^'\\n] | "''"){0,40} "'"`,
    `dqstr ::= "\\"" [^"\\n]{0,40} "\\""`,
    `value ::= str | dqstr | num`,
    `arith ::= "+" | "-" | "*" | "/"`,
    `cmp ::= "=" "="? | "!=" | "<>" | "<" "="? | ">" "="?`,
    `aggname ::= ${["sum", "avg", "min", "max"].map(K).join(" | ")}`,
    `setop ::= ${K("union")} (sp ${K("all")})? | ${K("intersect")} | ${K("except")}`,
    `join ::= sp (${K("join")} | ${K("inner join")} | ${K("left")} (sp ${K("outer")})? sp ${K("join")} | ${K("cross join")}) sp | ws "," ws`,
    `limit ::= ${K("limit")} sp int`,
    `subquery ::= "(" ws query ws ")"`,
    `subquery1 ::= "(" ws query1 ws ")"`,
  ];
}

// ---------------------------------------------------------------------------------------------
// Scopes: what one SELECT's FROM holds

type AliasStyle = "none" | "T" | "initial";
interface Scope {
  tables: SchemaTable[];
  style: AliasStyle;
}

/** The alias of the table at position j in a scope. */
function aliasOf(s: Scope, j: number): string | undefined {
  if (s.style === "T") return `T${j + 1}`;
  if (s.style === "initial") return s.tables[j].name[0].toLowerCase();
  return undefined;
}

/**
 * Foreign-key links, plus links between tables sharing a key-like column name (ending in id, code,
 * key or no, other than a bare "id") and from a column named after a table (flights.airline →
 * airlines): hand-written schemas often leave foreign keys out.
 */
function linksOf(info: SchemaInfo): Map<string, Set<string>> {
  const adj = new Map<string, Set<string>>();
  const link = (a: string, b: string) => {
    adj.set(a, (adj.get(a) ?? new Set()).add(b));
    adj.set(b, (adj.get(b) ?? new Set()).add(a));
  };
  for (const [a, b] of info.links) link(a.toLowerCase(), b.toLowerCase());
  const keyish = (c: string) => /(id|code|key|no)$/i.test(c) && c.toLowerCase() !== "id";
  const named = (t: SchemaTable) => [t.name.toLowerCase(), t.name.toLowerCase().replace(/s$/, "")];
  for (const a of info.tables)
    for (const b of info.tables)
      if (a !== b && a.columns.some((c) => (keyish(c) && b.columns.some((d) => d.toLowerCase() === c.toLowerCase())) || named(b).includes(c.toLowerCase())))
        link(a.name.toLowerCase(), b.name.toLowerCase());
  return adj;
}

/**
 * Tables in FROM order: every single table, then chains where each next table is linked to one
 * before it (linksOf; a table may come twice when aliased T1..Tn, for self-joins through a link),
 * up to `maxJoin` tables, in every order; in a schema without links, every pair. Shortest first,
 * while `maxScopes` allows.
 */
function enumerateScopes(info: SchemaInfo, maxJoin: number, maxScopes: number): { scopes: Scope[]; complete: boolean } {
  const key = (t: SchemaTable) => t.name.toLowerCase();
  const adj = linksOf(info);
  const twice = new Map<string, Set<string>>();
  info.links.forEach(([a, b], i) => {
    if (info.links.findIndex(([x, y]) => x.toLowerCase() === a.toLowerCase() && y.toLowerCase() === b.toLowerCase()) < i)
      twice.set(a.toLowerCase(), (twice.get(a.toLowerCase()) ?? new Set()).add(b.toLowerCase()));
  });
  const byKey = new Map(info.tables.map((t) => [key(t), t]));
  const tuples: SchemaTable[][] = info.tables.map((t) => [t]);
  let frontier = tuples.slice();
  for (let n = 2; n <= maxJoin; n++) {
    const next: SchemaTable[][] = [];
    for (const tuple of frontier) {
      const cands = new Set<string>();
      for (const t of tuple) for (const o of adj.get(key(t)) ?? []) cands.add(o);
      if (adj.size === 0 && n === 2) for (const t of info.tables) cands.add(key(t));
      for (const c of cands) {
        const times = tuple.filter((t) => key(t) === c).length;
        // a table twice: only where another table of the chain has two foreign keys to it
        if (times === 0 || (times === 1 && tuple.some((t) => (twice.get(key(t)) ?? new Set()).has(c)))) next.push([...tuple, byKey.get(c)!]);
      }
    }
    tuples.push(...next);
    frontier = next;
  }
  const scopes: Scope[] = [];
  for (const tables of tuples) {
    const distinct = new Set(tables.map(key)).size === tables.length;
    const initials = new Set(tables.map((t) => t.name[0].toLowerCase()));
    const styles: AliasStyle[] = distinct ? ["none", "T"] : ["T"];
    if (distinct && initials.size === tables.length && tables.every((t) => /^[a-z]/i.test(t.name))) styles.push("initial");
    for (const style of styles) {
      if (scopes.length >= maxScopes) return { scopes, complete: false };
      scopes.push({ tables, style });
    }
  }
  return { scopes, complete: true };
}

/** The rules of one scope, named `s<i>-*`. */
function scopeRules(s: Scope, i: number, tableIndex: Map<SchemaTable, number>): string[] {
  const p = `s${i}`;
  const counts = new Map<string, number>();
  for (const t of s.tables) for (const c of t.columns) counts.set(c.toLowerCase(), (counts.get(c.toLowerCase()) ?? 0) + 1);
  const bare = [...new Set(s.tables.flatMap((t) => t.columns))].filter((c) => counts.get(c.toLowerCase()) === 1);
  // a table twice in one scope is always aliased T1..Tn, so the qualifiers are distinct
  const qualified = s.tables.map((t, j) => `${aliasOf(s, j) ? ci(aliasOf(s, j)!) : `t${tableIndex.get(t)}-name`} "." t${tableIndex.get(t)}-cols`);
  const colAlts = [...(bare.length ? [s.tables.length === 1 ? `t${tableIndex.get(s.tables[0])}-cols` : identifier(bare)] : []), ...qualified];
  const trefs = s.tables.map((t, j) => {
    const a = aliasOf(s, j);
    return a ? `t${tableIndex.get(t)}-name sp (${K("as")} sp)? ${ci(a)}` : `t${tableIndex.get(t)}-name`;
  });
  const from = trefs.map((t, j) => (j === 0 ? t : `join ${t} (sp ${K("on")} sp ${p}-on)?`)).join(" ");
  const allCols = s.tables.map((t, j) => `${aliasOf(s, j) ? ci(aliasOf(s, j)!) : `t${tableIndex.get(t)}-name`} "." "*"`);
  const andOr = `sp (${K("and")} | ${K("or")}) sp`;
  return [
    `${p}-col ::= ${colAlts.join(" | ")}`,
    // aggregates only where SQLite takes them (select items, HAVING, ORDER BY), never nested
    `${p}-agg ::= (${K("count")} ws "(" ws ("*" | (${K("distinct")} sp)? ${p}-expr) | aggname ws "(" ws (${K("distinct")} sp)? ${p}-expr) ws ")"`,
    `${p}-term ::= ${p}-col | num | str | "(" ws ${p}-expr ws ")" | subquery1`,
    `${p}-expr ::= ${p}-term (ws arith ws ${p}-term)*`,
    `${p}-aterm ::= ${p}-agg | ${p}-term`,
    `${p}-aexpr ::= ${p}-aterm (ws arith ws ${p}-aterm)*`,
    `${p}-star ::= "*" | ${allCols.join(" | ")}`,
    `${p}-any ::= ${p}-star | ${p}-aexpr`,
    `${p}-pred ::= ${K("not")} sp ${p}-pred | "(" ws ${p}-cond ws ")" | ${p}-expr (ws cmp ws (${p}-expr | dqstr) | sp (${K("not")} sp)? (${K("in")} ws (subquery1 | "(" ws value (ws "," ws value)* ws ")") | ${K("like")} sp value | ${K("between")} sp ${p}-expr sp ${K("and")} sp ${p}-expr) | sp ${K("is")} sp (${K("not")} sp)? ${K("null")}) | ${K("exists")} ws subquery`,
    `${p}-cond ::= ${p}-pred (${andOr} ${p}-pred)*`,
    `${p}-hpred ::= ${p}-aexpr (ws cmp ws (${p}-aexpr | dqstr) | sp (${K("not")} sp)? (${K("between")} sp ${p}-aexpr sp ${K("and")} sp ${p}-aexpr | ${K("in")} ws subquery1))`,
    `${p}-having ::= ${p}-hpred (${andOr} ${p}-hpred)*`,
    `${p}-on ::= ${p}-col ws cmp ws ${p}-col (${andOr} ${p}-col ws cmp ws ${p}-col)*`,
    // GROUP BY and ORDER BY never start with a number (SQLite reads it as a column position)
    `${p}-group ::= (${p}-col | "(" ws ${p}-expr ws ")") (ws arith ws ${p}-term)*`,
    `${p}-ord ::= (${p}-col | ${p}-agg | "(" ws ${p}-aexpr ws ")") (ws arith ws ${p}-aterm)* (sp (${K("asc")} | ${K("desc")}))?`,
    `${p}-head ::= ${K("select")} sp (${K("distinct")} sp)?`,
    `${p}-rest ::= sp ${K("from")} sp ${from} (sp ${K("where")} sp ${p}-cond)? (sp ${K("group by")} sp ${p}-group (ws "," ws ${p}-group)* (sp ${K("having")} sp ${p}-having)?)?`,
    `${p}-tail ::= sp ${K("order by")} sp ${p}-ord (ws "," ws ${p}-ord)* (sp limit)? | sp limit`,
    // the SELECTs of a set operation have as many columns: one to three, never *
    `${p}-core1 ::= ${p}-head ${p}-aexpr ${p}-rest`,
    `${p}-core2 ::= ${p}-head ${p}-aexpr ws "," ws ${p}-aexpr ${p}-rest`,
    `${p}-core3 ::= ${p}-head ${p}-aexpr ws "," ws ${p}-aexpr ws "," ws ${p}-aexpr ${p}-rest`,
    `${p}-query1 ::= ${p}-core1 (${p}-tail | (sp setop sp core1)+ (sp limit)?)?`,
    `${p}-query ::= ${p}-head (${p}-aexpr (${p}-rest (${p}-tail | (sp setop sp core1)+ (sp limit)?)? | ws "," ws (${p}-aexpr (${p}-rest (${p}-tail | (sp setop sp core2)+ (sp limit)?)? | ws "," ws (${p}-aexpr (${p}-rest (${p}-tail | (sp setop sp core3)+ (sp limit)?)? | ws "," ws ${p}-any ${p}-more) | ${p}-star ${p}-more)) | ${p}-star ${p}-more)) | ${p}-star ${p}-more)`,
    // a fourth column, or *: no set operation
    `${p}-more ::= (ws "," ws ${p}-any)* ${p}-rest ${p}-tail?`,
  ];
}

export interface SqlGrammar {
  /** GBNF text; root rule `root` */
  gbnf: string;
  /** FROM scopes enumerated */
  scopes: number;
  /** false when `maxScopes` cut the enumeration (some joins of the schema cannot be written) */
  complete: boolean;
  notes: string[];
}

export interface SqlGrammarOptions {
  /** most tables joined in one SELECT (default 3) */
  maxJoin?: number;
  /** most FROM scopes (tables × alias styles; default 200): bounds the grammar's size and its decoding cost */
  maxScopes?: number;
}

/**
 * The GBNF grammar of one SQLite SELECT statement (optionally ending in `;`) over a schema: joins
 * along foreign keys, WHERE/GROUP BY/HAVING, ORDER BY/LIMIT, sub-queries, UNION/INTERSECT/EXCEPT,
 * LIKE/IN/BETWEEN/NOT/IS NULL, COUNT/SUM/AVG/MIN/MAX with DISTINCT, literals; keywords and
 * identifiers case-insensitive. Every column is a column of a table in its SELECT's FROM.
 */
export function sqlGrammar(schema: SchemaInfo, opts: SqlGrammarOptions = {}): SqlGrammar {
  if (schema.tables.length === 0) throw new Error("schema: no tables with columns to constrain the SQL to");
  const { scopes, complete } = enumerateScopes(schema, opts.maxJoin ?? 3, opts.maxScopes ?? 200);
  const tableIndex = new Map(schema.tables.map((t, i) => [t, i]));
  const rules = [
    `root ::= ws query ws ";"?`,
    `query ::= ${scopes.map((_, i) => `s${i}-query`).join(" | ")}`,
    `query1 ::= ${scopes.map((_, i) => `s${i}-query1`).join(" | ")}`,
    `core1 ::= ${scopes.map((_, i) => `s${i}-core1`).join(" | ")}`,
    `core2 ::= ${scopes.map((_, i) => `s${i}-core2`).join(" | ")}`,
    `core3 ::= ${scopes.map((_, i) => `s${i}-core3`).join(" | ")}`,
    ...commonRules(),
    ...schema.tables.flatMap((t, i) => [`t${i}-name ::= ${identifier([t.name])}`, `t${i}-cols ::= ${identifier(t.columns)}`]),
    ...scopes.flatMap((s, i) => scopeRules(s, i, tableIndex)),
  ];
  const notes = [...schema.notes];
  if (!complete) notes.push(`only the first ${scopes.length} FROM scopes are in the grammar (maxScopes): some joins cannot be written`);
  return { gbnf: rules.join("\n") + "\n", scopes: scopes.length, complete, notes };
}
