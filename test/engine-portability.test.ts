// The training graph must not lean on ops a GPU backend lacks (engine-notes section 2): walk every
// node of the real graph, for F32, F16 and BF16 weights, with and without dropout, and check each
// op use against the support table read from the CPU, CUDA and Metal sources.
import { describe, expect, test } from "vitest";
import { LoraEngine } from "../src/engine/engine.js";
import { BACKENDS, backendSupports, type Backend, type OpUse } from "./helpers/backend-support.js";
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

/** EngineInfo.matmulKernel of our CPU kernels for BF16 weights (native/bf16k.h, native/amx.h). */
const OUR_BF16_KERNELS = ["avx512-bf16", "amx-bf16", "amx-bf16-emulated"];

describe("backend portability of the training graph", () => {
  // The graph uses a fused backward op only where the backend has it (SOFT_MAX_BACK,
  // RMS_NORM_BACK, OUT_PROD f32; the lean transpose as a CPU custom op) and composes it from
  // basic ops elsewhere: build it as for each backend, from the same table, and check every op.
  const capsFor = (b: Backend) => ({
    softMaxBack: backendSupports(b, parse("SOFT_MAX_BACK F32,F32")).ok,
    rmsNormBack: backendSupports(b, parse("RMS_NORM_BACK F32,F32")).ok,
    outProd: backendSupports(b, parse("OUT_PROD F32,F32")).ok,
    customTranspose: backendSupports(b, parse("MAP_CUSTOM1 BF16^")).ok,
  });
  for (const type of ["f32", "f16", "bf16"] as const) {
    for (const memory of ["fast", "lean"] as const) {
      test(`every op of the ${type} training graph (${memory}) runs on CPU, CUDA and Metal`, async () => {
        const model = await testModel({ type });
        const e = await LoraEngine.create({ model, device: "cpu", memory, lora: { targetModules: ["q", "k", "v", "o", "gate", "up", "down"], dropout: 0.1 } });
        const problems: string[] = [];
        for (const backend of BACKENDS) {
          const uses = [...new Set(await e.graphOps(8, capsFor(backend)))];
          expect(uses.length).toBeGreaterThan(15);
          // the backward is really there, and autodiff's slow paths are not
          expect(uses.some((u) => u.startsWith("ROPE_BACK"))).toBe(true);
          // on the CPU the SwiGLU backward is our fused op (native/fused.h, a CUSTOM op) unless TEXT2SQL_FUSED=0
          expect(uses.some((u) => u.startsWith("SILU_BACK"))).toBe(backend !== "cpu" || e.info.fusedKernel === "ggml");
          // a BF16 weight's products on the CPU run on our kernel (AVX512-BF16 or AMX, a CUSTOM op) where the CPU has one
          const ours = type === "bf16" && backend === "cpu" && OUR_BF16_KERNELS.includes(e.info.matmulKernel);
          expect(uses.some((u) => u.startsWith(`MUL_MAT ${type},`))).toBe(!ours);
          expect(uses.some((u) => u.startsWith("CUSTOM bf16,bf16"))).toBe(ours);
          // (OUT_PROD f32 is the LoRA gradients' outer product; on a frozen F16/BF16 weight it would be autodiff's slow dX)
          if (type !== "f32") expect(uses.some((u) => u.startsWith(`OUT_PROD ${type}`))).toBe(false);
          for (const line of uses) {
            const r = backendSupports(backend, parse(line));
            if (!r.ok) problems.push(`${backend}: ${line}: ${r.why}`);
          }
        }
        await e.dispose();
        expect(problems).toEqual([]);
      });
    }
  }

  // the other families' pieces (q/k/v biases, q/k head norms, NEOX RoPE, tied head) in the real graph
  for (const [family, type, memory] of [
    ["llama3", "bf16", "lean"],
    ["qwen2", "f16", "fast"],
    ["qwen3", "bf16", "lean"],
    ["qwen3", "f32", "fast"],
  ] as const) {
    test(`every op of the ${family} ${type} training graph (${memory}) runs on CPU, CUDA and Metal`, async () => {
      const model = await testModel({ family, type });
      const e = await LoraEngine.create({ model, device: "cpu", memory, lora: { targetModules: ["q", "k", "v", "o", "gate", "up", "down"] } });
      const problems: string[] = [];
      for (const backend of BACKENDS) {
        const uses = [...new Set(await e.graphOps(8, capsFor(backend)))];
        expect(uses.some((u) => u.startsWith("ROPE_BACK"))).toBe(true);
        for (const line of uses) {
          const r = backendSupports(backend, parse(line));
          if (!r.ok) problems.push(`${backend}: ${line}: ${r.why}`);
        }
      }
      await e.dispose();
      expect(problems).toEqual([]);
    });
  }

  // Quantized bases (issue 14): the forward is MUL_MAT of the quantized weight; on the CPU the
  // backward's Wᵀ is a custom op, elsewhere GET_ROWS of every row to F32 (CUDA and Metal CPY a
  // quantized tensor to F32 only for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1, not the K-quants), then a
  // transposed CPY to BF16 (fast) or CONT (exact) for an ordinary MUL_MAT.
  const K_SHAPE = { nEmbd: 256, nFf: 512, nHead: 4, nHeadKv: 2 } as const;
  for (const [type, shape] of [
    ["q8_0", {}],
    ["q4_k_m", K_SHAPE],
  ] as const) {
    for (const quantMode of ["fast", "exact"] as const) {
      test(`every op of the ${type} training graph (lean, ${quantMode}) runs on CPU, CUDA and Metal`, async () => {
        const model = await testModel({ type, ...shape });
        const e = await LoraEngine.create({ model, device: "cpu", memory: "lean", quantMode, lora: { targetModules: ["q", "v", "down"] } });
        const problems: string[] = [];
        for (const backend of BACKENDS) {
          const uses = [...new Set(await e.graphOps(8, capsFor(backend)))];
          // the forward multiplies by the quantized weight (fast) or its F32 dequantization (exact);
          // Wᵀ is our custom op on the CPU only, GET_ROWS elsewhere; never a quantized CPY
          const wType = type === "q8_0" ? "q8_0" : "q4_K";
          // except Q8_0 on a CPU with AVX512-VNNI, whose forward is our custom GEMM (native/q8_gemm.h)
          const ours = type === "q8_0" && backend === "cpu" && e.info.matmulKernel === "q8_0-vnni";
          expect(uses.some((u) => u.startsWith(`MUL_MAT ${wType},f32`))).toBe(quantMode === "fast" && !ours);
          if (type === "q8_0") expect(uses.includes("CUSTOM q8_0,i8")).toBe(ours);
          expect(uses.some((u) => u.startsWith(`CUSTOM ${wType}`))).toBe(backend === "cpu");
          expect(uses.some((u) => u.startsWith(`GET_ROWS ${wType}`) && u !== "GET_ROWS f32,i32")).toBe(true);
          expect(uses.filter((u) => /^CPY q/.test(u))).toEqual([]);
          for (const line of uses) {
            const r = backendSupports(backend, parse(line));
            if (!r.ok) problems.push(`${backend}: ${line}: ${r.why}`);
          }
        }
        await e.dispose();
        expect(problems).toEqual([]);
      });
    }
  }

  test("the table says why the K-quants' Wᵀ is not a CPY to F32 off the CPU", () => {
    for (const b of ["cuda", "metal"] as const) {
      expect(backendSupports(b, parse("CPY q8_0,f32")).ok).toBe(true);
      expect(backendSupports(b, parse("CPY q4_K,f32")).ok).toBe(false);
      for (const q of ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_K", "q5_K", "q6_K"]) {
        expect(backendSupports(b, parse(`GET_ROWS ${q},i32`)).ok, `${b} ${q}`).toBe(true);
        expect(backendSupports(b, parse(`MUL_MAT ${q},f32`)).ok, `${b} ${q}`).toBe(true);
      }
    }
  });

  test("the fused ops are used where the backend has them", async () => {
    for (const type of ["bf16", "f16"] as const) {
      const model = await testModel({ type });
      const e = await LoraEngine.create({ model, device: "cpu", memory: "lean" });
      const cpu = new Set((await e.graphOps(8, capsFor("cpu"))).map((l) => l.split(" ")[0]));
      const metal = new Set((await e.graphOps(8, capsFor("metal"))).map((l) => l.split(" ")[0]));
      // our BF16 kernel packs W per call on the CPU: no lean transpose (MAP_CUSTOM1) to make there
      const ours = type === "bf16" && OUR_BF16_KERNELS.includes(e.info.matmulKernel);
      // our fused attention (fused.h) on the CPU: no SOFT_MAX_BACK of ggml's composition there
      const fusedAttn = e.info.fusedKernel !== "ggml";
      // our fused LoRA products (lora.h) on the CPU: no OUT_PROD (the adapters' dA, dB) there
      const fusedLora = e.info.loraKernel !== "ggml";
      // our fused RMS norms (fused.h) on the CPU: no RMS_NORM_BACK there
      const fusedNorm = e.info.normKernel !== "ggml";
      await e.dispose();
      for (const op of ["SOFT_MAX_BACK", "RMS_NORM_BACK", "OUT_PROD", "MAP_CUSTOM1"]) {
        const used = op === "MAP_CUSTOM1" ? !ours : op === "SOFT_MAX_BACK" ? !fusedAttn : op === "OUT_PROD" ? !fusedLora : !fusedNorm;
        expect(cpu.has(op), `${type} ${op}`).toBe(used);
        expect(metal.has(op), `${type} ${op}`).toBe(false);
      }
      expect(cpu.has("CUSTOM"), type).toBe(ours || fusedAttn || fusedLora || fusedNorm);
    }
  });

  test("the check itself catches an op a backend lacks", () => {
    expect(backendSupports("metal", parse("OUT_PROD F16,F32")).ok).toBe(false);
    expect(backendSupports("cuda", parse("OUT_PROD F16,F32~")).ok).toBe(false);
    expect(backendSupports("metal", parse("RMS_NORM_BACK F32,F32")).ok).toBe(false);
  });
});
