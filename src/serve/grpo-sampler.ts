// GRPO's sampler (the trainer's GrpoSampler hook): node-llama-cpp with the adapter folder the
// step just saved, unconstrained sampling at rl.temperature from the exact prompt ids the engine
// conditions on, one seed per completion (drawn by the trainer from its checkpointed RNG), the
// completions decoded at once on SqlGenerator's parallel contexts. The trainer sits below this
// layer, so the layer above (the package's trainGrpo, `text2sql train --method grpo`) hands it in.
import type { GrpoSampler } from "../train/grpo.js";
import { SqlGenerator } from "./generate.js";

/** Contexts sampling at once (each one sequence over the one loaded model). */
const PARALLEL = 4;

export const sampleWithAdapter: GrpoSampler = async (adapterDir, jobs, o) => {
  const g = await SqlGenerator.load({ adapter: adapterDir, parallel: Math.min(PARALLEL, Math.max(1, jobs.length)), device: "cpu" });
  try {
    return await Promise.all(jobs.map((j) => g.sampleIds(j.promptIds, { maxTokens: o.maxTokens, temperature: o.temperature, seed: j.seed })));
  } finally {
    await g.dispose();
  }
};
