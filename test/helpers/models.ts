// Test models, made once per option set and cached in the OS temp folder (they are random-weight
// GGUFs with a real vocabulary: Llama 2's SPM by default, { family: "llama3" | "qwen2" | "qwen3" }
// for the others; see src/models/test-model.ts).
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { makeTestModel, type MakeTestModelOptions } from "../../src/models/test-model.js";

const dir = path.join(os.tmpdir(), "text2sql-test-models");
const pending = new Map<string, Promise<string>>();

export function testModel(opts: Omit<MakeTestModelOptions, "path"> = {}): Promise<string> {
  // the generator's source is part of the key: a change to it makes new models
  const src = fs.readFileSync(new URL("../../src/models/test-model.ts", import.meta.url));
  const key = createHash("sha256").update(JSON.stringify(opts)).update(src).digest("hex").slice(0, 16);
  const file = path.join(dir, `${key}.gguf`);
  let p = pending.get(file);
  if (!p) {
    p = fs.existsSync(file) ? Promise.resolve(file) : (fs.mkdirSync(dir, { recursive: true }), makeTestModel({ ...opts, path: file }));
    pending.set(file, p);
  }
  return p;
}

export function tempDir(prefix = "t2s-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Relative error ‖a − b‖ / ‖b‖ over all entries. */
export function relError(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    for (let j = 0; j < b[i].length; j++) {
      const d = a[i][j] - b[i][j];
      num += d * d;
      den += b[i][j] * b[i][j];
    }
  }
  return Math.sqrt(num / den);
}

/** log_softmax in float64 of each logits row (float32 or float64). */
export function logSoftmax(rows: readonly (Float32Array | Float64Array)[]): Float64Array[] {
  return rows.map((r) => {
    let mx = -Infinity;
    for (const x of r) mx = Math.max(mx, x);
    let s = 0;
    for (const x of r) s += Math.exp(x - mx);
    const lse = mx + Math.log(s);
    return Float64Array.from(r, (x) => x - lse);
  });
}

/** A small seeded generator of uniform numbers in [-1, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

/** The same tensors filled with seeded uniform values in [-scale, scale). */
export function randomize<T extends { data: Float32Array }>(ts: T[], seed: number, scale: number): T[] {
  const r = rng(seed);
  return ts.map((t) => ({ ...t, data: Float32Array.from(t.data, () => r() * scale) }));
}
