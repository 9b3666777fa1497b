// GRPO's sampler (the trainer's GrpoSampler hook): node-llama-cpp with the adapter folder the
// step just saved, sampling at rl.temperature from the exact prompt ids the engine conditions on,
// unconstrained or (rl.constrained) under the row schema's grammar, one seed per completion (drawn
// by the trainer from its checkpointed RNG), the completions decoded at once on SqlGenerator's
// parallel contexts. The trainer sits below this
// layer, so the layer above (the package's trainGrpo, `text2sql train --method grpo`) hands it in.
import type { GrpoSampler } from "../train/grpo.js";
import { SqlGenerator } from "./generate.js";

/** Contexts sampling at once (each one sequence over the one loaded model). */
const PARALLEL = 4;

export const sampleWithAdapter: GrpoSampler = async (adapterDir, jobs, o) => {
  const g = await SqlGenerator.load({ adapter: adapterDir, parallel: Math.min(PARALLEL, Math.max(1, jobs.length)), device: "cpu" });
  try {
    return await Promise.all(
      jobs.map((j) => {
        if (o.constrained && !j.schema) throw new TypeError("constrained: a sample job has no schema (constrained sampling uses the schema's grammar)");
        const schema = o.constrained ? j.schema : undefined;
        return g.sampleIds(j.promptIds, { maxTokens: o.maxTokens, temperature: o.temperature, seed: j.seed, schema });
      }),
    );
  } finally {
    await g.dispose();
  }
};
