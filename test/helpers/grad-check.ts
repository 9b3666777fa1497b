// The finite-difference probe of the gradient tests: with a random adapter (seed 11, scale 0.2),
// accumulate the gradients of a batch, then perturb one adapter entry by ±eps through setAdapter,
// take the central difference of the mean loss, and compare it with the engine's analytic
// gradient at the largest entry and a few random entries of every adapter tensor.
import { expect } from "vitest";
import type { Batch, LoraEngine } from "../../src/engine/engine.js";
import { randomize, rng } from "./models.js";

export interface CentralDifferenceOptions {
  /** random entries per tensor besides the largest gradient entry */
  random: number;
  /** perturbation of one entry (default 1e-2) */
  eps?: number;
  /** seed of the random entries (default 3) */
  seed?: number;
}

/**
 * Checks |central difference - analytic| <= 1e-3·|analytic| + 2e-5 at each probed entry: with a
 * float32 forward the loss carries ~1e-7 relative rounding, so a central difference with
 * eps = 1e-2 is good to ~1e-5 absolute (measured errors stay below 2e-4 relative + 1e-5).
 * Returns the entries checked and the worst error as a fraction of the bound.
 */
export async function checkCentralDifferences(
  engine: LoraEngine,
  batch: Batch,
  /** the loss is the batch's summed loss over n (its target tokens) */
  n: number,
  o: CentralDifferenceOptions,
): Promise<{ checked: number; worst: number }> {
  const params = randomize(await engine.getAdapter(), 11, 0.2);
  await engine.setAdapter(params);
  await engine.accumulate(batch, n);
  const grads = await engine.getAdapter({ gradients: true });
  const loss = async () => (await engine.evaluate(batch)).lossSum / n;
  const eps = o.eps ?? 1e-2;
  const r = rng(o.seed ?? 3);
  let checked = 0;
  let worst = 0;
  for (let ti = 0; ti < params.length; ti++) {
    const g = grads[ti].data;
    let imax = 0;
    for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[imax])) imax = i;
    const picks = [imax, ...Array.from({ length: o.random }, () => Math.floor(((r() + 1) / 2) * g.length))];
    for (const idx of picks) {
      const data = Float32Array.from(params[ti].data);
      const x0 = data[idx];
      data[idx] = x0 + eps;
      await engine.setAdapter([{ ...params[ti], data }]);
      const lp = await loss();
      data[idx] = x0 - eps;
      await engine.setAdapter([{ ...params[ti], data }]);
      const lm = await loss();
      data[idx] = x0;
      await engine.setAdapter([{ ...params[ti], data }]);
      const fd = (lp - lm) / (2 * eps);
      const bound = 1e-3 * Math.abs(g[idx]) + 2e-5;
      const err = Math.abs(fd - g[idx]);
      worst = Math.max(worst, err / bound);
      expect(err, `${grads[ti].name}[${idx}]: analytic ${g[idx]}, central difference ${fd}`).toBeLessThanOrEqual(bound);
      checked++;
    }
  }
  return { checked, worst };
}
