// The decoder train.eval_execution uses (the trainer's EvalDecoder hook): node-llama-cpp with the
// adapter folder an evaluation just saved, greedy and unconstrained, the rows decoded at once on
// SqlGenerator's parallel contexts. The trainer sits below this layer, so the layer above (the
// package's trainSft, `text2sql train`) hands it in.
import type { EvalDecoder } from "../train/exec-eval.js";
import { SqlGenerator } from "./generate.js";

/** Contexts decoding at once (each one sequence over the one loaded model). */
const PARALLEL = 4;

export const decodeWithAdapter: EvalDecoder = async (adapterDir, rows, o) => {
  const g = await SqlGenerator.load({ adapter: adapterDir, parallel: Math.min(PARALLEL, Math.max(1, rows.length)), device: "cpu" });
  try {
    return await Promise.all(
      rows.map(async (r) => {
        const res = await g.generate({
          question: r.question,
          schema: r.schema,
          evidence: r.evidence,
          maxTokens: o.maxTokens,
          constrain: false,
          validate: false,
        });
        return res.sql;
      }),
    );
  } finally {
    await g.dispose();
  }
};
