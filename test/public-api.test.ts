// The public API is what src/index.ts exports, and every name there is a promise. This pins the
// list (values and types), so that adding or removing one is a deliberate change of this file; and
// the TypeScript samples of README.md and docs/*.md must compile against it, as a user would write them.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import ts from "typescript";
import { expect, test } from "vitest";
import * as api from "../src/index.js";
import { docPages } from "./helpers/doc-pages.js";

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

/** Every ```ts block of README.md and docs/*.md, with where it stands. */
function samples(): { doc: string; line: number; code: string }[] {
  const docs = docPages(ROOT);
  return docs.flatMap((doc) => {
    const text = fs.readFileSync(path.join(ROOT, doc), "utf8");
    return [...text.matchAll(/^```(?:ts|typescript)\n([\s\S]*?)^```/gm)].map((m) => ({
      doc,
      line: text.slice(0, m.index).split("\n").length,
      code: m[1],
    }));
  });
}

test("the TypeScript samples of README.md and docs/ compile against the public API", () => {
  const blocks = samples();
  // The samples that stand today (README's use from code; training, models, generation x2 and
  // architecture pages): one that vanishes fails here rather than silently leaving the check.
  expect(blocks.filter((b) => b.doc === "README.md").length).toBeGreaterThanOrEqual(1);
  expect(new Set(blocks.map((b) => b.doc)).size).toBeGreaterThanOrEqual(5);
  expect(blocks.length).toBeGreaterThanOrEqual(6);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "t2s-readme-"));
  const index = path.join(ROOT, "src", "index.js");
  const where = new Map<string, string>();
  const files = blocks.map((b, i) => {
    const f = path.join(dir, `sample-${i + 1}.mts`);
    where.set(f, `${b.doc}:${b.line}`);
    fs.writeFileSync(f, `${b.code.replaceAll('from "text2sql"', `from ${JSON.stringify(index)}`)}\nexport {};\n`);
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
  const text = errors.map(
    (d) => `${where.get(d.file!.fileName)} (${path.basename(d.file!.fileName)}): ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`,
  );
  expect(text).toEqual([]);
}, 60_000);
