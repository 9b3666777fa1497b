// A GBNF matcher for tests: llama.cpp's own grammar engine (through node-llama-cpp), fed a text's
// tokens one at a time, then asked whether the end of text (EOS) may follow. node-llama-cpp has no
// public "does this grammar accept this text" call; its addon's grammar functions are reached here
// through private fields, the same calls LlamaContext makes while decoding.
import { LlamaGrammarEvaluationState, type LlamaGrammar, type LlamaModel, type Token } from "node-llama-cpp";
import { cpuLlama } from "../../src/train/prompt.js";

interface AddonSampler {
  canBeNextTokenForGrammarEvaluationState(state: unknown, token: Token): boolean;
  acceptGrammarEvaluationStateToken(state: unknown, token: Token): void;
}

export interface GbnfMatcher {
  /** null when the grammar accepts the whole text; else the text up to the first refused token */
  refusal(grammar: LlamaGrammar, text: string): string | null;
  grammar(gbnf: string): Promise<LlamaGrammar>;
  dispose(): Promise<void>;
}

/** A matcher over the vocabulary of `modelPath` (any GGUF with a tokenizer). */
export async function gbnfMatcher(modelPath: string): Promise<GbnfMatcher> {
  const llama = await cpuLlama();
  const model: LlamaModel = await llama.loadModel({ modelPath, vocabOnly: true });
  const sampler = (llama as unknown as { _bindings: { AddonSampler: AddonSampler } })._bindings.AddonSampler;
  return {
    grammar: (gbnf) => llama.createGrammar({ grammar: gbnf }),
    refusal(grammar, text) {
      const state = new LlamaGrammarEvaluationState({ model, grammar });
      const raw = (state as unknown as { _state: unknown })._state;
      const tokens = model.tokenize(text, false);
      for (let i = 0; i < tokens.length; i++) {
        if (!sampler.canBeNextTokenForGrammarEvaluationState(raw, tokens[i])) return model.detokenize(tokens.slice(0, i + 1));
        sampler.acceptGrammarEvaluationStateToken(raw, tokens[i]);
      }
      if (!sampler.canBeNextTokenForGrammarEvaluationState(raw, model.tokens.eos!)) return `${text}<end>`;
      return null;
    },
    dispose: () => model.dispose(),
  };
}
