// Issue 25.2: every file a user names goes through one bounded reader (src/util/user-file.ts):
// a device, a FIFO, a folder, a symlink to a device and a file past its cap are each refused
// quickly, with an error naming the option and the path, by the real CLI (dist/src/cli/main.js)
// in a child process whose real peak RSS (VmHWM from /proc) stays bounded.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { MAX_PREDICTIONS_BYTES } from "../src/eval/eval.js";
import { MAX_DATA_FILE_BYTES } from "../src/train/data.js";
import { MAX_CONFIG_BYTES } from "../src/train/config.js";
import { readUserFile, readUserFileHead, UserFileError } from "../src/util/user-file.js";
import { watchPeak } from "./helpers/child-memory.js";
import { tempDir } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
// T2S_CLI: another build's CLI (how the test was checked to fail on main's code before the fix)
const CLI = process.env.T2S_CLI ?? path.join(ROOT, "dist/src/cli/main.js");
const linux = process.platform === "linux";
const MB = 1e6;

/** The CLI in a child process; its own peak RSS sampled, killed past 2 GB or `timeoutMs`. */
function cli(args: string[], timeoutMs = 30_000): Promise<{ status: number | null; stderr: string; ms: number; peak: number; killed: boolean }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    const watch = watchPeak(process.pid, { everyMs: 20, killAbove: 2e9, filter: (pid) => pid === child.pid });
    let stderr = "";
    let timedOut = false;
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-4000)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("exit", (status) => {
      clearTimeout(timer);
      const w = watch.stop();
      resolve({ status, stderr, ms: performance.now() - t0, peak: w.peak, killed: timedOut || w.killed.length > 0 });
    });
  });
}

/** A small Spider-style set: dev.json, tables.json, one prediction per line, a CSV and a config. */
function inputs() {
  const dir = tempDir();
  const tables = path.join(dir, "tables.json");
  fs.writeFileSync(
    tables,
    JSON.stringify([
      {
        db_id: "d",
        table_names_original: ["t"],
        column_names_original: [
          [-1, "*"],
          [0, "a"],
        ],
        column_types: ["text", "number"],
        primary_keys: [],
        foreign_keys: [],
      },
    ]),
  );
  const data = path.join(dir, "dev.json");
  fs.writeFileSync(data, JSON.stringify([{ db_id: "d", question: "q?", query: "SELECT a FROM t" }]));
  const preds = path.join(dir, "preds.sql");
  fs.writeFileSync(preds, "SELECT a FROM t\n");
  const csv = path.join(dir, "d.csv");
  fs.writeFileSync(csv, "text_query,sql_command\nq?,SELECT 1\n");
  return { dir, tables, data, preds, csv };
}

/** A FIFO (named pipe) with no writer: reading it without O_NONBLOCK blocks forever. */
function fifo(dir: string, name: string): string | undefined {
  const p = path.join(dir, name);
  try {
    execFileSync("mkfifo", [p]);
    return p;
  } catch {
    return undefined;
  }
}

/** A sparse file of `bytes` (no disk used): a size past a cap without writing it. */
function sparse(dir: string, name: string, bytes: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, "");
  fs.truncateSync(p, bytes);
  return p;
}

async function refused(args: string[], want: RegExp) {
  const r = await cli(args);
  expect(r.killed, `killed (timeout or past 2 GB; peak ${(r.peak / MB).toFixed(0)} MB)`).toBe(false);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(want);
  expect(r.ms).toBeLessThan(15_000);
  expect(r.peak).toBeGreaterThan(10 * MB); // the sampler saw the real CLI process
  expect(r.peak, `CLI peak RSS ${(r.peak / MB).toFixed(0)} MB`).toBeLessThan(400 * MB);
}

describe.runIf(linux)("issue 25.2: files from a user, through one bounded reader, by the CLI", () => {
  test("eval --predictions /dev/zero is refused (was 4 GB in 14 s)", { timeout: 60_000 }, async () => {
    const x = inputs();
    await refused(
      ["eval", "--data", x.data, "--tables", x.tables, "--predictions", "/dev/zero", "--output", path.join(x.dir, "out")],
      /--predictions: \/dev\/zero: not a regular file \(it is a character device/,
    );
  });

  test("a .json symlink to /dev/zero as eval --data is refused (was 4 GB in 14 s)", { timeout: 60_000 }, async () => {
    const x = inputs();
    const link = path.join(x.dir, "dev-link.json");
    fs.symlinkSync("/dev/zero", link);
    await refused(
      ["eval", "--data", link, "--tables", x.tables, "--predictions", x.preds, "--output", path.join(x.dir, "out")],
      new RegExp(`--data: ${link.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: not a regular file \\(it is a character device`),
    );
  });

  test("a FIFO as --predictions, --data, --tables, --config, --schema and data.db is refused at once (an open would block)", { timeout: 120_000 }, async () => {
    const x = inputs();
    const p = fifo(x.dir, "pipe.json");
    if (!p) return; // no mkfifo here
    const out = path.join(x.dir, "out");
    await refused(
      ["eval", "--data", x.data, "--tables", x.tables, "--predictions", p, "--output", out],
      /--predictions: .*pipe\.json: not a regular file \(it is a FIFO/,
    );
    await refused(
      ["eval", "--data", p, "--tables", x.tables, "--predictions", x.preds, "--output", out],
      /--data: .*pipe\.json: not a regular file \(it is a FIFO/,
    );
    await refused(
      ["eval", "--data", x.data, "--tables", p, "--predictions", x.preds, "--output", out],
      /--tables: .*pipe\.json: not a regular file \(it is a FIFO/,
    );
    await refused(["data", "--model", "builtin:tiny", "--config", p], /--config: .*pipe\.json: not a regular file \(it is a FIFO/);
    await refused(["generate", "q?", "--model", "builtin:tiny", "--schema", p], /--schema: .*pipe\.json: not a regular file \(it is a FIFO/);
    await refused(
      ["data", "--model", "builtin:tiny", "--data", x.csv, "--set", `data.db=${p}`],
      /data\.db: database .*pipe\.json: not a regular file \(it is a FIFO/,
    );
  });

  test("a file past its cap is refused before it is read (sparse files of the cap + 1 byte)", { timeout: 120_000 }, async () => {
    const x = inputs();
    const out = path.join(x.dir, "out");
    const preds = sparse(x.dir, "big.sql", MAX_PREDICTIONS_BYTES + 1);
    await refused(
      ["eval", "--data", x.data, "--tables", x.tables, "--predictions", preds, "--output", out],
      new RegExp(`--predictions: .*big\\.sql: ${MAX_PREDICTIONS_BYTES + 1} bytes, more than the ${MAX_PREDICTIONS_BYTES} a predictions file may have`),
    );
    const data = sparse(x.dir, "big.json", MAX_DATA_FILE_BYTES + 1);
    await refused(
      ["eval", "--data", data, "--tables", x.tables, "--predictions", x.preds, "--output", out],
      new RegExp(`--data: .*big\\.json: ${MAX_DATA_FILE_BYTES + 1} bytes, more than the ${MAX_DATA_FILE_BYTES} a data file may have`),
    );
    const cfg = sparse(x.dir, "big.yaml", MAX_CONFIG_BYTES + 1);
    await refused(["data", "--model", "builtin:tiny", "--config", cfg], /--config: .*big\.yaml: 16777217 bytes, more than the 16777216 a config file may have/);
  });
});

describe("issue 25.2: the reader itself", () => {
  test("reads a regular file whole, refuses one that grew past the cap while read, a folder, a missing file; heads of short files", () => {
    const dir = tempDir();
    const f = path.join(dir, "a.txt");
    fs.writeFileSync(f, "hello");
    expect(readUserFile(f, { label: "--x", maxBytes: 5 }).toString()).toBe("hello");
    expect(() => readUserFile(f, { label: "--x", maxBytes: 4, what: "an x file" })).toThrow(`--x: ${f}: 5 bytes, more than the 4 an x file may have`);
    expect(() => readUserFile(dir, { label: "--x", maxBytes: 4 })).toThrow(/^--x: .*: not a regular file \(it is a folder/);
    expect(() => readUserFile(path.join(dir, "none"), { label: "--x", maxBytes: 4 })).toThrow(`--x: file not found: ${path.join(dir, "none")}`);
    expect(readUserFileHead(f, 16, "db").toString()).toBe("hello");
    if (linux) {
      // a file whose size the kernel reports as 0 but which has content: the read itself stops at the cap
      expect(() => readUserFile("/proc/self/status", { label: "--x", maxBytes: 10 })).toThrow(
        "--x: /proc/self/status: more than the 10 bytes the file may have",
      );
      expect(readUserFile("/proc/self/status", { label: "--x", maxBytes: 1 << 20 }).toString()).toMatch(/^Name:/);
      try {
        readUserFile("/dev/null", { label: "--x", maxBytes: 4 });
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(UserFileError);
        expect((err as UserFileError).problem).toMatch(/^not a regular file \(it is a character device/);
      }
    }
  });
});
