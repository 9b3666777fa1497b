// text2sql's public API: what users call, and the option and result types of those calls. Every
// name exported here is a promise to keep it; test/public-api.test.ts pins the list, so a change
// to it is deliberate. Internals (hub protocol pieces, SQL workers, tokenizer plumbing) stay
// reachable inside the package only.

// Training
import { trainSft as trainSftCore, type TrainHooks, type TrainOptions, type TrainSummary } from "./train/trainer.js";
import type { TrainConfig } from "./train/config.js";
import { decodeWithAdapter } from "./serve/eval-decoder.js";

/**
 * Fine-tunes a LoRA adapter on question/SQL pairs. Resolves to a summary of the run. With
 * train.eval_execution, evaluations decode through node-llama-cpp (hooks.decodeSql replaces it).
 *
 *   await trainSft({ config: "configs/quickstart.yaml", train: { max_steps: 50 } }, { onStep: (e) => console.log(e.loss) })
 */
export function trainSft(options: TrainOptions | TrainConfig, hooks: TrainHooks = {}): Promise<TrainSummary> {
  return trainSftCore(options, { decodeSql: decodeWithAdapter, ...hooks });
}
import { trainGrpo as trainGrpoCore, type GrpoHooks, type GrpoSummary } from "./train/grpo.js";
import { sampleWithAdapter } from "./serve/grpo-sampler.js";

/**
 * GRPO: reinforcement learning of a LoRA adapter with an execution reward (config method: grpo,
 * the rl: section), usually from an SFT adapter (lora.init_adapter). Samples and greedy eval_ex
 * go through node-llama-cpp (hooks.sample / hooks.decodeSql replace them).
 *
 *   await trainGrpo({ config: "configs/quickstart-grpo.yaml" }, { onStep: (e) => console.log(e.rewardMean) })
 */
export function trainGrpo(options: TrainOptions | TrainConfig, hooks: GrpoHooks = {}): Promise<GrpoSummary> {
  return trainGrpoCore(options, { decodeSql: decodeWithAdapter, sample: sampleWithAdapter, ...hooks });
}
export { formatGrpoSummary, type GrpoHooks, type GrpoSummary, type GrpoStepEvent, type GrpoSampler, type SampleJob } from "./train/grpo.js";
export {
  prepareData,
  formatSummary,
  type TrainOptions,
  type TrainHooks,
  type TrainSummary,
  type StepEvent,
  type EvalEvent,
  type DataSummary,
} from "./train/trainer.js";
export { loadConfig, DEFAULTS as DEFAULT_CONFIG, ConfigError, type TrainConfig, type ConfigSources } from "./train/config.js";
export { loadDataset, DataError, type Example, type Dataset } from "./train/data.js";
export { renderPrompt, DEFAULT_TEMPLATE } from "./train/prompt.js";

// Generation and serving
export {
  generateSql,
  disposeGenerators,
  SqlGenerator,
  validateSql,
  type GenerateOptions,
  type GeneratorOptions,
  type GenerateResult,
} from "./serve/generate.js";
export { type CandidateReport } from "./serve/candidates.js";
export { startServer, type ServerOptions, type RunningServer } from "./serve/server.js";
export { parseSchema, schemaFromDatabase, sqlGrammar, type SchemaInfo, type SchemaTable, type SqlGrammar, type SqlGrammarOptions } from "./sql/sql-grammar.js";

// Evaluation
export { evaluateSql, formatEvalReport, type EvalOptions, type EvalReport, type EvalRow } from "./eval/eval.js";
export { executionMatch, schemaFromSqlite } from "./sql/exec-metrics.js";
export { exactMatch, hardness, type Hardness } from "./sql/spider-metrics.js";

// Adapters
export { mergeAdapter, type MergeOptions, type MergeResult, type MergeType } from "./adapters/merge.js";
export { exportPeft, importPeft, type PeftConfig, type PeftExportMeta } from "./adapters/peft.js";

// Models
export { resolveModelPath, removeModel, type ModelDtype, type ResolveModelOptions } from "./models/model-path.js";
export { pullModel, type PullOptions } from "./models/hub.js";
export { listCachedModels, type CachedModel } from "./models/hub-cache.js";
export { HubError, type HubErrorCode } from "./models/hub-http.js";
export { type PullProgress } from "./models/hub-progress.js";
export { convertHfToGguf, SUPPORTED_ARCHITECTURES, type ConvertOptions, type ConvertOutType, type ConvertResult } from "./models/convert.js";

// The engine
export {
  LoraEngine,
  makeBatch,
  type AdapterTensor,
  type Batch,
  type BatchStats,
  type Device,
  type EngineInfo,
  type EngineOptions,
  type OptimizerState,
  type Sequence,
  type StepOptions,
} from "./engine/engine.js";
export { LORA_TARGETS, LORA_DEFAULTS, type LoraOptions, type LoraTarget } from "./engine/lora.js";
export { systemInfo } from "./engine/system.js";
