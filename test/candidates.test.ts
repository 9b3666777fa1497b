// Execution-guided candidates end to end. A tiny model is trained on one question with seven
// answers: twice a query that never ends (a count over a cross join of three 1,000-row tables:
// SQL the schema's grammar allows), once a query naming a column the database lacks, and once
// each four queries that return the French singers. The model learns the never-ending one as its
// mode, so greedy decoding answers with it; sampled candidates mostly say one of the others. With
// the database, candidates are decoded under its schema's grammar (the default), so the column it
// lacks is never named; the never-ending candidate is killed at the timeout, the database file is
// unchanged, and the vote answers with the French singers. The voting rules themselves (majority,
// ties, failures, result equality) are checked on hand-written candidates against a real database.
import Database from "better-sqlite3";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { disposeGenerators, generateSql, SqlGenerator } from "../src/serve/generate.js";
import { describeCandidates, listDatabases, voteOnCandidates, type DecodedCandidate } from "../src/serve/candidates.js";
import { startServer } from "../src/serve/server.js";
import { evaluateSql } from "../src/eval/eval.js";
import { closeAll, runReadOnly } from "../src/sql/query-process.js";
import { trainSft } from "../src/train/trainer.js";
import { tempDir, testModel } from "./helpers/models.js";

const NEVER_ENDS = "SELECT count(*) FROM hall JOIN seat JOIN ticket";
/** names a column the database lacks (singer has no nation) */
const WRONG = "SELECT name FROM singer WHERE nation = 'France'";
const QUESTION = "Which singers are from France?";
const RIGHT = [
  "SELECT name FROM singer WHERE country = 'France'",
  "SELECT T1.name FROM singer AS T1 WHERE T1.country = 'France'",
  "SELECT DISTINCT name FROM singer WHERE country = 'France'",
  "SELECT singer.name FROM singer WHERE singer.country = 'France'",
];
const FRENCH = [["Edith"], ["Yves"]];
const TIMEOUT_MS = 1000;

let dir: string;
let db: string;
const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

let trained: Promise<string> | undefined;
/** Trains (once) the adapter whose greedy answer never ends; returns the trainer's output folder. */
function votingAdapter(): Promise<string> {
  trained ??= (async () => {
    const csv = path.join(dir, "pairs.csv");
    const rows = [NEVER_ENDS, NEVER_ENDS, WRONG, ...RIGHT].map((sql) => `"${QUESTION}","${sql}"`);
    fs.writeFileSync(csv, ["text_query,sql_command", ...rows].join("\n") + "\n");
    const summary = await trainSft({
      model: { path: await testModel({ nEmbd: 128, nHead: 4, nHeadKv: 2, nFf: 256 }) },
      lora: { r: 16, alpha: 32, dropout: 0, target_modules: ["q", "k", "v", "o", "gate", "up", "down"] },
      // a short template keeps the rows short; the whole set in every batch: each step sees all seven rows
      data: { path: csv, split: [1, 0, 0], template: "{question} SQL:" },
      train: { max_steps: 80, batch_size: 7, grad_accum: 1, lr: 1e-2, lr_schedule: "cosine", eval_every: 0, save_every: 0, threads: 2 },
      output: { dir: path.join(dir, "out") },
    });
    return summary.outputDir;
  })();
  return trained;
}

beforeAll(() => {
  dir = tempDir("t2s-candidates-");
  fs.mkdirSync(path.join(dir, "databases", "concerts"), { recursive: true });
  db = path.join(dir, "databases", "concerts", "concerts.sqlite");
  const d = new Database(db);
  d.exec(`CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT);
    CREATE TABLE head (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);
    INSERT INTO singer VALUES (1, 'Edith', 'France'), (2, 'Joe', 'USA'), (3, 'Yves', 'France');
    INSERT INTO head VALUES (1, 'Ann', 60), (2, 'Bob', 56), (3, 'Cid', 70), (4, 'Dan', 45);
    CREATE TABLE hall (id INTEGER PRIMARY KEY);
    CREATE TABLE seat (id INTEGER PRIMARY KEY, hall_id INTEGER REFERENCES hall(id));
    CREATE TABLE ticket (id INTEGER PRIMARY KEY, seat_id INTEGER REFERENCES seat(id));
    WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000) INSERT INTO hall SELECT x FROM n;
    INSERT INTO seat SELECT id, id FROM hall;
    INSERT INTO ticket SELECT id, id FROM seat;`);
  d.close();
});

afterAll(async () => {
  await disposeGenerators();
  await closeAll();
});

describe("execution-guided candidates on a trained adapter", () => {
  test("greedy never ends; it is killed at the timeout, the database is unchanged, and the vote answers with the French singers", async () => {
    const outputDir = await votingAdapter();
    const before = sha256(db);
    const g = await SqlGenerator.load({ adapter: outputDir, device: "cpu", parallel: 1, threads: 1 });
    try {
      // the greedy answer alone is the never-ending query
      const whole = await g.generate({ question: QUESTION });
      expect(whole.sql).toBe(`${NEVER_ENDS};`);
      expect(whole.truncated).toBeUndefined();
      // a budget 2 tokens short: decoded freely the SQL is cut there; under the database's grammar
      // the answer is the longest prefix that, closed by the grammar's shortest completion, fits
      // the budget (here a complete one: no close); both say so
      const maxTokens = whole.tokens - 2;
      const cut = await g.generate({ question: QUESTION, maxTokens });
      expect(cut, JSON.stringify(cut)).toMatchObject({
        truncated: "budget",
        note: `the token budget (${maxTokens} tokens) ran out before the statement ended; the SQL is cut there`,
      });
      expect(NEVER_ENDS.startsWith(cut.sql.slice(0, -1)) && cut.sql.length < NEVER_ENDS.length + 1).toBe(true);
      const closed = await g.generate({ question: QUESTION, db, candidates: 1, maxTokens, queryTimeoutMs: TIMEOUT_MS });
      expect(closed, JSON.stringify(closed)).toMatchObject({
        truncated: "budget",
        constrained: true,
        valid: true,
        sql: "SELECT count(*) FROM hall JOIN seat;",
      });
      expect(closed.note).toMatch(
        new RegExp(
          `^the token budget \\(${maxTokens} tokens\\) ran out before the statement ended; answered with its first \\d+ tokens, a complete statement$`,
        ),
      );
      // every budget: the constrained answer keeps at least the longest complete statement that the
      // budget's tokens held (a close never replaces more of what the model wrote)
      const completes = ["SELECT count(*) FROM hall", "SELECT count(*) FROM hall JOIN seat", NEVER_ENDS];
      for (let k = 3; k < whole.tokens; k++) {
        const held = (await g.generate({ question: QUESTION, maxTokens: k })).sql.slice(0, -1);
        const answer = await g.generate({ question: QUESTION, db, candidates: 1, maxTokens: k, queryTimeoutMs: TIMEOUT_MS });
        const kept = completes.filter((c) => held.startsWith(c)).at(-1) ?? "";
        expect(answer.valid, `${k}: ${JSON.stringify(answer)}`).toBe(true);
        expect(answer.sql.length, `${k} tokens held ${JSON.stringify(held)}: ${JSON.stringify(answer)}`).toBeGreaterThan(kept.length);
      }
      const r = await g.generate({ question: QUESTION, db, candidates: 16, queryTimeoutMs: TIMEOUT_MS });
      const c = r.candidates!;
      const why = JSON.stringify(c, null, 1);
      expect(c.n, why).toBe(16);
      expect(c.list[0], why).toMatchObject({ greedy: true, sql: `${NEVER_ENDS};`, ok: false, category: "timeout" });
      expect(c.timedOut, why).toBeGreaterThanOrEqual(1);
      expect(c.errors.timeout, why).toBe(c.timedOut);
      expect(c.killed, why).toBeGreaterThanOrEqual(1);
      expect(c.killed, why).toBeLessThanOrEqual(c.timedOut);
      expect(r.ms, why).toBeGreaterThanOrEqual(TIMEOUT_MS);
      // the answer is one of the right queries, and its result is the one most candidates share
      expect(
        RIGHT.map((s) => `${s};`),
        why,
      ).toContain(r.sql);
      expect(r.valid).toBe(true);
      expect(c.changed).toBe(true);
      expect(c.votes[0].sql).toBe(r.sql);
      expect(c.votes[0].votes, why).toBeGreaterThan(c.votes[1]?.votes ?? 0);
      expect(c.votes[0].greedy).toBe(false);
      const rows = await runReadOnly(db, r.sql);
      expect(rows.ok && [...rows.rows].sort()).toEqual(FRENCH);
      // every sampled candidate has a log-probability; the counts add up
      expect(c.list.slice(1).every((x) => typeof x.logprob === "number" && x.logprob < 0)).toBe(true);
      expect(c.failed).toBe(c.list.filter((x) => !x.ok).length);
      expect(c.votes.reduce((s, v) => s + v.votes, 0) + c.failed).toBe(16);
      expect(describeCandidates(c)).toMatch(
        /^16 candidates \(\d+ distinct\) on concerts\.sqlite: \d+ failed \(.*timeout \d.*\); \d+ quer(y|ies) killed at the 1000 ms timeout; votes per result \d+.*; the vote overrode the greedy answer$/,
      );
      // the same seeds give the same candidates
      const again = await g.generate({ question: QUESTION, db, candidates: 16, queryTimeoutMs: TIMEOUT_MS });
      expect(again.candidates!.list.map((x) => x.sql)).toEqual(c.list.map((x) => x.sql));
      // decoded under the database's grammar, no candidate names a column the database lacks or
      // fails to parse; decoded freely, the same seeds give candidates that name the missing column
      expect(r.constrained).toBe(true);
      expect(
        c.list.filter((x) => !x.ok && x.category !== "timeout"),
        why,
      ).toEqual([]);
      const free = await g.generate({ question: QUESTION, db, candidates: 16, queryTimeoutMs: TIMEOUT_MS, constrain: false });
      expect(free.constrained).toBeUndefined();
      expect(free.candidates!.list.filter((x) => x.sql === `${WRONG};`).length, JSON.stringify(free.candidates!.list, null, 1)).toBeGreaterThan(0);
      expect(free.candidates!.errors.no_such_column).toBeGreaterThan(0);
    } finally {
      await g.dispose();
    }
    expect(sha256(db)).toBe(before);
    expect(fs.readdirSync(path.dirname(db))).toEqual(["concerts.sqlite"]); // no journal or WAL files either
  });

  test("generateSql({ question, db, candidates }) and its errors", async () => {
    const outputDir = await votingAdapter();
    const r = await generateSql({ question: QUESTION, adapter: outputDir, device: "cpu", threads: 1, db, candidates: 4, queryTimeoutMs: TIMEOUT_MS });
    expect(r.candidates!.n).toBe(4);
    expect(r.candidates!.list[0].category).toBe("timeout");
    const base = { question: QUESTION, adapter: outputDir, device: "cpu" as const, threads: 1 };
    await expect(generateSql({ ...base, candidates: 4 })).rejects.toThrow("candidates: running candidates needs a database (db)");
    await expect(generateSql({ ...base, db, candidates: 0 })).rejects.toThrow("candidates: expected an integer from 1 to 32, got 0");
    await expect(generateSql({ ...base, db, candidates: 33 })).rejects.toThrow("candidates: expected an integer from 1 to 32, got 33");
    await expect(generateSql({ ...base, db, candidates: 2, temperature: 0 })).rejects.toThrow(/temperature: the sampled candidates need a temperature > 0/);
    await expect(generateSql({ ...base, db: path.join(dir, "nope.sqlite") })).rejects.toThrow("db: file not found:");
    await expect(generateSql({ ...base, db: path.join(dir, "pairs.csv") })).rejects.toThrow(/db: .*pairs\.csv is not a SQLite database/);
    await expect(generateSql({ ...base, db: dir })).rejects.toThrow(/^db: .*: not a regular file \(it is a folder/);
  });
});

describe("the vote (hand-written candidates, a real database)", () => {
  const cand = (sql: string, logprob: number | null = -1): DecodedCandidate => ({ sql, tokens: 5, greedy: logprob === null, logprob });
  const opts = { timeoutMs: TIMEOUT_MS, temperature: 1, seed: 1 };

  test("a greedy answer with a minority result loses to the result most candidates share", async () => {
    const r = await voteOnCandidates(
      db,
      [
        cand("SELECT count(*) FROM head WHERE age >= 56;", null), // 3
        cand("SELECT count(*) FROM head WHERE age > 56;", -2), // 2
        cand("SELECT sum(age > 56) FROM head;", -0.5), // 2, the most likely of its result
        cand("SELECT count(*) FROM head WHERE age >= 56;", -1),
        cand("SELECT (SELECT count(*) FROM head WHERE age > 56);", -3),
      ],
      opts,
    );
    expect(r.ok).toBe(true);
    expect(r.best.sql).toBe("SELECT sum(age > 56) FROM head;");
    expect(r.report.votes).toEqual([
      { votes: 3, sql: "SELECT sum(age > 56) FROM head;", rows: 1, greedy: false },
      { votes: 2, sql: "SELECT count(*) FROM head WHERE age >= 56;", rows: 1, greedy: true },
    ]);
    expect(r.report).toMatchObject({ n: 5, distinct: 4, failed: 0, timedOut: 0, killed: 0, changed: true });
    expect(r.report.list.map((x) => x.vote)).toEqual([1, 0, 0, 1, 0]);
  });

  test("ties go to the greedy candidate's result, else to the most likely candidate's", async () => {
    const tie = await voteOnCandidates(
      db,
      [cand("SELECT name FROM head WHERE age > 65;", null), cand("SELECT name FROM singer WHERE country = 'USA';", -0.1)],
      opts,
    );
    expect(tie.best.sql).toBe("SELECT name FROM head WHERE age > 65;");
    expect(tie.report.changed).toBe(false);
    // the greedy candidate failed: of two results with one vote each, the higher log-probability wins
    const noGreedy = await voteOnCandidates(
      db,
      [cand("SELECT nme FROM head;", null), cand("SELECT name FROM head WHERE age > 65;", -3), cand("SELECT name FROM singer WHERE country = 'USA';", -0.7)],
      opts,
    );
    expect(noGreedy.best.sql).toBe("SELECT name FROM singer WHERE country = 'USA';");
    expect(noGreedy.report).toMatchObject({ failed: 1, errors: { no_such_column: 1 }, changed: true });
  });

  test("results compare as row multisets with columns in any order, rows in order only when both queries order them", async () => {
    const r = await voteOnCandidates(
      db,
      [
        cand("SELECT name, age FROM head ORDER BY age;", null),
        cand("SELECT age, name FROM head;", -1), // same rows, other column order, unordered: same result
        cand("SELECT name, age FROM head ORDER BY age DESC;", -1), // ordered both ways: another result from the first
      ],
      opts,
    );
    expect(r.report.list.map((x) => x.vote)).toEqual([0, 0, 1]);
  });

  test("every candidate failing answers with the greedy one and says so; a never-ending one is killed and the others still run", async () => {
    const before = sha256(db);
    const t0 = performance.now();
    const r = await voteOnCandidates(
      db,
      [cand("SELECT nme FROM head;", null), cand(`${NEVER_ENDS};`, -1), cand("DELETE FROM head;", -1), cand("DROP TABLE head;", -1), cand("", -1)],
      opts,
    );
    expect(performance.now() - t0).toBeGreaterThanOrEqual(TIMEOUT_MS);
    expect(r.ok).toBe(false);
    expect(r.best.sql).toBe("SELECT nme FROM head;");
    expect(r.error).toMatch(/^every candidate failed \(.*\); the greedy one: no such column: nme$/);
    expect(r.report).toMatchObject({ failed: 5, timedOut: 1, killed: 1, votes: [], changed: false, errors: { no_such_column: 1, timeout: 1, not_a_query: 3 } });
    expect(describeCandidates(r.report)).toMatch(/5 failed .*; 1 query killed at the 1000 ms timeout; no candidate ran$/);
    // the query process was replaced after the kill
    expect(await runReadOnly(db, "SELECT count(*) FROM head")).toEqual({ ok: true, columns: ["count(*)"], rows: [[4]] });
    expect(sha256(db)).toBe(before);
  });
});

describe("serve: a request picks a database by name among those given at startup", () => {
  test("candidates over HTTP, and hostile db / candidates fields", async () => {
    const outputDir = await votingAdapter();
    expect(() => listDatabases([path.join(dir, "pairs.csv")])).toThrow(/--db: .*pairs\.csv is not a SQLite database/);
    expect(() => listDatabases([db], path.join(dir, "databases"))).toThrow(/two databases are named "concerts"/);
    const lines: string[] = [];
    const server = await startServer({
      adapter: outputDir,
      port: 0,
      device: "cpu",
      threads: 1,
      parallel: 1,
      dbDir: path.join(dir, "databases"),
      candidates: 16,
      queryTimeoutMs: TIMEOUT_MS,
      log: (l) => lines.push(l),
    });
    try {
      const post = async (body: unknown) => {
        const res = await fetch(`${server.url}/generate_sql`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      };
      const ok = await post({ question: QUESTION, db: "concerts" });
      expect(ok.status).toBe(200);
      expect(RIGHT.map((s) => `${s};`)).toContain(ok.body.sql);
      expect(ok.body).toMatchObject({ valid: true, candidates: { n: 16, changed: true } });
      expect(JSON.stringify(ok.body)).not.toContain(dir); // no server paths in answers
      expect(
        lines.some((l) => /^generate_sql: db concerts: 16 candidates .* killed at the 1000 ms timeout; .*the vote overrode the greedy answer$/.test(l)),
      ).toBe(true);
      expect(lines.some((l) => l.includes("databases 1 (concerts); up to 16 candidates per request"))).toBe(true);
      const fewer = await post({ question: QUESTION, db: "concerts", candidates: 1 });
      expect(fewer.body).toMatchObject({ sql: `${NEVER_ENDS};`, valid: false, candidates: { n: 1, timedOut: 1 } });

      for (const name of ["../concerts", db, "concerts/concerts.sqlite", "__proto__", "constructor", "concerts.sqlite"]) {
        const r = await post({ question: QUESTION, db: name });
        expect(r.status, name).toBe(400);
        expect(r.body.error, name).toBe(`db: unknown database ${JSON.stringify(name)}; this server has: concerts`);
      }
      expect((await post({ question: QUESTION, candidates: 2 })).body.error).toBe(
        "candidates: the candidates run on a database; send db too (this server has: concerts)",
      );
      expect((await post({ question: QUESTION, db: "concerts", candidates: 17 })).body.error).toBe(
        "candidates: this server runs at most 16 per request (serve --candidates), got 17",
      );
      for (const bad of [0, 33, 2.5, "3", null]) expect((await post({ question: QUESTION, db: "concerts", candidates: bad })).status).toBe(400);
      expect((await post({ question: QUESTION, db: "" })).body.error).toBe("db: must not be empty");
      expect((await post({ question: QUESTION, db: "x".repeat(129) })).status).toBe(400);
      const health = (await (await fetch(`${server.url}/health`)).json()) as Record<string, unknown>;
      expect(health).toMatchObject({ databases: ["concerts"], candidates: 16 });
    } finally {
      await server.close();
    }
  });
});

describe("CLI and eval", () => {
  test("text2sql generate --db --candidates prints the voted SQL and an account of the candidates", async () => {
    const outputDir = await votingAdapter();
    const args = ["dist/src/cli/main.js", "generate", QUESTION, "--adapter", outputDir, "--device", "cpu", "--threads", "1"];
    const r = execFileSync(process.execPath, [...args, "--db", db, "--candidates", "16", "--query-timeout", "1000", "--json"], {
      encoding: "utf8",
      stdio: "pipe",
    });
    const json = JSON.parse(r) as { sql: string; candidates: { n: number } };
    expect(RIGHT.map((s) => `${s};`)).toContain(json.sql);
    expect(json.candidates.n).toBe(16);
    let err = "";
    try {
      execFileSync(process.execPath, [...args, "--candidates", "4"], { encoding: "utf8", stdio: "pipe" });
    } catch (e) {
      err = String((e as { stderr: string }).stderr);
    }
    expect(err).toContain("--candidates / --query-timeout / --query-max-bytes: give --db, the database the candidates run on");
    const help = execFileSync(process.execPath, ["dist/src/cli/main.js", "generate", "--help"], { encoding: "utf8" });
    expect(help).toMatch(/--candidates <n>/);
    expect(help).toMatch(/--db <file>/);
  });

  test("eval --candidates: voted answers score, and the greedy ones' execution accuracy is reported next to them", async () => {
    const outputDir = await votingAdapter();
    const data = path.join(dir, "dev.json");
    fs.writeFileSync(data, JSON.stringify([{ db_id: "concerts", question: QUESTION, query: RIGHT[0] }]));
    const out = path.join(dir, "eval");
    const r = await evaluateSql({
      data,
      dbDir: path.join(dir, "databases"),
      adapter: outputDir,
      output: out,
      threads: 1,
      parallel: 1,
      candidates: 16,
      timeoutMs: TIMEOUT_MS,
    });
    expect(r.executionAccuracy).toBe(1);
    expect(r.candidates).toMatchObject({ perQuestion: 16, examples: 1, noDatabase: 0, changed: 1, executionAccuracy: 1, greedyExecutionAccuracy: 0 });
    expect(r.candidates!.timedOut).toBeGreaterThanOrEqual(1);
    const row = JSON.parse(fs.readFileSync(r.output.predictions, "utf8").trim()) as { candidates: { greedy: string; greedyExecution: boolean } };
    expect(row.candidates).toMatchObject({ greedy: `${NEVER_ENDS};`, greedyExecution: false });
    await expect(evaluateSql({ data, adapter: outputDir, output: out, candidates: 4 })).rejects.toThrow(
      "candidates: voting runs the candidates on the databases; give --db-dir",
    );
  });
});
