// Checking a Hugging Face checkpoint's config.json against its weights' headers before converting:
// the converter plans a tensor per layer from num_hidden_layers, so a config claiming 10^9 layers
// over a file of two once spent 35 s and 3 GB before failing. Here every size config.json gives
// (layers, hidden, intermediate, vocabulary, heads, KV heads, head size, context) is checked
// against the tensor names and shapes of the safetensors headers (or the index) and llama.cpp's
// limits, with headers only (no tensor data), and an Error names config.json's key, what was
// expected and what arrived.
import fs from "node:fs";
import path from "node:path";
import { readJsonFile } from "./json.js";
import { LLAMA_MAX_LAYERS, MAX_CONTEXT_LENGTH } from "./model-check.js";
import { openHfWeights, type StTensorInfo } from "./safetensors.js";

/** The largest head size accepted (as for GGUFs, src/formats/model-check.ts). */
const MAX_HEAD_DIM = 1024;

/** Throws when config.json of the checkpoint folder `dir` disagrees with its weights or llama.cpp's limits. */
export function checkHfConfig(dir: string): void {
  const file = path.join(dir, "config.json");
  if (!fs.existsSync(file)) return; // the converter says what is missing
  const config = readJsonFile(file) as Record<string, unknown> | null;
  // no config, or values that are not positive integers: the converter names those itself
  if (!config || typeof config !== "object" || Array.isArray(config)) return;
  const int = (key: string): number | undefined => {
    const v = config[key];
    return typeof v === "number" && Number.isInteger(v) && v >= 1 ? v : undefined;
  };
  const bad = (key: string, what: string) => new Error(`${file}: "${key}" is ${JSON.stringify(config[key])} but ${what}; the checkpoint cannot be converted`);
  const nLayer = int("num_hidden_layers");
  if (nLayer !== undefined && nLayer > LLAMA_MAX_LAYERS) throw bad("num_hidden_layers", `llama.cpp allows at most LLAMA_MAX_LAYERS = ${LLAMA_MAX_LAYERS}`);
  const nCtx = int("max_position_embeddings");
  if (nCtx !== undefined && nCtx > MAX_CONTEXT_LENGTH) throw bad("max_position_embeddings", `at most ${MAX_CONTEXT_LENGTH} (2^24) is accepted`);
  const explicitHead = int("head_dim");
  if (explicitHead !== undefined && explicitHead > MAX_HEAD_DIM) throw bad("head_dim", `at most ${MAX_HEAD_DIM} is accepted`);

  const tensors = openHfWeights(dir).tensors;
  const layers = new Set<number>();
  for (const name of tensors.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layers.add(Number(m[1]));
  }
  if (nLayer !== undefined && nLayer !== layers.size) {
    throw bad("num_hidden_layers", `the weights hold ${layers.size} layer groups (model.layers.N.*)`);
  }
  const missing = nLayer === undefined ? undefined : [...Array(nLayer).keys()].find((i) => !layers.has(i));
  if (missing !== undefined) throw bad("num_hidden_layers", `the weights have no model.layers.${missing}.* tensors`);

  const shapeOf = (name: string): number[] | undefined => tensors.get(name)?.shape;
  const seen = (t: StTensorInfo | undefined) => (t ? `${t.name} has shape [${t.shape.join(", ")}]` : "");
  const embed = tensors.get("model.embed_tokens.weight");
  const nEmbd = int("hidden_size");
  if (embed && embed.shape.length === 2) {
    if (nEmbd !== undefined && embed.shape[1] !== nEmbd) throw bad("hidden_size", seen(embed));
    const nVocab = int("vocab_size");
    if (nVocab !== undefined && embed.shape[0] !== nVocab) throw bad("vocab_size", seen(embed));
  }
  if (nEmbd === undefined || nLayer === undefined) return;
  const nHead = int("num_attention_heads");
  if (nHead === undefined) return;
  if (nHead > nEmbd) throw bad("num_attention_heads", `hidden_size is ${nEmbd}: at most that many heads`);
  const nHeadKv = int("num_key_value_heads") ?? nHead;
  if (nHeadKv > nHead || nHead % nHeadKv !== 0) throw bad("num_key_value_heads", `it must divide num_attention_heads (${nHead})`);
  const headDim = explicitHead ?? nEmbd / nHead;
  const nFf = int("intermediate_size");
  // each layer's projections, [out, in] as HF stores them, against the sizes config.json gives
  const want: [string, string, number[]][] = [
    ["self_attn.q_proj.weight", explicitHead !== undefined ? "head_dim" : "num_attention_heads", [nHead * headDim, nEmbd]],
    ["self_attn.k_proj.weight", "num_key_value_heads", [nHeadKv * headDim, nEmbd]],
    ["self_attn.v_proj.weight", "num_key_value_heads", [nHeadKv * headDim, nEmbd]],
  ];
  if (nFf !== undefined) {
    want.push(["mlp.gate_proj.weight", "intermediate_size", [nFf, nEmbd]], ["mlp.up_proj.weight", "intermediate_size", [nFf, nEmbd]]);
    want.push(["mlp.down_proj.weight", "intermediate_size", [nEmbd, nFf]]);
  }
  for (let i = 0; i < nLayer; i++) {
    for (const [suffix, key, shape] of want) {
      const name = `model.layers.${i}.${suffix}`;
      const s = shapeOf(name);
      if (s && (s.length !== 2 || s[0] !== shape[0] || s[1] !== shape[1])) {
        const sizes = `hidden_size ${nEmbd}, num_attention_heads ${nHead}, num_key_value_heads ${nHeadKv}, head size ${headDim}${nFf === undefined ? "" : `, intermediate_size ${nFf}`}`;
        throw bad(key, `${seen(tensors.get(name))}, and config.json's sizes (${sizes}) expect [${shape.join(", ")}]`);
      }
    }
  }
}
