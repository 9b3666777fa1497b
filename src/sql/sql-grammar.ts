// Schema-constrained decoding's grammar: the tables, columns and foreign keys of a schema (read
// from CREATE TABLE text without running it, or from a live SQLite file through the read-only
// query process), and a GBNF grammar of the SQLite SELECT dialect Spider uses whose identifiers
// are only that schema's. Each SELECT is bound to one FROM scope (a table, or a foreign-key chain
// of joined tables, each unaliased, aliased T1..Tn, or aliased by its initial): its columns can only
// be columns of the scope's tables, so what the grammar accepts names no column SQLite would miss;
// but for the joins past `maxScopes`, which are loose (columns of the schema, not of the alias).
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
  /** tables with a foreign key to themselves (employees.reports_to → employees.id): self-joins */
  selfLinks?: string[];
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
    const seen = new Set<string>(); // lower-cased column names, against duplicates
    // the items of the column list: split at commas at depth 1
    let depth = 0;
    let item: SqlToken[] = [];
    const endItem = () => {
      const head = item[0];
      if (head && isNameToken(head) && !(head.kind === "word" && TABLE_CONSTRAINTS.has(head.text))) {
        const col = nameOf(stmt, head);
        if (!seen.has(col.toLowerCase())) {
          seen.add(col.toLowerCase());
          table.columns.push(col);
        }
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
  const selfLinks = new Set<string>();
  for (const [a, b] of refs) {
    const ta = tables.get(a.toLowerCase());
    const tb = tables.get(b.toLowerCase());
    if (ta && tb && ta !== tb) links.push([ta.name, tb.name]);
    else if (ta && ta === tb) selfLinks.add(ta.name);
  }
  return { tables: [...tables.values()], links, selfLinks: [...selfLinks], notes };
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
  const selfLinks = new Set<string>();
  if (fks.ok) {
    for (const [a, b] of fks.rows as [string, string][]) {
      const ta = tables.get(a.toLowerCase());
      const tb = tables.get(String(b).toLowerCase());
      if (ta && tb && ta !== tb) links.push([ta.name, tb.name]);
      else if (ta && ta === tb) selfLinks.add(ta.name);
    }
  }
  return { tables: [...tables.values()], links, selfLinks: [...selfLinks], notes: fks.ok ? [] : [`foreign keys not read (${fks.error})`] };
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
    for (const w of ws) {
      if (w.length <= at) continue;
      const k = w[at].toLowerCase();
      const g = groups.get(k);
      if (g) g.push(w);
      else groups.set(k, [w]);
    }
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

/**
 * Whether the grammar can write a name: in the three quoted forms, so with no quote character of
 * theirs and no control character (a bare name is one of these too).
 */
const nameable = (n: string): boolean => n.length > 0 && !/["`\]]/.test(n) && ![...n].some((c) => c.charCodeAt(0) < 0x20);

/**
 * The schema without what the grammar cannot name (hostile or odd names): such columns, and tables
 * whose name or every column is such; the notes say what was left out. A rule that could never
 * match would still be a text to close answers with (src/formats/gbnf.ts).
 */
function nameableSchema(schema: SchemaInfo): { schema: SchemaInfo; notes: string[] } {
  const notes: string[] = [];
  const tables: SchemaTable[] = [];
  for (const t of schema.tables) {
    const columns = t.columns.filter(nameable);
    const odd = t.columns.filter((c) => !nameable(c)).map((c) => JSON.stringify(c));
    if (!nameable(t.name) || columns.length === 0) {
      notes.push(
        `table ${JSON.stringify(t.name)} left out: ${nameable(t.name) ? "no column of it can" : "its name cannot"} be written (a quote or control character)`,
      );
      continue;
    }
    if (odd.length) notes.push(`column${odd.length > 1 ? "s" : ""} ${odd.join(", ")} of ${t.name} left out: a quote or control character in the name`);
    tables.push({ name: t.name, columns });
  }
  const kept = new Set(tables.map((t) => t.name));
  const links = schema.links.filter(([a, b]) => kept.has(a) && kept.has(b));
  return { schema: { ...schema, tables, links, selfLinks: schema.selfLinks?.filter((n) => kept.has(n)) }, notes };
}

/**
 * The rules of an identifier named `name` (names the grammar can write: nameableSchema): bare
 * (plain names that are no keyword), "quoted", `quoted` and [bracketed], the names' trie written
 * once (`name-q`) for the three quoted forms.
 */
function identifierRules(name: string, names: string[], orAny = false): string[] {
  if (names.length === 0 || !names.every(nameable)) throw new Error(`sql grammar: ${name}: no names, or names it cannot write`);
  const bare = names.filter((n) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(n) && !RESERVED.has(n.toLowerCase()));
  const alts = [bare.length === names.length ? `${name}-q` : bare.length ? trie(bare) : ""].filter(Boolean);
  alts.push(`"\\"" ${name}-q "\\""`, `"\`" ${name}-q "\`"`, `"[" ${name}-q "]"`);
  if (orAny) alts.push("any-ident");
  return [`${name} ::= ${alts.join(" | ")}`, `${name}-q ::= ${trie(names)}`];
}

/**
 * The most columns a grammar lists by name (over all its tables). Spider's largest schema has a
 * few hundred; a schema of 100 tables of 700 columns would make a grammar of megabytes that takes
 * seconds to build, parse and decode with, so past this the columns are left out loosely.
 */
export const MAX_GRAMMAR_COLUMNS = 2000;

/** Any identifier: what stands for the columns left out past the budget (bare or "quoted"). */
const ANY_IDENT = `any-ident ::= [A-Za-z_] [A-Za-z0-9_]{0,63} | "\\"" [^"\\x00-\\x1f]{1,64} "\\""`;

/**
 * The schema with at most `max` columns listed: tables in order, each keeping its first columns
 * while the budget lasts (at least one); `open` holds the tables that lost columns, whose further
 * columns the grammar writes as any identifier, and `note` says so.
 */
function budgetColumns(schema: SchemaInfo, max: number): { schema: SchemaInfo; open: Set<SchemaTable>; note?: string } {
  if (!(Number.isInteger(max) && max >= 1)) throw new TypeError(`maxColumns: expected a positive integer, got ${JSON.stringify(max)}`);
  const total = schema.tables.reduce((n, t) => n + t.columns.length, 0);
  if (total <= max) return { schema, open: new Set() };
  let left = max;
  const open = new Set<SchemaTable>();
  const tables = schema.tables.map((t) => {
    const keep = Math.max(1, Math.min(t.columns.length, left));
    left -= keep;
    if (keep === t.columns.length) return t;
    const cut = { name: t.name, columns: t.columns.slice(0, keep) };
    open.add(cut);
    return cut;
  });
  const note =
    `the schema has ${total} columns, more than the ${max} the grammar lists by name (MAX_GRAMMAR_COLUMNS): ` +
    `the other ${total - tables.reduce((n, t) => n + t.columns.length, 0)} columns, of ${open.size} table${open.size === 1 ? "" : "s"} from ${[...open][0].name} on, are left out loosely (any identifier stands for them)`;
  return { schema: { ...schema, tables }, open, note };
}

/**
 * Every keyword once, as a rule `k-<words>`, in any case (words joined by `sp`): one parse stack
 * per keyword where its upper, lower and capitalized forms would make three.
 */
const KEYWORDS = [
  ...["select", "distinct", "from", "where", "group by", "having", "order by", "limit", "asc", "desc", "as", "on", "and", "or", "not"],
  ...["in", "like", "between", "is", "null", "exists", "count", "union", "all", "intersect", "except"],
  ...["join", "inner join", "left", "outer", "cross join"],
];
const K = (w: string) => `k-${w.replace(/ /g, "-")}`;
/** Whether a grammar rule (or one parseGbnf made inside it) is a keyword's: closes write those in upper case. */
export const keywordRule = (rule: string): boolean => rule.startsWith("k-");
function keywordRules(): string[] {
  return KEYWORDS.map((w) => `${K(w)} ::= ${w.split(" ").map(ci).join(" sp ")}`);
}

/** Rules shared by every scope. */
function commonRules(): string[] {
  return [
    // bounded (Spider's gold SQL has up to 3 spaces in a row and 28 characters in a literal): a
    // model that wanders into spaces or a string still has to close it and go on
    `ws ::= [ \t]{0,3}`,
    `sp ::= [ \t]{1,3}`,
    // a term's number is unsigned, and an expression may start with "-": an arithmetic "-" then
    // never meets a negative number ("a --1"), which SQLite would read as the start of a comment
    `unum ::= [0-9]{1,15} ("." [0-9]{1,8})?`,
    `num ::= "-"? unum`,
    `int ::= [0-9]{1,9}`,
    `str ::= "'" ([^'\\n] | "''"){0,40} "'"`,
    `dqstr ::= "\\"" [^"\\n]{0,40} "\\""`,
    `value ::= str | dqstr | num`,
    `arith ::= "+" | "-" | "*" | "/"`,
    `cmp ::= "=" "="? | "!=" | "<>" | "<" "="? | ">" "="?`,
    `andor ::= sp (${K("and")} | ${K("or")}) sp`,
    `aggname ::= ${trie(["sum", "avg", "min", "max"])}`,
    `setop ::= ${K("union")} (sp ${K("all")})? | ${K("intersect")} | ${K("except")}`,
    `join ::= sp (${K("join")} | ${K("inner join")} | ${K("left")} (sp ${K("outer")})? sp ${K("join")} | ${K("cross join")}) sp | ws "," ws`,
    `as ::= sp (${K("as")} sp)?`,
    `limit ::= ${K("limit")} sp int`,
    `head ::= ${K("select")} sp (${K("distinct")} sp)?`,
    `subquery ::= "(" ws head nquery ws ")"`,
    `subquery1 ::= "(" ws head query1 ws ")"`,
    // a sub-query in FROM: only counted or selected whole (its columns have no names here)
    `derived ::= (${K("count")} ws "(" ws "*" ws ")" | "*") sp ${K("from")} ws "(" ws head nquery ws ")" (as [tT] [0-9])?`,
    ...keywordRules(),
  ];
}

// ---------------------------------------------------------------------------------------------
// Scopes: what one SELECT's FROM holds

type AliasStyle = "none" | "T" | "initial";
interface Scope {
  /** the tables; with style T, tables[j] is aliased T<base + j + 1> */
  tables: SchemaTable[];
  style: AliasStyle;
  base: number;
  /** the orders FROM may list the tables in (indexes into tables) */
  orders: number[][];
  /** only in sub-queries and after set operations (aliases that go on from an outer SELECT's) */
  nested: boolean;
}

/** The alias of the table at position j in a scope. */
function aliasOf(s: Scope, j: number): string | undefined {
  if (s.style === "T") return `T${s.base + j + 1}`;
  if (s.style === "initial") return s.tables[j].name[0].toLowerCase();
  return undefined;
}

/**
 * Foreign-key links, plus links between tables sharing a key-like column name (ending in id, code,
 * key or no, other than a bare "id"), from a column named after a table (flights.airline →
 * airlines) and from a key-like column holding a table's name as a word (trip.start_station_id →
 * station): hand-written schemas often leave foreign keys out.
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
  const holds = (c: string, t: SchemaTable) => {
    const head = `_${c.toLowerCase().split("_").slice(0, -1).join("_")}_`;
    return keyish(c) && named(t).some((n) => head.includes(`_${n}_`));
  };
  for (const a of info.tables)
    for (const b of info.tables)
      if (
        a !== b &&
        a.columns.some((c) => (keyish(c) && b.columns.some((d) => d.toLowerCase() === c.toLowerCase())) || named(b).includes(c.toLowerCase()) || holds(c, b))
      )
        link(a.name.toLowerCase(), b.name.toLowerCase());
  return adj;
}

/**
 * The joins of n tables: chains where each next table is linked to one before it (linksOf; a table
 * may come twice, for self-joins, where another table of the chain has two foreign keys to it or it has one to itself), in
 * every order; in a schema without links, every pair. From the chains of n - 1 tables.
 */
function nextChains(info: SchemaInfo, adj: Map<string, Set<string>>, prev: SchemaTable[][], n: number): SchemaTable[][] {
  const key = (t: SchemaTable) => t.name.toLowerCase();
  const byKey = new Map(info.tables.map((t) => [key(t), t]));
  const twice = new Map<string, Set<string>>();
  info.links.forEach(([a, b], i) => {
    if (info.links.findIndex(([x, y]) => x.toLowerCase() === a.toLowerCase() && y.toLowerCase() === b.toLowerCase()) < i)
      twice.set(a.toLowerCase(), (twice.get(a.toLowerCase()) ?? new Set()).add(b.toLowerCase()));
  });
  const self = new Set((info.selfLinks ?? []).map((t) => t.toLowerCase()));
  const next: SchemaTable[][] = [];
  for (const tuple of prev) {
    const cands = new Set<string>();
    for (const t of tuple) for (const o of [...(adj.get(key(t)) ?? []), ...(self.has(key(t)) ? [key(t)] : [])]) cands.add(o);
    if (adj.size === 0 && n === 2) for (const t of info.tables) cands.add(key(t));
    for (const c of cands) {
      const times = tuple.filter((t) => key(t) === c).length;
      if (times === 0 || (times === 1 && (self.has(c) || tuple.some((t) => (twice.get(key(t)) ?? new Set()).has(c))))) next.push([...tuple, byKey.get(c)!]);
    }
  }
  return next;
}

/**
 * The FROM scopes of n tables, from the chains of n tables: aliased T1..Tn (one scope per chain,
 * listed in its order or, for two tables, reversed: `FROM b AS T2 JOIN a AS T1`), and, for chains
 * of distinct tables, unaliased or aliased by initials (one scope per set of tables, listed in any
 * of its chains' orders). Two-table chains also go on from an outer SELECT's aliases (T3, T4 and
 * T4, T5) in sub-queries and after set operations.
 */
function scopesOf(chains: SchemaTable[][], offsets: number[]): Scope[] {
  const t: Scope[] = [];
  const sets = new Map<string, Scope[]>();
  const nested: Scope[] = [];
  for (const tables of chains) {
    const n = tables.length;
    const orders =
      n === 2
        ? [
            [0, 1],
            [1, 0],
          ]
        : [tables.map((_, j) => j)];
    t.push({ tables, style: "T", base: 0, orders, nested: false });
    if (n === 2) for (const base of offsets) nested.push({ tables, style: "T", base, orders, nested: true });
    const names = tables.map((x) => x.name.toLowerCase());
    if (new Set(names).size < n) continue;
    const key = [...names].sort().join("\0");
    const have = sets.get(key);
    if (have) {
      for (const s of have) s.orders.push(tables.map((x) => s.tables.indexOf(x)));
      continue;
    }
    const styles: AliasStyle[] = ["none"];
    if (new Set(tables.map((x) => x.name[0].toLowerCase())).size === n && tables.every((x) => /^[a-z]/i.test(x.name))) styles.push("initial");
    sets.set(
      key,
      styles.map((style) => ({ tables, style, base: 0, orders: [tables.map((_, j) => j)], nested: false })),
    );
  }
  return [...[...sets.values()].flat(), ...t, ...nested];
}

/**
 * Scopes by size, shortest joins first, up to `maxJoin` tables while `maxScopes` allows; `cut` is
 * the first size whose scopes did not all fit (the loose scopes take those sizes), or null.
 */
function enumerateScopes(info: SchemaInfo, maxJoin: number, maxScopes: number, offsets: number[]): { scopes: Scope[]; cut: number | null } {
  const adj = linksOf(info);
  const scopes: Scope[] = [];
  let chains: SchemaTable[][] = info.tables.map((t) => [t]);
  for (let n = 1; n <= maxJoin; n++) {
    if (n > 1) chains = nextChains(info, adj, chains, n);
    if (chains.length === 0) break;
    const more = scopesOf(chains, offsets);
    if (scopes.length + more.length > maxScopes) {
      scopes.push(...more.slice(0, maxScopes - scopes.length));
      return { scopes, cut: n };
    }
    scopes.push(...more);
  }
  return { scopes, cut: null };
}

/** A scope's own pieces: its column references, its `*`s, its FROM. */
interface ScopeParts {
  col: string;
  stars: string[];
  from: string;
  /** `SELECT * ... UNION SELECT * ...` over this scope twice (the column counts are equal) */
  starSetOps: boolean;
  /** rules the pieces refer to */
  extra: string[];
}

function preciseParts(s: Scope, p: string, tableIndex: Map<SchemaTable, number>, open: Set<SchemaTable>): ScopeParts {
  const counts = new Map<string, number>();
  for (const t of s.tables) for (const c of t.columns) counts.set(c.toLowerCase(), (counts.get(c.toLowerCase()) ?? 0) + 1);
  const bare = [...new Set(s.tables.flatMap((t) => t.columns))].filter((c) => counts.get(c.toLowerCase()) === 1);
  // a table twice in one scope is always aliased T1..Tn, so the qualifiers are distinct
  const qual = (j: number) => (aliasOf(s, j) ? ci(aliasOf(s, j)!) : `t${tableIndex.get(s.tables[j])}-name`);
  const qualified = s.tables.map((t, j) => `${qual(j)} "." t${tableIndex.get(t)}-cols`);
  const single = s.tables.length === 1;
  const colAlts = [...(bare.length ? [single ? `t${tableIndex.get(s.tables[0])}-cols` : `${p}-bare`] : []), ...qualified];
  // a table whose columns past the grammar's budget were left out: any name may stand for one of them
  if (!single && s.tables.some((t) => open.has(t))) colAlts.push("any-ident");
  const tref = (j: number) => {
    const a = aliasOf(s, j);
    return a ? `t${tableIndex.get(s.tables[j])}-name as ${ci(a)}` : `t${tableIndex.get(s.tables[j])}-name`;
  };
  const from = s.orders.map((order) => order.map((j, k) => (k === 0 ? tref(j) : `join ${tref(j)} (sp ${K("on")} sp ${p}-on)?`)).join(" "));
  return {
    col: colAlts.join(" | "),
    stars: s.tables.map((_, j) => `${qual(j)} "." "*"`),
    from: from.length === 1 ? from[0] : `(${from.join(" | ")})`,
    starSetOps: true,
    extra: bare.length && !single ? identifierRules(`${p}-bare`, bare) : [],
  };
}

/**
 * A loose scope: a join of n tables of the schema, aliased T1..Tn, whose columns are qualified by
 * those aliases and are columns of the schema, but not checked against the aliased table (the
 * joins too many to enumerate).
 */
function looseParts(n: number, p: string): ScopeParts {
  const alias = n === 1 ? `[tT] "1"` : `[tT] [1-${n}]`;
  const trefs = Array.from({ length: n }, (_, j) => `any-table as [tT] "${j + 1}"`);
  return {
    col: `${alias} "." any-col | any-col`,
    stars: [`${alias} "." "*"`],
    from: trefs.map((t, j) => (j === 0 ? t : `join ${t} (sp ${K("on")} sp ${p}-on)?`)).join(" "),
    starSetOps: true,
    extra: [],
  };
}

/** The rules of one scope, named `<p>-*`. */
function scopeRules(p: string, parts: ScopeParts): string[] {
  const count = K("count");
  const distinct = K("distinct");
  const setops = (core: string) => `(${p}-tail | (sp setop sp head ${core})+ (sp limit)?)?`;
  const starSet = parts.starSetOps ? ` | (sp setop sp head "*" ${p}-rest)+ (sp limit)?` : "";
  return [
    ...parts.extra,
    `${p}-col ::= ${parts.col}`,
    // aggregates only where SQLite takes them (select items, HAVING, ORDER BY), never nested
    `${p}-agg ::= (${count} ws "(" ws ("*" | (${distinct} sp)? ${p}-expr) | aggname ws "(" ws (${distinct} sp)? ${p}-expr) ws ")"`,
    `${p}-term ::= ${p}-col | unum | str | "(" ws ${p}-expr ws ")" | subquery1`,
    // at most 4 operands (Spider's gold queries have 3): a wandering model must close the expression
    `${p}-expr ::= "-"? ${p}-term (ws arith ws ${p}-term){0,3}`,
    `${p}-aterm ::= ${p}-agg | ${p}-term`,
    `${p}-aexpr ::= "-"? ${p}-aterm (ws arith ws ${p}-aterm){0,3}`,
    `${p}-qstar ::= ${parts.stars.join(" | ")}`,
    `${p}-any ::= "*" | ${p}-qstar | ${p}-aexpr`,
    `${p}-pred ::= ${K("not")} sp ${p}-pred | "(" ws ${p}-cond ws ")" | ${p}-expr (ws cmp ws (${p}-expr | dqstr) | sp (${K("not")} sp)? (${K("in")} ws (subquery1 | "(" ws value (ws "," ws value)* ws ")") | ${K("like")} sp value | ${K("between")} sp ${p}-expr sp ${K("and")} sp ${p}-expr) | sp ${K("is")} sp (${K("not")} sp)? ${K("null")}) | ${K("exists")} ws subquery`,
    `${p}-cond ::= ${p}-pred (andor ${p}-pred)*`,
    `${p}-hpred ::= ${p}-aexpr (ws cmp ws (${p}-aexpr | dqstr) | sp (${K("not")} sp)? (${K("between")} sp ${p}-aexpr sp ${K("and")} sp ${p}-aexpr | ${K("in")} ws subquery1))`,
    `${p}-having ::= ${p}-hpred (andor ${p}-hpred)*`,
    `${p}-on ::= ${p}-col ws cmp ws ${p}-col (andor ${p}-col ws cmp ws ${p}-col)*`,
    // GROUP BY and ORDER BY never start with a number (SQLite reads it as a column position)
    `${p}-group ::= (${p}-col | "(" ws ${p}-expr ws ")") (ws arith ws ${p}-term)*`,
    `${p}-ord ::= (${p}-col | ${p}-agg | "(" ws ${p}-aexpr ws ")") (ws arith ws ${p}-aterm)* (sp (${K("asc")} | ${K("desc")}))?`,
    `${p}-rest ::= sp ${K("from")} sp ${parts.from} (sp ${K("where")} sp ${p}-cond)? (sp ${K("group by")} sp ${p}-group (ws "," ws ${p}-group)* (sp ${K("having")} sp ${p}-having)?)?`,
    `${p}-tail ::= sp ${K("order by")} sp ${p}-ord (ws "," ws ${p}-ord)* (sp limit)? | sp limit`,
    // the SELECTs of a set operation have as many columns: one to three, or * over the same FROM
    `${p}-core1 ::= ${p}-aexpr ${p}-rest`,
    `${p}-core2 ::= ${p}-aexpr ws "," ws ${p}-aexpr ${p}-rest`,
    `${p}-core3 ::= ${p}-aexpr ws "," ws ${p}-aexpr ws "," ws ${p}-aexpr ${p}-rest`,
    `${p}-query1 ::= ${p}-core1 ${setops("core1")}`,
    `${p}-query ::= ${p}-aexpr (${p}-rest ${setops("core1")} | ws "," ws (${p}-aexpr (${p}-rest ${setops("core2")} | ws "," ws (${p}-aexpr (${p}-rest ${setops("core3")} | ws "," ws ${p}-any ${p}-more) | ${p}-anystar ${p}-more)) | ${p}-anystar ${p}-more)) | ${p}-star1`,
    `${p}-anystar ::= "*" | ${p}-qstar`,
    `${p}-star1 ::= "*" ${p}-rest (${p}-tail${starSet})? | ${p}-anystar ws "," ws ${p}-any ${p}-more | ${p}-qstar ${p}-rest ${p}-tail?`,
    // a fourth column, or *: no set operation
    `${p}-more ::= (ws "," ws ${p}-any)* ${p}-rest ${p}-tail?`,
  ];
}

export interface SqlGrammar {
  /** GBNF text; root rule `root` */
  gbnf: string;
  /** FROM scopes enumerated (the loose ones not counted) */
  scopes: number;
  /** false when `maxScopes` cut the enumeration (the joins it left out are loose: see `loose`) */
  complete: boolean;
  /** the join sizes (numbers of tables) written through loose scopes, whose columns are not checked against their alias's table */
  loose: number[];
  notes: string[];
}

export interface SqlGrammarOptions {
  /** most columns listed by name, over all tables (default MAX_GRAMMAR_COLUMNS): past it, a table's further columns are any identifier (said in notes) */
  maxColumns?: number;
  /** most tables joined in one SELECT (default 6) */
  maxJoin?: number;
  /** most FROM scopes checked column by column (tables × alias styles; default 200): bounds the grammar's size and its decoding cost; larger joins are loose */
  maxScopes?: number;
}

/**
 * The GBNF grammar of one SQLite SELECT statement (optionally ending in `;`) over a schema: joins
 * along foreign keys, WHERE/GROUP BY/HAVING, ORDER BY/LIMIT, sub-queries (in FROM too, counted or
 * selected whole), UNION/INTERSECT/EXCEPT, LIKE/IN/BETWEEN/NOT/IS NULL, COUNT/SUM/AVG/MIN/MAX with
 * DISTINCT, literals; keywords and identifiers case-insensitive. Every column is a column of a
 * table in its SELECT's FROM, but in the loose scopes (joins past `maxScopes`): there, of the schema.
 */
export function sqlGrammar(info: SchemaInfo, opts: SqlGrammarOptions = {}): SqlGrammar {
  const { schema: named, notes: unnamed } = nameableSchema(info);
  if (named.tables.length === 0) throw new Error(`schema: no tables with columns to constrain the SQL to${unnamed.length ? ` (${unnamed.join("; ")})` : ""}`);
  const { schema, open, note: capped } = budgetColumns(named, opts.maxColumns ?? MAX_GRAMMAR_COLUMNS);
  if (capped) unnamed.push(capped);
  const maxJoin = Math.min(opts.maxJoin ?? 6, 9);
  const { scopes, cut } = enumerateScopes(schema, maxJoin, opts.maxScopes ?? 200, [2, 3]);
  const tableIndex = new Map(schema.tables.map((t, i) => [t, i]));
  const loose = cut === null ? [] : Array.from({ length: maxJoin - cut + 1 }, (_, k) => cut + k);
  const names = [...scopes.map((_, i) => `s${i}`), ...loose.map((n) => `l${n}`)];
  const top = names.filter((_, i) => !scopes[i]?.nested);
  const nested = names.filter((_, i) => scopes[i]?.nested);
  const alts = (ps: string[], r: string) => ps.map((x) => `${x}-${r}`).join(" | ");
  const rules = [
    `root ::= ws head (query | derived) ws ";"?`,
    `query ::= ${alts(top, "query")}`,
    `nquery ::= query${nested.length ? ` | ${alts(nested, "query")}` : ""}`,
    `query1 ::= ${alts(names, "query1")}`,
    `core1 ::= ${alts(names, "core1")}`,
    `core2 ::= ${alts(names, "core2")}`,
    `core3 ::= ${alts(names, "core3")}`,
    ...commonRules(),
    ...schema.tables.flatMap((t, i) => [...identifierRules(`t${i}-name`, [t.name]), ...identifierRules(`t${i}-cols`, t.columns, open.has(t))]),
    ...scopes.flatMap((s, i) => scopeRules(`s${i}`, preciseParts(s, `s${i}`, tableIndex, open))),
  ];
  if (open.size) rules.push(ANY_IDENT);
  if (loose.length) {
    rules.push(
      ...identifierRules(
        "any-table",
        schema.tables.map((t) => t.name),
      ),
      ...identifierRules(
        "any-col",
        schema.tables.flatMap((t) => t.columns),
        open.size > 0,
      ),
    );
    for (const n of loose) rules.push(...scopeRules(`l${n}`, looseParts(n, `l${n}`)));
  }
  const notes = [...schema.notes, ...unnamed];
  if (cut !== null)
    notes.push(
      `only the first ${scopes.length} FROM scopes are checked column by column (maxScopes): joins of ${cut} to ${maxJoin} tables are loose (their columns are the schema's, not checked against the aliased table)`,
    );
  return { gbnf: rules.join("\n") + "\n", scopes: scopes.length, complete: cut === null, loose, notes };
}
