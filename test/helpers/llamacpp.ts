/**
 * Reference outputs from llama.cpp (through node-llama-cpp), for checking our own engine.
 *
 * node-llama-cpp 3.21.1 does not expose raw logits. The closest it gets is
 * `LlamaContextSequence.controlledEvaluate()` with `generateNext: { probabilities: true }`,
 * which for every marked input position returns the full next-token distribution:
 * the addon copies the logits row (llama_get_logits_ith), runs the sampler chain
 * (temperature 0 = greedy only, which selects but does not modify logits) and returns
 * softmax(logits) in float32 for the whole vocabulary. Logits are only determined up to
 * an additive constant by that, so we return log-probabilities: compare them with
 * log_softmax of your own logits.
 */
import type { Llama, LlamaContextOptions, Token } from "node-llama-cpp";
import { cpuLlama } from "../../src/train/prompt.js";

/** The process-wide CPU-only llama.cpp binding (the one src/prompt.ts uses; prebuilt, never built). */
export const getCpuLlama: () => Promise<Llama> = cpuLlama;

export interface LlamaCppEvalOptions {
  /** A GGUF LoRA adapter (general.type = "adapter") applied on top of the model. */
  loraPath?: string;
  /** LoRA scale (llama.cpp multiplies it by alpha / rank). Default 1. */
  loraScale?: number;
}

/**
 * Evaluate `tokens` with llama.cpp on the CPU and return, for every position i, the
 * natural-log probabilities of the next token after tokens[0..i] (one Float32Array of
 * length n_vocab per position).
 *
 * These are LOG-PROBABILITIES, not raw logits (node-llama-cpp exposes only
 * probabilities): logProbs[i][t] = logits[i][t] - logsumexp(logits[i]). Compare them with
 * log_softmax of your own logits. The float32 probabilities from llama.cpp are
 * renormalized in float64 before taking the log, so the values are accurate to about
 * 1e-7 relative; tokens whose probability underflows float32 come back as -Infinity
 * (only happens for logits ~100 below the maximum).
 *
 * Nothing is added to `tokens`: include the BOS token (1 for Llama) yourself if wanted.
 * The context is created with flash attention off, F32 K/V cache, one sequence and no
 * context shift (a context longer than `tokens`), so results should match an
 * exact F32 reference closely. The model (and adapter) are loaded per call and disposed
 * before returning; loading a small model takes ~0.1-0.2 s, evaluation ~20 ms per
 * position with a 32k vocabulary (dominated by transferring the distributions).
 */
export async function llamaCppLogProbs(modelPath: string, tokens: readonly number[], opts: LlamaCppEvalOptions = {}): Promise<Float32Array[]> {
  if (tokens.length === 0) return [];
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0) throw new Error(`llamaCppLogProbs: invalid token id ${t}`);
  }
  const llama = await getCpuLlama();
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  try {
    const contextOptions: LlamaContextOptions = {
      sequences: 1,
      // leave room after the last token: node-llama-cpp shifts a full context before it
      // evaluates the last token, which changes that position's distribution
      contextSize: tokens.length + 16,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      failedCreationRemedy: false,
    };
    if (opts.loraPath !== undefined) {
      contextOptions.lora = { adapters: [{ filePath: opts.loraPath, scale: opts.loraScale ?? 1 }] };
    }
    const context = await model.createContext(contextOptions);
    try {
      if (context.contextSize < tokens.length) {
        throw new Error(`llamaCppLogProbs: context of ${context.contextSize} tokens is too small for ${tokens.length}`);
      }
      const sequence = context.getSequence();
      const outputs = await sequence.controlledEvaluate(
        tokens.map((token): [Token, { generateNext: { probabilities: true } }] => [token as Token, { generateNext: { probabilities: true } }]),
      );
      return tokens.map((_, i) => {
        const probabilities = outputs[i]?.next.probabilities;
        if (!probabilities) throw new Error(`llamaCppLogProbs: no probabilities returned for position ${i}`);
        return toLogProbs(probabilities);
      });
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

/** Map token -> float32 probability (whole vocabulary) to log-probabilities indexed by token id. */
function toLogProbs(probabilities: Map<Token, number>): Float32Array {
  let sum = 0;
  for (const p of probabilities.values()) sum += p;
  const logSum = Math.log(sum);
  const out = new Float32Array(probabilities.size).fill(Number.NaN);
  for (const [token, p] of probabilities) {
    if (token >= out.length) throw new Error(`llamaCppLogProbs: token id ${token} outside the vocabulary`);
    out[token] = Math.log(p) - logSum;
  }
  return out;
}

/**
 * Tokenize `text` with the model's own tokenizer (the model is loaded vocab-only, so
 * this is cheap even for large models). No BOS/EOS is added, and special-token text
 * such as "<s>" is treated as plain text unless `specialTokens` is true.
 */
export async function llamaCppTokenize(modelPath: string, text: string, specialTokens = false): Promise<number[]> {
  const llama = await getCpuLlama();
  const model = await llama.loadModel({ modelPath, vocabOnly: true });
  try {
    return [...model.tokenize(text, specialTokens)];
  } finally {
    await model.dispose();
  }
}

/** Detokenize with the model's own vocabulary (loaded vocab-only). */
export async function llamaCppDetokenize(modelPath: string, tokens: readonly number[]): Promise<string> {
  const llama = await getCpuLlama();
  const model = await llama.loadModel({ modelPath, vocabOnly: true });
  try {
    return model.detokenize(tokens as Token[]);
  } finally {
    await model.dispose();
  }
}
