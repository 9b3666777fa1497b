// Input from outside that once crashed, hung or ate memory, each now refused (or warned about)
// with a clear message naming what and where, quickly, with an exit code that says failure.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, test, vi } from "vitest";
import { LoraEngine } from "../src/engine/engine.js";
import { componentMatch } from "../src/sql/spider-metrics.js";
import { evaluateSql } from "../src/eval/eval.js";
import { DEFAULTS, loadConfig, type TrainConfig } from "../src/train/config.js";
import { loadDataset, MAX_FIELD_CHARS, readExamples } from "../src/train/data.js";
import { tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const CLI = path.join(ROOT, "dist/src/cli/main.js");
const dataCfg = (over: Partial<TrainConfig["data"]> = {}): TrainConfig["data"] => ({ ...structuredClone(DEFAULTS.data), ...over });
const cli = (args: string[], timeout = 60_000) => spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: "utf8", timeout });

describe("data files are bounded", () => {
  test("a device or a folder is refused before any byte is read (was 10 GB of memory from /dev/zero)", async () => {
    if (fs.existsSync("/dev/zero")) await expect(readExamples("/dev/zero", dataCfg({ format: "csv" }))).rejects.toThrow("/dev/zero: not a regular file");
    await expect(readExamples(tempDir(), dataCfg({ format: "jsonl" }))).rejects.toThrow(/not a regular file/);
    const t0 = performance.now();
    const r = cli(["data", "--model", "builtin:tiny", "--data", "/dev/zero", "--set", "data.format=csv"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/\/dev\/zero: not a regular file/);
    expect(performance.now() - t0).toBeLessThan(30_000);
  }, 60_000);

  test("a field or a record past the cap is an error naming the line (was 130 s and 4.4 GB for a 50 MB field)", async () => {
    const dir = tempDir();
    const big = "x".repeat(MAX_FIELD_CHARS + 1);
    const csv = path.join(dir, "big.csv");
    fs.writeFileSync(csv, `text_query,sql_command\nok?,SELECT 1\n"${big}",SELECT 2\n`);
    await expect(readExamples(csv, dataCfg())).rejects.toThrow(
      `${csv}:3: field 'text_query' has ${MAX_FIELD_CHARS + 1} characters, more than the ${MAX_FIELD_CHARS} allowed`,
    );
    const endless = path.join(dir, "endless.csv");
    fs.writeFileSync(endless, `text_query,sql_command\nok?,SELECT 1\n"${"y".repeat(5_000_000)}`);
    const t0 = performance.now();
    await expect(readExamples(endless, dataCfg())).rejects.toThrow(/endless\.csv:3: a record of more than 4000000 characters/);
    expect(performance.now() - t0).toBeLessThan(10_000);
    const jsonl = path.join(dir, "big.jsonl");
    fs.writeFileSync(jsonl, `{"question": "ok?", "sql": "SELECT 1"}\n{"question": "q", "sql": "${big}"}\n`);
    await expect(readExamples(jsonl, dataCfg())).rejects.toThrow(`${jsonl}:2: field 'sql' has`);
  });
});

describe("thread counts are bounded by the machine", () => {
  const cores = os.availableParallelism();
  test("absurd counts are refused by the config, the engine and the CLI (100000 crashed libgomp)", async () => {
    const model = await testModel();
    await expect(LoraEngine.create({ model, threads: 100_000 })).rejects.toThrow(
      `threads: expected an integer from 0 (all cores) to ${4 * cores} (4 per core; this machine has ${cores}), got 100000`,
    );
    const dir = tempDir();
    const csv = path.join(dir, "d.csv");
    fs.writeFileSync(csv, "text_query,sql_command\nq?,SELECT 1\n");
    expect(() => loadConfig({ object: { model: { path: model }, data: { path: csv }, train: { threads: 20_000 } } })).toThrow(
      /^train\.threads: expected an integer from 0/,
    );
    const r = cli(["train", "--model", model, "--data", csv, "--threads", "100000", "--output", path.join(dir, "out")]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/train\.threads: expected an integer from 0 \(all cores\)/);
    expect(fs.existsSync(path.join(dir, "out"))).toBe(false);
  }, 60_000);

  test("above the core count it runs, with a warning", async () => {
    const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      const e = await LoraEngine.create({ model: await testModel(), device: "cpu", threads: cores + 1 });
      await e.dispose();
      expect(write.mock.calls.map((c) => String(c[0])).join("")).toContain(`threads ${cores + 1} is more than the ${cores} cores here`);
    } finally {
      write.mockRestore();
    }
  });
});

test("a LoRA rank above a layer's smaller dimension is warned about", async () => {
  const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const model = await testModel(); // 64 wide, 2 KV heads of 16: k/v project to 32
    const ok = await LoraEngine.create({ model, device: "cpu", lora: { r: 32, targetModules: ["q", "v"] } });
    await ok.dispose();
    expect(write.mock.calls.map((c) => String(c[0])).join("")).not.toContain("lora.r");
    const wide = await LoraEngine.create({ model, device: "cpu", lora: { r: 33, targetModules: ["q", "v"] } });
    await wide.dispose();
    expect(write.mock.calls.map((c) => String(c[0])).join("")).toContain("lora.r 33 is larger than v_proj's smaller dimension 32");
  } finally {
    write.mockRestore();
  }
});

test("eval refuses a predictions file with more lines than the dataset (was exit 0, extra lines ignored)", async () => {
  const dir = tempDir();
  const data = path.join(dir, "dev.json");
  const tables = path.join(dir, "tables.json");
  fs.writeFileSync(
    tables,
    JSON.stringify([
      {
        db_id: "d",
        table_names_original: ["t"],
        column_names_original: [
          [-1, "*"],
          [0, "a"],
        ],
        column_types: ["text", "number"],
        primary_keys: [],
        foreign_keys: [],
      },
    ]),
  );
  fs.writeFileSync(
    data,
    JSON.stringify([
      { db_id: "d", question: "q1?", query: "SELECT a FROM t" },
      { db_id: "d", question: "q2?", query: "SELECT count(*) FROM t" },
    ]),
  );
  const preds = path.join(dir, "preds.sql");
  fs.writeFileSync(preds, "SELECT a FROM t\nSELECT count(*)\nFROM t\n");
  await expect(evaluateSql({ data, tables, predictions: preds, output: path.join(dir, "out") })).rejects.toThrow(/has 3 lines but the dataset has 2 examples/);
  const r = cli(["eval", "--data", data, "--tables", tables, "--predictions", preds, "--output", path.join(dir, "out2")]);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(/has 3 lines but the dataset has 2 examples/);
});

test("a prediction that does not parse matches no component (GROUP BY, ORDER BY and LIMIT were scored as matched)", () => {
  const m = componentMatch("SELECT name FROM singer", "SELEC name FROM singer WHERE");
  expect(m).toEqual({ select: false, from: false, where: false, groupBy: false, orderBy: false, limit: false, iuen: false, keywords: false, all: false });
});

test("a misspelt key's hint comes from its own section (train.lerning_rate was 'did you mean data.train_path?')", () => {
  expect(() => loadConfig({ set: ["train.lerning_rate=1e-4"] })).toThrow(/unknown key 'train\.lerning_rate'; did you mean 'train\.lr'\?/);
  expect(() => loadConfig({ set: ["lora.targets=[q]"] })).toThrow(/did you mean 'lora\.target_modules'\?/);
});

test("a dataset whose split leaves nothing to train on says so (was 'no training examples left after tokenizing')", async () => {
  const csv = path.join(tempDir(), "one.csv");
  fs.writeFileSync(csv, "text_query,sql_command\nq?,SELECT 1\n");
  await expect(loadDataset(dataCfg({ path: csv }))).rejects.toThrow(
    `${csv}: data.split [0.9,0.05,0.05] of 1 row leaves no row to train on; add rows, or set data.split to [1, 0, 0]`,
  );
  expect((await loadDataset(dataCfg({ path: csv, split: [1, 0, 0] }))).train).toHaveLength(1);
});
