// Execution accuracy for Spider-style evaluation: run the gold and the predicted query on the
// example's SQLite database and compare the results (as the test-suite evaluation does: row
// multisets, row order only when the gold query has a top-level ORDER BY, columns in any order).
//
// Safety: only one SELECT/WITH statement is ever run, on a connection opened read-only with
// `PRAGMA query_only = ON`. Queries run in a child process per database file: better-sqlite3 is
// synchronous and SQLite's loop cannot be interrupted from JavaScript, so a worker thread stuck in
// `sqlite3_step` ignores `Worker.terminate()`; a child process can be killed, then is recreated.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

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
      while (j < n && !/[\s'"`[(),;A-Za-z_\u0080-\uffff]/.test(sql[j]) && !(sql[j] === "-" && sql[j + 1] === "-") && !(sql[j] === "/" && sql[j + 1] === "*")) j++;
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
  "alter", "analyze", "attach", "begin", "commit", "create", "delete", "detach", "drop", "end", "explain", "insert",
  "pragma", "reindex", "release", "replace", "rollback", "savepoint", "select", "update", "vacuum", "values", "with",
]);

/** isSingleReadQuery, plus `syntax` when the text cannot begin any SQLite statement (so it need not run). */
function checkQuery(sql: string): { ok: boolean; why?: string; syntax?: boolean } {
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
    if (why) throw new Error(`schema: statement ${i + 1} (${snippet(stmt)}): ${why}; a schema may only hold CREATE TABLE (with column definitions), CREATE INDEX and CREATE VIEW statements`);
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

// ---------------------------------------------------------------------------------------------
// Running queries in a killable child process

export type ExecErrorCategory = "syntax" | "no_such_table" | "no_such_column" | "timeout" | "not_a_query" | "error";
export type RunResult = { ok: true; columns: string[]; rows: unknown[][] } | { ok: false; category: ExecErrorCategory; error: string };
export interface RunOptions {
  /** wall-clock limit per query (default 5000) */
  timeoutMs?: number;
  /** a result with more rows is an error (default 100000) */
  maxRows?: number;
}

/** The database name that makes a query process a schema sandbox (see checkSqlAgainstSchema). */
const SANDBOX = ":memory:";

/**
 * Runs in the child (CommonJS, `node -e`): argv[1] = better-sqlite3's path, argv[2] = the database
 * file, or SANDBOX for schema checks.
 */
const CHILD_SOURCE = `
"use strict";
const SANDBOX = ${JSON.stringify(SANDBOX)};
process.on("disconnect", () => process.exit(0));
function fatal(stage, err) {
  process.send({ type: "fatal", stage, error: String((err && err.message) || err).split("\\n")[0] });
  process.on("message", () => undefined); // stay until the parent ends this process
}
(function main() {
  let Database, db;
  try {
    Database = require(process.argv[1]);
  } catch (err) {
    return fatal("load", err);
  }
  if (process.argv[2] === SANDBOX) return sandbox(Database);
  try {
    db = new Database(process.argv[2], { readonly: true, fileMustExist: true });
    db.pragma("query_only = ON");
  } catch (err) {
    return fatal("open", err);
  }
  process.on("message", (m) => {
    try {
      const stmt = db.prepare(m.sql);
      if (!stmt.reader || !stmt.readonly) {
        process.send({ type: "result", ok: false, category: "not_a_query", error: "not a read-only query (only SELECT/WITH queries are run)" });
        return;
      }
      stmt.raw(true);
      const columns = stmt.columns().map((c) => c.name);
      const rows = [];
      for (const row of stmt.iterate()) {
        if (rows.length >= m.maxRows) {
          process.send({ type: "result", ok: false, category: "error", error: "the result has more than " + m.maxRows + " rows" });
          return;
        }
        rows.push(row);
      }
      process.send({ type: "result", ok: true, columns, rows });
    } catch (err) {
      process.send({ type: "result", ok: false, category: null, error: String((err && err.message) || err) });
    }
  });
  process.send({ type: "ready" });
})();
// Schema checks: each request builds its schema (statements already checked to be definitions)
// in a fresh in-memory database of bounded size, then prepares the SQL without running it.
function sandbox(Database) {
  const message = (err) => String((err && err.message) || err).split("\\n")[0];
  process.on("message", (m) => {
    let db;
    try {
      db = new Database(":memory:");
      db.pragma("max_page_count = " + m.maxPages);
      for (let i = 0; i < m.schema.length; i++) {
        try {
          db.prepare(m.schema[i]).run();
        } catch (err) {
          process.send({ type: "checked", schemaError: "statement " + (i + 1) + ": " + message(err) });
          return;
        }
      }
      let stmt;
      try {
        stmt = db.prepare(m.sql);
      } catch (err) {
        process.send({ type: "checked", valid: false, error: message(err) });
        return;
      }
      if (!stmt.reader || !stmt.readonly) process.send({ type: "checked", valid: false, error: "not a read-only query (only SELECT/WITH queries are accepted)" });
      else process.send({ type: "checked", valid: true });
    } catch (err) {
      process.send({ type: "checked", schemaError: message(err) });
    } finally {
      if (db) db.close();
    }
  });
  process.send({ type: "ready" });
}
`;

type ChildMessage =
  | { type: "ready" }
  | { type: "checked"; valid?: boolean; error?: string; schemaError?: string }
  | { type: "fatal"; stage: "open" | "load"; error: string }
  | { type: "result"; ok: true; columns: string[]; rows: unknown[][] }
  | { type: "result"; ok: false; category: ExecErrorCategory | null; error: string };

const STARTUP_TIMEOUT_MS = 30_000;

let sqlitePath: string | undefined;
function betterSqlitePath(): string {
  if (!sqlitePath) {
    try {
      sqlitePath = createRequire(import.meta.url).resolve("better-sqlite3");
    } catch (err) {
      throw new Error(`execution metrics need better-sqlite3, which was not found (${(err as Error).message.split("\n")[0]}); install it with: npm install better-sqlite3`);
    }
  }
  return sqlitePath;
}

class DbRunner {
  private readonly child: ChildProcess;
  private readonly ready: Promise<void>;
  private pending: ((m: ChildMessage | { type: "exit"; why: string }) => void) | undefined;
  dead = false;

  constructor(readonly file: string, private readonly onDead: (r: DbRunner) => void) {
    this.child = spawn(process.execPath, ["-e", CHILD_SOURCE, betterSqlitePath(), file], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      serialization: "advanced",
      windowsHide: true,
    });
    let stderr = "";
    this.child.stderr?.setEncoding("utf8");
    (this.child.stderr as { unref?: () => void } | null)?.unref?.();
    this.child.stderr?.on("data", (d: string) => {
      stderr = (stderr + d).slice(-2000);
    });
    this.child.on("message", (m: ChildMessage) => {
      const p = this.pending;
      this.pending = undefined;
      p?.(m);
    });
    this.child.on("error", (err) => this.kill(`could not start the query process: ${err.message}`));
    this.child.on("exit", (code, signal) => this.kill(`the query process exited (${signal ?? `code ${code}`})${stderr.trim() ? `: ${stderr.trim().split("\n").slice(-3).join(" ")}` : ""}`));
    this.idle();
    this.ready = this.request(undefined, STARTUP_TIMEOUT_MS).then((m) => {
      if (m.type === "ready") return;
      this.kill("startup failed");
      if (m.type === "fatal" && m.stage === "load") {
        throw new Error(`execution metrics need better-sqlite3's native module, which did not load (${m.error}); ` +
          "approve and build it with: npm install-scripts approve better-sqlite3 && npm rebuild better-sqlite3");
      }
      throw new OpenError(`cannot open database ${file}: ${"error" in m ? m.error : m.type}`);
    });
    this.ready.catch(() => undefined);
  }

  /** Keeps the process from exiting only while a query is in flight. */
  private idle(): void {
    this.child.unref();
    this.child.channel?.unref();
  }

  private request(msg: { sql: string; maxRows: number } | { schema: string[]; sql: string; maxPages: number } | undefined, timeoutMs: number): Promise<ChildMessage | { type: "exit"; why: string } | { type: "timeout" }> {
    if (this.dead) return Promise.resolve({ type: "exit", why: "the query process is gone" });
    return new Promise((resolve) => {
      this.child.channel?.ref();
      const timer = setTimeout(() => {
        this.pending = undefined;
        this.kill("timed out");
        resolve({ type: "timeout" });
      }, timeoutMs);
      this.pending = (m) => {
        clearTimeout(timer);
        if (!this.dead) this.idle();
        resolve(m);
      };
      if (msg) this.child.send(msg);
    });
  }

  async run(sql: string, timeoutMs: number, maxRows: number): Promise<RunResult> {
    await this.ready;
    const m = await this.request({ sql, maxRows }, timeoutMs);
    if (m.type === "timeout") return { ok: false, category: "timeout", error: `the query ran longer than ${timeoutMs} ms` };
    if (m.type === "exit") return { ok: false, category: "error", error: m.why };
    if (m.type !== "result") return { ok: false, category: "error", error: `unexpected message from the query process: ${m.type}` };
    if (m.ok) return { ok: true, columns: m.columns, rows: m.rows };
    return { ok: false, category: m.category ?? classifyError(m.error), error: m.error };
  }

  /** Sandbox only: builds the schema in a fresh in-memory database and prepares the SQL. */
  async check(schema: string[], sql: string, timeoutMs: number, maxPages: number): Promise<SchemaCheck> {
    await this.ready;
    const m = await this.request({ schema, sql, maxPages }, timeoutMs);
    if (m.type === "timeout") throw new Error(`schema: checking the schema and the SQL ran longer than ${timeoutMs} ms`);
    if (m.type === "exit") throw new Error(`schema: the check did not finish (${m.why})`);
    if (m.type !== "checked") throw new Error(`schema: unexpected message from the check process: ${m.type}`);
    if (m.schemaError !== undefined) throw new Error(`schema: ${m.schemaError}`);
    return m.valid ? { valid: true } : { valid: false, error: m.error ?? "invalid" };
  }

  kill(why: string): void {
    if (!this.dead) {
      this.dead = true;
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
      this.onDead(this);
    }
    const p = this.pending;
    this.pending = undefined;
    p?.({ type: "exit", why });
  }

  /** Resolves once the process has exited. */
  exited(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null || this.child.pid === undefined) return Promise.resolve();
    // hold the event loop while waiting: an unref'd child would let the process exit mid-await
    this.child.ref();
    return new Promise((resolve) => this.child.once("exit", () => resolve()));
  }
}

class OpenError extends Error {}

/** SQLite's message → category. */
function classifyError(message: string): ExecErrorCategory {
  const m = message.toLowerCase();
  if (m.includes("no such table")) return "no_such_table";
  if (m.includes("no such column")) return "no_such_column";
  if (m.includes("syntax error") || m.includes("incomplete input") || m.includes("unrecognized token")) return "syntax";
  if (m.includes("more than one statement") || m.includes("readonly database") || m.includes("read-only")) return "not_a_query";
  return "error";
}

const runners = new Map<string, DbRunner>();
const queues = new Map<string, Promise<unknown>>();
const everyRunner = new Set<DbRunner>();

function runner(file: string): DbRunner {
  let r = runners.get(file);
  if (!r || r.dead) {
    r = new DbRunner(file, (dead) => {
      if (runners.get(file) === dead) runners.delete(file);
    });
    runners.set(file, r);
    everyRunner.add(r);
    void r.exited().then(() => everyRunner.delete(r!));
  }
  return r;
}

/**
 * Runs one read-only query on a SQLite file (in a child process, one per file, killed and
 * recreated on timeout). Statements other than a single SELECT/WITH are not run.
 */
export async function runReadOnly(dbFile: string, sql: string, opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const maxRows = opts.maxRows ?? 100_000;
  const check = checkQuery(sql);
  if (!check.ok) return { ok: false, category: check.syntax ? "syntax" : "not_a_query", error: check.why ?? "not a query" };
  const file = path.resolve(dbFile);
  if (!fs.existsSync(file)) return { ok: false, category: "error", error: `database not found: ${dbFile}` };
  return queued(file, async (): Promise<RunResult> => {
    try {
      return await runner(file).run(sql, timeoutMs, maxRows);
    } catch (err) {
      if (err instanceof OpenError) return { ok: false, category: "error", error: err.message };
      throw err;
    }
  });
}

/** One job at a time per query process: a timeout is the job's own time, not its wait. */
function queued<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = queues.get(key) ?? Promise.resolve();
  const job = prev.then(fn);
  const tail = job.catch(() => undefined);
  queues.set(key, tail);
  void tail.then(() => {
    if (queues.get(key) === tail) queues.delete(key);
  });
  return job;
}

export type SchemaCheck = { valid: true } | { valid: false; error: string };
export interface SchemaCheckOptions {
  /** wall-clock limit for building the schema and preparing the SQL (default 5000) */
  timeoutMs?: number;
  /** the schema's in-memory database may grow to this many bytes (default 64 MiB) */
  maxBytes?: number;
}

/**
 * Checks SQL against schema text from outside, which is hostile until checked: the schema must be
 * only CREATE TABLE / INDEX / VIEW statements (see schemaStatements), which are then built in a
 * fresh in-memory SQLite database of bounded size inside a killable child process, where the SQL
 * is prepared and never run. The event loop never waits on SQLite; work past `timeoutMs` is
 * killed. A bad schema throws an Error starting with `schema: `; bad SQL gives `valid: false`.
 */
export async function checkSqlAgainstSchema(sql: string, schema: string, opts: SchemaCheckOptions = {}): Promise<SchemaCheck> {
  const stmts = schemaStatements(schema);
  const timeoutMs = opts.timeoutMs ?? 5000;
  const maxPages = Math.max(1, Math.floor((opts.maxBytes ?? 64 * 2 ** 20) / 4096));
  return queued(SANDBOX, () => runner(SANDBOX).check(stmts, sql, timeoutMs, maxPages));
}

/** Stops every query process (tests and the CLI call this before exiting). */
export async function closeAll(): Promise<void> {
  const all = [...everyRunner];
  for (const r of all) r.kill("closed");
  runners.clear();
  await Promise.all(all.map((r) => r.exited()));
}

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

export type ExecCategory = "syntax" | "no_such_table" | "no_such_column" | "timeout" | "not_a_query" | "empty" | "error" | "wrong";
export interface ExecMatch {
  match: boolean;
  category?: ExecCategory;
  error?: string;
}

/**
 * Runs the gold and the predicted query on the database and compares the results (rows ordered
 * only when the gold query has a top-level ORDER BY, unless `ordered` is given). A gold query that
 * fails throws; a prediction that fails or differs is reported by category.
 */
export async function executionMatch(dbFile: string, goldSql: string, predSql: string, opts: RunOptions & { ordered?: boolean } = {}): Promise<ExecMatch> {
  const gold = await runReadOnly(dbFile, goldSql, opts);
  if (!gold.ok) throw new Error(`gold query failed on ${dbFile} (${gold.category}: ${gold.error}): ${goldSql}`);
  const pred = await runReadOnly(dbFile, predSql, opts);
  if (!pred.ok) return { match: false, category: pred.category, error: pred.error };
  if (pred.rows.length === 0 && gold.rows.length > 0) return { match: false, category: "empty" };
  const ordered = opts.ordered ?? hasOrderBy(goldSql);
  return sameResult(gold.rows, pred.rows, { ordered }) ? { match: true } : { match: false, category: "wrong" };
}

// ---------------------------------------------------------------------------------------------
// Schema text

type SqliteCtor = typeof import("better-sqlite3");

function loadSqlite(): SqliteCtor {
  try {
    return createRequire(import.meta.url)("better-sqlite3") as SqliteCtor;
  } catch (err) {
    throw new Error(`reading a SQLite schema needs better-sqlite3's native module, which did not load (${(err as Error).message.split("\n")[0]}); ` +
      "approve and build it with: npm install-scripts approve better-sqlite3 && npm rebuild better-sqlite3");
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
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").pluck().all() as string[])
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const columns = (t: string) => (db.prepare("SELECT cid, name, type, pk FROM pragma_table_info(?)").all(t) as ColumnInfo[]).sort((a, b) => a.cid - b.cid);
    const stmts = tables.map((table) => {
      const lines = columns(table).map((c) => `  ${c.name}${c.type ? ` ${c.type}` : ""}${c.pk > 0 ? " PRIMARY KEY" : ""}`);
      const fks = db.prepare("SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?)").all(table) as ForeignKeyInfo[];
      // SQLite numbers foreign keys from the last declared one: highest id first is declared order
      const ids = [...new Set(fks.map((f) => f.id))].sort((a, b) => b - a);
      for (const id of ids) {
        const parts = fks.filter((f) => f.id === id).sort((a, b) => a.seq - b.seq);
        const parent = parts[0].table;
        let to = parts.map((f) => f.to);
        if (to.some((c) => c === null)) {
          // REFERENCES parent without columns: the parent's primary key
          const pk = columns(parent).filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
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
