import { describe, expect, it } from "vitest";
import { AVOIDED_OPS, BACKENDS, GRAPH_OP_USES, backendSupports, supportSource } from "./helpers/backend-support.js";
import type { Backend, OpUse } from "./helpers/backend-support.js";

const ok = (b: Backend, u: OpUse) => backendSupports(b, u).ok;

describe("backend support table (hand-read from the pinned ggml sources)", () => {
  it("MUL_MAT with F32 operands is supported everywhere, also on permuted views with GQA broadcast", () => {
    for (const b of BACKENDS) {
      expect(backendSupports(b, { op: "MUL_MAT", types: ["F32", "F32"] })).toEqual({ ok: true, ...(b === "metal" ? { note: expect.any(String) } : {}) });
      expect(ok(b, { op: "MUL_MAT", types: ["F32", "F32"], contiguous: [false, false], broadcast: true })).toBe(true);
      // a transposed src0 (nb[0] != type size) is rejected by every backend
      expect(ok(b, { op: "MUL_MAT", types: ["F32", "F32"], contiguous: [false, true], rowsContiguous: [false, true] })).toBe(false);
    }
  });

  it("BF16 MUL_MAT is supported, with a bfloat caveat on Metal only", () => {
    for (const b of BACKENDS) expect(ok(b, { op: "MUL_MAT", types: ["BF16", "F32"] })).toBe(true);
    expect(backendSupports("metal", { op: "MUL_MAT", types: ["BF16", "F32"] }).note).toMatch(/bfloat/);
    expect(backendSupports("cuda", { op: "MUL_MAT", types: ["BF16", "F32"] }).note).toBeUndefined();
  });

  it("OUT_PROD on an F16/BF16 weight is not supported on CUDA or Metal", () => {
    for (const t of ["F16", "BF16"]) {
      expect(ok("cuda", { op: "OUT_PROD", types: [t, "F32"] })).toBe(false);
      expect(ok("metal", { op: "OUT_PROD", types: [t, "F32"] })).toBe(false);
    }
    expect(ok("cpu", { op: "OUT_PROD", types: ["BF16", "F32"] })).toBe(false);
    expect(ok("cpu", { op: "OUT_PROD", types: ["F16", "F32"] })).toBe(true);
    expect(ok("cpu", { op: "OUT_PROD", types: ["F16", "F32"], broadcast: true })).toBe(false);
    // not vacuous: the F32 case is allowed where the sources allow it
    expect(ok("cuda", { op: "OUT_PROD", types: ["F32", "F32"] })).toBe(true);
    expect(ok("metal", { op: "OUT_PROD", types: ["F32", "F32"] })).toBe(false);
  });

  it("backward ops missing on Metal are reported as such", () => {
    for (const op of ["RMS_NORM_BACK", "SOFT_MAX_BACK", "CROSS_ENTROPY_LOSS", "CROSS_ENTROPY_LOSS_BACK", "GET_ROWS_BACK", "REPEAT_BACK"]) {
      const r = backendSupports("metal", { op, types: ["F32", "F32"] });
      expect(r.ok, op).toBe(false);
      expect(r.why).toMatch(/default/);
      expect(ok("cpu", { op, types: ["F32", "F32"] }), op).toBe(true);
    }
  });

  it("layout and type conditions are enforced", () => {
    // SCALE: CPU asserts a fully contiguous src0, CUDA's kernel is flat; Metal needs only contiguous rows
    const scaleView: OpUse = { op: "SCALE", types: ["F32"], contiguous: [false] };
    expect(ok("cpu", scaleView)).toBe(false);
    expect(ok("cuda", scaleView)).toBe(false);
    expect(ok("metal", scaleView)).toBe(true);
    // Metal binary ops need both operands of the same type; CUDA has no BF16 binary ops
    expect(ok("metal", { op: "ADD", types: ["F32", "F16"] })).toBe(false);
    expect(ok("cuda", { op: "ADD", types: ["F32", "F16"] })).toBe(true);
    expect(ok("cuda", { op: "MUL", types: ["BF16", "F32"] })).toBe(false);
    expect(ok("cpu", { op: "MUL", types: ["BF16", "F32"] })).toBe(true);
    // ARGMAX on CUDA asserts a contiguous src0
    expect(ok("cuda", { op: "ARGMAX", types: ["F32"], contiguous: [false] })).toBe(false);
    // RMS_NORM is F32-only everywhere
    for (const b of BACKENDS) expect(ok(b, { op: "RMS_NORM", types: ["F16"] })).toBe(false);
    // CPY/CONT of a transposed F32 view is fine everywhere
    for (const b of BACKENDS) {
      expect(ok(b, { op: "CONT", types: ["F32"], contiguous: [false], rowsContiguous: [false] })).toBe(true);
      expect(ok(b, { op: "CPY", types: ["F32", "F32"], contiguous: [false, true], rowsContiguous: [false, true] })).toBe(true);
    }
    // a missing operand type is not silently accepted
    expect(ok("cpu", { op: "MUL_MAT", types: ["F32"] })).toBe(false);
  });

  it("unknown ops and bare UNARY are not in the table", () => {
    for (const b of BACKENDS) {
      const r = backendSupports(b, { op: "FOO", types: ["F32"] });
      expect(r.ok).toBe(false);
      expect(r.why).toMatch(/not in the table/);
      expect(ok(b, { op: "UNARY", types: ["F32"] })).toBe(false);
      expect(ok(b, { op: "UNARY:GELU", types: ["F32"] })).toBe(false);
      expect(ok(b, { op: "toString", types: [] })).toBe(false);
    }
  });

  it("the pieces of the other families run everywhere: NEOX RoPE without frequency factors, head norms, biases", () => {
    for (const b of BACKENDS) {
      for (const op of ["ROPE", "ROPE_BACK"]) expect(ok(b, { op, types: ["F32", "I32"] }), `${b} ${op}`).toBe(true);
      expect(ok(b, { op: "RMS_NORM", types: ["F32"] }), b).toBe(true);
      expect(ok(b, { op: "ADD", types: ["F32", "F32"] }), b).toBe(true);
      expect(ok(b, { op: "MUL", types: ["F32", "F32"] }), b).toBe(true);
      // a RoPE of a non-contiguous view would not run on CUDA: the graph ropes contiguous tensors only
      expect(ok("cuda", { op: "ROPE_BACK", types: ["F32", "I32"], contiguous: [false] })).toBe(false);
    }
    for (const op of ["ROPE", "ROPE_BACK"]) expect(GRAPH_OP_USES.some((u) => u.op === op && u.types.length === 2)).toBe(true);
  });

  it("every op use of the training graph is supported on every backend", () => {
    const bad: string[] = [];
    for (const u of GRAPH_OP_USES) {
      for (const b of BACKENDS) {
        const r = backendSupports(b, u);
        if (!r.ok) bad.push(r.why ?? `${b} ${u.op}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it("every entry cites its source, and every avoided op is described and answered for", () => {
    for (const u of GRAPH_OP_USES) for (const b of BACKENDS) expect(supportSource(b, u.op), `${b} ${u.op}`).toMatch(/~\d+/);
    for (const op of Object.keys(AVOIDED_OPS)) {
      expect(AVOIDED_OPS[op].length).toBeGreaterThan(10);
      for (const b of BACKENDS) expect(supportSource(b, op), `${b} ${op}`).toBeDefined();
    }
  });
});
