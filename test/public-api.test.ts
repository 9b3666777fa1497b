// The public API is what src/index.ts exports, and every name there is a promise. This pins the
// list (values and types), so that adding or removing one is a deliberate change of this file; and
// the README's TypeScript samples must compile against it, as a user would write them.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import ts from "typescript";
import { expect, test } from "vitest";
import * as api from "../src/index.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

const VALUES = [
  "ConfigError",
  "DEFAULT_CONFIG",
  "DEFAULT_TEMPLATE",
  "DataError",
  "HubError",
  "LORA_DEFAULTS",
  "LORA_TARGETS",
  "LoraEngine",
  "SUPPORTED_ARCHITECTURES",
  "SqlGenerator",
  "convertHfToGguf",
  "disposeGenerators",
  "evaluateSql",
  "exactMatch",
  "executionMatch",
  "exportPeft",
  "formatEvalReport",
  "formatGrpoSummary",
  "formatSummary",
  "generateSql",
  "hardness",
  "importPeft",
  "listCachedModels",
  "loadConfig",
  "loadDataset",
  "makeBatch",
  "mergeAdapter",
  "parseSchema",
  "prepareData",
  "pullModel",
  "removeModel",
  "renderPrompt",
  "resolveModelPath",
  "schemaFromDatabase",
  "schemaFromSqlite",
  "sqlGrammar",
  "startServer",
  "systemInfo",
  "trainGrpo",
  "trainSft",
  "validateSql",
];
const TYPES = [
  "AdapterTensor",
  "Batch",
  "BatchStats",
  "CachedModel",
  "CandidateReport",
  "ConfigSources",
  "ConvertOptions",
  "ConvertOutType",
  "ConvertResult",
  "DataSummary",
  "Dataset",
  "Device",
  "EngineInfo",
  "EngineOptions",
  "EvalEvent",
  "EvalOptions",
  "EvalReport",
  "EvalRow",
  "Example",
  "GenerateOptions",
  "GrpoHooks",
  "GrpoSampler",
  "GrpoStepEvent",
  "GrpoSummary",
  "GenerateResult",
  "GeneratorOptions",
  "Hardness",
  "HubErrorCode",
  "LoraOptions",
  "LoraTarget",
  "MergeOptions",
  "MergeResult",
  "MergeType",
  "ModelDtype",
  "OptimizerState",
  "PeftConfig",
  "PeftExportMeta",
  "PullOptions",
  "PullProgress",
  "ResolveModelOptions",
  "RunningServer",
  "SchemaInfo",
  "SchemaTable",
  "Sequence",
  "ServerOptions",
  "SqlGrammar",
  "SqlGrammarOptions",
  "StepEvent",
  "StepOptions",
  "TrainConfig",
  "SampleJob",
  "TrainHooks",
  "TrainOptions",
  "TrainSummary",
];

test("src/index.ts exports exactly the pinned values", () => {
  expect(Object.keys(api).sort()).toEqual([...VALUES].sort());
});

test("src/index.ts exports exactly the pinned names, types included", () => {
  const program = ts.createProgram([path.join(ROOT, "src/index.ts")], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const sym = checker.getSymbolAtLocation(program.getSourceFile(path.join(ROOT, "src/index.ts"))!)!;
  const names = checker.getExportsOfModule(sym).map((s) => s.getName());
  expect(names.sort()).toEqual([...VALUES, ...TYPES].sort());
});

test("the README's TypeScript samples compile against the public API", () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/^```(?:ts|typescript)\n([\s\S]*?)^```/gm)].map((m) => m[1]);
  expect(blocks.length).toBeGreaterThanOrEqual(4);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "t2s-readme-"));
  const index = path.join(ROOT, "src", "index.js");
  const files = blocks.map((code, i) => {
    const f = path.join(dir, `sample-${i + 1}.mts`);
    fs.writeFileSync(f, `${code.replaceAll('from "text2sql"', `from ${JSON.stringify(index)}`)}\nexport {};\n`);
    return f;
  });
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ["node"],
    typeRoots: [path.join(ROOT, "node_modules", "@types")],
  });
  const errors = ts.getPreEmitDiagnostics(program).filter((d) => d.file && files.includes(d.file.fileName));
  const text = errors.map((d) => `${path.basename(d.file!.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
  expect(text).toEqual([]);
}, 60_000);
