// PEFT export per family (issue 13): the exported folder, read by an independent float64 PyTorch
// model of that family in Hugging Face order (scripts/make-peft-reference.py: Llama 3 with its
// llama3 RoPE frequencies computed as transformers does, Qwen2 with q/k/v biases, Qwen3 with
// q_norm/k_norm), reproduces our engine's logits. Llama 3 needs the inverse q/k permutation (a
// folder exported without it is far off); Qwen needs none (a folder un-permuted as for Llama is
// far off). The import is the exact inverse of the export for every family.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { LoraEngine, type AdapterTensor } from "../src/engine/engine.js";
import { exportPeft, importPeft, type PeftExportMeta } from "../src/adapters/peft.js";
import { TEST_FAMILIES, type TestFamily } from "../src/models/test-model.js";
import { randomize, relError, tempDir, testModel } from "./helpers/models.js";

const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const ADAPTER = { r: 4, alpha: 8, seed: 4242, scale: 0.2, targets: TARGETS };
const RECORD_DIR = process.env.PEFT_RECORD_DIR;
const TOKENS: Record<Exclude<TestFamily, "llama">, number[]> = {
  llama3: [128000, 4438, 1690, 14971, 527, 9191, 1109, 220, 3487, 30, 19638],
  qwen2: [4340, 1657, 14629, 525, 9014, 1091, 220, 20, 21, 30, 19094],
  qwen3: [4340, 1657, 14629, 525, 9014, 1091, 220, 20, 21, 30, 19094],
};
const FAMILIES = Object.keys(TOKENS) as (keyof typeof TOKENS)[];

interface Case {
  name: string;
  dir: string;
  /** the architecture the folder is exported for: the model's, or "llama" to show Qwen needs no un-permutation */
  exportArch?: string;
  unpermute: boolean;
  sameAs?: string;
}
/** The good export and one that gets the q/k row order wrong for the family. */
const casesFor = (family: string): Case[] => [
  { name: "lora", dir: "lora", unpermute: true },
  family === "llama3"
    ? { name: "lora-no-unpermute", dir: "lora-no-unpermute", unpermute: false, sameAs: "lora" }
    : { name: "lora-unpermuted-as-llama", dir: "lora-unpermuted-as-llama", exportArch: "llama", unpermute: true, sameAs: "lora" },
];

interface Fixture {
  model: { makeTestModel: { family: string }; sha256: string };
  adapter: typeof ADAPTER;
  tokens: number[];
  vocabIds: number[];
  base: { logits: number[][]; logsumexp: number[] };
  cases: (Case & { logits: number[][]; logsumexp: number[]; files: Record<string, string>; relErrorAgainstGood?: number })[];
}

async function makeEngine(family: string): Promise<{ engine: LoraEngine; adapter: AdapterTensor[] }> {
  const model = await testModel({ family: family as TestFamily });
  const engine = await LoraEngine.create({ model, device: "cpu", lora: { r: ADAPTER.r, alpha: ADAPTER.alpha, targetModules: ADAPTER.targets } });
  const adapter = randomize(await engine.getAdapter(), ADAPTER.seed, ADAPTER.scale);
  await engine.setAdapter(adapter);
  return { engine, adapter };
}

function meta(engine: LoraEngine, arch = engine.info.arch): PeftExportMeta {
  const { r, alpha, targets } = ADAPTER;
  return {
    r,
    alpha,
    dropout: 0,
    rslora: false,
    targetModules: targets,
    baseModel: "text2sql/tiny-test",
    nHead: engine.info.nHead,
    nHeadKv: engine.info.nHeadKv,
    arch,
  };
}

const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test.runIf(!!RECORD_DIR)("record: export the PEFT folders of each family for scripts/make-peft-reference.py", async () => {
  for (const family of FAMILIES) {
    const dir = path.join(RECORD_DIR!, family);
    fs.mkdirSync(dir, { recursive: true });
    const { engine, adapter } = await makeEngine(family);
    for (const c of casesFor(family)) exportPeft(path.join(dir, c.dir), adapter, meta(engine, c.exportArch), { unpermute: c.unpermute });
    await engine.dispose();
    const manifest = {
      model: await testModel({ family }),
      makeTestModel: { family },
      adapter: ADAPTER,
      cases: casesFor(family),
      tokens: TOKENS[family],
      ropeScaling: TEST_FAMILIES[family].llama3Rope ?? null,
    };
    fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  }
});

for (const family of FAMILIES) {
  describe.skipIf(!!RECORD_DIR)(`${family}: PEFT export and import`, () => {
    test("import is the exact inverse of export, and q/k lora_B rows are permuted only for llama", async () => {
      const { engine, adapter } = await makeEngine(family);
      const dir = tempDir("t2s-peft-fam-");
      exportPeft(dir, adapter, meta(engine));
      const expectT = { nHead: engine.info.nHead, nHeadKv: engine.info.nHeadKv, arch: engine.info.arch, tensors: adapter };
      const { tensors } = importPeft(dir, expectT);
      expect(tensors.map((t) => t.name)).toEqual(adapter.map((t) => t.name));
      for (const [i, t] of tensors.entries()) expect(bytesOf(t.data).equals(bytesOf(adapter[i].data)), t.name).toBe(true);
      // a Qwen export stores q_proj's lora_B as the engine holds it; Llama 3's is un-permuted
      const { readSafetensors } = await import("../src/formats/safetensors.js");
      const st = readSafetensors(path.join(dir, "adapter_model.safetensors"));
      const qB = st.tensors.find((t) => t.name === "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")!;
      const ours = adapter.find((t) => t.name === "blk.0.attn_q.weight.lora_b")!;
      expect(bytesOf(qB.data).equals(bytesOf(ours.data))).toBe(family !== "llama3");
      await engine.dispose();
    });

    test("the recorded logits of the exported folder match ours; the wrong q/k order does not", async () => {
      const f: Fixture = JSON.parse(fs.readFileSync(new URL(`./fixtures/peft-reference-${family}.json`, import.meta.url), "utf8"));
      const model = await testModel({ family });
      expect(sha256(model), "the test model generator changed: re-record (scripts/make-peft-reference.py)").toBe(f.model.sha256);
      expect(f.adapter).toEqual(ADAPTER);
      expect(f.tokens).toEqual(TOKENS[family]);
      expect(f.cases.map(({ name, dir, exportArch, unpermute, sameAs }) => ({ name, dir, exportArch, unpermute, sameAs }))).toEqual(
        casesFor(family).map(({ name, dir, exportArch, unpermute, sameAs }) => ({ name, dir, exportArch, unpermute, sameAs })),
      );
      const { engine, adapter } = await makeEngine(family);
      const pick = (rows: Float32Array[]) => rows.map((r) => f.vocabIds.map((i) => r[i]));
      const ours = pick(await engine.logits(f.tokens));
      for (const c of f.cases) {
        // the folder the reference read is the one we export now, byte for byte
        const dir = tempDir("t2s-peft-fam-");
        exportPeft(dir, adapter, meta(engine, c.exportArch), { unpermute: c.unpermute });
        for (const [name, hash] of Object.entries(c.files)) expect(sha256(path.join(dir, name)), `${c.name}: ${name}`).toBe(hash);
        const err = relError(ours, c.logits);
        if (c.sameAs) {
          // not vacuous: the wrong row order gives the reference other logits
          expect(err, c.name).toBeGreaterThan(0.05);
          expect(c.relErrorAgainstGood, c.name).toBeGreaterThan(0.05);
        } else {
          expect(err, c.name).toBeLessThan(1e-5);
          expect(relError(f.base.logits, c.logits)).toBeGreaterThan(0.1); // the adapter moves the logits
        }
      }
      // the base model (B = 0) matches the reference's base model
      await engine.setAdapter(adapter.map((t) => (t.name.endsWith("lora_b") ? { ...t, data: new Float32Array(t.data.length) } : t)));
      expect(relError(pick(await engine.logits(f.tokens)), f.base.logits)).toBeLessThan(1e-5);
      await engine.dispose();
    });
  });
}
