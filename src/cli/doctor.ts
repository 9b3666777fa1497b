// `text2sql doctor`: the native engine's devices, and which llama.cpp build generation uses.
import { Command } from "commander";
import { systemInfo } from "../engine/system.js";
import { buildLlama, localLlamaBuild } from "../serve/llama-build.js";

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("check the native engine (builds it if needed), list its devices, and say which llama.cpp binaries generation uses")
    .option("--build-llama", "build node-llama-cpp's llama.cpp for this CPU now (prompt processing ~1.8x faster than its prebuilt binaries on x64; 3-4 min)")
    .action(async (o: { buildLlama?: boolean }) => {
      const info = systemInfo();
      for (const d of info.devices) console.log(`${d.backend.padEnd(6)} ${d.name}: ${d.description}`);
      console.log(
        `AMX tiles: ${info.amxTiles === "absent" ? "this CPU has none" : info.amxTiles === "granted" ? "granted to this process" : "denied by the OS (quantized AMX kernels would fault)"}`,
      );
      const f = info.cpuFeatures;
      const flags = (Object.keys(f) as (keyof typeof f)[]).map((k) => `${k} ${f[k] ? "yes" : "no"}`);
      console.log(`CPU features (CPUID): ${flags.join(", ")}`);
      console.log("CPU kernels of the frozen-weight products (W·x, Wᵀ·dy, output head), by weight type:");
      for (const t of ["f32", "f16", "bf16"] as const) console.log(`  ${t.padEnd(4)} ${info.kernels[t]}`);
      if (info.kernelNote) console.log(`  note: ${info.kernelNote}`);
      if (o.buildLlama) {
        const status = buildLlama();
        if (status !== 0) throw new Error(`building node-llama-cpp's llama.cpp failed (exit ${status}); see the output above`);
      }
      const local = localLlamaBuild();
      console.log(
        local
          ? `generation: node-llama-cpp's local build for this CPU (${local})`
          : `generation: node-llama-cpp's prebuilt binaries${process.arch === "x64" ? " (a local build processes prompts ~1.8x faster here: npx text2sql doctor --build-llama)" : ""}`,
      );
    });
}
