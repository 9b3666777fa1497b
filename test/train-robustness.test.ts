// Training runs that lose nothing (issue 16, items 4, 7, 8, 9, 10 and 13's trainLoss): a model
// llama.cpp would abort on is refused by our reader first; a damaged checkpoint or a torn metrics
// line does not stop --resume; a non-finite loss stops the run with the last checkpoint intact; a
// non-empty output folder is refused without --resume or --overwrite; leftovers of a dead process
// are cleaned. Every case checks the files it must not touch by their hashes.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { GgufValueType, readGguf, readTensorBytes } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import { SqlGenerator } from "../src/serve/generate.js";
import { loadConfig, type TrainConfig } from "../src/train/config.js";
import { trainSft, type TrainHooks, type TrainSummary } from "../src/train/trainer.js";
import { cleanLeftovers } from "../src/util/atomic.js";
import { tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const ADAPTER = path.join("final_model", "adapter.gguf");

/** sha256 of every file under `dir`, by relative path. */
function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) out[f] = createHash("sha256").update(fs.readFileSync(p)).digest("hex");
  }
  return out;
}

/** The metrics' entries without their timings. */
const losses = (file: string) =>
  fs
    .readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .map((m) => [m.type, m.step, m.loss]);

const cli = (args: string[]) => spawnSync(process.execPath, ["dist/src/cli/main.js", ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });

let model: string;
let csv: string;
let ref: { dir: string; summary: TrainSummary; adapter: Buffer };

/** The test run's config: 8 steps, a checkpoint every 2 (2, 4, 6; all kept), one thread (bit-exact). */
function config(out: string, set: string[] = [], data = csv): TrainConfig {
  return loadConfig({
    overrides: { "model.path": model, "data.path": data, "output.dir": out },
    set: [
      "lora.dropout=0.05",
      "train.batch_size=2",
      "train.grad_accum=1",
      "train.max_steps=8",
      "train.lr=5e-3",
      "train.warmup_steps=2",
      "train.eval_every=4",
      "train.save_every=2",
      "train.keep_checkpoints=10",
      "train.threads=1",
      "data.split=[0.8, 0.2, 0]",
      ...set,
    ],
  });
}

/** A copy of the reference run's output folder. */
function copyOfRef(): string {
  const dir = path.join(tempDir("t2s-robust-"), "out");
  fs.cpSync(ref.dir, dir, { recursive: true });
  return dir;
}

async function resume(out: string, hooks: TrainHooks = {}): Promise<{ summary: TrainSummary; log: string[] }> {
  const log: string[] = [];
  const summary = await trainSft(config(out), { resume: true, onLog: (m) => log.push(m), ...hooks });
  return { summary, log };
}

beforeAll(async () => {
  model = await testModel({ type: "f32" });
  const dir = tempDir("t2s-robust-");
  csv = path.join(dir, "d.csv");
  const rows = Array.from({ length: 24 }, (_, i) => `How many rows in table t${i}?,SELECT count(*) FROM t${i}`);
  fs.writeFileSync(csv, ["text_query,sql_command", ...rows].join("\n") + "\n");
  const out = path.join(dir, "ref");
  const summary = await trainSft(config(out));
  ref = { dir: out, summary, adapter: fs.readFileSync(path.join(out, ADAPTER)) };
  expect(fs.readdirSync(path.join(out, "checkpoints")).sort()).toEqual(["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
}, 120_000);

describe("a model llama.cpp would abort on is refused by our reader first (item 4)", () => {
  test("head_count 0 (GGML_ASSERT, exit 134) and a tensor count of 2^40 (a hang): an error naming the file, exit 1, nothing written", async () => {
    const dir = tempDir("t2s-badmodel-");
    const src = readGguf(model);
    const head0 = path.join(dir, "head0.gguf");
    const md = new Map(src.metadata);
    md.set("llama.attention.head_count", { type: GgufValueType.UINT32, value: 0 });
    writeGguf(head0, { metadata: md, tensors: src.tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne, data: readTensorBytes(src, t) })) });
    const huge = path.join(dir, "t40.gguf");
    const bytes = Buffer.from(fs.readFileSync(model));
    bytes.writeBigUInt64LE(2n ** 40n, 8);
    fs.writeFileSync(huge, bytes);
    const cases: [string, RegExp][] = [
      [head0, /model: .*head0\.gguf: llama\.attention\.head_count is 0; it must be at least 1; llama\.cpp cannot load it/],
      [huge, /model: .*t40\.gguf: corrupt GGUF header: 1099511627776 tensors and \d+ metadata entries cannot fit in a file of \d+ bytes/],
    ];
    for (const [file, message] of cases) {
      const out = path.join(dir, `out-${path.basename(file)}`);
      const r = cli(["train", "--model", file, "--data", csv, "--output", out, "--threads", "1"]);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(fs.existsSync(out)).toBe(false);
      await expect(SqlGenerator.load({ model: file, device: "cpu" })).rejects.toThrow(message);
    }
  }, 120_000);
});

describe("the output folder (item 10)", () => {
  test("a non-empty folder is refused without --resume or --overwrite, and a failing run writes nothing", async () => {
    const out = copyOfRef();
    const before = hashes(out);
    await expect(trainSft(config(out))).rejects.toThrow(
      /output\.dir: .* is not empty \(it holds .*\); continue its run with --resume, replace it with --overwrite/,
    );
    const bad = path.join(path.dirname(out), "bad.csv");
    fs.writeFileSync(bad, 'text_query,sql_command\n"unclosed,SELECT 1\n');
    await expect(trainSft(config(out, [], bad), { overwrite: true })).rejects.toThrow(/bad\.csv:\d+: unterminated quote/);
    await expect(trainSft(config(out), { overwrite: true, resume: true })).rejects.toThrow(/--resume and --overwrite exclude each other/);
    const r = cli(["train", "--model", model, "--data", csv, "--output", out, "--threads", "1"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is not empty/);
    expect(hashes(out)).toEqual(before);
    // --overwrite replaces the run: the same config gives the same adapter and only its own checkpoints
    fs.mkdirSync(path.join(out, "checkpoints", "checkpoint-100"));
    const again = await trainSft(config(out), { overwrite: true });
    expect(again.steps).toBe(8);
    expect(fs.readFileSync(path.join(out, ADAPTER)).equals(ref.adapter)).toBe(true);
    expect(fs.readdirSync(path.join(out, "checkpoints")).sort()).toEqual(["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
  }, 120_000);
});

describe("--resume (items 7 and 13)", () => {
  test("a damaged newest checkpoint is named and moved aside; the run resumes from the newest valid one and ends as the uninterrupted run", async () => {
    const out = copyOfRef();
    const state = path.join(out, "checkpoints", "checkpoint-6", "trainer_state.json");
    fs.writeFileSync(state, fs.readFileSync(state, "utf8").slice(0, 40));
    const { summary, log } = await resume(out);
    expect(log.join("\n")).toMatch(/checkpoint: warning: .*checkpoint-6 is damaged \(.*checkpoint-6[/\\]trainer_state\.json: not valid JSON/);
    expect(log.join("\n")).toMatch(/checkpoint: resuming from .*checkpoint-4, the newest valid checkpoint/);
    expect(fs.readdirSync(path.join(out, "checkpoints")).some((n) => /^checkpoint-6\.damaged-\d+$/.test(n))).toBe(true);
    expect(fs.readFileSync(path.join(out, ADAPTER)).equals(ref.adapter)).toBe(true);
    // trainLoss is the mean of the last 10 step losses, the steps before the checkpoint included (was 4.6389 vs 5.2644)
    expect(summary.trainLoss).toBe(ref.summary.trainLoss);
    expect(summary.steps).toBe(8);
  }, 120_000);

  test("non-finite values in optimizer.bin or adapter.gguf damage a checkpoint, named by file (NaN resumed with exit 0 before)", async () => {
    const out = copyOfRef();
    const ck = (step: number, f: string) => path.join(out, "checkpoints", `checkpoint-${step}`, f);
    const opt = fs.readFileSync(ck(6, "optimizer.bin"));
    opt.writeFloatLE(Number.NaN, 40);
    fs.writeFileSync(ck(6, "optimizer.bin"), opt);
    const g = readGguf(ck(4, "adapter.gguf"));
    const a = fs.readFileSync(ck(4, "adapter.gguf"));
    a.writeFloatLE(Number.POSITIVE_INFINITY, g.dataOffset + g.tensors[1].offset);
    fs.writeFileSync(ck(4, "adapter.gguf"), a);
    const { log } = await resume(out);
    expect(log.join("\n")).toMatch(/checkpoint-6[/\\]optimizer\.bin: holds a non-finite value \(NaN\) at float 10/);
    expect(log.join("\n")).toMatch(
      new RegExp(`checkpoint-4[/\\\\]adapter\\.gguf: tensor "${g.tensors[1].name.replaceAll(".", "\\.")}" holds a non-finite value at index 0`),
    );
    expect(log.join("\n")).toMatch(/resuming from .*checkpoint-2 \(step 2 of 8\)/);
    expect(fs.readFileSync(path.join(out, ADAPTER)).equals(ref.adapter)).toBe(true);

    // no valid checkpoint left: an error listing each, and nothing else touched
    const only = copyOfRef();
    for (const s of [2, 4]) fs.rmSync(path.join(only, "checkpoints", `checkpoint-${s}`), { recursive: true });
    fs.writeFileSync(path.join(only, "checkpoints", "checkpoint-6", "optimizer.bin"), opt);
    const before = hashes(only);
    await expect(resume(only)).rejects.toThrow(/--resume: no valid checkpoint in .*: .*checkpoint-6[/\\]optimizer\.bin: holds a non-finite value/);
    const aside = fs.readdirSync(path.join(only, "checkpoints"));
    expect(aside).toEqual([expect.stringMatching(/^checkpoint-6\.damaged-\d+$/)]);
    expect(hashes(only)).toEqual(Object.fromEntries(Object.entries(before).map(([f, h]) => [f.replace("checkpoint-6", aside[0]), h])));
  }, 120_000);

  test("a torn last line of metrics.jsonl is dropped with a warning; a broken line in the middle is an error naming file:line", async () => {
    const out = copyOfRef();
    const metrics = path.join(out, "metrics.jsonl");
    const text = fs.readFileSync(metrics, "utf8");
    fs.writeFileSync(metrics, text.slice(0, -20)); // head -c -20
    const { summary, log } = await resume(out);
    expect(log.join("\n")).toMatch(/metrics: warning: .*metrics\.jsonl:\d+: dropped the last line, cut by a crash/);
    expect(summary.trainLoss).toBe(ref.summary.trainLoss);
    expect(losses(metrics)).toEqual(losses(path.join(ref.dir, "metrics.jsonl")));

    const mid = copyOfRef();
    const lines = text.split("\n");
    lines[2] = lines[2].slice(0, 15);
    fs.writeFileSync(path.join(mid, "metrics.jsonl"), lines.join("\n"));
    const before = hashes(mid);
    await expect(resume(mid)).rejects.toThrow(/metrics\.jsonl:3: not valid JSON/);
    expect(hashes(mid)).toEqual(before);
  }, 120_000);
});

describe("non-finite values stop the run (item 9)", () => {
  test("a NaN loss stops the run with exit 1, naming the step; the checkpoints are intact and no final model is written", () => {
    const out = copyOfRef();
    fs.rmSync(path.join(out, "final_model"), { recursive: true });
    const ckpts = path.join(out, "checkpoints");
    const before = hashes(ckpts);
    const r = cli([
      "train",
      "--model",
      model,
      "--data",
      csv,
      "--output",
      out,
      "--resume",
      "--max-steps",
      "8",
      "--threads",
      "1",
      "--set",
      "train.lr=1e38",
      "--set",
      "train.batch_size=2",
      "--set",
      "train.grad_accum=1",
      "--set",
      "train.save_every=2",
      "--set",
      "train.eval_every=0",
      "--set",
      "lora.dropout=0.05",
      "--set",
      "data.split=[0.8, 0.2, 0]",
    ]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(
      /text2sql: train: the (loss|gradient norm) of step [78] is (NaN|-?Infinity); stopped before saving anything of it \(the last checkpoint, .*checkpoint-6, is intact\)/,
    );
    expect(hashes(ckpts)).toEqual(before);
    expect(fs.existsSync(path.join(out, "final_model"))).toBe(false);
  }, 120_000);
});

describe("crash leftovers (item 8)", () => {
  test("a folder swap cut by a crash is finished, and temporary folders of dead processes are removed at the next start", async () => {
    const out = copyOfRef();
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    const final = path.join(out, "final_model");
    // killed between the swap's two renames: the old folder renamed away, the new one complete beside it
    fs.renameSync(final, `${final}.old-${dead}`);
    fs.cpSync(`${final}.old-${dead}`, `${final}.tmp-${dead}`, { recursive: true });
    fs.mkdirSync(path.join(out, "checkpoints", `checkpoint-8.tmp-${dead}`));
    fs.writeFileSync(path.join(out, "checkpoints", `checkpoint-8.tmp-${dead}`, "adapter.gguf"), "");
    fs.writeFileSync(path.join(out, `summary.json.tmp-${dead}`), "{");
    const live = path.join(out, `loss.svg.tmp-${process.ppid}`); // a running process's: left alone
    fs.writeFileSync(live, "<svg");
    expect(cleanLeftovers(out).sort()).toEqual(
      [
        `finished replacing ${final}, which a crash interrupted`,
        `removed ${final}.old-${dead}, left by a process that is gone`,
        `removed ${path.join(out, `summary.json.tmp-${dead}`)}, left by a process that is gone`,
      ].sort(),
    );
    expect(fs.readFileSync(path.join(out, ADAPTER)).equals(ref.adapter)).toBe(true);
    expect(fs.existsSync(live)).toBe(true);
    fs.rmSync(live);
    const { log } = await resume(out);
    expect(log.join("\n")).toMatch(/output: removed .*checkpoint-8\.tmp-\d+, left by a process that is gone/);
    expect(fs.readdirSync(path.join(out, "checkpoints")).sort()).toEqual(["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
  }, 120_000);
});
