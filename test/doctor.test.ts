// `text2sql doctor` names the devices and which llama.cpp binaries generation runs on; its idea of
// "a local build exists" must be node-llama-cpp's own (it prefers a local build by itself).
import { execFileSync } from "node:child_process";
import { expect, test } from "vitest";
import { cpuLlama } from "../src/train/prompt.js";
import { localLlamaBuild } from "../src/serve/llama-build.js";

test("doctor lists the CPU device and the generation binaries node-llama-cpp really loads", async () => {
  const out = execFileSync(process.execPath, ["dist/src/cli/main.js", "doctor"], { encoding: "utf8" });
  expect(out).toMatch(/^CPU\s/m);
  const local = localLlamaBuild();
  const llama = await cpuLlama();
  expect(llama.buildType).toBe(local ? "localBuild" : "prebuilt");
  expect(out).toContain(local ? "generation: node-llama-cpp's local build for this CPU" : "generation: node-llama-cpp's prebuilt binaries");
});
