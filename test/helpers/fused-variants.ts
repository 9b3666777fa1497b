// What the fused CPU ops' tests share (fused-kernel.test.ts: attention, SwiGLU, head;
// lora-kernel.test.ts: the LoRA products): the variants this CPU can run, the 70-token sequence,
// one seeded batch's gradients, and the switch's values with the kernel each must pick.
import { LoraEngine, makeBatch } from "../../src/engine/engine.js";
import { cpuHasFlag } from "./bf16-products.js";
import { randomize, rng } from "./models.js";

/** The variants this CPU can run, widest first (the default picks the first). */
export const FUSED_VARIANTS = [
  { env: "avx512", kernel: "fused-avx512", cpu: "avx512f" },
  { env: "avx2", kernel: "fused-avx2", cpu: "avx2" },
  { env: "base", kernel: "fused-base", cpu: "" },
].filter((v) => v.cpu === "" || cpuHasFlag(v.cpu));

/** 70 seeded token ids: two full 32-row attention blocks and a ragged one (T_pad = 80), not a multiple of the LoRA token tiles. */
export function fusedTokens(seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: 70 }, () => 2 + Math.floor(((r() + 1) / 2) * 31000));
}

/** The adapters' gradients of one seeded two-sequence batch (70 + 41 tokens, every position but the first a target), with a randomized adapter (B != 0). */
export async function seededGradients(e: LoraEngine, tokens: number[]): Promise<Float32Array[]> {
  await e.setAdapter(randomize(await e.getAdapter(), 17, 0.2));
  await e.zeroGrad();
  await e.accumulate(makeBatch([{ tokens }, { tokens: tokens.slice(0, 41).reverse() }]), 109);
  return (await e.getAdapter({ gradients: true })).map((t) => t.data);
}

/** The switch's values (unset, auto, 1, 0, a bogus one) and the kernel each must pick. */
export function switchCases(): ReadonlyArray<readonly [string | undefined, string]> {
  const widest = FUSED_VARIANTS[0]!.kernel;
  return [
    [undefined, widest],
    ["auto", widest],
    ["1", widest],
    ["0", "ggml"],
    ["bogus", widest],
  ];
}
