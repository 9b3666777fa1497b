// Execution accuracy while training (train.eval_execution): the best-by-EX choice on exact toy
// scores, the rows (a seeded sample, a gold query that fails said once with its line and left out,
// eval rows without a database refused naming the option), and SFT runs of the tiny test model on
// Spider's layout with a test-made database/ folder: eval_ex in metrics.jsonl and summary.json,
// best_model/ holding the step the summary names, loss.svg's second axis, resume; a byte-bomb and
// a timing-out prediction score 0 for their rows and the run goes on (issue 25.8).
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { trainSft } from "../src/index.js";
import { loadConfig } from "../src/train/config.js";
import { loadDataset } from "../src/train/data.js";
import { bestByEx, betterByEx, execRows, executionAccuracy, executionScores, resumeBest } from "../src/train/exec-eval.js";
import { trainSft as trainSftCore } from "../src/train/trainer.js";
import { closeAll } from "../src/sql/query-process.js";
import { isQueryProcess, watchPeak } from "./helpers/child-memory.js";
import { makeSpiderLayout, SHOP_PAIRS } from "./helpers/db-layouts.js";
import { tempDir, testModel } from "./helpers/models.js";

afterAll(() => closeAll());

describe("best_model/ by EX", () => {
  test("the highest EX wins; an equal EX goes to the lower eval loss; a full tie keeps the earlier step", () => {
    const scores = [
      { step: 0, ex: 0, loss: 9 },
      { step: 10, ex: 0.25, loss: 3 },
      { step: 20, ex: 0.5, loss: 2.5 },
      { step: 30, ex: 0.5, loss: 2.0 }, // same EX, lower loss: wins
      { step: 40, ex: 0.5, loss: 2.0 }, // full tie: the earlier stays
      { step: 50, ex: 0.25, loss: 1.0 }, // lower loss, lower EX: loses
    ];
    expect(bestByEx(scores)).toEqual({ step: 30, ex: 0.5, loss: 2.0 });
    expect(bestByEx([])).toBeNull();
    expect(betterByEx({ step: 1, ex: 0, loss: 5 }, null)).toBe(true);
    expect(betterByEx({ step: 2, ex: 0.1, loss: 50 }, { step: 1, ex: 0, loss: 1 })).toBe(true);
  });
});

describe("best_model/ on resume", () => {
  test("kept when it holds the best kept evaluation's step; another step's folder is removed and said, and the best starts again", () => {
    const out = tempDir();
    const best = path.join(out, "best_model");
    const scores = [
      { step: 0, ex: 0, loss: 5 },
      { step: 4, ex: 0.5, loss: 3 },
    ];
    fs.mkdirSync(best);
    fs.writeFileSync(path.join(best, "text2sql.json"), JSON.stringify({ steps: 4 }));
    const logs: string[] = [];
    expect(resumeBest(out, scores, (m) => logs.push(m))).toEqual({ best: scores[1], folder: true });
    expect(logs).toEqual([]);
    fs.writeFileSync(path.join(best, "text2sql.json"), JSON.stringify({ steps: 8 })); // an evaluation after the checkpoint
    expect(resumeBest(out, scores, (m) => logs.push(m))).toEqual({ best: null, folder: false });
    expect(fs.existsSync(best)).toBe(false);
    expect(logs[0]).toMatch(/removed .*best_model \(step 8\), which is not the best evaluation kept in metrics\.jsonl \(step 4, eval_ex 0\.5\)/);
    expect(resumeBest(out, scores, (m) => logs.push(m))).toEqual({ best: null, folder: false });
    expect(logs[1]).toMatch(/best_model is missing/);
  });
});

async function spiderConfig(set: string[] = [], dev?: [string, string][]) {
  const s = makeSpiderLayout({ dev });
  const cfg = loadConfig({
    overrides: { "model.path": await testModel({ type: "f32" }), "output.dir": path.join(s.dir, "out") },
    set: [
      `data.train_path=${s.train}`,
      `data.eval_path=${s.dev}`,
      `data.tables_path=${s.tables}`,
      "data.template=[INST] {schema} Question: {question} [/INST]",
      "data.max_seq_len=160",
      "lora.target_modules=[q_proj, v_proj]",
      "train.batch_size=2",
      "train.grad_accum=1",
      "train.max_steps=6",
      "train.lr=5e-3",
      "train.eval_every=2",
      "train.save_every=3",
      "train.threads=2",
      "train.eval_execution=true",
      ...set,
    ],
  });
  return { s, cfg };
}

const evalLines = (out: string) =>
  fs
    .readFileSync(path.join(out, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((m) => m.type === "eval");

describe("the eval rows", () => {
  test("a seeded sample; a gold query that fails is said once with its line and left out; rows without a database are refused", async () => {
    const dev: [string, string][] = [...SHOP_PAIRS.slice(0, 4), ["Broken?", "SELECT name FROM nowhere"]];
    const { cfg } = await spiderConfig([], dev);
    const ds = await loadDataset(cfg.data);
    const logs: string[] = [];
    const all = await execRows(cfg, ds.eval, (m) => logs.push(m));
    expect(all.rows.map((r) => r.question)).toEqual(SHOP_PAIRS.slice(0, 4).map(([q]) => q));
    expect(all.goldFailed).toBe(1);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(
      new RegExp(`dev\\.json:22: item 4: the gold query fails on .*shop\\.sqlite \\(no_such_table: no such table: nowhere\\); the row is left out of eval_ex`),
    );
    const sample = await execRows({ ...cfg, train: { ...cfg.train, eval_execution_rows: 2 } }, ds.eval, () => {});
    const again = await execRows({ ...cfg, train: { ...cfg.train, eval_execution_rows: 2 } }, ds.eval, () => {});
    expect(sample.rows.length + sample.goldFailed).toBe(2);
    expect(sample.notSampled).toBe(3);
    expect(again.rows.map((r) => r.source)).toEqual(sample.rows.map((r) => r.source));
    // the gold answers score 1, other answers 0
    expect(
      await executionAccuracy(
        all.rows,
        all.rows.map((r) => r.sql),
        { keepDistinct: false },
      ),
    ).toBe(1);
    expect(await executionAccuracy(all.rows, ["SELECT 1", "DELETE FROM item", all.rows[2].sql, "nonsense"], { keepDistinct: false })).toBe(0.25);
    await expect(execRows(cfg, [{ question: "q", sql: "SELECT 1", source: "x.csv:7" }], () => {})).rejects.toThrow(
      /train\.eval_execution: no eval row has a database \(the first is x\.csv:7\)/,
    );
    const partLogs: string[] = [];
    const part = await execRows(cfg, [{ question: "q", sql: "SELECT 1", source: "x.csv:7" }, ...ds.eval], (m) => partLogs.push(m));
    expect(part).toMatchObject({ noDatabase: 1, goldFailed: 1, notSampled: 0 });
    expect(partLogs[0]).toBe("eval_execution: 1 eval rows have no database (the first: x.csv:7); they are left out of eval_ex");
  });

  test("eval_execution on data without databases: an error naming the option, before any training", async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, "d.csv"), ["text_query,sql_command", ...Array.from({ length: 10 }, (_, i) => `q${i}?,SELECT ${i}`)].join("\n") + "\n");
    const cfg = loadConfig({
      overrides: { "model.path": await testModel({ type: "f32" }), "data.path": path.join(dir, "d.csv"), "output.dir": path.join(dir, "out") },
      set: ["train.eval_execution=true", "data.split=[0.8, 0.2, 0]"],
    });
    await expect(trainSft(cfg)).rejects.toThrow(/train\.eval_execution: no eval row has a database \(the first is .*d\.csv:\d+\)/);
    expect(fs.existsSync(path.join(dir, "out"))).toBe(false);
    await expect(trainSftCore({ ...cfg, data: { ...cfg.data, db: null } })).rejects.toThrow(/train\.eval_execution: this trainSft has no decoder/);
  });
});

describe("SFT with eval_execution on Spider's layout (tiny model)", () => {
  test(
    "eval_ex at every evaluation in metrics.jsonl, the events and summary.json; best_model/ is the step the summary names; loss.svg has the eval_ex axis",
    { timeout: 120_000 },
    async () => {
      const { cfg } = await spiderConfig();
      const events: { step: number; eval_ex?: number; best_step?: number }[] = [];
      const logs: string[] = [];
      const summary = await trainSft(cfg, { onEval: (e) => events.push(e), onLog: (m) => logs.push(m) });
      const out = cfg.output.dir;
      const evals = evalLines(out);
      expect(evals.map((e) => e.step)).toEqual([0, 2, 4, 6]);
      for (const e of evals) expect(e.eval_ex).toBeGreaterThanOrEqual(0);
      expect(events.map((e) => e.eval_ex)).toEqual(evals.map((e) => e.eval_ex));
      const best = bestByEx(evals.map((e) => ({ step: e.step, ex: e.eval_ex, loss: e.loss })))!;
      expect(summary.bestModel).toEqual({ dir: path.join(out, "best_model"), step: best.step, evalEx: best.ex, evalLoss: best.loss });
      expect(events[events.length - 1].best_step).toBe(best.step);
      expect(summary.evalEx).toBe(evals[evals.length - 1].eval_ex);
      expect(summary.evalExecution).toEqual({ rows: 4, goldFailed: 0, notSampled: 0, noDatabase: 0, keepDistinct: false });
      const rec = JSON.parse(fs.readFileSync(path.join(out, "best_model", "text2sql.json"), "utf8"));
      expect(rec.steps).toBe(best.step);
      expect(fs.existsSync(path.join(out, "best_model", "adapter.gguf"))).toBe(true);
      expect(fs.existsSync(path.join(out, "eval_adapter"))).toBe(false);
      expect(JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8")).bestModel.step).toBe(best.step);
      expect(fs.readFileSync(path.join(out, "loss.svg"), "utf8")).toMatch(/eval_ex \(right axis\)/);
      expect(logs.some((m) => /eval_execution: 4 eval rows decoded greedily .*DISTINCT taken out of both queries/.test(m))).toBe(true);
    },
  );

  test(
    "with a decoder that answers the gold SQL from step 4 on: EX rises to 1 and best_model/ is step 4 (the tie at step 6 keeps the lower loss)",
    { timeout: 120_000 },
    async () => {
      const { cfg } = await spiderConfig();
      const gold = new Map(SHOP_PAIRS.map(([q, s]) => [q, s]));
      const decodeSql = async (dir: string, rows: { question: string }[]) => {
        const steps = JSON.parse(fs.readFileSync(path.join(dir, "text2sql.json"), "utf8")).steps as number;
        return rows.map((r) => (steps >= 4 ? gold.get(r.question)! : "SELECT 0"));
      };
      const summary = await trainSftCore(cfg, { decodeSql });
      const evals = evalLines(cfg.output.dir);
      expect(evals.map((e) => e.eval_ex)).toEqual([0, 0, 1, 1]);
      const want = evals[3].loss < evals[2].loss ? 6 : 4;
      expect(summary.bestModel!.step).toBe(want);
      expect(JSON.parse(fs.readFileSync(path.join(cfg.output.dir, "best_model", "text2sql.json"), "utf8")).steps).toBe(want);
    },
  );
});

// 4000 MB of results if it ran to the end, and a query that never ends. The timeout is 3 s, not 1 s:
// on a loaded 2-core machine (load average 20) the bomb's 64 MiB once took over 1 s to stream, so
// it timed out before it was too large, and the test could not tell the two bounds apart.
const BOMB = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) SELECT printf('%.*c', 200000, 'x') FROM c";
const NEVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

describe("issue 25.8: hostile predictions during eval_execution", () => {
  test("per row: a byte-bomb is too_large, a runaway query a timeout, each scoring 0; the rows around them score", { timeout: 60_000 }, async () => {
    const { cfg } = await spiderConfig(["train.eval_execution_timeout_ms=3000"]);
    const ds = await loadDataset(cfg.data);
    const { rows } = await execRows(cfg, ds.eval, () => {});
    const preds = [rows[0].sql, BOMB, NEVER, rows[3].sql];
    const t0 = performance.now();
    const scores = await executionScores(rows, preds, { keepDistinct: false, timeoutMs: 3000, maxBytes: cfg.train.eval_execution_max_bytes });
    expect(performance.now() - t0).toBeLessThan(20_000);
    expect(scores[0]).toEqual({ match: true });
    expect(scores[1]).toEqual({ match: false, category: "too_large", error: expect.stringMatching(/^result too large \(over 67108864 bytes, at row \d+\)$/) });
    expect(scores[2]).toEqual({ match: false, category: "timeout", error: "the query ran longer than 3000 ms" });
    expect(scores[3]).toEqual({ match: true });
    expect(await executionAccuracy(rows, preds, { keepDistinct: false, timeoutMs: 3000 })).toBe(0.5);
    expect(() => loadConfig({ set: ["train.eval_execution_max_bytes=0"] })).toThrow(
      /train\.eval_execution_max_bytes: expected an integer >= 1 and <= 268435456, got number 0$/,
    );
    expect(() => loadConfig({ set: ["train.eval_execution_max_bytes=1e12"] })).toThrow(
      /train\.eval_execution_max_bytes: expected an integer >= 1 and <= 268435456, got number 1000000000000$/,
    );
    expect(() => loadConfig({ set: ["train.eval_execution_timeout_ms=-5"] })).toThrow(
      /train\.eval_execution_timeout_ms: expected an integer >= 1 and <= 600000, got number -5$/,
    );
  });

  test("in an SFT run: eval_ex is 0.5 at every evaluation (2 of 4 rows hostile), the failures said, and the run finishes", { timeout: 120_000 }, async () => {
    const { cfg } = await spiderConfig(["train.max_steps=2", "train.eval_execution_timeout_ms=3000"]);
    const gold = new Map(SHOP_PAIRS.map(([q, s]) => [q, s]));
    const decodeSql = async (_dir: string, rows: { question: string }[]) => rows.map((r, i) => (i === 1 ? BOMB : i === 2 ? NEVER : gold.get(r.question)!));
    const logs: string[] = [];
    const watch = process.platform === "linux" ? watchPeak(process.pid, { everyMs: 20, killAbove: 3e9, filter: isQueryProcess }) : undefined;
    const summary = await trainSftCore(cfg, { decodeSql, onLog: (m) => logs.push(m) });
    const peak = watch?.stop();
    if (peak) {
      expect(peak.killed).toEqual([]);
      expect(peak.peak, `query child peak RSS ${(peak.peak / 1e6).toFixed(0)} MB`).toBeLessThan(1e9);
    }
    const evals = evalLines(cfg.output.dir);
    expect(evals.map((e) => [e.step, e.eval_ex])).toEqual([
      [0, 0.5],
      [2, 0.5],
    ]);
    expect(summary.evalEx).toBe(0.5);
    expect(fs.existsSync(path.join(cfg.output.dir, "final_model", "adapter.gguf"))).toBe(true);
    expect(logs.filter((m) => m.startsWith("eval_execution: step"))).toEqual([
      "eval_execution: step 0: 2 of 4 decoded queries failed (timeout 1, too_large 1); each scores 0",
      "eval_execution: step 2: 2 of 4 decoded queries failed (timeout 1, too_large 1); each scores 0",
    ]);
  });
});
