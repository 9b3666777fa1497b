// Datasets of question/SQL pairs: CSV (streamed with csv-parse), JSONL and Spider JSON (with
// tables.json for schema-carrying prompts), also BIRD JSON (question, evidence, SQL, db_id). Each
// row may carry its SQLite database (a CSV/JSONL `db` column, data.db, or Spider's and BIRD's
// <dir>/<db_id>/<db_id>.sqlite), checked here to exist and to be SQLite (its 16-byte header) but
// never opened for writing; BIRD's schema is read from the database. Bad input is an error naming
// the file, the line and what is wrong; duplicates are counted and reported, never dropped silently.
import { parse } from "csv-parse";
import fs from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { warn } from "../engine/system.js";
import { schemaFromSqlite } from "../sql/exec-metrics.js";
import { readUserFile, readUserFileHead, UserFileError } from "../util/user-file.js";
import type { TrainConfig } from "./config.js";

export interface Example {
  question: string;
  sql: string;
  schema?: string;
  /** BIRD's external knowledge for the question, for {evidence} in the template */
  evidence?: string;
  /** the absolute path of the example's SQLite database file, when it has one */
  db?: string;
  /** where it came from, for messages: "file:line" */
  source: string;
}

export class DataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DataError";
  }
}

export interface DatasetReport {
  files: string[];
  rows: number;
  duplicates: number;
  split: { train: number; eval: number; test: number };
}

export interface Dataset {
  train: Example[];
  eval: Example[];
  test: Example[];
  report: DatasetReport;
}

/** Byte offset of the first invalid UTF-8 sequence, or -1. */
export function findInvalidUtf8(buf: Uint8Array): number {
  let i = 0;
  while (i < buf.length) {
    const b = buf[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    const n = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    if (n === 0 || i + n > buf.length - 1) return i; // bad lead byte, or the sequence is cut off
    for (let k = 1; k <= n; k++) if ((buf[i + k] & 0xc0) !== 0x80) return i;
    const c = buf[i + 1];
    if ((b === 0xe0 && c < 0xa0) || (b === 0xed && c >= 0xa0) || (b === 0xf0 && c < 0x90) || (b === 0xf4 && c >= 0x90)) return i; // overlong, surrogate, > U+10FFFF
    i += n + 1;
  }
  return -1;
}

function lineOf(buf: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (buf[i] === 0x0a) line++;
  return line;
}

/** A data file larger than this is refused before it is read (the Spider CSV is 1.5 MB). */
export const MAX_DATA_FILE_BYTES = 1024 ** 3;
/** One field (a question, an SQL query, a schema) may hold at most this many characters. */
export const MAX_FIELD_CHARS = 1_000_000;
/** One CSV record or JSONL line may hold at most this many characters. */
export const MAX_ROW_CHARS = 4_000_000;

/** The file through the one bounded reader (src/util/user-file.ts); its errors as DataErrors. */
function readDataFile(file: string, label: string): Buffer {
  try {
    return readUserFile(file, { label, maxBytes: MAX_DATA_FILE_BYTES, what: "a data file" });
  } catch (err) {
    if (err instanceof UserFileError) throw new DataError(err.message);
    throw err;
  }
}

function checkField(where: string, name: string, value: string): void {
  if (value.length > MAX_FIELD_CHARS) throw new DataError(`${where}: field '${name}' has ${value.length} characters, more than the ${MAX_FIELD_CHARS} allowed`);
}

/**
 * A data file's text, read once through the bounded reader (a regular file of at most
 * MAX_DATA_FILE_BYTES: never a device, a pipe or a folder), strict UTF-8 (the error names the
 * line), without its BOM. `label` names the option that gave the file.
 */
export function readDataText(file: string, label: string): string {
  const buf = readDataFile(file, label);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(buf);
  } catch {
    // find where, for the message
  }
  const bad = findInvalidUtf8(buf);
  throw new DataError(
    bad >= 0
      ? `${file}:${lineOf(buf, bad)}: invalid UTF-8 (byte 0x${buf[bad].toString(16).padStart(2, "0")} at offset ${bad}); save the file as UTF-8`
      : `${file}: invalid UTF-8; save the file as UTF-8`,
  );
}

// ---------------------------------------------------------------------------------------------
// The rows' databases

const SQLITE_HEADER = Buffer.from("SQLite format 3\0", "latin1");

/** What is wrong with a database file (missing, not a file, unreadable, not SQLite), or null. */
function databaseProblem(file: string): string | null {
  let head: Buffer;
  try {
    head = readUserFileHead(file, 16, "database");
  } catch (err) {
    if (err instanceof UserFileError) return err.problem;
    throw err;
  }
  if (head.length < 16 || !head.equals(SQLITE_HEADER)) return 'not a SQLite database (it does not start with the header "SQLite format 3\\0")';
  return null;
}

/** The databases of one read: each file checked once, BIRD schemas read once. */
class Databases {
  private readonly checked = new Map<string, string | null>();
  private readonly schemas = new Map<string, string>();
  /** data.db, checked, for rows without their own */
  readonly fallback?: string;
  /** db_ids without a database in a folder found by default (not data.db_dir): rows per db_id */
  readonly missing = new Map<string, number>();

  constructor(cfg: TrainConfig["data"]) {
    if (cfg.db) this.fallback = this.check("data.db", cfg.db);
  }

  /** The absolute path of a row's database, checked; an error names the row and the path. */
  check(where: string, file: string): string {
    const abs = path.resolve(file);
    let problem = this.checked.get(abs);
    if (problem === undefined) {
      problem = databaseProblem(abs);
      this.checked.set(abs, problem);
    }
    if (problem) throw new DataError(`${where}: database ${abs}: ${problem}`);
    return abs;
  }

  /** The schema of a checked database, read from the database itself (read-only). */
  schema(where: string, db: string): string {
    let sc = this.schemas.get(db);
    if (sc === undefined) {
      try {
        sc = schemaFromSqlite(db);
      } catch (err) {
        throw new DataError(`${where}: database ${db}: cannot read its schema (${(err as Error).message.split("\n")[0]})`);
      }
      this.schemas.set(db, sc);
    }
    return sc;
  }
}

/**
 * Where a Spider/BIRD JSON file's databases are: data.db_dir, else database/ (Spider) or
 * <split>_databases/ (BIRD: dev.json beside dev_databases/) beside the file when there.
 */
export function databaseDir(file: string, dbDir: string | null): string | undefined {
  if (dbDir === "none") return undefined;
  if (dbDir) return path.resolve(dbDir);
  const dir = path.dirname(path.resolve(file));
  const stem = path.basename(file, path.extname(file)).replace(/_spider$/, "");
  for (const c of ["database", `${stem}_databases`]) if (fs.existsSync(path.join(dir, c))) return path.join(dir, c);
  return undefined;
}

function formatOf(file: string, format: TrainConfig["data"]["format"]): "csv" | "jsonl" | "spider" {
  if (format !== "auto") return format;
  const ext = path.extname(file).toLowerCase();
  if (ext === ".csv" || ext === ".tsv") return "csv";
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".json") return "spider";
  throw new DataError(`${file}: cannot tell the format from the extension '${ext}'; set data.format to csv, jsonl or spider`);
}

async function readCsv(file: string, text: string, cols: TrainConfig["data"]["columns"], dbs: Databases): Promise<Example[]> {
  const parser = Readable.from([text]).pipe(
    parse({ bom: true, columns: true, info: true, skip_empty_lines: true, trim: true, max_record_size: MAX_ROW_CHARS }),
  );
  const out: Example[] = [];
  let checkedHeader = false;
  let hasDb = false;
  try {
    for await (const item of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      const { record, info } = item;
      if (!checkedHeader) {
        const header = Object.keys(record);
        for (const c of [cols.question, cols.sql, ...(cols.schema ? [cols.schema] : [])]) {
          if (!header.includes(c)) {
            throw new DataError(
              `${file}:1: missing column '${c}' (the header has: ${header.join(", ")}); map columns with data.columns.question / data.columns.sql`,
            );
          }
        }
        checkedHeader = true;
        hasDb = header.includes(cols.db);
      }
      const line = info.lines;
      for (const [name, value] of Object.entries(record)) checkField(`${file}:${line}`, name, value);
      const question = record[cols.question];
      const sql = record[cols.sql];
      if (!question) throw new DataError(`${file}:${line}: empty ${cols.question}`);
      if (!sql) throw new DataError(`${file}:${line}: empty ${cols.sql}`);
      const ex: Example = { question, sql, source: `${file}:${line}` };
      if (cols.schema) {
        if (!record[cols.schema]) throw new DataError(`${file}:${line}: empty ${cols.schema}`);
        ex.schema = record[cols.schema];
      }
      const db = hasDb ? record[cols.db] : "";
      if (db) ex.db = dbs.check(`${file}:${line}`, path.resolve(path.dirname(file), db));
      else if (dbs.fallback) ex.db = dbs.fallback;
      out.push(ex);
    }
  } catch (err) {
    if (err instanceof DataError) throw err;
    const e = err as Error & { code?: string; lines?: number };
    const line = e.lines ?? "?";
    if (e.code === "CSV_MAX_RECORD_SIZE") throw new DataError(`${file}:${line}: a record of more than ${MAX_ROW_CHARS} characters (a field that never ends?)`);
    if (e.code === "CSV_QUOTE_NOT_CLOSED") throw new DataError(`${file}:${line}: unterminated quote (a field opens with " and never closes)`);
    if (e.code?.startsWith("CSV_RECORD_INCONSISTENT") || e.code === "CSV_RECORD_DONT_MATCH_COLUMNS_LENGTH") {
      throw new DataError(
        `${file}:${line}: wrong number of fields (${e.message.replace(/^Invalid Record Length: /, "").replace(/ on line \d+$/, "")}); quote fields that contain commas`,
      );
    }
    throw new DataError(`${file}:${line}: ${e.message}`);
  }
  return out;
}

function pick(obj: Record<string, unknown>, names: string[]): unknown {
  for (const n of names) if (obj[n] !== undefined) return obj[n];
  return undefined;
}

interface RowContext {
  cols: TrainConfig["data"]["columns"];
  dbs: Databases;
  /** the data file's folder: `db` paths are relative to it */
  dir: string;
  /** Spider/BIRD JSON: tables.json's schemas, and where <db_id>/<db_id>.sqlite are */
  schemas?: Map<string, string>;
  dbDir?: string;
  /** dbDir was found beside the file, not given: a db_id without a database there is counted, not an error */
  dbDirFound?: boolean;
}

/** A Spider/BIRD row's database under the context's folder; see RowContext.dbDirFound. */
function spiderDatabase(where: string, dbId: string, c: RowContext): string | undefined {
  const file = path.join(c.dbDir!, dbId, `${dbId}.sqlite`);
  if (c.dbDirFound && !fs.existsSync(file)) {
    c.dbs.missing.set(dbId, (c.dbs.missing.get(dbId) ?? 0) + 1);
    return undefined;
  }
  return c.dbs.check(where, file);
}

function fromObject(obj: unknown, where: string, c: RowContext): Example {
  const { cols, schemas } = c;
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new DataError(`${where}: expected an object with a question and its SQL`);
  const o = obj as Record<string, unknown>;
  const q = pick(o, [cols.question, "question"]);
  const s = pick(o, [cols.sql, "sql", "query", "SQL"]);
  if (typeof q !== "string" || !q.trim()) throw new DataError(`${where}: missing or empty question (field '${cols.question}' or 'question')`);
  if (typeof s !== "string" || !s.trim()) throw new DataError(`${where}: missing or empty SQL (field '${cols.sql}', 'sql', 'query' or 'SQL')`);
  checkField(where, "question", q);
  checkField(where, "sql", s);
  const ex: Example = { question: q.trim(), sql: s.trim(), source: where };
  if (typeof o.evidence === "string") {
    checkField(where, "evidence", o.evidence);
    ex.evidence = o.evidence.trim();
  }
  const db = o[cols.db];
  if (typeof db === "string" && db) ex.db = c.dbs.check(where, path.resolve(c.dir, db));
  else if (c.dbDir && typeof o.db_id === "string") ex.db = spiderDatabase(where, o.db_id, c);
  else if (c.dbs.fallback) ex.db = c.dbs.fallback;
  if (cols.schema && typeof o[cols.schema] === "string") {
    checkField(where, cols.schema, o[cols.schema] as string);
    ex.schema = o[cols.schema] as string;
  } else if (schemas && typeof o.db_id === "string") {
    const sc = schemas.get(o.db_id);
    if (!sc) throw new DataError(`${where}: db_id '${o.db_id}' is not in tables.json`);
    ex.schema = sc;
  } else if (c.dbDir && ex.db) {
    ex.schema = c.dbs.schema(where, ex.db); // BIRD: the schema is the database's own
  }
  return ex;
}

async function readJsonl(file: string, text: string, ctx: RowContext): Promise<Example[]> {
  const out: Example[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (!raw.trim()) return;
    if (raw.length > MAX_ROW_CHARS) throw new DataError(`${file}:${i + 1}: a line of ${raw.length} characters, more than the ${MAX_ROW_CHARS} allowed`);
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch (err) {
      throw new DataError(`${file}:${i + 1}: invalid JSON (${(err as Error).message})`);
    }
    out.push(fromObject(obj, `${file}:${i + 1}`, ctx));
  });
  return out;
}

export interface SpiderTables {
  db_id: string;
  table_names_original: string[];
  column_names_original: [number, string][];
  column_types: string[];
  primary_keys: (number | number[])[];
  foreign_keys: [number, number][];
}

/** The entries of a Spider tables.json. */
export function readSpiderTables(tablesFile: string, label = "data.tables_path"): SpiderTables[] {
  const text = readDataText(tablesFile, label);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DataError(`${tablesFile}: invalid JSON (${(err as Error).message})`);
  }
}

/** CREATE TABLE statements with primary and foreign keys for every database of a tables.json. */
export function spiderSchemas(tables: string | SpiderTables[]): Map<string, string> {
  const dbs = typeof tables === "string" ? readSpiderTables(tables) : tables;
  const out = new Map<string, string>();
  for (const db of dbs) {
    const pks = new Set(db.primary_keys.flat());
    const stmts = db.table_names_original.map((table, ti) => {
      const cols: string[] = [];
      db.column_names_original.forEach(([t, name], ci) => {
        if (t === ti) cols.push(`  ${name} ${db.column_types[ci]}${pks.has(ci) ? " PRIMARY KEY" : ""}`);
      });
      for (const [from, to] of db.foreign_keys) {
        const [ft, fc] = db.column_names_original[from];
        const [tt, tc] = db.column_names_original[to];
        if (ft === ti) cols.push(`  FOREIGN KEY (${fc}) REFERENCES ${db.table_names_original[tt]}(${tc})`);
      }
      return `CREATE TABLE ${table} (\n${cols.join(",\n")}\n);`;
    });
    out.set(db.db_id, stmts.join("\n"));
  }
  return out;
}

/** The line each element of a JSON array starts on (elements of the top-level array only). */
export function jsonItemLines(text: string): number[] {
  const out: number[] = [];
  let depth = 0,
    line = 1,
    inString = false,
    expect = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === "\n") line++;
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
      continue;
    }
    if (/\s/.test(ch)) continue;
    if (expect && depth === 1 && ch !== "]") {
      out.push(line);
      expect = false;
    }
    if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") {
      depth++;
      if (depth === 1) expect = true;
    } else if (ch === "}" || ch === "]") depth--;
    else if (ch === "," && depth === 1) expect = true;
  }
  return out;
}

async function readSpider(file: string, text: string, ctx: RowContext, tablesPath: string | null): Promise<Example[]> {
  let arr: unknown;
  try {
    arr = JSON.parse(text);
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message);
    const line = m ? text.slice(0, Number(m[1])).split("\n").length : "?";
    throw new DataError(`${file}:${line}: invalid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(arr)) throw new DataError(`${file}: expected a JSON array of {db_id, question, query} (Spider format)`);
  const schemas = tablesPath ? spiderSchemas(tablesPath) : undefined;
  const lines = jsonItemLines(text);
  return arr.map((o, i) => fromObject(o, `${file}:${lines[i] ?? "?"}: item ${i}`, { ...ctx, schemas }));
}

/** The examples of a data file; `label` names the option that gave it (in the errors about the file). */
export async function readExamples(file: string, cfg: TrainConfig["data"], label = "data file"): Promise<Example[]> {
  const text = readDataText(file, label);
  const fmt = formatOf(file, cfg.format);
  const dbs = new Databases(cfg);
  const ctx: RowContext = { cols: cfg.columns, dbs, dir: path.dirname(path.resolve(file)) };
  const rows =
    fmt === "csv"
      ? await readCsv(file, text, cfg.columns, dbs)
      : fmt === "jsonl"
        ? await readJsonl(file, text, ctx)
        : await readSpider(file, text, { ...ctx, dbDir: databaseDir(file, cfg.db_dir), dbDirFound: !cfg.db_dir }, cfg.tables_path);
  if (rows.length === 0) throw new DataError(`${file}: no examples`);
  if (dbs.missing.size) {
    const n = [...dbs.missing.values()].reduce((a, b) => a + b, 0);
    warn(
      `data: ${file}: ${n} rows have no database (no <db_id>/<db_id>.sqlite under ${databaseDir(file, null)} for ${[...dbs.missing]
        .map(([id, k]) => `${id} (${k})`)
        .join(", ")}); they are read without one (data.db_dir names another folder, none turns databases off)`,
    );
  }
  return rows;
}

/** A seeded shuffle (splitmix32 + Fisher-Yates), the same on every platform. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** A fixed sample of `n` of `rows` (seeded by `seed`, in the rows' order; null or n >= their count: all). */
export function seededSample<T>(rows: readonly T[], n: number | null, seed: number): T[] {
  if (n === null || n >= rows.length) return rows.slice();
  const keep = new Set(shuffled(rows, seed).slice(0, n));
  return rows.filter((r) => keep.has(r));
}

/** Train/eval/test sizes for n rows: train = floor(n·s0), the rest shared by s1 : s2 (rounded). */
export function splitSizes(n: number, split: number[]): { train: number; eval: number; test: number } {
  const train = Math.floor(n * split[0] + 1e-9);
  const rest = n - train;
  const evalN = split[1] + split[2] > 0 ? Math.round((rest * split[1]) / (split[1] + split[2])) : 0;
  return { train, eval: evalN, test: rest - evalN };
}

function countDuplicates(rows: Example[]): number {
  const seen = new Set<string>();
  let dup = 0;
  for (const r of rows) {
    const k = `${r.question}\u0000${r.sql}\u0000${r.schema ?? ""}`;
    if (seen.has(k)) dup++;
    else seen.add(k);
  }
  return dup;
}

/** Reads the configured data and splits it (or reads the explicit train/eval files). */
export async function loadDataset(cfg: TrainConfig["data"]): Promise<Dataset> {
  if (cfg.train_path) {
    const train = await readExamples(cfg.train_path, cfg, "data.train_path");
    const evalRows = cfg.eval_path ? await readExamples(cfg.eval_path, cfg, "data.eval_path") : [];
    const all = [...train, ...evalRows];
    return {
      train: cfg.shuffle ? shuffled(train, cfg.seed) : train,
      eval: evalRows,
      test: [],
      report: {
        files: [cfg.train_path, ...(cfg.eval_path ? [cfg.eval_path] : [])],
        rows: all.length,
        duplicates: countDuplicates(all),
        split: { train: train.length, eval: evalRows.length, test: 0 },
      },
    };
  }
  const rows = await readExamples(cfg.path!, cfg, "data.path");
  const order = cfg.shuffle ? shuffled(rows, cfg.seed) : rows;
  const sizes = splitSizes(rows.length, cfg.split);
  if (sizes.train === 0) {
    throw new DataError(
      `${cfg.path}: data.split ${JSON.stringify(cfg.split)} of ${rows.length} row${rows.length === 1 ? "" : "s"} leaves no row to train on; add rows, or set data.split to [1, 0, 0] to train on all of them`,
    );
  }
  return {
    train: order.slice(0, sizes.train),
    eval: order.slice(sizes.train, sizes.train + sizes.eval),
    test: order.slice(sizes.train + sizes.eval),
    report: { files: [cfg.path!], rows: rows.length, duplicates: countDuplicates(rows), split: sizes },
  };
}
