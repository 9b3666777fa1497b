// Saving an engine's adapter as an adapter folder (./folder.ts) in both formats, a GGUF LoRA
// (llama.cpp, Ollama, node-llama-cpp) and a Hugging Face PEFT folder, with its text2sql.json;
// and loading an adapter into an engine from either.
import fs from "node:fs";
import path from "node:path";
import type { LoraEngine } from "../engine/engine.js";
import { writeDirAtomic } from "../util/atomic.js";
import { GGUF_ADAPTER, PEFT_CONFIG, PEFT_WEIGHTS, writeAdapterRecord, type AdapterRecord } from "./folder.js";
import { exportPeft, importPeft, isPeftDir } from "./peft.js";

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
    arch: engine.info.arch,
  });
  writeAdapterRecord(dir, rec, l);
}

/**
 * Writes adapter folder `dir` as {@link saveAdapterBoth} does, as a whole: into a temporary folder
 * that then replaces `dir`, so a crash leaves either the old folder or the new one, complete.
 */
export async function saveAdapterFolder(engine: LoraEngine, dir: string, rec: AdapterRecord): Promise<void> {
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  await writeDirAtomic(dir, (tmp) => saveAdapterBoth(engine, tmp, rec));
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
      const { tensors } = importPeft(p, {
        nHead: engine.info.nHead,
        nHeadKv: engine.info.nHeadKv,
        arch: engine.info.arch,
        tensors: await engine.getAdapter(),
      });
      await engine.setAdapter(tensors);
      return "peft";
    }
    throw new Error(`adapter: ${p} holds neither ${GGUF_ADAPTER} nor a PEFT adapter (${PEFT_CONFIG} + ${PEFT_WEIGHTS})`);
  }
  await engine.loadAdapter(p);
  return "gguf";
}
