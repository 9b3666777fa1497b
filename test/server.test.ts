// `text2sql serve`: the real server on 127.0.0.1 with a tiny model and an overfit adapter. Every
// route, every bad request, 50 concurrent requests, the queue cap, the token, and a graceful stop.
import { spawn } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startServer, type RunningServer } from "../src/serve/server.js";
import { overfitAdapter, PAIRS, SCHEMA } from "./helpers/overfit.js";
import { tempDir } from "./helpers/models.js";
import { HEADS, makeServeDatabases } from "./helpers/serve-dbs.js";
import { resultRows } from "../src/serve/result-rows.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

async function post(url: string, body: unknown, headers: Record<string, string> = { "content-type": "application/json" }) {
  const res = await fetch(`${url}/generate_sql`, { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

describe("serve", () => {
  let server: RunningServer;
  let adapter: string;
  const logs: string[] = [];
  beforeAll(async () => {
    adapter = (await overfitAdapter()).outputDir;
    server = await startServer({ adapter, port: 0, device: "cpu", threads: 1, parallel: 4, log: (l) => logs.push(l) });
  });
  afterAll(() => server?.close());

  test("the log shows the address, the model, the adapter, the device and the time to get ready", () => {
    const text = logs.join("\n");
    expect(text).toContain(`listening on ${server.url}`);
    expect(text).toMatch(/model +\/.*\.gguf/);
    expect(text).toMatch(/adapter +\/.*final_model\/adapter\.gguf/);
    expect(text).toMatch(/device +cpu/);
    expect(text).toMatch(/ready in \d+\.\d s/);
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test("POST /generate_sql returns the SQL, and with a schema its validity", async () => {
    const r = await post(server.url, { question: PAIRS[3][0] });
    expect(r.status).toBe(200);
    expect(r.json.sql).toBe(`${PAIRS[3][1]};`);
    expect(r.json.ms).toBeGreaterThan(0);
    expect(r.json.valid).toBeUndefined();
    const v = await post(server.url, { question: PAIRS[0][0], schema: SCHEMA });
    // with a schema, decoding is constrained to it by default (the trained answer is unchanged)
    expect(v.json).toMatchObject({ sql: `${PAIRS[0][1]};`, valid: true, constrained: true });
    const free = await post(server.url, { question: PAIRS[0][0], schema: SCHEMA, constrain: false });
    expect(free.json).toMatchObject({ sql: `${PAIRS[0][1]};`, valid: true, constrained: false });
    const bad = await post(server.url, { question: PAIRS[0][0], schema: "CREATE TABLE other (x INT);", constrain: false });
    expect(bad.json).toMatchObject({ valid: false, error: "no such table: head" });
  });

  test("GET /health and GET /", async () => {
    const h = await fetch(`${server.url}/health`);
    const body = (await h.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: "ok", device: "cpu", adapter: expect.stringMatching(/adapter\.gguf$/), model: expect.stringMatching(/\.gguf$/) });
    expect(body.requestsServed).toBeGreaterThanOrEqual(0);
    expect(body.uptimeS).toBeGreaterThan(0);
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await page.text()).toMatch(/<html|<!doctype html/i);
  });

  test("bad requests get clear answers, never a crash", async () => {
    expect(await post(server.url, {})).toMatchObject({ status: 400, json: { error: "question: required" } });
    expect(await post(server.url, { question: "" })).toMatchObject({ status: 400, json: { error: "question: must not be empty" } });
    expect(await post(server.url, { question: "   " })).toMatchObject({ status: 400, json: { error: "question: must not be empty" } });
    expect(await post(server.url, { question: 42 })).toMatchObject({ status: 400, json: { error: "question: must be string" } });
    expect(await post(server.url, { question: "q?", extra: 1 })).toMatchObject({
      status: 400,
      json: { error: expect.stringMatching(/^extra: unknown field/) },
    });
    expect(await post(server.url, { question: "q?", constrain: "yes" })).toMatchObject({ status: 400, json: { error: "constrain: must be boolean" } });
    expect(await post(server.url, { question: "q?", constrain: true })).toMatchObject({
      status: 400,
      json: { error: expect.stringMatching(/^constrain: constrained decoding needs a schema/) },
    });
    expect(await post(server.url, '{"question": ')).toMatchObject({ status: 400, json: { error: expect.stringMatching(/^body: malformed JSON/) } });
    expect(await post(server.url, "[1, 2]")).toMatchObject({ status: 400, json: { error: expect.stringMatching(/^body: send a JSON object/) } });
    expect(await post(server.url, { question: "q?", schema: "CREATE TABL x" })).toMatchObject({
      status: 400,
      json: { error: expect.stringMatching(/^schema: /) },
    });
    expect(await post(server.url, "question=hi", { "content-type": "text/plain" })).toMatchObject({
      status: 415,
      json: { error: "content-type: send application/json" },
    });
    expect(await post(server.url, "question=hi", { "content-type": "application/x-www-form-urlencoded" })).toMatchObject({ status: 415 });
    expect(await post(server.url, { question: "x".repeat(70 * 1024) })).toMatchObject({ status: 413, json: { error: "request body over 64 KiB" } });
    const nf = await fetch(`${server.url}/nope`);
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as { error: string }).error).toMatch(/no route GET \/nope/);
    expect((await fetch(`${server.url}/generate_sql`)).status).toBe(404);
    // still serving after all that
    expect((await post(server.url, { question: PAIRS[1][0] })).json.sql).toBe(`${PAIRS[1][1]};`);
  });

  test("50 concurrent requests all come back correct", async () => {
    const rss0 = process.memoryUsage().rss;
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => post(server.url, { question: PAIRS[i % 4][0] })));
    rs.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(r.json.sql, `request ${i}`).toBe(`${PAIRS[i % 4][1]};`);
    });
    expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * 1024 * 1024);
  });
});

describe("serve limits and security", () => {
  test("a full queue answers 503 with Retry-After; the requests that were taken all succeed", async () => {
    const { outputDir } = await overfitAdapter();
    const s = await startServer({ adapter: outputDir, port: 0, device: "cpu", threads: 1, parallel: 1, maxQueue: 2, log: () => {} });
    try {
      const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => post(s.url, { question: PAIRS[i % 4][0] })));
      const busy = rs.filter((r) => r.status === 503);
      const ok = rs.filter((r) => r.status === 200);
      expect(busy.length).toBeGreaterThan(0);
      expect(ok.length).toBeGreaterThanOrEqual(3);
      expect(busy[0].headers.get("retry-after")).toBe("1");
      expect(busy[0].json.error).toMatch(/^busy: /);
      for (const r of ok) expect(PAIRS.map(([, q]) => `${q};`)).toContain(r.json.sql);
    } finally {
      await s.close();
    }
  });

  test("--token: the API wants Authorization: Bearer; the page stays public; binding elsewhere warns", async () => {
    const { outputDir } = await overfitAdapter();
    const logs: string[] = [];
    const s = await startServer({ adapter: outputDir, host: "0.0.0.0", port: 0, device: "cpu", threads: 1, log: (l) => logs.push(l) });
    await s.close();
    expect(logs.join("\n")).toMatch(/WARNING: bound to 0\.0\.0\.0 with no authentication/);
    const t = await startServer({ adapter: outputDir, port: 0, device: "cpu", threads: 1, token: "s3cret", log: () => {} });
    try {
      expect((await post(t.url, { question: PAIRS[0][0] })).status).toBe(401);
      expect((await post(t.url, { question: PAIRS[0][0] }, { "content-type": "application/json", authorization: "Bearer nope" })).status).toBe(401);
      const ok = await post(t.url, { question: PAIRS[0][0] }, { "content-type": "application/json", authorization: "Bearer s3cret" });
      expect(ok.json.sql).toBe(`${PAIRS[0][1]};`);
      expect((await fetch(`${t.url}/health`)).status).toBe(401);
      expect((await fetch(`${t.url}/`)).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  test("SIGTERM stops taking requests, finishes those in flight and exits 0", async () => {
    const { outputDir } = await overfitAdapter();
    const p = spawn(process.execPath, ["dist/src/cli/main.js", "serve", "--adapter", outputDir, "--port", "0", "--device", "cpu", "--threads", "1"], {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    const url = await new Promise<string>((resolve, reject) => {
      p.stderr.on("data", (d) => {
        err += d;
        const m = /listening on (http:\/\/\S+)/.exec(err);
        if (m && /ready in/.test(err)) resolve(m[1]);
      });
      p.on("close", () => reject(new Error(`server exited early: ${err}`)));
    });
    // SIGTERM only once the server reports the request in flight (a fixed delay raced the
    // request's arrival on a loaded machine); a request that finished first is sent again
    let inFlight!: ReturnType<typeof post>;
    let seen = false;
    for (let attempt = 0; attempt < 10 && !seen; attempt++) {
      let done = false;
      inFlight = post(url, { question: PAIRS[2][0] });
      void inFlight.then(
        () => (done = true),
        () => (done = true),
      );
      while (!done && !seen) {
        const h = (await (await fetch(`${url}/health`)).json()) as { inFlight: number };
        seen = h.inFlight >= 1 && !done;
      }
    }
    expect(seen).toBe(true);
    p.kill("SIGTERM");
    const code = await new Promise<number | null>((resolve) => p.on("close", resolve));
    expect((await inFlight).json.sql).toBe(`${PAIRS[2][1]};`);
    expect(code).toBe(0);
    expect(err).toMatch(/SIGTERM: finishing requests in flight/);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});

describe("serve with databases: the answer's rows", () => {
  let s: RunningServer;
  let dbs: ReturnType<typeof makeServeDatabases>;
  const logs: string[] = [];
  beforeAll(async () => {
    const { outputDir } = await overfitAdapter();
    dbs = makeServeDatabases(tempDir("t2s-serve-dbs-"));
    s = await startServer({
      adapter: outputDir,
      port: 0,
      device: "cpu",
      threads: 1,
      db: [dbs.school, dbs.runaway, dbs.bomb],
      candidates: 2,
      queryTimeoutMs: 500,
      queryMaxBytes: 1_000_000,
      log: (l) => logs.push(l),
    });
  });
  afterAll(() => s?.close());

  test("GET /health lists the databases and the candidates maximum", async () => {
    expect(await (await fetch(`${s.url}/health`)).json()).toMatchObject({ databases: ["school", "runaway", "bomb"], candidates: 2 });
  });

  test("with db, the answer carries the chosen SQL's first 20 rows (blobs by their length); without, no rows", async () => {
    const r = await post(s.url, { question: PAIRS[1][0], db: "school", candidates: 1 });
    expect(r.status).toBe(200);
    expect(r.json.sql).toBe(`${PAIRS[1][1]};`);
    expect(r.json.rows).toEqual({
      columns: ["name", "age"],
      rows: HEADS.slice(0, 20).map(([name, age]) => [typeof name === "string" ? name : { blob: name.length }, age]),
      count: 30,
      truncated: true,
    });
    const one = await post(s.url, { question: PAIRS[0][0], db: "school", candidates: 2 });
    expect(one.json).toMatchObject({
      sql: `${PAIRS[0][1]};`,
      valid: true,
      rows: { columns: ["count(*)"], rows: [[HEADS.filter(([, a]) => a > 56).length]], count: 1, truncated: false },
    });
    expect((one.json.candidates as { n: number }).n).toBe(2);
    expect((await post(s.url, { question: PAIRS[0][0], schema: SCHEMA })).json.rows).toBeUndefined();
  });

  test("a runaway query and a byte bomb give rows.error; the server stays up", async () => {
    const runaway = await post(s.url, { question: PAIRS[0][0], schema: SCHEMA, constrain: false, db: "runaway", candidates: 1 });
    expect(runaway.status).toBe(200);
    expect(runaway.json).toMatchObject({ sql: `${PAIRS[0][1]};`, valid: false, rows: { category: "timeout", error: expect.stringMatching(/500 ms/) } });
    const bomb = await post(s.url, { question: PAIRS[1][0], schema: SCHEMA, constrain: false, db: "bomb", candidates: 1 });
    expect(bomb.status).toBe(200);
    expect(bomb.json).toMatchObject({
      sql: `${PAIRS[1][1]};`,
      valid: false,
      rows: { category: "too_large", error: expect.stringMatching(/^result too large \(over 1000000 bytes, at row \d+\)$/) },
    });
    expect(logs.join("\n")).toMatch(/db runaway: the answer's rows: timeout: /);
    // still serving, the good database too
    expect((await post(s.url, { question: PAIRS[0][0], db: "school", candidates: 1 })).json.rows).toMatchObject({ count: 1 });
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
  });

  test("resultRows runs the SQL in the bounded runner, unless the candidates already saw it fail", async () => {
    const bounds = { timeoutMs: 300, maxRows: 100_000, maxBytes: 1_000_000 };
    expect(await resultRows(dbs.runaway, PAIRS[0][1], bounds)).toEqual({ category: "timeout", error: "the query ran longer than 300 ms" });
    expect(await resultRows(dbs.bomb, PAIRS[1][1], bounds)).toMatchObject({
      category: "too_large",
      error: expect.stringMatching(/^result too large \(over 1000000 bytes/),
    });
    expect(await resultRows(dbs.school, "SELECT name FROM head WHERE age > 100", bounds)).toEqual({ columns: ["name"], rows: [], count: 0, truncated: false });
    expect(await resultRows(dbs.school, "DELETE FROM head", bounds)).toMatchObject({ category: "not_a_query" });
    // a failure the candidates met is the answer; nothing runs (this file does not exist)
    const ran = [{ sql: "SELECT 1", ok: false, category: "timeout", error: "the query ran longer than 300 ms" }];
    expect(await resultRows(path.join(path.dirname(dbs.school), "nope.sqlite"), "SELECT 1", bounds, ran)).toEqual({
      category: "timeout",
      error: "the query ran longer than 300 ms",
    });
    expect(await resultRows(path.join(path.dirname(dbs.school), "nope.sqlite"), "SELECT 2", bounds, ran)).toMatchObject({
      category: "error",
      error: expect.stringMatching(/^database not found/),
    });
  });
});
