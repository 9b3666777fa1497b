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
} from "./engine/engine.js";
export { systemInfo } from "./engine/system.js";
export {
  trainSft,
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
export { loadDataset, readExamples, spiderSchemas, DataError, type Example, type Dataset } from "./train/data.js";
export { Tokenizer, encodeExample, renderPrompt, DEFAULT_TEMPLATE } from "./train/prompt.js";
export {
  generateSql,
  disposeGenerators,
  SqlGenerator,
  validateSql,
  extractSql,
  resolveAdapter,
  type GenerateOptions,
  type GeneratorOptions,
  type GenerateResult,
} from "./serve/generate.js";
export { saveAdapterBoth, loadAdapterInto, baseModelName } from "./adapters/folder.js";
export { exportPeft, importPeft, readPeftConfig, isPeftDir, isGgufAdapter, type PeftConfig, type PeftExportMeta } from "./adapters/peft.js";
export { mergeAdapter, checkAdapterFits, type MergeOptions, type MergeResult, type MergeType } from "./adapters/merge.js";
export { startServer, type ServerOptions, type RunningServer } from "./serve/server.js";
export { evaluateSql, formatEvalReport, type EvalOptions, type EvalReport, type EvalRow } from "./eval/eval.js";
export { executionMatch, runReadOnly, isSingleReadQuery, schemaFromSqlite, sameResult, closeAll as closeSqlWorkers } from "./sql/exec-metrics.js";
export { hardness, exactMatch, componentMatch, type Hardness, type ComponentMatch } from "./sql/spider-metrics.js";
export { parseSql } from "./sql/sqlparse.js";
export {
  parseRepoSpec,
  hubEndpoint,
  hubToken,
  hubCacheDir,
  listRepoFiles,
  planPull,
  pullModel,
  listCachedModels,
  removeCachedModel,
  formatBytes,
  progressBarReporter,
  HubError,
  type HubErrorCode,
  type RepoSpec,
  type RepoFile,
  type RepoListing,
  type NetOptions,
  type PullFile,
  type PullPlan,
  type PullProgress,
  type PullOptions,
  type CachedModel,
} from "./models/hub.js";
export { convertHfToGguf, SUPPORTED_ARCHITECTURES, type ConvertOptions, type ConvertOutType, type ConvertResult } from "./models/convert.js";
export {
  resolveModelPath,
  pullHubModel,
  convertCheckpoint,
  convertCheckpointCached,
  removeModel,
  cacheHome,
  hubGgufPath,
  BUILTIN_TINY,
  MODEL_DTYPES,
  type ModelDtype,
  type ResolveModelOptions,
  type HubModelOptions,
  type HubModelResult,
} from "./models/model-path.js";
