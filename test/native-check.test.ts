// The engine's checks as a program with no Node.js (native/check.cpp, built beside the addon as
// build/Release/text2sql-check): here on the CPU, on the test model the maker writes; the GPU
// machines run the same program with --backend cuda (scripts/device-check.sh).
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const BIN = path.join(ROOT, "build", "Release", "text2sql-check");

/** Runs the check program; its stdout is one "name key=value ..." line per result. */
function runCheck(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(BIN, args, { encoding: "utf8", timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: r.stdout + r.stderr };
}

/** The key=value fields of the first line that starts with `name `. */
function fields(out: string, name: string): Record<string, string> {
  const line = out.split("\n").find((l) => l.startsWith(name + " "));
  expect(line, `no "${name}" line in:\n${out}`).toBeDefined();
  return Object.fromEntries(
    line!
      .split(" ")
      .slice(1)
      .map((kv) => kv.split("=") as [string, string]),
  );
}

describe("text2sql-check on the CPU", () => {
  let model: string;
  beforeAll(async () => {
    // npm run build builds it with the addon (only check.cpp compiles on top of the addon's objects)
    if (!fs.existsSync(BIN)) execFileSync(process.execPath, [path.join(ROOT, "native", "build.mjs")], { stdio: "inherit", timeout: 600_000 });
    model = await testModel({ type: "f32" });
  }, 600_000);

  test("gradients agree with central differences, AdamW with its closed form, fused ops with composed ones", () => {
    const { status, out } = runCheck(["--model", model, "--backend", "cpu", "--threads", "2"]);
    expect(out).toMatch(/^ok$/m);
    expect(status, out).toBe(0);
    const grad = fields(out, "grad");
    // 7 targets x 2 layers x (A, B) x 3 entries, each within 1e-3·|g| + 2e-5
    expect(Number(grad.checked)).toBe(84);
    expect(Number(grad.failed)).toBe(0);
    expect(Number(grad.worst_of_bound)).toBeLessThanOrEqual(1);
    const adamw = fields(out, "adamw");
    expect(Number(adamw.clip)).toBeCloseTo(0.5, 5);
    expect(Number(adamw.max_abs_diff)).toBeLessThanOrEqual(1e-7);
    expect(Number(adamw.max_move)).toBeGreaterThan(0.05);
    const agree = fields(out, "agree");
    expect(agree.reference).toBe("cpu-portable-ops");
    expect(Number(agree.logits_rel_l2)).toBeLessThanOrEqual(1e-4);
    // measured 2.3e-7: the same sums in another order
    expect(Number(agree.grad_rel_l2)).toBeLessThanOrEqual(1e-5);
    expect(fields(out, "backend").device).toBe("CPU");
  }, 120_000);

  test("a timed step prints its median", () => {
    const { status, out } = runCheck(["--model", model, "--checks", "none", "--time", "16,32", "--iters", "2", "--threads", "2"]);
    expect(status, out).toBe(0);
    const t = out.split("\n").filter((l) => l.startsWith("time "));
    expect(t.map((l) => l.split(" ")[1])).toEqual(["tokens=16", "tokens=32"]);
    expect(Number(fields(out, "time").median_ms)).toBeGreaterThan(0);
  }, 120_000);

  test("a random model it writes itself (for machines without Node) loads and passes the checks", () => {
    const file = path.join(tempDir(), "random-tiny.gguf");
    const w = runCheck(["--write-model", file, "--shape", "tiny", "--type", "f32"]);
    expect(w.status, w.out).toBe(0);
    const { status, out } = runCheck(["--model", file, "--threads", "2"]);
    expect(status, out).toBe(0);
    expect(Number(fields(out, "grad").failed)).toBe(0);
  }, 120_000);

  test("--checks amx: the AMX-BF16 kernel's 12 cases on the emulated tiles, within the bound, which a swapped weight pair breaks", () => {
    const { status, out } = runCheck(["--checks", "amx", "--threads", "2"]);
    expect(status, out).toBe(0);
    const a = fields(out, "amx");
    expect(a).toMatchObject({ unit: "amx-bf16-emulated", available: "1", cases: "12" });
    expect(Number(a.worst_of_bound_exact)).toBeLessThanOrEqual(1);
    expect(Number(a.worst_of_bound_vs_ggml)).toBeLessThanOrEqual(1);
    expect(Number(a.swapped_pair_of_bound)).toBeGreaterThan(10);
  });

  const hasAmx = (() => {
    try {
      return /^flags\s*:.*\samx_bf16(\s|$)/m.test(fs.readFileSync("/proc/cpuinfo", "utf8"));
    } catch {
      return false;
    }
  })();
  test(`--checks amx-hw: ${hasAmx ? "the real tiles pass the 12 cases" : "fails here, naming why (no amx_bf16 in /proc/cpuinfo)"}`, () => {
    const { status, out } = runCheck(["--checks", "amx-hw", "--threads", "2"]);
    if (hasAmx) {
      expect(status, out).toBe(0);
      expect(fields(out, "amx")).toMatchObject({ unit: "amx-bf16", available: "1", cases: "12" });
    } else {
      expect(status).toBe(1);
      expect(out).toMatch(/^FAILED: amx-hw: the real tiles are not available: (CPUID reports no AMX-BF16|this build has no AMX code)$/m);
    }
  });

  // build/.text2sql-options (native/build.mjs) says whether this build has CUDA
  const cudaBuilt = () => JSON.parse(fs.readFileSync(path.join(ROOT, "build", ".text2sql-options"), "utf8")).cuda === true;

  test("a backend not built in, or not known, is an error naming it (no fallback to the CPU)", (ctx) => {
    if (process.platform === "darwin" || cudaBuilt()) ctx.skip(); // there a GPU backend is built in
    const cuda = runCheck(["--model", model, "--backend", "cuda"]);
    expect(cuda.status).toBe(1);
    expect(cuda.out).toMatch(/FAILED: device 'cuda' was requested but this build of the text2sql engine has no CUDA backend/);
    expect(cuda.out).not.toMatch(/^grad /m);
    const bad = runCheck(["--model", model, "--backend", "vulkan"]);
    expect(bad.status).toBe(1);
    expect(bad.out).toMatch(/FAILED: --backend: expected cpu, cuda or metal, got 'vulkan'/);
  });
});
