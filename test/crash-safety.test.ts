// Crash safety (issue 16's acceptance): `text2sql train` is killed with SIGKILL at seeded
// pseudo-random moments (at least 20 times: at random delays, right after a step's event, when a
// checkpoint's temporary folder appears, and during the final save), then resumed (or started
// afresh while there is no checkpoint yet). After every kill each file that survived is complete
// and readable, and each run, once finished, ends with an adapter byte-identical to an
// uninterrupted run's (one thread: the numerics are bit-exact, so bytes, not tolerances).
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, expect, test } from "vitest";
import YAML from "yaml";
import { readGguf, readTensorF32 } from "../src/formats/gguf.js";
import { readSafetensors } from "../src/formats/safetensors.js";
import { rng, tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const MAX_STEPS = 10;
const KILLS = 20;
const KILLS_PER_ROUND = 8;

let model: string;
let csv: string;
let ref: { adapter: Buffer; trainLoss: number; wallMs: number };

const args = (out: string, extra: string[]) => [
  "dist/src/cli/main.js",
  "train",
  "--model",
  model,
  "--data",
  csv,
  "--output",
  out,
  "--max-steps",
  String(MAX_STEPS),
  "--threads",
  "1",
  "--json",
  "--set",
  "lora.r=16",
  "--set",
  "lora.dropout=0.05",
  "--set",
  "lora.target_modules=[q, k, v, o, gate, up, down]",
  "--set",
  "train.batch_size=2",
  "--set",
  "train.grad_accum=1",
  "--set",
  "train.save_every=1",
  "--set",
  "train.keep_checkpoints=2",
  "--set",
  "train.eval_every=4",
  "--set",
  "data.split=[0.8, 0.2, 0]",
  ...extra,
];

type Trigger = { kind: "none" } | { kind: "delay"; ms: number } | { kind: "step"; step: number } | { kind: "appears"; pattern: RegExp };

/** Runs the CLI once; kills it with SIGKILL when the trigger fires. Resolves to its exit and its summary line. */
function runOnce(
  out: string,
  extra: string[],
  trigger: Trigger,
): Promise<{ code: number | null; killed: boolean; summary?: { trainLoss: number }; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args(out, extra), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "",
      stderr = "",
      killed = false;
    const kill = () => {
      if (killed || p.exitCode !== null) return;
      killed = true;
      p.kill("SIGKILL");
    };
    let timer: NodeJS.Timeout | undefined;
    let watchers: fs.FSWatcher[] = [];
    if (trigger.kind === "delay") timer = setTimeout(kill, trigger.ms);
    if (trigger.kind === "appears") {
      // inotify where the folder exists already (the quickest), else polling every millisecond
      const dirs = [out, path.join(out, "checkpoints")];
      watchers = dirs.filter((d) => fs.existsSync(d)).map((d) => fs.watch(d, (_, n) => n && trigger.pattern.test(n) && kill()));
      timer = setInterval(() => {
        for (const d of dirs) if (fs.existsSync(d) && fs.readdirSync(d).some((n) => trigger.pattern.test(n))) kill();
      }, 1);
    }
    p.stdout.on("data", (d) => {
      stdout += d;
      if (trigger.kind === "step" && new RegExp(`"type":"step","step":${trigger.step},`).test(stdout)) kill();
    });
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => {
      clearTimeout(timer);
      clearInterval(timer);
      for (const w of watchers) w.close();
      const line = stdout.split("\n").find((l) => l.startsWith('{"type":"summary"'));
      resolve({ code, killed, summary: line ? JSON.parse(line) : undefined, stderr });
    });
  });
}

/** Checks an adapter folder is complete: every file there and readable, the GGUF's values finite. Resolves to its parameter count. */
function checkAdapterFolder(dir: string): number {
  const g = readGguf(path.join(dir, "adapter.gguf"));
  let n = 0;
  for (const t of g.tensors) {
    const x = readTensorF32(g, t);
    expect(x.every(Number.isFinite), `${dir}: ${t.name}`).toBe(true);
    n += x.length;
  }
  expect(n).toBeGreaterThan(0);
  expect(readSafetensors(path.join(dir, "adapter_model.safetensors")).tensors.length, dir).toBe(g.tensors.length);
  for (const f of ["adapter_config.json", "text2sql.json"]) JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
  return n;
}

/** After a kill: every checkpoint, final_model/ and file present is complete; resolves to the newest checkpoint's step. */
function checkSurvivors(out: string): number {
  let newest = 0;
  const root = path.join(out, "checkpoints");
  for (const name of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    const m = /^checkpoint-(\d+)$/.exec(name);
    if (!m) continue; // a temporary folder of the killed process: the next start removes it
    const dir = path.join(root, name);
    const state = JSON.parse(fs.readFileSync(path.join(dir, "trainer_state.json"), "utf8"));
    expect(state.step, dir).toBe(Number(m[1]));
    const n = checkAdapterFolder(dir);
    if (state.optimizer.t > 0) expect(fs.statSync(path.join(dir, "optimizer.bin")).size, dir).toBe(8 * n);
    newest = Math.max(newest, state.step);
  }
  if (fs.existsSync(path.join(out, "final_model"))) checkAdapterFolder(path.join(out, "final_model"));
  const file = (f: string) => path.join(out, f);
  if (fs.existsSync(file("config.yaml"))) expect(YAML.parse(fs.readFileSync(file("config.yaml"), "utf8")).train.max_steps).toBe(MAX_STEPS);
  if (fs.existsSync(file("summary.json"))) JSON.parse(fs.readFileSync(file("summary.json"), "utf8"));
  if (fs.existsSync(file("loss.svg"))) expect(fs.readFileSync(file("loss.svg"), "utf8")).toMatch(/<\/svg>\s*$/);
  if (fs.existsSync(file("metrics.jsonl"))) {
    const lines = fs.readFileSync(file("metrics.jsonl"), "utf8").split("\n").slice(0, -1); // the part after the last newline may be torn
    for (const l of lines) JSON.parse(l);
  }
  return newest;
}

beforeAll(async () => {
  model = await testModel({ type: "f32" });
  const dir = tempDir("t2s-crash-");
  csv = path.join(dir, "d.csv");
  const rows = Array.from({ length: 24 }, (_, i) => `How many rows in table t${i}?,SELECT count(*) FROM t${i}`);
  fs.writeFileSync(csv, ["text_query,sql_command", ...rows].join("\n") + "\n");
  const out = path.join(dir, "ref");
  const t0 = performance.now();
  const r = await runOnce(out, [], { kind: "none" });
  expect(r.code, r.stderr).toBe(0);
  ref = { adapter: fs.readFileSync(path.join(out, "final_model", "adapter.gguf")), trainLoss: r.summary!.trainLoss, wallMs: performance.now() - t0 };
}, 120_000);

test(`SIGKILL at ${KILLS}+ random moments, resumed each time: every surviving file is valid and the final adapter equals an uninterrupted run's`, async () => {
  const random = rng(16);
  const u = () => (random() + 1) / 2; // [0, 1)
  let kills = 0,
    rounds = 0,
    starts = 0;
  const during = { checkpointSave: 0, finalSave: 0, finalTriggered: 0 };
  while (kills < KILLS) {
    const out = path.join(tempDir("t2s-crash-"), "out");
    rounds++;
    for (let inRound = 0; ;) {
      expect(++starts, "too many starts").toBeLessThan(200);
      const newest = checkSurvivors(out);
      const extra = newest > 0 ? ["--resume"] : fs.existsSync(out) && fs.readdirSync(out).length ? ["--overwrite"] : [];
      let trigger: Trigger = { kind: "none" };
      if (inRound < KILLS_PER_ROUND) {
        const r = u();
        // the round's last two kills come when the final save begins (the run goes on to it from wherever it is)
        if (newest >= MAX_STEPS - 1 || inRound >= KILLS_PER_ROUND - 2) trigger = { kind: "appears", pattern: /^final_model\.tmp-/ };
        else if (r < 0.35) trigger = { kind: "delay", ms: Math.round((0.15 + 0.85 * u()) * ref.wallMs) };
        else if (r < 0.7) trigger = { kind: "step", step: Math.min(MAX_STEPS, newest + 1 + Math.floor(3 * u())) };
        else trigger = { kind: "appears", pattern: /^checkpoint-\d+\.tmp-/ };
      }
      const r = await runOnce(out, extra, trigger);
      if (!r.killed) {
        expect(r.code, r.stderr).toBe(0);
        checkSurvivors(out);
        expect(fs.readFileSync(path.join(out, "final_model", "adapter.gguf")).equals(ref.adapter), `round ${rounds}: final adapter`).toBe(true);
        expect(r.summary!.trainLoss, `round ${rounds}: trainLoss`).toBe(ref.trainLoss);
        break;
      }
      kills++;
      inRound++;
      if (trigger.kind === "appears" && trigger.pattern.source.startsWith("^final")) during.finalTriggered++;
      const left = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d) : []).filter((n) => /\.(tmp|old|del)-\d+$/.test(n));
      if (left(path.join(out, "checkpoints")).length) during.checkpointSave++;
      if (left(out).some((n) => n.startsWith("final_model."))) during.finalSave++;
    }
  }
  console.log(
    `crash-safety: ${kills} kills over ${rounds} runs (${starts} starts); killed during a checkpoint save ${during.checkpointSave}, during the final save ${during.finalSave} (${during.finalTriggered} kills when it began)`,
  );
  expect(kills).toBeGreaterThanOrEqual(KILLS);
  expect(during.checkpointSave).toBeGreaterThan(0);
  // (a kill when the final save begins may come after it ended, when the run had little left to do)
  expect(during.finalTriggered).toBeGreaterThanOrEqual(2);
}, 300_000);
