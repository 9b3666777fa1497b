// GRPO: the group advantages (TRL's sample std, zero-variance groups, NaN and empty groups
// refused), the token weights against finite differences of the per-token objective, the rl:
// config, and trainGrpo end to end on the tiny test model with a test-made Spider layout
// (node-llama-cpp sampling, execution reward, samples.jsonl's fields, a failing gold query said
// with its line and counted, final_model/ in both formats, resume from a checkpoint), best_model/
// by eval_ex (ties keep the earlier step; kept across a resume), and rl.constrained (every sample
// under the schema's grammar, its bias said).
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { formatGrpoSummary, trainGrpo } from "../src/index.js";
import { loadConfig } from "../src/train/config.js";
import { groupAdvantages, surrogateWeights } from "../src/train/grpo-loss.js";
import { CONSTRAINED_BIAS, executionReward, Rng, trainGrpo as trainGrpoCore } from "../src/train/grpo.js";
import { seededSample as trainExSample } from "../src/train/data.js";
import { sampleWithAdapter } from "../src/serve/grpo-sampler.js";
import { closeAll } from "../src/sql/query-process.js";
import { makeShopDb, makeSpiderLayout, SHOP_PAIRS } from "./helpers/db-layouts.js";
import { tempDir, testModel } from "./helpers/models.js";

afterAll(() => closeAll());

describe("group advantages", () => {
  test("(r − mean) / (sample std + 1e-4); none drops the division; all-equal gives 0", () => {
    const a = groupAdvantages([1, 0, 0, 1], "group");
    const std = Math.sqrt((4 * 0.25) / 3);
    expect(a.std).toBeCloseTo(std, 12);
    expect(a.advantages[0]).toBeCloseTo(0.5 / (std + 1e-4), 12);
    expect(a.advantages[1]).toBeCloseTo(-0.5 / (std + 1e-4), 12);
    expect(groupAdvantages([1, 0, 0, 1], "none").advantages).toEqual([0.5, -0.5, -0.5, 0.5]);
    const z = groupAdvantages([1, 1, 1], "group");
    expect(z.zeroVariance).toBe(true);
    expect(z.advantages).toEqual([0, 0, 0]);
  });
  test("a NaN reward and an empty group are errors naming the group and the completion", () => {
    expect(() => groupAdvantages([1, NaN], "group", "step 3, group 1")).toThrow(/step 3, group 1: reward of completion 1 is NaN/);
    expect(() => groupAdvantages([], "group", "step 3, group 0")).toThrow(/step 3, group 0: needs at least 2 completions.*got 0/);
  });
});

describe("token weights", () => {
  test("w_t is the derivative of the per-token objective by logp_t, clipped branch included", () => {
    const old = [-1.2, -0.3, -2.0, -0.7];
    const ref = [-1.0, -0.5, -1.5, -0.9];
    const logp = [-1.0, -0.35, -2.5, -0.5]; // rho: 1.22 (clipped for A > 0), 0.95, 0.61 (clipped for A < 0), 1.22
    for (const advantage of [1.3, -0.8]) {
      const c = { promptIds: [1], completionIds: [5, 6, 7, 8], oldLogps: old, refLogps: ref, advantage };
      const o = { clipEps: 0.2, klCoef: 0.3 };
      const w = surrogateWeights(logp, c, o);
      expect(w.clipped).toBeGreaterThan(0);
      const h = 1e-6;
      for (let t = 0; t < logp.length; t++) {
        const up = logp.slice();
        const dn = logp.slice();
        up[t] += h;
        dn[t] -= h;
        const fd = (surrogateWeights(up, c, o).objective - surrogateWeights(dn, c, o).objective) / (2 * h);
        expect(Math.abs(w.weights[t] - fd)).toBeLessThan(1e-6);
      }
    }
  });
});

describe("rl config", () => {
  test("defaults as issue 27 gives them; bad values name the key", () => {
    const cfg = loadConfig({ overrides: { "model.path": "builtin:tiny", "data.path": "x.csv" } });
    expect(cfg.method).toBe("sft");
    expect(cfg.rl).toEqual({
      prompts_per_step: 4,
      group_size: 8,
      temperature: 1,
      max_new_tokens: 128,
      constrained: false,
      valid_sql_reward: 0,
      scale_rewards: "group",
      clip_eps: 0.2,
      kl_coef: 0,
      updates_per_batch: 1,
      reference: "init",
    });
    const base = { "model.path": "builtin:tiny", "data.path": "x.csv" };
    expect(() => loadConfig({ overrides: base, set: ["rl.group_size=1"] })).toThrow(/rl\.group_size/);
    expect(() => loadConfig({ overrides: base, set: ["rl.scale_rewards=batch"] })).toThrow(/rl\.scale_rewards/);
    expect(() => loadConfig({ overrides: base, set: ["method=ppo"] })).toThrow(/method/);
    expect(() => loadConfig({ overrides: base, set: ["rl.temperature=0"] })).toThrow(/rl\.temperature/);
    expect(() => loadConfig({ overrides: base, set: ["rl.constrained=maybe"] })).toThrow(/rl\.constrained/);
    expect(loadConfig({ overrides: base, set: ["rl.constrained=true"] }).rl.constrained).toBe(true);
  });
  test("train_ex's sample of the training rows: fixed by the seed, in file order; null or a size at least the rows' takes all", () => {
    const rows = Array.from({ length: 20 }, (_, i) => i);
    const a = trainExSample(rows, 5, 42);
    expect(a).toHaveLength(5);
    expect(trainExSample(rows, 5, 42)).toEqual(a);
    expect([...a].sort((x, y) => x - y)).toEqual(a);
    expect(trainExSample(rows, 5, 43)).not.toEqual(a);
    expect(trainExSample(rows, null, 42)).toEqual(rows);
    expect(trainExSample(rows, 20, 42)).toEqual(rows);
  });

  test("the RNG is a pure function of its state", () => {
    const a = new Rng(42);
    const xs = [a.next(), a.next()];
    const b = new Rng(new Rng(42).state);
    expect([b.next(), b.next()]).toEqual(xs);
  });
});

describe("trainGrpo on the tiny model", () => {
  const failing: [string, string] = ["Which colours are there?", "SELECT colour FROM item"];
  async function setup(out: string, set: string[] = [], dev: [string, string][] = SHOP_PAIRS.slice(0, 2)) {
    const s = makeSpiderLayout({ train: [...SHOP_PAIRS.slice(0, 3), failing], dev });
    return {
      s,
      options: {
        model: { path: await testModel({ type: "f32" }) },
        output: { dir: out },
        data: { train_path: s.train, eval_path: s.dev, tables_path: s.tables, max_seq_len: 160, template: "[INST] {schema} Question: {question} [/INST]" },
        lora: { target_modules: ["q_proj", "v_proj"], dropout: 0.05 },
        train: { max_steps: 2, lr: 1e-3, threads: 2, eval_every: 1, save_every: 1, seed: 7 },
        rl: { prompts_per_step: 2, group_size: 3, max_new_tokens: 6, kl_coef: 0.1, updates_per_batch: 2 },
      },
      set,
    };
  }

  test("samples, scores and updates; samples.jsonl has the audit fields; a failing gold is said with its line and counted", async () => {
    const out = path.join(tempDir(), "grpo");
    const { options } = await setup(out);
    const logs: string[] = [];
    const steps: number[] = [];
    const sum = await trainGrpo(options, { onLog: (m) => logs.push(m), onStep: (e) => steps.push(e.rewardMean) });
    expect(sum.steps).toBe(2);
    expect(sum.rows).toEqual({ used: 3, noDatabase: 0, goldFailed: 1 });
    const goldLogs = logs.filter((l) => /the gold query fails/.test(l));
    expect(goldLogs, logs.join("\n")).toHaveLength(1);
    expect(goldLogs[0]).toMatch(/train\.json:\d+: item 3: the gold query fails .*no such column/);
    expect(logs.some((l) => /lora\.dropout 0\.05 is set to 0/.test(l))).toBe(true);
    const lines = fs
      .readFileSync(path.join(out, "samples.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2 * 2 * 3);
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(["step", "group", "prompt_ids", "completion_ids", "old_logps", "ref_logps", "reward", "advantage", "sql"]);
      expect(l.prompt_ids[0]).toBe(1); // BOS
      expect(l.completion_ids.length).toBeGreaterThan(0);
      expect(l.completion_ids.length).toBeLessThanOrEqual(6);
      expect(l.old_logps).toHaveLength(l.completion_ids.length);
      expect(l.ref_logps).toHaveLength(l.completion_ids.length);
      expect(l.old_logps.every((x: number) => Number.isFinite(x) && x <= 0)).toBe(true);
    }
    // step 1's policy is the reference (init = the fresh adapter): old and ref agree
    for (const l of lines.filter((x) => x.step === 1)) l.old_logps.forEach((x: number, i: number) => expect(Math.abs(x - l.ref_logps[i])).toBeLessThan(1e-5));
    for (const f of ["adapter.gguf", "adapter_model.safetensors"]) expect(fs.existsSync(path.join(out, "final_model", f))).toBe(true);
    const metrics = fs
      .readFileSync(path.join(out, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const train = metrics.filter((m) => m.type === "train");
    expect(train).toHaveLength(2);
    for (const m of train) {
      expect(m.seconds.sampling).toBeGreaterThan(0);
      expect(typeof m.eval_ex).toBe("number");
      expect(typeof m.train_ex).toBe("number");
      expect(m.zeroVarianceGroups).toBeGreaterThanOrEqual(0);
    }
    // best_model/: the first evaluation with the highest eval_ex in metrics.jsonl, both formats, named by the summary
    const evals = metrics.filter((m) => typeof m.eval_ex === "number");
    expect(evals.map((m) => m.step)).toEqual([0, 1, 2]);
    const top = evals.find((m) => m.eval_ex === Math.max(...evals.map((e) => e.eval_ex)));
    expect(sum.bestModel).toEqual({ dir: path.join(out, "best_model"), step: top.step, evalEx: top.eval_ex });
    expect(JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8")).bestModel.step).toBe(top.step);
    expect(JSON.parse(fs.readFileSync(path.join(out, "best_model", "text2sql.json"), "utf8")).steps).toBe(top.step);
    for (const f of ["adapter.gguf", "adapter_model.safetensors", "adapter_config.json"]) expect(fs.existsSync(path.join(out, "best_model", f))).toBe(true);
    expect(fs.existsSync(path.join(out, "eval_adapter"))).toBe(false);
    expect(evals[evals.length - 1].best_step).toBe(top.step);
    // unconstrained (rl.constrained false): said, no bias line, and the random model's samples are not all SELECTs
    expect(logs.some((l) => /completions per step, temperature 1, unconstrained;/.test(l))).toBe(true);
    expect(logs.some((l) => l.startsWith("constrained sampling:"))).toBe(false);
    expect(lines.some((l) => !/^select\b/i.test(l.sql))).toBe(true);
    // train_ex before the first step (the step-0 eval line) and after the last; the reward of the first steps beside that of the last
    const start = metrics.find((m) => m.type === "eval" && m.step === 0);
    expect(typeof start.train_ex).toBe("number");
    expect(sum.trainEx).toEqual({ rows: 3, start: start.train_ex, end: train[1].train_ex });
    expect(sum.rewardMeanFirst).toBeCloseTo((train[0].rewardMean + train[1].rewardMean) / 2, 12);
  }, 240_000);

  test("best_model/ by eval_ex: the best step is kept, a tie keeps the earlier; a resumed run keeps the earlier best when later evals are worse", async () => {
    // a decoder whose eval_ex after step k is EX[k]: 0, 1, 0.5, 1 (a tie with step 1), 0; sampling is node-llama-cpp's
    const EX = [0, 1, 0.5, 1, 0];
    // the decode holds the 2 eval rows first (SHOP_PAIRS[0..1]), then train_ex's training rows (answered wrong)
    const decodeSql = async (dir: string, rows: { question: string }[]) => {
      const k = JSON.parse(fs.readFileSync(path.join(dir, "text2sql.json"), "utf8")).steps as number;
      return rows.map((r, i) => (i < 2 && i < EX[k] * 2 ? SHOP_PAIRS.find(([q]) => q === r.question)![1] : "SELECT 0"));
    };
    const hooks = { decodeSql, sample: sampleWithAdapter };
    const opts = async (out: string) => {
      const { options } = await setup(out);
      return { ...options, train: { ...options.train, max_steps: 4 }, rl: { prompts_per_step: 1, group_size: 2, max_new_tokens: 4 } };
    };
    const a = path.join(tempDir(), "a");
    const sa = await trainGrpoCore(await opts(a), hooks);
    const evals = (d: string) =>
      fs
        .readFileSync(path.join(d, "metrics.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
        .filter((m) => typeof m.eval_ex === "number")
        .map((m) => [m.step, m.eval_ex]);
    expect(evals(a)).toEqual(EX.map((x, k) => [k, x]));
    expect(sa.bestModel).toEqual({ dir: path.join(a, "best_model"), step: 1, evalEx: 1 });
    expect(JSON.parse(fs.readFileSync(path.join(a, "best_model", "text2sql.json"), "utf8")).steps).toBe(1);
    expect(JSON.parse(fs.readFileSync(path.join(a, "checkpoints", "checkpoint-4", "grpo_state.json"), "utf8")).best).toEqual({ step: 1, ex: 1 });
    expect(formatGrpoSummary(sa)).toMatch(/best model +.*best_model: step 1, eval_ex 100\.0%/);

    // the same run stopped after step 2 and resumed: steps 3 (a tie) and 4 (worse) keep step 1's best_model/
    const b = path.join(tempDir(), "b");
    const ac = new AbortController();
    const ob = await opts(b);
    const stopped = await trainGrpoCore(
      { ...ob, train: { ...ob.train, save_every: 0 } },
      { ...hooks, signal: ac.signal, onStep: (e) => e.step === 2 && ac.abort() },
    );
    expect(stopped.interrupted).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(b, "checkpoints", "checkpoint-2", "grpo_state.json"), "utf8")).best).toEqual({ step: 1, ex: 1 });
    const logs: string[] = [];
    const sb = await trainGrpoCore(ob, { ...hooks, resume: true, onLog: (m) => logs.push(m) });
    expect(logs.some((l) => /resuming from .*checkpoint-2 \(GRPO step 2; best_model\/: step 1, eval_ex 1\)/.test(l))).toBe(true);
    expect(evals(b)).toEqual(evals(a));
    expect(sb.bestModel).toEqual({ dir: path.join(b, "best_model"), step: 1, evalEx: 1 });
    expect(fs.readFileSync(path.join(b, "best_model", "adapter.gguf")).equals(fs.readFileSync(path.join(a, "best_model", "adapter.gguf")))).toBe(true);
    expect(fs.existsSync(path.join(b, "best_model", "adapter_model.safetensors"))).toBe(true);
  }, 300_000);

  test("rl.constrained: every sample is under the schema's grammar (it starts with SELECT) and the bias is said once", async () => {
    const out = path.join(tempDir(), "grpo");
    const { options } = await setup(out);
    const logs: string[] = [];
    const opts = { ...options, train: { ...options.train, max_steps: 1 }, rl: { ...options.rl, max_new_tokens: 12, constrained: true } };
    const sum = await trainGrpo(opts, { onLog: (m) => logs.push(m) });
    expect(sum.steps).toBe(1);
    const lines = fs
      .readFileSync(path.join(out, "samples.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2 * 3);
    for (const l of lines) expect(l.sql).toMatch(/^select\b/i);
    expect(logs.filter((l) => l === CONSTRAINED_BIAS)).toHaveLength(1);
    expect(CONSTRAINED_BIAS).toMatch(/^constrained sampling: the engine's log-probabilities are those of the unmasked model, so the ratio\/KL are biased/);
    expect(logs.some((l) => /completions per step, temperature 1, constrained to the schema's grammar;/.test(l))).toBe(true);
  }, 240_000);

  test("train_ex is greedy EX on the training rows (a seeded sample of train.eval_execution_rows), eval_ex on the eval rows", async () => {
    const out = path.join(tempDir(), "grpo-train-ex");
    const { options } = await setup(out);
    // a decoder that answers only the training-only question (SHOP_PAIRS[2]; the eval rows are SHOP_PAIRS[0..1]) with its gold SQL
    const gold = new Map([SHOP_PAIRS[2]]);
    const asked: string[][] = [];
    const decodeSql = async (_dir: string, rows: { question: string }[]) => (
      asked.push(rows.map((r) => r.question)),
      rows.map((r) => gold.get(r.question) ?? "SELECT 1")
    );
    const all = await trainGrpo({ ...options, train: { ...options.train, max_steps: 1, eval_every: 0, save_every: 0 } }, { decodeSql });
    expect(asked).toHaveLength(2); // before the first step and after the last
    expect(asked[0].slice(0, 2)).toEqual([SHOP_PAIRS[0][0], SHOP_PAIRS[1][0]]); // the eval rows, then the 3 training rows (in the trainer's order)
    const trainOrder = asked[0].slice(2);
    expect([...trainOrder].sort()).toEqual(
      SHOP_PAIRS.slice(0, 3)
        .map(([q]) => q)
        .sort(),
    );
    expect(all.evalEx).toBe(0);
    expect(all.trainEx).toEqual({ rows: 3, start: 1 / 3, end: 1 / 3 });
    const sampled = await trainGrpo(
      { ...options, output: { dir: out + "-2" }, train: { ...options.train, max_steps: 1, eval_every: 0, save_every: 0, eval_execution_rows: 2 } },
      { decodeSql },
    );
    const want = trainExSample(trainOrder, 2, 7);
    expect(asked[2].slice(2)).toEqual(want);
    expect(sampled.trainEx).toEqual({ rows: 2, start: want.includes(SHOP_PAIRS[2][0]) ? 0.5 : 0, end: want.includes(SHOP_PAIRS[2][0]) ? 0.5 : 0 });
  }, 240_000);

  test("an eval row whose gold query fails is said with its line and left out of eval_ex, as eval_execution leaves it out", async () => {
    const out = path.join(tempDir(), "grpo-eval-gold");
    const { options } = await setup(out, [], [SHOP_PAIRS[0], failing, SHOP_PAIRS[1]]);
    const gold = new Map(SHOP_PAIRS);
    const asked: string[][] = [];
    const decodeSql = async (_dir: string, rows: { question: string }[]) => (
      asked.push(rows.map((r) => r.question)),
      rows.map((r) => gold.get(r.question) ?? "SELECT 1")
    );
    const logs: string[] = [];
    const sum = await trainGrpo(
      { ...options, train: { ...options.train, max_steps: 1, eval_every: 0, save_every: 0 } },
      { decodeSql, onLog: (m) => logs.push(m) },
    );
    expect(asked[0].slice(0, 2)).toEqual([SHOP_PAIRS[0][0], SHOP_PAIRS[1][0]]);
    expect(sum.evalEx).toBe(1);
    const said = logs.filter((l) => l.startsWith("eval_execution:") && /the gold query fails/.test(l));
    expect(said, logs.join("\n")).toHaveLength(1);
    expect(said[0]).toMatch(/dev\.json:\d+: item 1: the gold query fails on .*shop\.sqlite \(no_such_column: .*\); the row is left out of eval_ex$/);
  }, 240_000);

  test("resume from checkpoint-1 gives the same samples and adapter as the uninterrupted run", async () => {
    const a = path.join(tempDir(), "a");
    const b = path.join(tempDir(), "b");
    const sa = await setup(a);
    await trainGrpo(sa.options);
    const sb = await setup(b);
    await trainGrpo({ ...sb.options, train: { ...sb.options.train, max_steps: 1 } });
    fs.rmSync(path.join(b, "final_model"), { recursive: true });
    await trainGrpo(sb.options, { resume: true });
    const read = (d: string) =>
      fs
        .readFileSync(path.join(d, "samples.jsonl"), "utf8")
        .split("\n")
        .map((l) => (l ? JSON.parse(l) : null))
        .filter(Boolean)
        .map((l) => [l.step, l.completion_ids, l.reward]);
    expect(read(b)).toEqual(read(a));
    expect(fs.readFileSync(path.join(b, "final_model", "adapter.gguf")).equals(fs.readFileSync(path.join(a, "final_model", "adapter.gguf")))).toBe(true);
  }, 300_000);

  test("an abort (Ctrl-C) finishes the step, saves a checkpoint with the RNG state and says interrupted; --resume finishes the run", async () => {
    const out = path.join(tempDir(), "grpo");
    const { options } = await setup(out);
    const ac = new AbortController();
    const opts = { ...options, train: { ...options.train, save_every: 0 } };
    const sum = await trainGrpo(opts, { signal: ac.signal, onStep: () => ac.abort() });
    expect(sum.interrupted).toBe(true);
    expect(sum.steps).toBe(1);
    expect(sum.resumeCommand).toMatch(/--resume$/);
    expect(fs.existsSync(path.join(out, "final_model"))).toBe(false);
    const ck = path.join(out, "checkpoints", "checkpoint-1");
    expect(typeof JSON.parse(fs.readFileSync(path.join(ck, "grpo_state.json"), "utf8")).rng).toBe("number");
    const done = await trainGrpo(opts, { resume: true });
    expect(done.interrupted).toBe(false);
    expect(done.steps).toBe(2);
  }, 240_000);

  test("rl.constrained on rows without a schema is an error naming the key and the row", async () => {
    const dir = tempDir();
    makeShopDb(path.join(dir, "shop.sqlite"));
    fs.writeFileSync(path.join(dir, "d.csv"), ["text_query,sql_command,db", ...SHOP_PAIRS.map(([q, sql]) => `"${q}","${sql}",shop.sqlite`)].join("\n") + "\n");
    const options = {
      model: { path: await testModel({ type: "f32" }) },
      output: { dir: path.join(dir, "out") },
      data: { path: path.join(dir, "d.csv"), split: [1, 0, 0] },
      train: { max_steps: 1, threads: 2 },
      rl: { constrained: true },
    };
    await expect(trainGrpo(options)).rejects.toThrow(/^rl\.constrained: .*d\.csv:\d+ has no schema, and constrained sampling uses the schema's grammar/);
    expect(fs.existsSync(path.join(dir, "out"))).toBe(false);
  }, 60_000);

  test("a non-SQLite database is an error naming the row", async () => {
    const out = path.join(tempDir(), "grpo");
    const { s, options } = await setup(out);
    fs.writeFileSync(s.db, "not a database at all, just text\n".repeat(100));
    options.data = { ...options.data, db_dir: path.join(s.dir, "database") } as typeof options.data;
    await expect(trainGrpo(options)).rejects.toThrow(/train\.json:\d+.*(not a SQLite|SQLite)/);
  }, 60_000);

  test("a missing database is an error naming the row", async () => {
    const out = path.join(tempDir(), "grpo");
    const { s, options } = await setup(out);
    fs.rmSync(s.db);
    options.data = { ...options.data, db_dir: path.join(s.dir, "database") } as typeof options.data;
    await expect(trainGrpo(options)).rejects.toThrow(/train\.json:\d+.*shop\.sqlite|shop\.sqlite.*train\.json/);
  }, 60_000);
});

test("the execution reward: 1 for the gold's result, 0 for a wrong or failing query, + valid_sql_reward when it runs", async () => {
  const s = makeSpiderLayout();
  const cfg = loadConfig({ overrides: { "model.path": "builtin:tiny", "data.path": "x.csv" }, set: ["rl.valid_sql_reward=0.1"] });
  const row = { db: s.db, sql: "SELECT count(*) FROM item" };
  expect((await executionReward(row, "SELECT count(id) FROM item", cfg)).reward).toBeCloseTo(1.1, 12);
  expect((await executionReward(row, "SELECT count(*) FROM sale", cfg)).reward).toBeCloseTo(0.1, 12);
  expect((await executionReward(row, "SELECT nope FROM item", cfg)).reward).toBe(0);
  expect((await executionReward(row, "DELETE FROM item", cfg)).reward).toBe(0);
});

test("the execution reward goes through the bounded runner: a byte bomb and a runaway query score 0 and the next reward still runs (issue 25.8)", async () => {
  const s = makeSpiderLayout();
  const cfg = loadConfig({
    overrides: { "model.path": "builtin:tiny", "data.path": "x.csv" },
    set: ["rl.valid_sql_reward=0.1", "train.eval_execution_max_bytes=1048576", "train.eval_execution_timeout_ms=1000"],
  });
  const row = { db: s.db, sql: "SELECT count(*) FROM item" };
  // 2,000 rows of 20 kB: 40 MB, past the 1 MiB cap set above (under the default 64 MiB it would run)
  const bomb = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT printf('%.*c', 20000, 'x') FROM n";
  expect(await executionReward(row, bomb, cfg)).toEqual({ reward: 0, runs: false });
  const runaway = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
  const t0 = Date.now();
  expect(await executionReward(row, runaway, cfg)).toEqual({ reward: 0, runs: false });
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect((await executionReward(row, "SELECT count(id) FROM item", cfg)).reward).toBeCloseTo(1.1, 12);
}, 30_000);
