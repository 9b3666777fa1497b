// text2sql: fine-tune small Llama-family models with LoRA to turn questions into SQL, in Node.
export {
  LoraEngine,
  makeBatch,
  normalizeTarget,
  LORA_TARGETS,
  type AdapterTensor,
  type Batch,
  type BatchStats,
  type Device,
  type EngineInfo,
  type EngineOptions,
  type LoraOptions,
  type LoraTarget,
  type OptimizerState,
  type Sequence,
  type StepOptions,
} from "./engine.js";
export { systemInfo } from "./system.js";
