// What the machine offers the native engine: its compute devices (for `text2sql doctor` and users)
// and the CPU thread counts that make sense on it.
import fs from "node:fs";
import os from "node:os";
import { fail } from "./lora.js";
import { loadNative, type NativeCpuFeatures, type NativeDevice } from "./native.js";

/**
 * The compute devices this build of the native engine can use (CPU always; CUDA/Metal when built),
 * the AMX tile state (loading the addon asks Linux for it, for every ggml in the process), the
 * CPU features that decide the matrix kernels, and the kernel each weight type's products use on
 * the CPU (TEXT2SQL_AMX=0 turns our AMX kernel off, =emulate runs it on an emulated tile unit;
 * TEXT2SQL_AVX512BF16=0 turns our AVX512-BF16 GEMM off).
 */
export function systemInfo(): {
  devices: NativeDevice[];
  amxTiles: "absent" | "granted" | "denied";
  cpuFeatures: NativeCpuFeatures;
  kernels: { f32: string; f16: string; bf16: string };
  kernelNote: string;
} {
  const i = loadNative().systemInfo();
  return { devices: i.devices, amxTiles: i.amxTiles, cpuFeatures: i.cpuFeatures, kernels: i.kernels, kernelNote: i.kernelNote };
}

/** Whether the CPU reports AMX tiles (Linux /proc/cpuinfo's amx_tile flag; the tile state is a Linux request only). */
export function cpuHasAmxTiles(): boolean {
  if (process.platform !== "linux" || process.arch !== "x64") return false;
  try {
    return /^flags\s*:.*\samx_tile(\s|$)/m.test(fs.readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
}

/** A warning on stderr: the run goes on, and the user can see what happened. */
export function warn(message: string): void {
  process.stderr.write(`text2sql: warning: ${message}\n`);
}

/**
 * More threads than this many per core are refused: such a count is a typo, and OpenMP then
 * cannot create its threads (100,000 crashed the process; 20,000 ran on and ignored SIGTERM).
 */
export const MAX_THREADS_PER_CORE = 4;

/**
 * Checks a thread count (0: all cores): an integer from 0 to MAX_THREADS_PER_CORE × the cores
 * here; above the core count it runs, with a warning, since threads beyond the cores only wait.
 */
export function checkThreads(option: string, v: unknown, onWarning: ((message: string) => void) | null = warn): number {
  const cores = os.availableParallelism();
  const max = MAX_THREADS_PER_CORE * cores;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max)
    fail(option, `an integer from 0 (all cores) to ${max} (${MAX_THREADS_PER_CORE} per core; this machine has ${cores})`, v);
  if (v > cores) onWarning?.(`${option} ${v} is more than the ${cores} cores here; threads beyond the cores only wait for each other`);
  return v;
}
