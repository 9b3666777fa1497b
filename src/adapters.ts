// Saving and loading adapters in both formats: a GGUF LoRA (llama.cpp, Ollama, node-llama-cpp)
// and a Hugging Face PEFT folder (adapter_model.safetensors + adapter_config.json).
import fs from "node:fs";
import path from "node:path";
import type { LoraEngine } from "./engine.js";
import { GgufValueType, readGguf } from "./gguf.js";
import { exportPeft, importPeft, isPeftDir } from "./peft.js";

export const GGUF_ADAPTER = "adapter.gguf";

/** The name a PEFT config gives the base model: the GGUF's recorded HF repository, or its name. */
export function baseModelName(modelPath: string): string {
  const g = readGguf(modelPath);
  for (const key of ["general.source.huggingface.repository", "general.base_model.0.repo_url", "general.name"]) {
    const v = g.metadata.get(key);
    if (v && v.type === GgufValueType.STRING && String(v.value)) return String(v.value);
  }
  return path.basename(modelPath);
}

/** Writes `dir/adapter.gguf` and the PEFT files next to it. */
export async function saveAdapterBoth(engine: LoraEngine, dir: string, baseModel: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await engine.saveAdapter(path.join(dir, GGUF_ADAPTER));
  const l = engine.options.lora;
  exportPeft(dir, await engine.getAdapter(), {
    r: l.r,
    alpha: l.alpha,
    dropout: l.dropout,
    rslora: l.rslora,
    targetModules: engine.info.targets,
    baseModel,
    nHead: engine.info.nHead,
    nHeadKv: engine.info.nHeadKv,
  });
}

/**
 * Loads an adapter into the engine from a GGUF LoRA file, a PEFT folder, or a folder holding
 * adapter.gguf (final_model/, a checkpoint). The engine's LoRA settings must match it.
 */
export async function loadAdapterInto(engine: LoraEngine, p: string): Promise<"gguf" | "peft"> {
  if (!fs.existsSync(p)) throw new Error(`adapter: not found: ${p}`);
  if (fs.statSync(p).isDirectory()) {
    if (fs.existsSync(path.join(p, GGUF_ADAPTER))) {
      await engine.loadAdapter(path.join(p, GGUF_ADAPTER));
      return "gguf";
    }
    if (isPeftDir(p)) {
      const { tensors } = importPeft(p, { nHead: engine.info.nHead, nHeadKv: engine.info.nHeadKv, tensors: await engine.getAdapter() });
      await engine.setAdapter(tensors);
      return "peft";
    }
    throw new Error(`adapter: ${p} holds neither ${GGUF_ADAPTER} nor a PEFT adapter (adapter_config.json + adapter_model.safetensors)`);
  }
  await engine.loadAdapter(p);
  return "gguf";
}
