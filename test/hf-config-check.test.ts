// Issue 25, item 4: an HF checkpoint's config.json is checked against its weights' headers before
// `model convert` plans or allocates anything. A config claiming 10^9 layers over a file of two
// once ran 35 s and took 3 GB before "Map maximum size exceeded"; each hostile size below now fails
// within seconds, the real CLI child's peak RSS small, the message naming config.json's key.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { makeHfCheckpoint } from "../scripts/make-hf-checkpoint.js";
import { watchPeak } from "./helpers/child-memory.js";
import { tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
let work: string;
let hfDir: string;

beforeAll(async () => {
  work = tempDir("t2s-hf-config-");
  hfDir = path.join(work, "tiny-hf");
  // n_embd 64, 4 heads (2 KV) of 16, n_ff 128, 2 layers, vocabulary 32000
  await makeHfCheckpoint({ gguf: await testModel({ type: "f32" }), dir: hfDir, dtype: "f32" });
}, 120_000);

/** A copy of the checkpoint folder with some config.json keys replaced. */
function withConfig(name: string, set: Record<string, unknown>): string {
  const dir = path.join(work, name);
  fs.cpSync(hfDir, dir, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, ...set }, null, 2));
  return dir;
}

/** `text2sql model convert` in a child process: exit code, stderr, wall time and peak RSS (VmHWM). */
function convert(dir: string): Promise<{ code: number | null; stderr: string; ms: number; peak: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const out = path.join(dir, "out.gguf");
    const p = spawn(process.execPath, ["dist/src/cli/main.js", "model", "convert", dir, "--output", out], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    const watch = watchPeak(process.pid, { killAbove: 2e9, filter: (pid) => pid === p.pid });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
    p.on("error", reject);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, ms: performance.now() - t0, peak: watch.stop().peak });
    });
  });
}

describe("issue 25.4: config.json is checked against the safetensors headers before converting", () => {
  test("issue 25.4: each hostile config.json size makes model convert fail within 10 s, under 400 MB, naming the key", async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["layers1e9", { num_hidden_layers: 1e9 }, /"num_hidden_layers" is 1000000000 but llama\.cpp allows at most LLAMA_MAX_LAYERS = 512/],
      ["layers3", { num_hidden_layers: 3 }, /"num_hidden_layers" is 3 but the weights hold 2 layer groups \(model\.layers\.N\.\*\)/],
      ["layers1", { num_hidden_layers: 1 }, /"num_hidden_layers" is 1 but the weights hold 2 layer groups/],
      ["hidden128", { hidden_size: 128 }, /"hidden_size" is 128 but model\.embed_tokens\.weight has shape \[32000, 64\]/],
      ["vocab999", { vocab_size: 999 }, /"vocab_size" is 999 but model\.embed_tokens\.weight has shape \[32000, 64\]/],
      [
        "ff1e9",
        { intermediate_size: 1e9 },
        /"intermediate_size" is 1000000000 but model\.layers\.0\.mlp\.gate_proj\.weight has shape \[128, 64\].*expect \[1000000000, 64\]/,
      ],
      [
        "heads8",
        { num_attention_heads: 8 },
        /"num_key_value_heads" is 2 but model\.layers\.0\.self_attn\.k_proj\.weight has shape \[32, 64\].*num_attention_heads 8.*expect \[16, 64\]/,
      ],
      ["heads1e9", { num_attention_heads: 1e9 }, /"num_attention_heads" is 1000000000 but hidden_size is 64: at most that many heads/],
      ["kv3", { num_key_value_heads: 3 }, /"num_key_value_heads" is 3 but it must divide num_attention_heads \(4\)/],
      ["kv4", { num_key_value_heads: 4 }, /"num_key_value_heads" is 4 but model\.layers\.0\.self_attn\.k_proj\.weight has shape \[32, 64\].*expect \[64, 64\]/],
      ["headdim32", { head_dim: 32 }, /"head_dim" is 32 but model\.layers\.0\.self_attn\.q_proj\.weight has shape \[64, 64\].*expect \[128, 64\]/],
      ["headdim1e9", { head_dim: 1e9 }, /"head_dim" is 1000000000 but at most 1024 is accepted/],
      ["ctx1e12", { max_position_embeddings: 1e12 }, /"max_position_embeddings" is 1000000000000 but at most 16777216 \(2\^24\) is accepted/],
    ];
    const outcomes: string[] = [];
    for (const [name, set, message] of cases) {
      const dir = withConfig(name, set);
      const r = await convert(dir);
      outcomes.push(`${name}: exit ${r.code} in ${Math.round(r.ms)} ms, peak ${Math.round(r.peak / 1e6)} MB: ${r.stderr.trim().split("\n").pop()}`);
      expect(r.code, `${name}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`${name}/config\\.json: `));
      expect(r.stderr).toMatch(message);
      expect(r.ms).toBeLessThan(10_000);
      expect(r.peak).toBeGreaterThan(0);
      expect(r.peak).toBeLessThan(400e6);
      expect(fs.existsSync(path.join(dir, "out.gguf"))).toBe(false);
    }
    console.log(outcomes.join("\n"));
  }, 300_000);

  test("issue 25.4 (guard): the untouched checkpoint still converts", async () => {
    const r = await convert(withConfig("plain", {}));
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
});
