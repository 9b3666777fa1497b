// Schema linking: when a schema does not fit a prompt's budget, keep the tables most related to the
// question instead of the first ones. Tables are scored by a lexical match of their names and
// column names against the question's words, and the foreign-key neighbours of the tables kept
// come with them while they fit. Nothing here reads the database's rows, so values in the
// question (quoted text, numbers) only count through their words, like any other word.

/** One CREATE TABLE statement of a schema, as read for linking. */
export interface SchemaTable {
  /** the statement's text, exactly as in the schema */
  text: string;
  /** the table's name (unquoted; "" when the statement is not a CREATE TABLE) */
  name: string;
  columns: string[];
  /** tables named by FOREIGN KEY ... REFERENCES or a column's REFERENCES (lower case) */
  references: string[];
}

/**
 * The statements of schema text, split after a `;` that ends a line (the split the prompt's
 * truncation has always used; Spider's schemas from tables.json are one CREATE TABLE per split).
 */
export function splitSchema(schema: string): string[] {
  return schema.split(/(?<=;)\n/);
}

/** A name with its quotes ("x", `x`, [x]) taken off. */
function unquote(name: string): string {
  const m = /^(?:"(.*)"|`(.*)`|\[(.*)\])$/s.exec(name);
  return m ? (m[1] ?? m[2] ?? m[3] ?? "") : name;
}

const NAME = String.raw`(?:"(?:[^"]|"")*"|\`[^\`]*\`|\[[^\]]*\]|[\w$\u0080-\uffff]+)`;
const CREATE_RE = new RegExp(String.raw`^\s*CREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:${NAME}\s*\.\s*)?(${NAME})\s*\(`, "i");
const REFERENCES_RE = new RegExp(String.raw`\bREFERENCES\s+(${NAME})`, "gi");
const CONSTRAINT_RE = /^(?:CONSTRAINT|PRIMARY|FOREIGN|UNIQUE|CHECK)\b/i;

/** The items of a column list (split at commas outside parentheses and quotes). */
function columnItems(body: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let quote = "";
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (quote) {
      if (c === quote) quote = "";
    } else if (c === '"' || c === "'" || c === "`") quote = c;
    else if (c === "[") quote = "]";
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 0) {
      items.push(body.slice(start, i));
      start = i + 1;
    }
  }
  items.push(body.slice(start));
  return items.map((s) => s.trim()).filter(Boolean);
}

/** Reads a statement's table name, column names and foreign-key targets. */
export function readTable(text: string): SchemaTable {
  const m = CREATE_RE.exec(text);
  if (!m) return { text, name: "", columns: [], references: [] };
  const body = text.slice(m[0].length, text.lastIndexOf(")") > m[0].length ? text.lastIndexOf(")") : undefined);
  const columns: string[] = [];
  for (const item of columnItems(body)) {
    if (CONSTRAINT_RE.test(item)) continue;
    const col = new RegExp(`^${NAME}`).exec(item);
    if (col) columns.push(unquote(col[0]));
  }
  const references = [...text.matchAll(REFERENCES_RE)].map((r) => unquote(r[1]!).toLowerCase());
  return { text, name: unquote(m[1]!), columns, references };
}

/** A few English words that say nothing about a table. */
const STOP = new Set(
  "a an the of in on at to for from by with and or not no is are was were be been do does did has have had what which who whom whose when where how many much " +
    "all any each every list show give find return display tell me us their its his her them they it this that these those than there please number count " +
    "name names id ids".split(" "),
);

/** Simple plural stripping: "cities" -> "city", "classes" -> "class", "heads" -> "head". */
function stem(w: string): string {
  if (w.length > 4 && w.endsWith("ies")) return `${w.slice(0, -3)}y`;
  if (w.length > 4 && /(?:ss|x|ch|sh)es$/.test(w)) return w.slice(0, -2);
  if (w.length > 3 && w.endsWith("s") && !w.endsWith("ss")) return w.slice(0, -1);
  return w;
}

/**
 * The words of a name or a question, lower case and stemmed: snake_case, camelCase, digits and
 * punctuation split words ("StudentID" -> student, id; "dept_name" -> dept, name).
 */
export function words(text: string): string[] {
  const parts = text
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9\u0080-\uffff]+/);
  return parts.filter(Boolean).map(stem);
}

/**
 * Each table's score against the question: every content word of the question (stop words
 * dropped) adds 2 when it is a word of the table's name, and 1 / (the number of tables with a
 * column holding that word) when it is a word of one of the table's columns, so a word that many
 * tables share (a date, a name) counts little.
 */
export function scoreTables(tables: readonly SchemaTable[], question: string): number[] {
  const q = new Set(words(question).filter((w) => !STOP.has(w)));
  const nameWords = tables.map((t) => new Set(words(t.name)));
  const colWords = tables.map((t) => new Set(t.columns.flatMap(words)));
  const df = new Map<string, number>();
  for (const cw of colWords) for (const w of cw) df.set(w, (df.get(w) ?? 0) + 1);
  return tables.map((_, i) => {
    let s = 0;
    for (const w of q) {
      if (nameWords[i]!.has(w)) s += 2;
      if (colWords[i]!.has(w)) s += 1 / df.get(w)!;
    }
    return s;
  });
}

export interface LinkedSchema {
  /** the statements kept, in their original order, joined as in the schema */
  schema: string;
  /** indices (in the schema's order) of the statements kept */
  kept: number[];
  /** names of the tables dropped (the statement's first 40 characters when it names none) */
  dropped: string[];
}

/** For each table, the tables it references and the tables that reference it. */
function foreignKeyNeighbours(tables: readonly SchemaTable[]): Set<number>[] {
  const index = new Map<string, number[]>();
  tables.forEach((t, i) => {
    const k = t.name.toLowerCase();
    if (t.name) index.set(k, [...(index.get(k) ?? []), i]);
  });
  const neighbours = tables.map(() => new Set<number>());
  tables.forEach((t, i) => {
    for (const r of t.references)
      for (const j of index.get(r) ?? [])
        if (j !== i) {
          neighbours[i]!.add(j);
          neighbours[j]!.add(i);
        }
  });
  return neighbours;
}

/**
 * The schema cut to fit: unchanged when `fits(schema)`. Otherwise tables are added one at a time,
 * each kept when the schema with it still fits and skipped when it does not, in three rounds:
 * 1. the tables that match the question (score > 0, `scoreTables`), best first;
 * 2. the foreign-key neighbours of the tables kept (tables they reference or that reference
 *    them), those next to the most kept tables first (a bridge table of a join), then by score;
 * 3. the rest, in the schema's order.
 * Ties keep the schema's order, so a question that matches nothing keeps the first tables, as
 * dropping from the end did. The result keeps the statements in their original order; it is empty
 * when not even one table fits. Deterministic.
 */
export function linkSchema(schema: string, question: string, fits: (schemaText: string) => boolean): LinkedSchema {
  const stmts = splitSchema(schema);
  if (fits(schema)) return { schema, kept: stmts.map((_, i) => i), dropped: [] };
  const tables = stmts.map(readTable);
  const scores = scoreTables(tables, question);
  const neighbours = foreignKeyNeighbours(tables);
  const kept = new Set<number>();
  const text = (set: Set<number>) =>
    [...set]
      .sort((a, b) => a - b)
      .map((i) => stmts[i]!)
      .join("\n");
  const tryAdd = (i: number) => {
    if (!kept.has(i) && fits(text(new Set(kept).add(i)))) kept.add(i);
  };
  const all = tables.map((_, i) => i);
  all
    .filter((i) => scores[i]! > 0)
    .sort((a, b) => scores[b]! - scores[a]! || a - b)
    .forEach(tryAdd);
  const links = (i: number) => [...neighbours[i]!].filter((j) => kept.has(j)).length;
  const bridges = all.filter((i) => !kept.has(i) && links(i) > 0).map((i) => ({ i, links: links(i) }));
  bridges.sort((a, b) => b.links - a.links || scores[b.i]! - scores[a.i]! || a.i - b.i).forEach((b) => tryAdd(b.i));
  all.forEach(tryAdd);
  const dropped = tables.filter((_, i) => !kept.has(i)).map((t) => t.name || t.text.trim().slice(0, 40));
  return { schema: text(kept), kept: [...kept].sort((a, b) => a - b), dropped };
}
