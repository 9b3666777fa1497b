#!/usr/bin/env node
// `npm install`'s own step for this package: builds the native engine (native/build.mjs) and, at
// the same time, better-sqlite3's binary when it is missing or does not load.
//
// Why here: where better-sqlite3's prebuilt binary cannot be downloaded (no access to GitHub, or a
// platform without one) its install script compiles SQLite from source, about 80 s on one core.
// npm runs dependency scripts one at a time on a 2-core machine and this package's own script only
// after them, so that compile and the ggml build (about a minute on both cores) would run one after
// the other. package.json's allowScripts therefore denies better-sqlite3's script (npm >= 11.19
// honours it), and this script runs it, unchanged (`npm run install` in its folder: the prebuilt
// download first, the source build as the fallback), beside the ggml build. Older npm versions
// ignore allowScripts and have built better-sqlite3 already: then it loads and only ggml is built.
// The load check also rebuilds better-sqlite3 after a Node.js upgrade. Only in this package's own
// checkout (better-sqlite3 under its node_modules/): in a project that depends on text2sql, that
// project's npm and its allowScripts decide about better-sqlite3's script.
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function log(msg) {
  process.stderr.write(`text2sql: ${msg}\n`);
}

/** Whether better-sqlite3 loads here (its binary is present and built for this Node.js). */
function betterSqliteLoads() {
  const probe = "const D = require('better-sqlite3'); new D(':memory:').close();";
  return spawnSync(process.execPath, ["-e", probe], { cwd: root, stdio: "ignore" }).status === 0;
}

/** The folder better-sqlite3 is installed in, found the way Node does. */
function betterSqliteDir() {
  const r = spawnSync(process.execPath, ["-p", "require('path').dirname(require.resolve('better-sqlite3/package.json'))"], { cwd: root, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Runs a command; resolves with its exit status and, when `quiet`, its captured output. */
function run(cmd, args, opts, quiet) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { ...opts, stdio: ["ignore", quiet ? "pipe" : "inherit", quiet ? "pipe" : "inherit"] });
    let output = "";
    if (quiet) {
      child.stdout.on("data", (d) => (output += d));
      child.stderr.on("data", (d) => (output += d));
    }
    child.on("error", (err) => resolve({ status: 1, output: output + String(err) + "\n" }));
    child.on("close", (status) => resolve({ status: status ?? 1, output }));
  });
}

/** better-sqlite3's own install script, as npm would run it (its output shown only on failure). */
function installBetterSqlite(dir) {
  log("building better-sqlite3 beside the native engine (its install script: a prebuilt binary, or SQLite from source)");
  const npmCli = process.env.npm_execpath;
  const [cmd, args] =
    npmCli && npmCli.endsWith(".js")
      ? [process.execPath, [npmCli, "run", "install", "--no-update-notifier"]]
      : ["npm", ["run", "install", "--no-update-notifier"]];
  return run(cmd, args, { cwd: dir, shell: cmd === "npm" && process.platform === "win32" }, true).then((r) => {
    if (r.status !== 0) process.stderr.write(r.output);
    log(r.status === 0 ? "better-sqlite3 ready" : `better-sqlite3's install script failed (exit status ${r.status})`);
    return r.status;
  });
}

async function main() {
  const jobs = [run(process.execPath, [path.join(root, "native", "build.mjs")], { cwd: root }, false).then((r) => r.status)];
  if (!betterSqliteLoads()) {
    const dir = betterSqliteDir();
    if (dir && dir.startsWith(path.join(root, "node_modules") + path.sep)) jobs.push(installBetterSqlite(dir));
  }
  const statuses = await Promise.all(jobs);
  process.exit(statuses.every((s) => s === 0) ? 0 : 1);
}

await main();
