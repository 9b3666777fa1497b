// `text2sql doctor` names the devices, the CPU features and kernels of the matrix products, and
// which llama.cpp binaries generation runs on; its idea of
// "a local build exists" must be node-llama-cpp's own (it prefers a local build by itself).
import { execFileSync } from "node:child_process";
import { expect, test } from "vitest";
import { cpuLlama } from "../src/train/prompt.js";
import { localLlamaBuild } from "../src/serve/llama-build.js";

test("doctor lists the CPU device and the generation binaries node-llama-cpp really loads", async () => {
  const out = execFileSync(process.execPath, ["dist/src/cli/main.js", "doctor"], { encoding: "utf8" });
  expect(out).toMatch(/^CPU\s/m);
  // the CPU features that decide the kernels, and the kernel per weight type
  expect(out).toMatch(
    /^CPU features \(CPUID\): avx2 (yes|no), avx512f (yes|no), avx512_bf16 (yes|no), avx512_fp16 (yes|no), amx_tile (yes|no), amx_bf16 (yes|no), amx_int8 (yes|no)$/m,
  );
  expect(out).toMatch(/^ {2}f16 {2}tinyBLAS f16 .*activations to F16$/m);
  // BF16: our AMX kernel where the CPU has AMX-BF16 and Linux granted the tiles (TEXT2SQL_AMX
  // unset), else our AVX512-BF16 GEMM where it has AVX512_BF16 (TEXT2SQL_AVX512BF16 not 0), else tinyBLAS
  const amx = /^CPU features.* amx_bf16 yes/m.test(out) && /^AMX tiles: granted/m.test(out);
  const bf16 = /^CPU features.* avx512_bf16 yes/m.test(out) && !["0", "off"].includes(process.env.TEXT2SQL_AVX512BF16 ?? "");
  const env = process.env.TEXT2SQL_AMX;
  const ours = /^ {2}bf16 avx512-bf16 \(text2sql's AVX512-BF16 GEMM, vdpbf16ps\)/m;
  if (env === undefined) expect(out).toMatch(amx ? /^ {2}bf16 amx-bf16 \(text2sql's AMX tiles\)/m : bf16 ? ours : /^ {2}bf16 tinyBLAS bf16 /m);
  else expect(out).toMatch(/^ {2}bf16 (amx-bf16(-emulated)? \(text2sql's AMX tiles\)|avx512-bf16 \(text2sql's AVX512-BF16 GEMM|tinyBLAS bf16 )/m);
  const local = localLlamaBuild();
  const llama = await cpuLlama();
  expect(llama.buildType).toBe(local ? "localBuild" : "prebuilt");
  expect(out).toContain(local ? "generation: node-llama-cpp's local build for this CPU" : "generation: node-llama-cpp's prebuilt binaries");
});
