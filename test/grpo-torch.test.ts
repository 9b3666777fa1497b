// Tier 3 for GRPO: two steps recorded once with PyTorch in float64 (scripts/make-grpo-reference.py:
// fixed samples, β = 0.1, μ = 2 updates per batch so that clipping acts, temperature 0.8) replayed
// through our engine and src/train/grpo-loss.ts on the tiny Llama and Qwen2 test models: the
// log-probabilities (old and reference) and the adapter after each step agree.
import { createHash } from "node:crypto";
import fs from "node:fs";
import { describe, expect, test } from "vitest";
import { LoraEngine, type AdapterTensor } from "../src/engine/engine.js";
import type { MakeTestModelOptions } from "../src/models/test-model.js";
import { completionBatch, groupAdvantages, grpoUpdate, splitLogps, type Completion } from "../src/train/grpo-loss.js";
import { testModel } from "./helpers/models.js";

interface Sample {
  group: number;
  prompt_ids: number[];
  completion_ids: number[];
  reward: number;
  advantage: number;
  old_logps: number[];
  ref_logps: number[];
}
interface Fixture {
  model: { makeTestModel: Omit<MakeTestModelOptions, "path">; sha256: string };
  lora: { r: number; alpha: number; targets: string[] };
  hp: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; maxGradNorm: number };
  rl: { clipEps: number; klCoef: number; temperature: number; updatesPerBatch: number };
  initial: { name: string; data: number[] }[];
  steps: { samples: Sample[]; updates: { loss: number; gradNorm: number; clipped: number }[]; tensors: number[][] }[];
}

function relErr(ours: readonly AdapterTensor[], ref: readonly number[][]): { err: number; norm: number } {
  let d = 0;
  let n = 0;
  ours.forEach((t, i) => t.data.forEach((x, j) => ((d += (x - ref[i][j]) ** 2), (n += ref[i][j] ** 2))));
  return { err: Math.sqrt(d / n), norm: Math.sqrt(n) };
}

describe.each(["grpo-torch.json", "grpo-torch-qwen2.json"])("%s", (name) => {
  test("two GRPO steps (β > 0, μ = 2, clipping active) follow PyTorch: log-probabilities, losses, the adapter after each step", async () => {
    const fx: Fixture = JSON.parse(fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8"));
    const model = await testModel(fx.model.makeTestModel);
    expect(createHash("sha256").update(fs.readFileSync(model)).digest("hex"), "the test model generator changed: re-record the fixture").toBe(fx.model.sha256);
    const e = await LoraEngine.create({ model, device: "cpu", lora: { r: fx.lora.r, alpha: fx.lora.alpha, targetModules: fx.lora.targets } });
    const start = (await e.getAdapter()).map((t, i) => ({ ...t, data: Float32Array.from(fx.initial[i].data) }));
    expect(start.map((t) => t.name)).toEqual(fx.initial.map((t) => t.name));
    await e.setAdapter(start);
    const T = fx.rl.temperature;
    let prev = fx.initial.map((t) => t.data);
    for (const [si, step] of fx.steps.entries()) {
      const cs: Completion[] = step.samples.map((s) => ({
        promptIds: s.prompt_ids,
        completionIds: s.completion_ids,
        oldLogps: [],
        refLogps: null,
        advantage: 0,
      }));
      for (const g of [0, 1]) {
        const idx = step.samples.flatMap((s, i) => (s.group === g ? [i] : []));
        const adv = groupAdvantages(
          idx.map((i) => step.samples[i].reward),
          "group",
        );
        idx.forEach((i, k) => {
          cs[i].advantage = adv.advantages[k];
          expect(Math.abs(adv.advantages[k] - step.samples[i].advantage)).toBeLessThan(1e-12);
        });
      }
      const b = completionBatch(cs);
      const old = splitLogps(await e.logprobs(b, T), cs, b.seqLen);
      const cur = await e.getAdapter();
      await e.setAdapter(start);
      const ref = splitLogps(await e.logprobs(b, T), cs, b.seqLen);
      await e.setAdapter(cur);
      cs.forEach((c, i) => {
        c.oldLogps = old[i];
        c.refLogps = ref[i];
        old[i].forEach((x, t) => expect(Math.abs(x - step.samples[i].old_logps[t]), `step ${si} old logp`).toBeLessThan(2e-5));
        ref[i].forEach((x, t) => expect(Math.abs(x - step.samples[i].ref_logps[t]), `step ${si} ref logp`).toBeLessThan(2e-5));
      });
      for (const [m, u] of step.updates.entries()) {
        const r = await grpoUpdate(e, cs, { clipEps: fx.rl.clipEps, klCoef: fx.rl.klCoef, temperature: T, step: fx.hp });
        expect(Math.abs(r.loss - u.loss), `step ${si} update ${m} loss`).toBeLessThan(1e-5 * Math.max(1, Math.abs(u.loss)));
        expect(Math.abs(r.gradNorm - u.gradNorm) / u.gradNorm, `step ${si} update ${m} grad norm`).toBeLessThan(1e-4);
        expect(r.clipped, `step ${si} update ${m} clipped tokens`).toBe(u.clipped);
      }
      expect(step.updates[1].clipped).toBeGreaterThan(0); // the second update of each batch clips
      const after = await e.getAdapter();
      const { err } = relErr(after, step.tensors);
      // the step moved the adapter by far more than the disagreement
      const moved = relErr(
        after.map((t, i) => ({ ...t, data: Float32Array.from(prev[i]) })),
        step.tensors,
      ).err;
      expect(moved).toBeGreaterThan(1e-3);
      expect(err, `adapter after step ${si + 1}`).toBeLessThan(1e-4);
      prev = step.tensors;
    }
    await e.dispose();
  }, 120_000);
});
