// node-llama-cpp's llama.cpp built for this CPU, on request (`npx text2sql doctor --build-llama`).
//
// Generation, serving and tokenizing run on node-llama-cpp. It ships prebuilt CPU binaries for
// generic CPU families, which `npm install` uses as they are. Built from the same pinned source on
// the machine itself (GGML_NATIVE), prompt processing runs 1.7-1.8x faster on the reference 2-core
// AMD EPYC (npm run bench:generate: 512-token prompt 140 -> 235-252 tokens/s, time to first token
// 270 -> 165-180 ms; decoding is memory-bound and about the same), at the cost of 3-4 minutes of
// building. node-llama-cpp prefers a local build over its prebuilt binaries for the CPU by itself;
// GPU builds (CUDA, Metal) keep coming from its prebuilt binaries.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { packageRoot } from "../engine/native.js";

function nodeLlamaCppDir(): string | null {
  for (let dir = packageRoot(); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", "node-llama-cpp");
    if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
    if (path.dirname(dir) === dir) return null;
  }
}

/** The folder of node-llama-cpp's local CPU build for this platform, or null when there is none. */
export function localLlamaBuild(): string | null {
  const dir = nodeLlamaCppDir();
  if (!dir) return null;
  const b = path.join(dir, "llama", "localBuilds", `${process.platform}-${process.arch}`);
  return fs.existsSync(path.join(b, "buildDone.status")) ? b : null;
}

/** Compiler flags that keep ggml's AMX kernels out of a -march=native build (gcc and clang; in any order with -march). */
export const NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16";

/**
 * The node-llama-cpp cmake options (its NODE_LLAMA_CPP_CMAKE_OPTION_* variables) that build llama.cpp
 * without ggml's AMX kernels, on x64 Linux. Built with -march=native on an Intel Xeon with AMX,
 * this bundle's quantized AMX kernels (ggml-cpu/amx) died with SIGILL at their first tile instruction
 * (`tilezero` in tinygemm_kernel_amx<block_q8_0>; llama.cpp PR #26954 names two causes: the tile
 * permission requested on one thread only, and a tile configuration the compiler optimizes away).
 * Without them ggml uses its AVX-512 VNNI kernels for quantized types. Flags the user set are kept.
 */
export function withoutAmxKernels(env: NodeJS.ProcessEnv, platform = process.platform, arch = process.arch): Record<string, string> {
  if (platform !== "linux" || arch !== "x64") return {};
  const out: Record<string, string> = {};
  for (const lang of ["C", "CXX"]) {
    const key = `NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_${lang}_FLAGS`;
    out[key] = [env[key], NO_AMX_FLAGS].filter(Boolean).join(" ");
  }
  return out;
}

/** Builds node-llama-cpp's llama.cpp (CPU) from its source bundle; returns the exit status. */
export function buildLlama(log: (line: string) => void = (l) => process.stderr.write(`text2sql: ${l}\n`)): number {
  const dir = nodeLlamaCppDir();
  if (!dir) throw new Error("node-llama-cpp is not installed (run npm install)");
  const cli = path.join(dir, "dist", "cli", "cli.js");
  const version = (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version;
  const started = Date.now();
  log(
    `building node-llama-cpp@${version}'s llama.cpp for this CPU from its source bundle (about 3-4 minutes on 2 cores; prompt processing then runs ~1.8x faster than with its prebuilt binaries)`,
  );
  // `source download` takes the git bundle node-llama-cpp ships for its pinned release (no network)
  const r = spawnSync(process.execPath, [cli, "source", "download", "--gpu", "false", "--noUsageExample"], {
    cwd: packageRoot(),
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, ...withoutAmxKernels(process.env) },
  });
  if (r.status === 0) log(`node-llama-cpp's local build is ready (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  return r.status ?? 1;
}
