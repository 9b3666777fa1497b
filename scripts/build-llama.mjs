#!/usr/bin/env node
// Builds node-llama-cpp's llama.cpp for this CPU (generation, serving and tokenizing run on it).
//
// node-llama-cpp ships prebuilt CPU binaries for generic CPU families. Built from the same pinned
// source on the machine itself (GGML_NATIVE), prompt processing runs 1.7-1.8x faster on the
// reference 2-core AMD EPYC (npm run bench:generate: 512-token prompt 140 -> 235-252 tokens/s,
// time to first token 270 -> 165-180 ms; decoding is memory-bound and about the same). node-llama-cpp
// prefers a local build over its prebuilt binaries for the CPU by itself; GPU builds (CUDA, Metal)
// keep coming from its prebuilt binaries.
//
//   node scripts/build-llama.mjs             build now (about 3-4 minutes on 2 cores)
//   node scripts/build-llama.mjs --install   what `npm install` runs: Linux and Windows x64 only,
//                                            skipped when a build exists or TEXT2SQL_LLAMA_BUILD=0;
//                                            a failed build warns and leaves the prebuilt binaries
//   npx text2sql doctor                      says which binaries generation uses
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function nodeLlamaCppDir() {
  for (let dir = root; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", "node-llama-cpp");
    if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
    if (path.dirname(dir) === dir) return null;
  }
}

function log(msg) {
  process.stderr.write(`text2sql: ${msg}\n`);
}

/** The folder of node-llama-cpp's local CPU build for this platform, or null when there is none. */
export function localLlamaBuild() {
  const dir = nodeLlamaCppDir();
  if (!dir) return null;
  const b = path.join(dir, "llama", "localBuilds", `${process.platform}-${process.arch}`);
  return fs.existsSync(path.join(b, "buildDone.status")) ? b : null;
}

/** Builds node-llama-cpp's llama.cpp (CPU) from its source bundle; returns the exit status. */
export function buildLlama({ quiet = false } = {}) {
  const dir = nodeLlamaCppDir();
  if (!dir) throw new Error("node-llama-cpp is not installed (run npm install)");
  const cli = path.join(dir, "dist", "cli", "cli.js");
  const version = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).version;
  const started = Date.now();
  log(`building node-llama-cpp@${version}'s llama.cpp for this CPU from its source bundle (about 3-4 minutes on 2 cores; prompt processing then runs ~1.8x faster than with its prebuilt binaries; TEXT2SQL_LLAMA_BUILD=0 skips this at install)`);
  // `source download` takes the git bundle node-llama-cpp ships for its pinned release (no network)
  const r = spawnSync(process.execPath, [cli, "source", "download", "--gpu", "false", "--noUsageExample"], {
    cwd: root,
    stdio: ["ignore", quiet ? "ignore" : "inherit", "inherit"],
  });
  if (r.status === 0) log(`node-llama-cpp's local build is ready (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  return r.status ?? 1;
}

function main() {
  const install = process.argv.includes("--install");
  if (install) {
    if (process.env.TEXT2SQL_LLAMA_BUILD === "0") {
      log("TEXT2SQL_LLAMA_BUILD=0: generation uses node-llama-cpp's prebuilt binaries");
      return;
    }
    if (process.arch !== "x64" || !["linux", "win32"].includes(process.platform)) return; // prebuilt binaries are the right ones there
    if (localLlamaBuild()) return;
  }
  const status = buildLlama({ quiet: Boolean(process.env.TEXT2SQL_BUILD_QUIET) });
  if (status !== 0) {
    const msg = `building node-llama-cpp's llama.cpp failed (exit ${status}): generation uses its prebuilt binaries, which process prompts about 1.8x slower on this CPU; retry with \`npx text2sql doctor --build-llama\``;
    if (install) {
      log(`warning: ${msg}`);
      return; // the package works without it: do not fail npm install
    }
    log(msg);
    process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
