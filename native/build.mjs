#!/usr/bin/env node
// Builds the text2sql native addon (build/Release/text2sql.node).
//
// ggml comes from the llama.cpp source bundle that node-llama-cpp ships (pinned by its exact
// version). The bundle is unpacked once into node_modules/.cache/text2sql/llama.cpp; cmake-js
// keeps the ggml objects in build/, so a rebuild after editing native/ only recompiles our files.
//
//   node native/build.mjs            CPU (+ Metal on macOS)
//   TEXT2SQL_CUDA=1 node native/build.mjs   also the CUDA backend (needs nvcc;
//                                                   TEXT2SQL_CUDA_ARCHITECTURES="89;90" picks GPUs)
//
// Also used on first import when the addon is missing (see src/engine/native.ts).
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Finds an installed package's folder the way Node does (walking up node_modules folders). */
function packageDir(name) {
  for (let dir = root; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", name);
    if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
    if (path.dirname(dir) === dir) return null;
  }
}

function log(msg) {
  process.stderr.write(`text2sql: ${msg}\n`);
}

function fail(msg) {
  log(`native build failed: ${msg}`);
  process.exit(1);
}

/** Unpacks node-llama-cpp's llama.cpp bundle into the cache (once per node-llama-cpp version). */
export function llamaCppSource() {
  const nlcDir = packageDir("node-llama-cpp");
  if (!nlcDir) fail("node-llama-cpp is not installed (run npm install)");
  const nlcVersion = JSON.parse(fs.readFileSync(path.join(nlcDir, "package.json"), "utf8")).version;
  const bundle = path.join(nlcDir, "llama", "gitRelease.bundle");
  if (!fs.existsSync(bundle)) fail(`${bundle} is missing: node-llama-cpp ${nlcVersion} does not ship the llama.cpp source bundle`);
  const dir = path.join(root, "node_modules", ".cache", "text2sql", "llama.cpp");
  const stampFile = path.join(dir, ".text2sql-stamp");
  const stamp = `node-llama-cpp@${nlcVersion} ${fs.statSync(bundle).size}`;
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === stamp) return dir;
  log(`unpacking the llama.cpp source from node-llama-cpp@${nlcVersion}'s bundle`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const r = spawnSync("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundle, dir], { stdio: ["ignore", "inherit", "inherit"] });
  if (r.error) fail(`git is needed to unpack the llama.cpp source bundle (${r.error.message})`);
  if (r.status !== 0) fail(`git clone of ${bundle} failed`);
  fs.writeFileSync(stampFile, stamp);
  return dir;
}

function main() {
  const started = Date.now();
  const src = llamaCppSource();
  const cuda = process.env.TEXT2SQL_CUDA === "1" || process.argv.includes("--cuda");
  const jobs = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  const cmakeJsDir = packageDir("cmake-js");
  if (!cmakeJsDir) fail("cmake-js is not installed (run npm install)");
  const cmakeJs = path.join(cmakeJsDir, "bin", "cmake-js");
  try {
    execFileSync("cmake", ["--version"], { stdio: "ignore" });
  } catch {
    fail("cmake was not found on PATH; install CMake >= 3.15 (apt install cmake, brew install cmake)");
  }
  if (cuda) {
    try {
      execFileSync("nvcc", ["--version"], { stdio: "ignore" });
    } catch {
      fail("TEXT2SQL_CUDA=1 asks for the CUDA backend, but nvcc was not found on PATH (install the CUDA toolkit, or build without TEXT2SQL_CUDA for the CPU)");
    }
  }
  const args = [
    cmakeJs,
    "build",
    "--directory",
    root,
    "--out",
    path.join(root, "build"),
    "--parallel",
    String(jobs),
    "--CDLLAMA_CPP_DIR=" + src,
    "--CDTEXT2SQL_CUDA=" + (cuda ? "ON" : "OFF"),
    "--log-level",
    "warn",
  ];
  // CUDA architectures: ggml's default is the GPUs of this machine ("native"); set
  // TEXT2SQL_CUDA_ARCHITECTURES (e.g. "89;90") to build for others, or where no GPU is visible
  const archs = process.env.TEXT2SQL_CUDA_ARCHITECTURES;
  if (cuda && archs) args.push("--CDCMAKE_CUDA_ARCHITECTURES=" + archs);
  log(
    `building the native engine (ggml from source, ${cuda ? "CPU + CUDA" : process.platform === "darwin" ? "CPU + Metal" : "CPU"}, ${jobs} jobs; the first build takes about a minute)`,
  );
  // cmake-js reuses build/ without re-running CMake: when the options change (say CUDA on or
  // off, or a new llama.cpp source), configure again so the new values reach the cache
  const stampFile = path.join(root, "build", ".text2sql-options");
  const options = JSON.stringify({ src, cuda, archs: cuda ? (archs ?? null) : null });
  const stale = !fs.existsSync(stampFile) || fs.readFileSync(stampFile, "utf8") !== options;
  if (stale && fs.existsSync(path.join(root, "build", "CMakeCache.txt"))) args[1] = "configure";
  if (stale && args[1] === "configure") {
    const c = spawnSync(process.execPath, args, { cwd: root, stdio: ["ignore", process.env.TEXT2SQL_BUILD_QUIET ? "ignore" : "inherit", "inherit"] });
    if (c.status !== 0) fail("cmake-js configure exited with status " + c.status);
    args[1] = "build";
  }
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ["ignore", process.env.TEXT2SQL_BUILD_QUIET ? "ignore" : "inherit", "inherit"] });
  if (r.status !== 0) fail("cmake-js exited with status " + r.status);
  const out = path.join(root, "build", "Release", "text2sql.node");
  if (!fs.existsSync(out)) fail(`${out} was not produced`);
  fs.writeFileSync(stampFile, options);
  log(`native engine ready: ${path.relative(process.cwd(), out) || out} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
