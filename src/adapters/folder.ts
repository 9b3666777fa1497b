// Saving and loading adapters in both formats: a GGUF LoRA (llama.cpp, Ollama, node-llama-cpp)
// and a Hugging Face PEFT folder (adapter_model.safetensors + adapter_config.json).
import fs from "node:fs";
import path from "node:path";
import type { LoraEngine } from "../engine/engine.js";
import { GgufValueType, readGguf } from "../formats/gguf.js";
import { exportPeft, importPeft, isPeftDir } from "./peft.js";

export const GGUF_ADAPTER = "adapter.gguf";

/** The name a PEFT config gives the base model: the GGUF's recorded HF repository, or its name. */
export function baseModelName(modelPath: string): string {
  const g = readGguf(modelPath);
  for (const key of ["general.source.huggingface.repository", "general.base_model.0.repo_url", "general.source.url", "general.name"]) {
    const v = g.metadata.get(key);
    if (v && v.type === GgufValueType.STRING && String(v.value)) {
      // PEFT wants a hub id ("TinyLlama/TinyLlama-1.1B-Chat-v1.0"), not a URL
      return String(v.value).replace(/^https?:\/\/huggingface\.co\//, "").replace(/\/$/, "");
    }
  }
  return path.basename(modelPath);
}

export interface AdapterRecord {
  /** the GGUF the adapter was trained on (absolute path) */
  basePath: string;
  /** the base's hub id or name, for adapter_config.json */
  baseModel: string;
  /** the prompt template it was trained with */
  template: string;
  steps: number;
}

/**
 * Writes `dir/adapter.gguf`, the PEFT files next to it, and `text2sql.json` (the base model and the
 * prompt template, so that generation and export need nothing else).
 */
export async function saveAdapterBoth(engine: LoraEngine, dir: string, rec: AdapterRecord): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await engine.saveAdapter(path.join(dir, GGUF_ADAPTER));
  const baseModel = rec.baseModel;
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
  fs.writeFileSync(path.join(dir, "text2sql.json"), JSON.stringify({ base_model: rec.basePath, base_model_name: rec.baseModel, lora: l, template: rec.template, steps: rec.steps }, null, 2) + "\n");
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
