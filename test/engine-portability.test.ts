// The training graph must not lean on ops a GPU backend lacks (engine-notes section 2): walk every
// node of the real graph, for F32, F16 and BF16 weights, with and without dropout, and check each
// op use against the support table read from the CPU, CUDA and Metal sources.
import { describe, expect, test } from "vitest";
import { LoraEngine } from "../src/engine.js";
import { BACKENDS, backendSupports, type OpUse } from "./helpers/backend-support.js";
import { testModel } from "./helpers/models.js";

/** Parses a graphOps() line: "OP TYPE,TYPE~[ broadcast]". */
function parse(line: string): OpUse {
  const [op, srcs = "", flag] = line.split(" ");
  const parts = srcs ? srcs.split(",") : [];
  return {
    op,
    types: parts.map((p) => p.replace(/[~^]$/, "").toUpperCase()),
    contiguous: parts.map((p) => !/[~^]$/.test(p)),
    rowsContiguous: parts.map((p) => !p.endsWith("^")),
    broadcast: flag === "broadcast",
  };
}

describe("backend portability of the training graph", () => {
  for (const type of ["f32", "f16", "bf16"] as const) {
    test(`every op of the ${type} training graph runs on CPU, CUDA and Metal`, async () => {
      const model = await testModel({ type });
      const e = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ["q", "k", "v", "o", "gate", "up", "down"], dropout: 0.1 } });
      const lines = await e.graphOps(8);
      await e.dispose();
      const uses = [...new Set(lines)];
      expect(uses.length).toBeGreaterThan(15);
      // the backward is really there, and autodiff's slow paths are not
      expect(uses.some((u) => u.startsWith("ROPE_BACK"))).toBe(true);
      expect(uses.some((u) => u.startsWith("SILU_BACK"))).toBe(true);
      expect(uses.some((u) => u.startsWith(`MUL_MAT ${type},`))).toBe(true);
      const problems: string[] = [];
      for (const line of uses) {
        for (const backend of BACKENDS) {
          const r = backendSupports(backend, parse(line));
          if (!r.ok) problems.push(`${backend}: ${line}: ${r.why}`);
        }
      }
      expect(problems).toEqual([]);
    });
  }

  test("the check itself catches an op a backend lacks", () => {
    expect(backendSupports("metal", parse("OUT_PROD F16,F32")).ok).toBe(false);
    expect(backendSupports("cuda", parse("OUT_PROD F16,F32~")).ok).toBe(false);
    expect(backendSupports("metal", parse("RMS_NORM_BACK F32,F32")).ok).toBe(false);
  });
});
