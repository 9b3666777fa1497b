// Generation from a quantized (Q8_0) GGUF through node-llama-cpp. On CPUs with AMX, llama.cpp's
// quantized AMX kernels fault with SIGILL in a process that never asked Linux for the AMX tile
// state (exit 132 before); loading our addon asks for it, and the local llama.cpp build we make
// leaves those kernels out. Elsewhere this is a plain Q8_0 run.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect, test } from "vitest";
import { cpuHasAmxTiles, systemInfo } from "../src/engine/system.js";
import { f32ToF16Bits } from "../src/formats/float16.js";
import { GgmlType, readGguf, readTensorF32 } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import { SqlGenerator } from "../src/serve/generate.js";
import { NO_AMX_FLAGS, withoutAmxKernels } from "../src/serve/llama-build.js";
import { tempDir, testModel } from "./helpers/models.js";

const cpuFlags = fs.existsSync("/proc/cpuinfo") ? (/^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "") : "";
const hasAmx = / amx_tile( |$)/.test(cpuFlags);

/** Q8_0 as ggml stores it: per block of 32 values, an f16 scale d = max|x| / 127 and 32 int8 x / d. */
function quantizeQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]));
    const d = amax / 127;
    view.setUint16(b * 34, f32ToF16Bits(d), true);
    for (let i = 0; i < 32; i++) view.setInt8(b * 34 + 2 + i, d ? Math.round(x[b * 32 + i] / d) : 0);
  }
  return out;
}

test("the AMX tile state is requested where the CPU has AMX", () => {
  expect(cpuHasAmxTiles()).toBe(hasAmx && process.arch === "x64");
  expect(systemInfo().amxTiles).toBe(hasAmx ? "granted" : "absent");
  const out = execFileSync(process.execPath, ["dist/src/cli/main.js", "doctor"], { encoding: "utf8" });
  expect(out).toContain(hasAmx ? "AMX tiles: granted to this process" : "AMX tiles: this CPU has none");
});

test(`a Q8_0 model generates${hasAmx ? " (AMX CPU: through the AMX kernels' tile state)" : " (no AMX on this CPU)"}`, async () => {
  const f32 = readGguf(await testModel({ nEmbd: 128, nHead: 4, nHeadKv: 2, nFf: 256 }));
  const file = path.join(tempDir("t2s-q8-"), "q8_0.gguf");
  const quantized = (t: (typeof f32.tensors)[number]) => t.ne.length === 2 && t.ne[0] % 32 === 0 && t.name !== "token_embd.weight";
  writeGguf(file, {
    metadata: new Map([...f32.metadata].map(([k, v]) => [k, k === "general.file_type" ? ({ ...v, value: 7 } as typeof v) : v])), // 7: MOSTLY_Q8_0
    tensors: f32.tensors.map((t) =>
      quantized(t)
        ? { name: t.name, type: GgmlType.Q8_0, ne: t.ne, data: quantizeQ8_0(readTensorF32(f32, t)) }
        : { name: t.name, type: GgmlType.F32, ne: t.ne, data: readTensorF32(f32, t) },
    ),
  });
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
