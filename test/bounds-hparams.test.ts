// Issue 25, item 3 (the rest): every hyper-parameter of a GGUF against the tensors it holds and
// llama.cpp's limits (head counts, head sizes, rope dimensions, feed-forward length, context
// length) before any native loader sees the file. Each hostile value goes through the real CLI
// (train, info, generate) on a tiny GGUF written here; each is an exit 1 naming the key, what was
// expected and what arrived, never llama.cpp's abort (exit 134) or std::bad_alloc.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { GgufValueType, readGguf, readTensorBytes, type GgufValue } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import { tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

/** Runs the CLI in a child process, killed (SIGKILL) past `limitMs`. */
function cli(args: string[], limitMs = 60_000): Promise<{ code: number | null; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, ["dist/src/cli/main.js", ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), limitMs);
    p.on("error", reject);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, ms: performance.now() - t0 });
    });
  });
}

/** A copy of the GGUF `src` with some metadata replaced. */
function mutated(src: string, file: string, set: Record<string, GgufValue>): string {
  const g = readGguf(src);
  const md = new Map(g.metadata);
  for (const [k, v] of Object.entries(set)) md.set(k, v);
  writeGguf(file, { metadata: md, tensors: g.tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne, data: readTensorBytes(g, t) })) });
  return file;
}

const u32 = (value: number): GgufValue => ({ type: GgufValueType.UINT32, value });

describe("issue 25.3: head counts, head sizes, rope, feed-forward and context length are checked against the tensors first", () => {
  test("issue 25.3: each hostile hyper-parameter makes train, info and generate exit 1 naming the key, what was expected and what arrived", async () => {
    // the test model: n_embd 64, 4 heads (2 KV) of 16, rope 16, n_ff 128, 2 blocks
    const model = await testModel();
    const md = readGguf(model).metadata;
    expect([64, 4, 2, 16, 128].map(String)).toEqual(
      ["embedding_length", "attention.head_count", "attention.head_count_kv", "rope.dimension_count", "feed_forward_length"].map((k) =>
        String(md.get(`llama.${k}`)!.value),
      ),
    );
    const dir = tempDir("t2s-hparams2-");
    const cases: [string, Record<string, GgufValue>, RegExp][] = [
      ["heads3", { "llama.attention.head_count": u32(3) }, /llama\.attention\.head_count is 3; expected a divisor of llama\.embedding_length \(64\)/],
      [
        "heads1e9",
        { "llama.attention.head_count": u32(1e9) },
        /llama\.attention\.head_count is 1000000000; expected a divisor of llama\.embedding_length \(64\)/,
      ],
      ["kv3", { "llama.attention.head_count_kv": u32(3) }, /llama\.attention\.head_count_kv is 3; expected a divisor of llama\.attention\.head_count \(4\)/],
      ["kv8", { "llama.attention.head_count_kv": u32(8) }, /llama\.attention\.head_count_kv is 8; expected a divisor of llama\.attention\.head_count \(4\)/],
      [
        "heads8",
        { "llama.attention.head_count": u32(8), "llama.rope.dimension_count": u32(8) },
        /tensor blk\.0\.attn_k\.weight has shape \[64, 32\] but the hyperparameters expect \[64, 16\] \(llama\.attention\.head_count 8/,
      ],
      [
        "kv4",
        { "llama.attention.head_count_kv": u32(4) },
        /tensor blk\.0\.attn_k\.weight has shape \[64, 32\] but the hyperparameters expect \[64, 64\] \(.*head_count_kv 4/,
      ],
      ["keylen1e6", { "llama.attention.key_length": u32(1e6) }, /llama\.attention\.key_length is 1000000; expected 1 to 1024/],
      ["keylen32", { "llama.attention.key_length": u32(32) }, /tensor blk\.0\.attn_q\.weight has shape \[64, 64\] but the hyperparameters expect \[64, 128\]/],
      ["vallen8", { "llama.attention.value_length": u32(8) }, /tensor blk\.0\.attn_v\.weight has shape \[64, 32\] but the hyperparameters expect \[64, 16\]/],
      ["rope1000", { "llama.rope.dimension_count": u32(1000) }, /llama\.rope\.dimension_count is 1000; expected an even number from 2 to the head size \(16\)/],
      ["rope15", { "llama.rope.dimension_count": u32(15) }, /llama\.rope\.dimension_count is 15; expected an even number from 2 to the head size \(16\)/],
      ["rope0", { "llama.rope.dimension_count": u32(0) }, /llama\.rope\.dimension_count is 0; expected an even number from 2 to the head size \(16\)/],
      [
        "ff1e9",
        { "llama.feed_forward_length": u32(1e9) },
        /tensor blk\.0\.ffn_gate\.weight has shape \[64, 128\] but the hyperparameters expect \[64, 1000000000\] \(llama\.feed_forward_length 1000000000\)/,
      ],
      ["ctx4e9", { "llama.context_length": u32(4e9) }, /llama\.context_length is 4000000000; expected 1 to 16777216 \(2\^24\)/],
    ];
    const csv = path.join(dir, "d.csv");
    const rows = Array.from({ length: 24 }, (_, i) => `How many rows in table t${i}?,SELECT count(*) FROM t${i}`);
    fs.writeFileSync(csv, ["text_query,sql_command", ...rows].join("\n") + "\n");
    const outcomes: string[] = [];
    for (const [name, set, message] of cases) {
      const file = mutated(model, path.join(dir, `${name}.gguf`), set);
      const out = path.join(dir, `out-${name}`);
      for (const args of [
        ["train", "--model", file, "--data", csv, "--output", out, "--threads", "1"],
        ["info", file],
        ["generate", "How many?", "--model", file, "--device", "cpu", "--threads", "1", "--max-tokens", "4"],
      ]) {
        const r = await cli(args);
        outcomes.push(`${name} ${args[0]}: exit ${r.code} in ${Math.round(r.ms)} ms: ${r.stderr.trim().split("\n").pop()}`);
        expect(r.code, `${args[0]} ${name}: ${r.stderr}`).toBe(1);
        expect(r.stderr).toMatch(new RegExp(`${name}\\.gguf: `));
        expect(r.stderr).toMatch(message);
        expect(r.stderr).not.toMatch(/bad_alloc|GGML_ASSERT/);
      }
      expect(fs.existsSync(out)).toBe(false);
    }
    console.log(outcomes.join("\n"));
  }, 600_000);

  test("issue 25.3 (guard): the test model and a Qwen3-style file with key_length pass the checks", async () => {
    const { checkModelFile } = await import("../src/formats/model-check.js");
    const model = await testModel();
    expect(() => checkModelFile(model)).not.toThrow();
    const dir = tempDir("t2s-hparams3-");
    // key_length 16 and value_length 16 written out: the same shapes, so the same file is fine
    const same = mutated(model, path.join(dir, "kl16.gguf"), { "llama.attention.key_length": u32(16), "llama.attention.value_length": u32(16) });
    expect(() => checkModelFile(same)).not.toThrow();
  });
});
