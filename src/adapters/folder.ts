// The adapter folder, owned here: the names of what a trained adapter folder holds, its
// text2sql.json record, and finding an adapter from a file, a final_model/ or checkpoint folder,
// or a trainer output folder.
//
//   adapter.gguf               the GGUF LoRA (llama.cpp, Ollama, node-llama-cpp, our engine)
//   adapter_model.safetensors  the same adapter as a Hugging Face PEFT folder (./peft.ts)
//   adapter_config.json
//   text2sql.json              the base model, the LoRA options, the prompt template, the steps
//
// A trainer output folder holds final_model/, such a folder. Saving an engine's adapter to a
// folder and loading one into an engine is ./save-load.ts's part.
import fs from "node:fs";
import path from "node:path";
import type { LoraOptions, ResolvedLoraOptions } from "../engine/lora.js";
import { GgufValueType, readGguf } from "../formats/gguf.js";
import { readJsonObject } from "../formats/json.js";

/** The GGUF LoRA of an adapter folder. */
export const GGUF_ADAPTER = "adapter.gguf";
/** The PEFT weights of an adapter folder (PEFT's own name). */
export const PEFT_WEIGHTS = "adapter_model.safetensors";
/** The PEFT config of an adapter folder (PEFT's own name). */
export const PEFT_CONFIG = "adapter_config.json";
/** The record of how the adapter was trained. */
export const ADAPTER_RECORD = "text2sql.json";
/** The adapter folder a training run ends with, inside its output folder. */
export const FINAL_MODEL = "final_model";

/** The name a PEFT config gives the base model: the GGUF's recorded HF repository, or its name. */
export function baseModelName(modelPath: string): string {
  const g = readGguf(modelPath);
  for (const key of ["general.source.huggingface.repository", "general.base_model.0.repo_url", "general.source.url", "general.name"]) {
    const v = g.metadata.get(key);
    if (v && v.type === GgufValueType.STRING && String(v.value)) {
      // PEFT wants a hub id ("TinyLlama/TinyLlama-1.1B-Chat-v1.0"), not a URL
      return String(v.value)
        .replace(/^https?:\/\/huggingface\.co\//, "")
        .replace(/\/$/, "");
    }
  }
  return path.basename(modelPath);
}

// ---------------------------------------------------------------------------
// text2sql.json
// ---------------------------------------------------------------------------

export interface AdapterRecord {
  /** the GGUF the adapter was trained on (absolute path) */
  basePath: string;
  /** the base's hub id or name, for adapter_config.json */
  baseModel: string;
  /** the prompt template it was trained with */
  template: string;
  steps: number;
}

/** text2sql.json as written by {@link writeAdapterRecord}. */
export interface AdapterRecordJson {
  base_model: string;
  base_model_name: string;
  lora: ResolvedLoraOptions;
  template: string;
  steps: number;
}

/** text2sql.json as read by {@link readAdapterRecord}: any field may be missing. */
export type AdapterRecordRead = Partial<Omit<AdapterRecordJson, "lora">> & { lora?: LoraOptions };

/** Writes `dir/text2sql.json`: the record and the LoRA options the adapter was trained with. */
export function writeAdapterRecord(dir: string, rec: AdapterRecord, lora: ResolvedLoraOptions): void {
  const json: AdapterRecordJson = { base_model: rec.basePath, base_model_name: rec.baseModel, lora, template: rec.template, steps: rec.steps };
  fs.writeFileSync(path.join(dir, ADAPTER_RECORD), JSON.stringify(json, null, 2) + "\n");
}

/**
 * Reads `dir/text2sql.json` (undefined when there is none), checking the type of each field it
 * has; errors name the file and the field. The LoRA options are checked where they are used.
 */
export function readAdapterRecord(dir: string): AdapterRecordRead | undefined {
  const file = path.join(dir, ADAPTER_RECORD);
  if (!fs.existsSync(file)) return undefined;
  const r = readJsonObject(file);
  const check = (key: string, type: string): void => {
    const v = r[key];
    const ok = v === undefined || (type === "object" ? typeof v === "object" && v !== null && !Array.isArray(v) : typeof v === type);
    if (!ok) throw new Error(`${file}: ${key}: expected a${type === "object" ? "n" : ""} ${type}, got ${JSON.stringify(v)}`);
  };
  for (const key of ["base_model", "base_model_name", "template"]) check(key, "string");
  check("steps", "number");
  check("lora", "object");
  return r as AdapterRecordRead;
}

// ---------------------------------------------------------------------------
// Finding an adapter
// ---------------------------------------------------------------------------

export interface ResolvedAdapter {
  adapterFile?: string;
  baseModel?: string;
  template?: string;
  /** the LoRA settings it was trained with (text2sql.json), to build a matching engine */
  lora?: LoraOptions;
}

/** Finds adapter.gguf and the recorded base model/template for a file or any trainer output folder. */
export function resolveAdapter(p: string): ResolvedAdapter {
  if (!fs.existsSync(p)) throw new Error(`adapter: not found: ${p}`);
  let dir: string;
  let file: string;
  if (fs.statSync(p).isDirectory()) {
    const candidates = [p, path.join(p, FINAL_MODEL)];
    const hit = candidates.find((d) => fs.existsSync(path.join(d, GGUF_ADAPTER)));
    if (!hit) throw new Error(`adapter: no ${GGUF_ADAPTER} in ${p} or ${path.join(p, FINAL_MODEL)}`);
    dir = hit;
    file = path.join(hit, GGUF_ADAPTER);
  } else {
    file = p;
    dir = path.dirname(p);
  }
  const out: ResolvedAdapter = { adapterFile: file };
  const m = readAdapterRecord(dir);
  if (m) {
    out.baseModel = m.base_model;
    out.template = m.template;
    out.lora = m.lora;
  }
  return out;
}
