// Generation from a quantized (Q8_0) GGUF through node-llama-cpp. On CPUs with AMX, llama.cpp's
// quantized AMX kernels fault with SIGILL in a process that never asked Linux for the AMX tile
// state (exit 132 before); loading our addon asks for it, and the local llama.cpp build we make
// leaves those kernels out. Elsewhere this is a plain Q8_0 run.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import { expect, test } from "vitest";
import { cpuHasAmxTiles, systemInfo } from "../src/engine/system.js";
import { GgmlType, readGguf } from "../src/formats/gguf.js";
import { SqlGenerator } from "../src/serve/generate.js";
import { NO_AMX_FLAGS, withoutAmxKernels } from "../src/serve/llama-build.js";
import { testModel } from "./helpers/models.js";

const cpuFlags = fs.existsSync("/proc/cpuinfo") ? (/^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "") : "";
const hasAmx = / amx_tile( |$)/.test(cpuFlags);

test("the AMX tile state is requested where the CPU has AMX", () => {
  expect(cpuHasAmxTiles()).toBe(hasAmx && process.arch === "x64");
  expect(systemInfo().amxTiles).toBe(hasAmx ? "granted" : "absent");
  const out = execFileSync(process.execPath, ["dist/src/cli/main.js", "doctor"], { encoding: "utf8" });
  expect(out).toContain(hasAmx ? "AMX tiles: granted to this process" : "AMX tiles: this CPU has none");
});

test(`a Q8_0 model generates${hasAmx ? " (AMX CPU: through the AMX kernels' tile state)" : " (no AMX on this CPU)"}`, async () => {
  const file = await testModel({ nEmbd: 128, nHead: 4, nHeadKv: 2, nFf: 256, type: "q8_0" });
  expect(readGguf(file).tensors.filter((t) => t.type === GgmlType.Q8_0).length).toBeGreaterThan(10);
  const g = await SqlGenerator.load({ model: file, device: "cpu", parallel: 1, threads: 2 });
  try {
    const r = await g.generate({ question: "How many singers are there?", maxTokens: 8 });
    expect(r.tokens).toBeGreaterThan(0);
  } finally {
    await g.dispose();
  }
});

test("the local llama.cpp build leaves ggml's AMX kernels out (x64 Linux), keeping flags the user set", () => {
  expect(withoutAmxKernels({}, "linux", "x64")).toEqual({
    NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_C_FLAGS: NO_AMX_FLAGS,
    NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CXX_FLAGS: NO_AMX_FLAGS,
  });
  expect(withoutAmxKernels({ NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_C_FLAGS: "-O3" }, "linux", "x64").NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_C_FLAGS).toBe(
    `-O3 ${NO_AMX_FLAGS}`,
  );
  expect(withoutAmxKernels({}, "darwin", "arm64")).toEqual({});
  // the flags remove AMX whatever -march says (gcc and clang read explicit -mno-* over -march's set)
  const cc = spawnSync("cc", [...NO_AMX_FLAGS.split(" "), "-march=sapphirerapids", "-dM", "-E", "-"], { input: "", encoding: "utf8" });
  if (cc.status === 0) expect(cc.stdout).not.toMatch(/__AMX_/);
  const withAmx = spawnSync("cc", ["-march=sapphirerapids", "-dM", "-E", "-"], { input: "", encoding: "utf8" });
  if (withAmx.status === 0) expect(withAmx.stdout).toMatch(/__AMX_INT8__/);
});
