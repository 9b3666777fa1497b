#!/usr/bin/env node
// The text2sql command line: the program, its commands (one module each, registered here in the
// order `--help` lists them) and the one place an error becomes "text2sql: <message>" and exit 1.
import { Command } from "commander";
import fs from "node:fs";
import path from "node:path";
import { packageRoot } from "../engine/native.js";
import { registerData } from "./data.js";
import { registerDoctor } from "./doctor.js";
import { registerEval } from "./eval.js";
import { registerExport } from "./export.js";
import { registerGenerate } from "./generate.js";
import { registerInfo } from "./info.js";
import { registerKeys } from "./keys.js";
import { registerModel } from "./model.js";
import { registerServe } from "./serve.js";
import { registerTrain } from "./train.js";

const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version: string };

const program = new Command();
program.name("text2sql").description("Fine-tune small Llama-family models with LoRA to turn questions into SQL (no Python).").version(pkg.version);

for (const register of [
  registerTrain,
  registerData,
  registerGenerate,
  registerEval,
  registerExport,
  registerServe,
  registerModel,
  registerKeys,
  registerDoctor,
  registerInfo,
]) {
  register(program);
}

program.parseAsync().catch((err: unknown) => {
  console.error(`text2sql: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
