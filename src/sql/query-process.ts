// Running SQL in a killable child process. better-sqlite3 is synchronous and SQLite's loop cannot
// be interrupted from JavaScript (a worker thread stuck in `sqlite3_step` ignores
// `Worker.terminate()`), so queries run in a child process per database file, which is killed on
// timeout and then recreated. Two kinds: read-only queries on a database file (opened read-only,
// `PRAGMA query_only = ON`, one SELECT/WITH only), and the schema sandbox, which builds checked
// schema text in a fresh in-memory database of bounded size and prepares SQL there, never running it.
//
// The bounded runner, runReadOnly(db, sql, { timeoutMs, maxRows, maxBytes }), is the one way SQL
// from outside (a prediction, a candidate, a gold query, a sampled completion) is run on a user's
// database: `eval`, the candidates of `generate --db` / `serve --db`, train.eval_execution and
// the GRPO rewards all go through it. Its contract, kept stable:
// - read-only: one SELECT/WITH, prepared and checked `reader && readonly` (no ATTACH, PRAGMA
//   writes, DDL/DML), on a connection opened read-only with `query_only`;
// - bounded in time (timeoutMs: the child is killed and recreated), in rows (maxRows) and in bytes
//   (maxBytes: counted as the rows stream, each string by its UTF-8 length, a blob by its length,
//   any other value 8; the query stops at the first row past the cap);
// - bounded in memory: on Linux the child runs under RLIMIT_DATA (QUERY_PROCESS_MEMORY_BYTES, set
//   with `ulimit -d` before exec), so SQLite's own allocations (one huge value: printf, zeroblob,
//   group_concat) fail with "out of memory" and a V8 allocation past it ends the child, which is
//   recreated; its V8 heap is capped too (elsewhere only that and the byte cap hold, said once);
// - a failing query never throws: it resolves { ok: false, category, error } ("too_large" for a
//   result past a cap or a query past the memory bound), and the next query gets a fresh child if
//   this one died. Only a missing better-sqlite3 throws.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { checkQuery, MAX_DOUBLE_QUOTED_STRINGS, schemaStatements, withDoubleQuotedStrings } from "./sql-text.js";

// ---------------------------------------------------------------------------------------------
// Running queries in a killable child process

export type ExecErrorCategory = "syntax" | "no_such_table" | "no_such_column" | "timeout" | "not_a_query" | "too_large" | "error";
export type RunResult = { ok: true; columns: string[]; rows: unknown[][] } | { ok: false; category: ExecErrorCategory; error: string };
export interface RunOptions {
  /** wall-clock limit per query (default 5000) */
  timeoutMs?: number;
  /** a result with more rows is an error (default 100000) */
  maxRows?: number;
  /** a result of more bytes is an error, counted as rows stream (default DEFAULT_QUERY_MAX_BYTES, at most MAX_QUERY_MAX_BYTES) */
  maxBytes?: number;
}

/** The default wall-clock limit of one query, in ms. */
export const DEFAULT_QUERY_TIMEOUT_MS = 5000;
/** The default row cap of one result. */
export const DEFAULT_QUERY_MAX_ROWS = 100_000;
/** The default byte cap of one result (strings by UTF-8 length, blobs by length, other values 8). */
export const DEFAULT_QUERY_MAX_BYTES = 64 * 2 ** 20;
/** The largest byte cap a caller may ask for: a result this size still fits the child's memory bound. */
export const MAX_QUERY_MAX_BYTES = 256 * 2 ** 20;
/** The data segment (RLIMIT_DATA) a query process may use on Linux: SQLite's memory and V8's heap together. */
export const QUERY_PROCESS_MEMORY_BYTES = 768 * 2 ** 20;
/** The V8 old-space cap of a query process, in MiB (below the data bound, so V8 collects before it). */
const QUERY_PROCESS_HEAP_MIB = 512;

/** Whether the child's memory is bounded by the kernel (RLIMIT_DATA): Linux only. */
const KERNEL_MEMORY_BOUND = process.platform === "linux";
let saidNoKernelBound = false;

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
      let bytes = 0;
      // counted as rows stream: the first row past a cap stops the query (iterate's return resets it)
      for (const row of stmt.iterate()) {
        if (rows.length >= m.maxRows) {
          process.send({ type: "result", ok: false, category: "too_large", error: "result too large (more than " + m.maxRows + " rows)" });
          return;
        }
        for (const v of row) bytes += typeof v === "string" ? Buffer.byteLength(v, "utf8") : v instanceof Uint8Array ? v.byteLength : 8;
        if (bytes > m.maxBytes) {
          process.send({ type: "result", ok: false, category: "too_large", error: "result too large (over " + m.maxBytes + " bytes, at row " + (rows.length + 1) + ")" });
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
      throw new Error(
        `execution metrics need better-sqlite3, which was not found (${(err as Error).message.split("\n")[0]}); install it with: npm install better-sqlite3`,
        { cause: err },
      );
    }
  }
  return sqlitePath;
}

class DbRunner {
  private readonly child: ChildProcess;
  private readonly ready: Promise<void>;
  private pending: ((m: ChildMessage | { type: "exit"; why: string }) => void) | undefined;
  dead = false;
  /** the child died of memory (V8's heap cap or the data bound): said as a result too large */
  outOfMemory = false;

  constructor(
    readonly file: string,
    private readonly onDead: (r: DbRunner) => void,
  ) {
    const [cmd, args] = childCommand(["-e", CHILD_SOURCE, betterSqlitePath(), file]);
    this.child = spawn(cmd, args, {
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
    this.child.on("exit", (code, signal) => {
      if (OUT_OF_MEMORY.test(stderr)) this.outOfMemory = true;
      this.kill(`the query process exited (${signal ?? `code ${code}`})${stderr.trim() ? `: ${stderr.trim().split("\n").slice(-3).join(" ")}` : ""}`);
    });
    this.idle();
    this.ready = this.request(undefined, STARTUP_TIMEOUT_MS).then((m) => {
      if (m.type === "ready") return;
      this.kill("startup failed");
      if (m.type === "fatal" && m.stage === "load") {
        throw new Error(
          `execution metrics need better-sqlite3's native module, which did not load (${m.error}); ` +
            "approve and build it with: npm install-scripts approve better-sqlite3 && npm rebuild better-sqlite3",
        );
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

  private request(
    msg: { sql: string; maxRows: number; maxBytes: number } | { schema: string[]; sql: string; maxPages: number } | undefined,
    timeoutMs: number,
  ): Promise<ChildMessage | { type: "exit"; why: string } | { type: "timeout" }> {
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

  /** Runs a query; double-quoted words that name nothing are read as strings, as default SQLite builds do. */
  async run(sql: string, timeoutMs: number, maxRows: number, maxBytes: number): Promise<RunResult> {
    return readingDoubleQuotedStrings(sql, (q) => this.runOnce(q, timeoutMs, maxRows, maxBytes));
  }

  private async runOnce(sql: string, timeoutMs: number, maxRows: number, maxBytes: number): Promise<RunResult> {
    await this.ready;
    const m = await this.request({ sql, maxRows, maxBytes }, timeoutMs);
    if (m.type === "timeout") return { ok: false, category: "timeout", error: `the query ran longer than ${timeoutMs} ms` };
    if (m.type === "exit" && this.outOfMemory) {
      return { ok: false, category: "too_large", error: `result too large: the query process ran out of memory (${memoryBound()}) and was restarted` };
    }
    if (m.type === "exit") return { ok: false, category: "error", error: m.why };
    if (m.type !== "result") return { ok: false, category: "error", error: `unexpected message from the query process: ${m.type}` };
    if (m.ok) return { ok: true, columns: m.columns, rows: m.rows };
    return { ok: false, category: m.category ?? classifyError(m.error), error: m.error };
  }

  /**
   * Sandbox only: builds the schema in a fresh in-memory database and prepares the SQL; as in
   * run(), double-quoted words that name nothing are read as strings.
   */
  async check(schema: string[], sql: string, timeoutMs: number, maxPages: number): Promise<SchemaCheck> {
    // one time limit for all the tries (each builds the schema again)
    const deadline = performance.now() + timeoutMs;
    return readingDoubleQuotedStrings(sql, (q) => this.checkOnce(schema, q, Math.max(1, Math.round(deadline - performance.now())), maxPages));
  }

  private async checkOnce(schema: string[], sql: string, timeoutMs: number, maxPages: number): Promise<SchemaCheck> {
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

/** What a query process that died of memory printed (V8's fatal out-of-memory reports). */
const OUT_OF_MEMORY = /out of memory|Allocation failed|Failed to reserve virtual memory|Fatal process OOM/i;

function memoryBound(): string {
  return KERNEL_MEMORY_BOUND
    ? `bound: ${QUERY_PROCESS_MEMORY_BYTES / 2 ** 20} MiB of data, ${QUERY_PROCESS_HEAP_MIB} MiB of V8 heap`
    : `bound: ${QUERY_PROCESS_HEAP_MIB} MiB of V8 heap`;
}

/**
 * The command that starts a query process: node with a capped V8 heap, on Linux under
 * RLIMIT_DATA set by the shell before exec (a lower limit already in place stays: ulimit cannot
 * raise it, and the process runs under that one). Elsewhere the kernel bound is missing, said once.
 */
function childCommand(nodeArgs: string[]): [string, string[]] {
  const node = [`--max-old-space-size=${QUERY_PROCESS_HEAP_MIB}`, ...nodeArgs];
  if (KERNEL_MEMORY_BOUND) {
    const kib = QUERY_PROCESS_MEMORY_BYTES / 1024;
    return ["/bin/sh", ["-c", `ulimit -d ${kib} 2>/dev/null; exec "$0" "$@"`, process.execPath, ...node]];
  }
  if (!saidNoKernelBound) {
    saidNoKernelBound = true;
    process.stderr.write(
      `text2sql: on ${process.platform} the query processes have no kernel memory bound (RLIMIT_DATA is Linux's); ` +
        `results are capped in rows and bytes and V8's heap at ${QUERY_PROCESS_HEAP_MIB} MiB, SQLite's own memory is not\n`,
    );
  }
  return [process.execPath, node];
}

/**
 * Runs `once` on the SQL, and again while SQLite refuses a double-quoted word that names nothing,
 * with those words as strings (see withDoubleQuotedStrings), at most MAX_DOUBLE_QUOTED_STRINGS times.
 */
async function readingDoubleQuotedStrings<R extends RunResult | SchemaCheck>(sql: string, once: (sql: string) => Promise<R>): Promise<R> {
  let r = await once(sql);
  for (let i = 0; i < MAX_DOUBLE_QUOTED_STRINGS && "error" in r; i++) {
    const again = withDoubleQuotedStrings(sql, r.error);
    if (again === undefined) break;
    sql = again;
    r = await once(sql);
  }
  return r;
}

/** SQLite's message → category. */
function classifyError(message: string): ExecErrorCategory {
  const m = message.toLowerCase();
  if (m.includes("no such table")) return "no_such_table";
  if (m.includes("no such column")) return "no_such_column";
  if (m.includes("syntax error") || m.includes("incomplete input") || m.includes("unrecognized token")) return "syntax";
  if (m.includes("more than one statement") || m.includes("readonly database") || m.includes("read-only")) return "not_a_query";
  if (m.includes("out of memory") || m.includes("string or blob too big")) return "too_large";
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
  const timeoutMs = checkLimit("timeoutMs", opts.timeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS, 1, 2 ** 31 - 1);
  const maxRows = checkLimit("maxRows", opts.maxRows ?? DEFAULT_QUERY_MAX_ROWS, 1, 2 ** 31 - 1);
  const maxBytes = checkLimit("maxBytes", opts.maxBytes ?? DEFAULT_QUERY_MAX_BYTES, 1, MAX_QUERY_MAX_BYTES);
  const check = checkQuery(sql);
  if (!check.ok) return { ok: false, category: check.syntax ? "syntax" : "not_a_query", error: check.why ?? "not a query" };
  const file = path.resolve(dbFile);
  if (!fs.existsSync(file)) return { ok: false, category: "error", error: `database not found: ${dbFile}` };
  return queued(file, async (): Promise<RunResult> => {
    try {
      return await runner(file).run(sql, timeoutMs, maxRows, maxBytes);
    } catch (err) {
      if (err instanceof OpenError) return { ok: false, category: "error", error: err.message };
      throw err;
    }
  });
}

function checkLimit(name: string, v: number, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new TypeError(`${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
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
