// GRPO's arithmetic, in TypeScript over the engine's two pieces (logprobs, accumulateWeighted):
// group advantages, the clipped surrogate with the k3 KL term as a weight per completion token
// (its derivative by that token's log-probability), and one optimizer update on a sampled batch.
//
//   L = −(1/N) Σ_i Σ_t [ min(ρ_t·A_i, clip(ρ_t, 1−ε, 1+ε)·A_i) − β·KL_t ],
//   ρ_t = exp(logp_t − old_t),  KL_t = exp(ref_t − logp_t) − (ref_t − logp_t) − 1
//
// dL/dlogp_t = −(1/N)·w_t with w_t = (unclipped branch active ? ρ_t·A_i : 0) − β·(1 − exp(ref_t − logp_t)),
// so the engine's accumulateWeighted(weights w, gradScale 1/N) adds exactly ∇L. The current logp_t
// come from a forward-only logprobs pass before each update (for μ > 1 the policy has moved since
// sampling): each update costs one forward pass more than an SFT step on the same tokens.
import { makeBatch, type LoraEngine, type StepOptions } from "../engine/engine.js";

/** How rewards become advantages: divided by the group's sample std (TRL's default), or not. */
export type ScaleRewards = "group" | "none";

export interface GroupAdvantages {
  advantages: number[];
  mean: number;
  /** The sample standard deviation (n − 1), as torch.std and TRL compute it. */
  std: number;
  /** Every reward equal: all advantages are 0 (the group adds no surrogate term, only KL). */
  zeroVariance: boolean;
}

/** A_i = (r_i − mean) / (std + 1e-4), or r_i − mean with scale "none". Throws on NaN or an empty group. */
export function groupAdvantages(rewards: readonly number[], scale: ScaleRewards, where = "group"): GroupAdvantages {
  if (rewards.length < 2) throw new RangeError(`${where}: needs at least 2 completions for an advantage, got ${rewards.length}`);
  rewards.forEach((r, i) => {
    if (!Number.isFinite(r)) throw new RangeError(`${where}: reward of completion ${i} is ${r}, not a finite number`);
  });
  const n = rewards.length;
  const mean = rewards.reduce((a, b) => a + b, 0) / n;
  const std = Math.sqrt(rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / (n - 1));
  const zeroVariance = rewards.every((r) => r === rewards[0]);
  const advantages = rewards.map((r) => (zeroVariance ? 0 : scale === "group" ? (r - mean) / (std + 1e-4) : r - mean));
  return { advantages, mean, std, zeroVariance };
}

/** One sampled completion as the update sees it. */
export interface Completion {
  /** The ids the engine conditions on, BOS included. */
  promptIds: readonly number[];
  /** The sampled ids the loss is taken on (the end token included when it was sampled). */
  completionIds: readonly number[];
  /** log p of each completion id under the policy that sampled (from our engine). */
  oldLogps: readonly number[];
  /** log p of each completion id under the reference policy, or null when β = 0. */
  refLogps: readonly number[] | null;
  advantage: number;
}

export interface SurrogateOptions {
  clipEps: number;
  klCoef: number;
}

export interface TokenWeights {
  weights: number[];
  /** Tokens whose clipped branch is taken (no surrogate gradient). */
  clipped: number;
  /** Σ_t of the per-token objective min(ρA, clip(ρ)A) − β·KL. */
  objective: number;
  /** Σ_t KL_t (0 without reference log-probabilities). */
  kl: number;
}

/** w_t = dJ/dlogp_t of the per-token objective J_t, at the current log-probabilities `logp`. */
export function surrogateWeights(logp: readonly number[], c: Completion, o: SurrogateOptions): TokenWeights {
  const A = c.advantage;
  const out: TokenWeights = { weights: [], clipped: 0, objective: 0, kl: 0 };
  if (o.klCoef > 0 && !c.refLogps) throw new Error("GRPO: rl.kl_coef > 0 needs reference log-probabilities");
  for (let t = 0; t < logp.length; t++) {
    const rho = Math.exp(logp[t] - c.oldLogps[t]);
    const clippedRho = Math.min(Math.max(rho, 1 - o.clipEps), 1 + o.clipEps);
    const active = rho * A <= clippedRho * A;
    let w = active ? rho * A : 0;
    if (!active) out.clipped++;
    let obj = Math.min(rho * A, clippedRho * A);
    if (c.refLogps) {
      const d = c.refLogps[t] - logp[t];
      const kl = Math.exp(d) - d - 1;
      out.kl += kl;
      obj -= o.klCoef * kl;
      w -= o.klCoef * (1 - Math.exp(d));
    }
    out.objective += obj;
    out.weights.push(w);
  }
  return out;
}

export interface UpdateStats {
  /** L = −objective / N. */
  loss: number;
  /** Mean KL_t over the N tokens. */
  kl: number;
  clipped: number;
  tokens: number;
  gradNorm: number;
  /** The current log-probabilities the update was taken at, per completion. */
  logps: number[][];
}

/** Completion positions of prompt + completion as one engine batch (mask 1 on the completion). */
export function completionBatch(cs: readonly Completion[]): ReturnType<typeof makeBatch> {
  return makeBatch(
    cs.map((c) => ({
      tokens: [...c.promptIds, ...c.completionIds],
      mask: [...c.promptIds.map(() => 0), ...c.completionIds.map(() => 1)],
    })),
  );
}

/** The per-completion log-probabilities of a logprobs result over completionBatch(cs). */
export function splitLogps(flat: Float64Array, cs: readonly Completion[], seqLen: number): number[][] {
  return cs.map((c, i) => Array.from(flat.subarray(i * seqLen + c.promptIds.length, i * seqLen + c.promptIds.length + c.completionIds.length)));
}

/**
 * One optimizer update on a sampled batch: a logprobs pass at the current policy, the token
 * weights, one weighted accumulation over all completions (normalized by their N tokens), one
 * AdamW step. Completions without tokens are left out by the caller (they carry no loss).
 */
export async function grpoUpdate(
  engine: LoraEngine,
  cs: readonly Completion[],
  o: SurrogateOptions & { temperature: number; step: StepOptions },
): Promise<UpdateStats> {
  const N = cs.reduce((n, c) => n + c.completionIds.length, 0);
  if (cs.length === 0 || N === 0) throw new RangeError("GRPO update: no completion tokens in the batch");
  const batch = completionBatch(cs);
  const logps = splitLogps(await engine.logprobs(batch, o.temperature), cs, batch.seqLen);
  const weights = new Float32Array(batch.tokens.length);
  let objective = 0;
  let kl = 0;
  let clipped = 0;
  cs.forEach((c, i) => {
    const tw = surrogateWeights(logps[i], c, o);
    objective += tw.objective;
    kl += tw.kl;
    clipped += tw.clipped;
    // a weight of exactly 0 (A = 0, β = 0) leaves the token out of the graph: its gradient is 0 anyway
    tw.weights.forEach((w, t) => (weights[i * batch.seqLen + c.promptIds.length + t] = w));
  });
  if (weights.every((w) => w === 0)) {
    // nothing to learn (every group zero-variance and β = 0): AdamW still steps (weight decay, moments), as TRL's would
    const gradNorm = await engine.step(o.step);
    return { loss: -objective / N, kl: kl / N, clipped, tokens: N, gradNorm, logps };
  }
  await engine.accumulateWeighted(batch, weights, { gradScale: 1 / N, temperature: o.temperature });
  const gradNorm = await engine.step(o.step);
  return { loss: -objective / N, kl: kl / N, clipped, tokens: N, gradNorm, logps };
}
