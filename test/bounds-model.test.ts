// Issue 25, items 3, 6 and 7: hyper-parameters checked against the tensors, the bearer token is compared in constant time, and --threads is
// refused by name before any model or adapter loads. Real child processes (dist/src/cli/main.js),
// real files, the real HTTP server.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { GgufValueType, readGguf, readTensorBytes, type GgufValue } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import { describe, expect, test } from "vitest";
import { authorized, startServer } from "../src/serve/server.js";
import { tempDir, testModel } from "./helpers/models.js";
import { overfitAdapter } from "./helpers/overfit.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the CLI in a child process; `limitMs` kills it (SIGKILL) if it runs on. */
function cli(args: string[], limitMs = 120_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, ["dist/src/cli/main.js", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), limitMs);
    p.on("error", reject);
    p.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

describe("issue 25.6: the bearer token is compared in constant time", () => {
  test("issue 25.6: authorized() accepts the token only, whatever the length of a wrong one", () => {
    expect(authorized("Bearer s3cret", "s3cret")).toBe(true);
    expect(authorized("Bearer s3creT", "s3cret")).toBe(false); // same length
    expect(authorized("Bearer s3cre", "s3cret")).toBe(false); // shorter
    expect(authorized("Bearer s3cret-and-more", "s3cret")).toBe(false); // longer
    expect(authorized("s3cret", "s3cret")).toBe(false);
    expect(authorized("", "s3cret")).toBe(false);
    expect(authorized(undefined, "s3cret")).toBe(false);
    expect(authorized("Bearer ünï", "ünï")).toBe(true);
  });

  test("bearer token (guard beside issue 25.6, held before too): the real server lets the right token through and refuses wrong ones of the same and other lengths", async () => {
    const model = await testModel();
    const s = await startServer({ model, port: 0, device: "cpu", threads: 1, parallel: 1, token: "s3cret", log: () => {} });
    try {
      const health = (authorization?: string) => fetch(`${s.url}/health`, { headers: authorization ? { authorization } : {} }).then((r) => r.status);
      expect(await health("Bearer s3cret")).toBe(200);
      expect(await health("Bearer s3creX")).toBe(401);
      expect(await health("Bearer s3cre")).toBe(401);
      expect(await health(`Bearer s3cret${"x".repeat(5000)}`)).toBe(401);
      expect(await health()).toBe(401);
    } finally {
      await s.close();
    }
  });
});

describe("issue 25.7: --threads is checked before the model and adapter load", () => {
  test("issue 25.7: generate --threads 20000 names --threads and its bound, not the adapter", async () => {
    const { outputDir } = await overfitAdapter();
    for (const bad of ["20000", "-1", "two", "1.5"]) {
      const r = await cli(["generate", "How many heads?", "--adapter", outputDir, "--device", "cpu", "--threads", bad]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/--threads/);
      expect(r.stderr).not.toMatch(/adapter/);
    }
    const r = await cli(["generate", "How many heads?", "--adapter", outputDir, "--device", "cpu", "--threads", "20000"]);
    expect(r.stderr).toMatch(/--threads: expected an integer from 0 \(all cores\) to \d+ \(4 per core; this machine has \d+\), got 20000/);
  });

  test("issue 25.7: serve and eval refuse --threads 20000 the same way, before loading", async () => {
    const { outputDir } = await overfitAdapter();
    const serve = await cli(["serve", "--adapter", outputDir, "--port", "0", "--device", "cpu", "--threads", "20000"]);
    expect(serve.code, serve.stderr).toBe(1);
    expect(serve.stderr).toMatch(/--threads: expected an integer from 0 \(all cores\) to \d+/);
    expect(serve.stderr).not.toMatch(/adapter|listening/);
    const ev = await cli(["eval", "--adapter", outputDir, "--data", "nowhere.json", "--output", path.join(outputDir, "never"), "--threads", "20000"]);
    expect(ev.code, ev.stderr).toBe(1);
    expect(ev.stderr).toMatch(/--threads: expected an integer from 0 \(all cores\) to \d+/);
  });

  test("issue 25.7: the API's SqlGenerator.load names threads, not the adapter", async () => {
    const { SqlGenerator } = await import("../src/serve/generate.js");
    const { outputDir } = await overfitAdapter();
    await expect(SqlGenerator.load({ adapter: outputDir, device: "cpu", threads: 20000 })).rejects.toThrow(/^threads: expected an integer from 0/);
  });
});

/** A copy of the GGUF `src` with some metadata replaced and, optionally, some tensors left out. */
function mutated(src: string, file: string, set: Record<string, GgufValue>, drop: (name: string) => boolean = () => false): string {
  const g = readGguf(src);
  const md = new Map(g.metadata);
  for (const [k, v] of Object.entries(set)) md.set(k, v);
  const tensors = g.tensors.filter((t) => !drop(t.name)).map((t) => ({ name: t.name, type: t.type, ne: t.ne, data: readTensorBytes(g, t) }));
  writeGguf(file, { metadata: md, tensors });
  return file;
}

describe("issue 25.3: hyper-parameters are checked against the tensors and llama.cpp's limits first", () => {
  test("issue 25.3: block_count 1e9, a missing block and a wrong embedding_length: train, info and generate exit 1 naming the key, the tensors and the file", async () => {
    const model = await testModel();
    const dir = tempDir("t2s-hparams-");
    const u32 = (value: number): GgufValue => ({ type: GgufValueType.UINT32, value });
    const nEmbd = Number(readGguf(model).metadata.get("llama.embedding_length")!.value);
    const cases: [string, RegExp][] = [
      [
        mutated(model, path.join(dir, "layers1e9.gguf"), { "llama.block_count": u32(1_000_000_000) }),
        /layers1e9\.gguf: llama\.block_count is 1000000000 but the file holds \d+ blk\.N tensor groups \(and llama\.cpp allows at most LLAMA_MAX_LAYERS = 512\)/,
      ],
      [
        mutated(model, path.join(dir, "noblk1.gguf"), {}, (n) => n.startsWith("blk.1.")),
        /noblk1\.gguf: llama\.block_count is \d+ but the file (holds \d+ blk\.N tensor groups|has no blk\.1\.\* tensors)/,
      ],
      [
        mutated(model, path.join(dir, "embd.gguf"), { "llama.embedding_length": u32(nEmbd * 2) }),
        new RegExp(`embd\\.gguf: llama\\.embedding_length is ${nEmbd * 2} but token_embd\\.weight has shape \\[${nEmbd}, \\d+\\]`),
      ],
    ];
    const csv = path.join(dir, "d.csv");
    const rows = Array.from({ length: 24 }, (_, i) => `How many rows in table t${i}?,SELECT count(*) FROM t${i}`);
    fs.writeFileSync(csv, ["text_query,sql_command", ...rows].join("\n") + "\n");
    for (const [file, message] of cases) {
      const out = path.join(dir, `out-${path.basename(file)}`);
      for (const args of [
        ["train", "--model", file, "--data", csv, "--output", out, "--threads", "1"],
        ["info", file],
        ["generate", "How many?", "--model", file, "--device", "cpu", "--threads", "1"],
      ]) {
        const r = await cli(args);
        expect(r.code, `${args[0]} ${file}: ${r.stderr}`).toBe(1);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).not.toMatch(/bad_alloc|GGML_ASSERT/);
      }
      expect(fs.existsSync(out)).toBe(false);
    }
  }, 300_000);
});
