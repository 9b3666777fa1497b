// Tier 3: a LoRA training trajectory recorded once with PyTorch (float64 autograd, clip_grad_norm_,
// torch.optim.AdamW; scripts/make-torch-reference.py) replayed in our float32 engine: for the
// Llama-2 test model, and for each other family's (Llama 3: tied head and llama3 RoPE scaling;
// Qwen2: q/k/v biases and NEOX RoPE; Qwen3: per-head q/k norms).
import { createHash } from "node:crypto";
import fs from "node:fs";
import { describe, expect, test } from "vitest";
import type { MakeTestModelOptions } from "../src/models/test-model.js";
import { LoraEngine, makeBatch } from "../src/engine/engine.js";
import { testModel } from "./helpers/models.js";

interface Fixture {
  model: { makeTestModel: Omit<MakeTestModelOptions, "path">; sha256: string };
  lora: { r: number; alpha: number; targets: string[] };
  hp: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; maxGradNorm: number };
  sequences: { tokens: number[]; mask: number[] }[];
  steps: { loss: number; gradNorm: number }[];
  tensors: { name: string; initial: number[]; final: number[] }[];
}

const FIXTURES = ["torch-trajectory.json", "torch-trajectory-llama3.json", "torch-trajectory-qwen2.json", "torch-trajectory-qwen3.json"];

describe.each(FIXTURES)("%s", (name) => {
  const fixture: Fixture = JSON.parse(fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8"));
  test("six AdamW steps follow PyTorch's trajectory: losses, gradient norms and final weights", () => replay(fixture));
});

async function replay(fixture: Fixture): Promise<void> {
  const model = await testModel(fixture.model.makeTestModel);
  const sha = createHash("sha256").update(fs.readFileSync(model)).digest("hex");
  expect(sha, "the test model generator changed: re-record the fixture (see scripts/make-torch-reference.py)").toBe(fixture.model.sha256);

  const e = await LoraEngine.create({ model, device: "cpu", lora: { r: fixture.lora.r, alpha: fixture.lora.alpha, targetModules: fixture.lora.targets } });
  const current = await e.getAdapter();
  expect(current.map((t) => t.name)).toEqual(fixture.tensors.map((t) => t.name));
  await e.setAdapter(current.map((t, i) => ({ ...t, data: Float32Array.from(fixture.tensors[i].initial) })));

  const batches = fixture.sequences.map((s) => makeBatch([s]));
  const N = fixture.sequences.reduce((n, s) => n + s.mask.slice(1).reduce((a, b) => a + b, 0), 0);
  for (const [i, ref] of fixture.steps.entries()) {
    let lossSum = 0;
    for (const b of batches) lossSum += (await e.accumulate(b, N)).lossSum;
    const norm = await e.step(fixture.hp);
    expect(Math.abs(lossSum / N - ref.loss) / ref.loss, `loss at step ${i}`).toBeLessThan(1e-6);
    expect(Math.abs(norm - ref.gradNorm) / ref.gradNorm, `gradient norm at step ${i}`).toBeLessThan(5e-6);
  }

  // Measured: losses within 5e-8 relative, gradient norms within 6e-7, weights within 1e-6 (float32
  // engine against float64 PyTorch).
  const final = await e.getAdapter();
  let maxErr = 0;
  let maxMove = 0;
  for (const [i, t] of final.entries()) {
    const ref = fixture.tensors[i];
    for (let j = 0; j < t.data.length; j++) {
      maxErr = Math.max(maxErr, Math.abs(t.data[j] - ref.final[j]));
      maxMove = Math.max(maxMove, Math.abs(ref.final[j] - ref.initial[j]));
    }
  }
  expect(maxMove).toBeGreaterThan(0.03); // the weights really moved (six steps of ~lr each)
  expect(maxErr).toBeLessThan(5e-6);
  await e.dispose();
}
