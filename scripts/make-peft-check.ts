/**
 * The inputs of scripts/peft-check.py (issue 24): for each family (llama, llama3, qwen2, qwen3) the
 * Hugging Face checkpoint of the tiny test model and our exported PEFT adapter, written into a
 * folder that a machine without Node.js receives (the device call carries build/device/), and our
 * engine's logits of that adapter on those tokens, recorded into test/fixtures/peft-check.json.
 *
 *   npm run make-peft-fixture    the folder and the fixture (after a change to the models or the export)
 *   npm run device-files         the folder only (build/device/peft-check; before a device call)
 *
 * The checkpoint: scripts/make-hf-checkpoint.ts's float32 output of the family's test model
 * (src/models/test-model.ts), with the embedding and lm_head rows cut down to the vocabulary ids
 * the check reads (the prompt tokens, bos/eos and 64 seeded ids), renumbered 0..K-1 in order, so
 * the four folders take under 1 MB where the full vocabularies (32,000 to 151,936 rows) take
 * 127 MB, over the 64 MiB a device call may carry. The layers, norms and config are the full
 * checkpoint's, tensor for tensor; the transformer never mixes vocabulary rows, so the cut
 * model's logits are the full model's at those ids (test/peft-check.test.ts checks the cut
 * against the full checkpoint). Next to each adapter: the same adapter exported with the q/k
 * rows in the wrong order for the family, which PEFT must NOT reproduce (the check can fail).
 *
 * Every file is deterministic; the fixture keeps their sha256, and the test remakes them and
 * our logits, so neither can rot unnoticed.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { LoraEngine, type AdapterTensor } from "../src/engine/engine.js";
import { exportPeft, type PeftExportMeta } from "../src/adapters/peft.js";
import { readGguf, readTensorF32 } from "../src/formats/gguf.js";
import { readSafetensors, writeSafetensors } from "../src/formats/safetensors.js";
import { makeTestModel, TEST_FAMILIES, type TestFamily } from "../src/models/test-model.js";
import { writeFileAtomic } from "../src/util/atomic.js";
import { makeHfCheckpoint } from "./make-hf-checkpoint.js";
import { isMain } from "./make-test-model.js";

export const PEFT_CHECK_FAMILIES = ["llama", "llama3", "qwen2", "qwen3"] as const satisfies readonly TestFamily[];
export type PeftCheckFamily = (typeof PEFT_CHECK_FAMILIES)[number];

/** The adapter of test/peft.test.ts and test/peft-families.test.ts: r 4, all seven targets, seeded values. */
export const PEFT_CHECK_ADAPTER = {
  r: 4,
  alpha: 8,
  seed: 4242,
  scale: 0.2,
  targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
};
/** The prompt tokens of those tests. */
export const PEFT_CHECK_TOKENS: Record<PeftCheckFamily, number[]> = {
  llama: [1, 518, 25580, 29962, 3251, 403, 3758, 363, 278, 1494, 1139],
  llama3: [128000, 4438, 1690, 14971, 527, 9191, 1109, 220, 3487, 30, 19638],
  qwen2: [4340, 1657, 14629, 525, 9014, 1091, 220, 20, 21, 30, 19094],
  qwen3: [4340, 1657, 14629, 525, 9014, 1091, 220, 20, 21, 30, 19094],
};
const N_RANDOM_IDS = 64;
/** scripts/peft-check.py's bound on ‖PEFT − ours‖ / ‖ours‖ (issue 24). */
export const PEFT_CHECK_BOUND = 1e-5;
/** The fixture's own folder names and files, relative to the family's folder. */
const FILES = [
  "hf/config.json",
  "hf/model.safetensors",
  "adapter/adapter_config.json",
  "adapter/adapter_model.safetensors",
  "adapter-wrong-order/adapter_config.json",
  "adapter-wrong-order/adapter_model.safetensors",
];

/** test/helpers/models.ts's rng: uniform in [-1, 1) from a 32-bit LCG (the adapter must be the tests' one). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

export interface PeftCheckFamilyFiles {
  family: PeftCheckFamily;
  /** The test model (GGUF) the checkpoint and the adapter belong to. */
  gguf: string;
  /** The full make-hf-checkpoint folder, before the cut. */
  fullHf: string;
  /** The vocabulary ids kept, ascending: row j of the cut checkpoint is row vocabIds[j] of the full one. */
  vocabIds: number[];
  /** The prompt tokens renumbered into the cut vocabulary. */
  inputIds: number[];
  /** sha256 of each file of FILES. */
  files: Record<string, string>;
  /** The llama3 RoPE divisors of the GGUF (rope_freqs.weight), or null. */
  ropeFactors: number[] | null;
}

/** The engine on the family's test model with the seeded adapter. */
async function adapterEngine(gguf: string): Promise<{ engine: LoraEngine; adapter: AdapterTensor[] }> {
  const { r, alpha, targets, seed, scale } = PEFT_CHECK_ADAPTER;
  const engine = await LoraEngine.create({ model: gguf, device: "cpu", lora: { r, alpha, targetModules: targets } });
  const next = rng(seed);
  const adapter = (await engine.getAdapter()).map((t) => ({ ...t, data: Float32Array.from(t.data, () => next() * scale) }));
  await engine.setAdapter(adapter);
  return { engine, adapter };
}

function cutVocabulary(fullHf: string, dir: string, vocabIds: number[]): void {
  const st = readSafetensors(path.join(fullHf, "model.safetensors"));
  const tensors = st.tensors.map((t) => {
    if (t.name !== "model.embed_tokens.weight" && t.name !== "lm_head.weight") return { name: t.name, shape: t.shape, data: t.data };
    const cols = t.shape[1]!;
    const data = new Float32Array(vocabIds.length * cols);
    vocabIds.forEach((id, j) => data.set(t.data.subarray(id * cols, (id + 1) * cols), j * cols));
    return { name: t.name, shape: [vocabIds.length, cols], data };
  });
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, st.metadata);
  const config = JSON.parse(fs.readFileSync(path.join(fullHf, "config.json"), "utf8")) as Record<string, unknown>;
  const renumber = (id: unknown) => (typeof id === "number" ? vocabIds.indexOf(id) : null);
  const cut = { ...config, vocab_size: vocabIds.length, bos_token_id: renumber(config.bos_token_id), eos_token_id: renumber(config.eos_token_id) };
  writeFileAtomic(path.join(dir, "config.json"), JSON.stringify(cut, null, 2) + "\n");
}

/** Writes <dir>/<family>/{hf,adapter,adapter-wrong-order}/ for one family (the GGUF and the full checkpoint go to work/). */
export async function writePeftCheckFamily(family: PeftCheckFamily, dir: string, work: string): Promise<PeftCheckFamilyFiles> {
  const fam = TEST_FAMILIES[family];
  const gguf = await makeTestModel({ path: path.join(work, `${family}.gguf`), family });
  const fullHf = path.join(work, `${family}-hf`);
  await makeHfCheckpoint({ gguf, dir: fullHf, dtype: "f32", ropeScaling: fam.llama3Rope });
  const config = JSON.parse(fs.readFileSync(path.join(fullHf, "config.json"), "utf8")) as { vocab_size: number; bos_token_id: number; eos_token_id: number };
  const tokens = PEFT_CHECK_TOKENS[family];
  const next = rng(7);
  const ids = new Set([...tokens, config.bos_token_id, config.eos_token_id]);
  while (ids.size < tokens.length + 2 + N_RANDOM_IDS) ids.add(Math.floor(((next() + 1) / 2) * config.vocab_size));
  const vocabIds = [...ids].sort((a, b) => a - b);
  const out = path.join(dir, family);
  fs.rmSync(out, { recursive: true, force: true });
  cutVocabulary(fullHf, path.join(out, "hf"), vocabIds);

  const { engine, adapter } = await adapterEngine(gguf);
  const { r, alpha, targets } = PEFT_CHECK_ADAPTER;
  const meta = (arch: string): PeftExportMeta => ({
    r,
    alpha,
    dropout: 0,
    rslora: false,
    targetModules: targets,
    baseModel: `text2sql/tiny-test-${family}`,
    nHead: engine.info.nHead,
    nHeadKv: engine.info.nHeadKv,
    arch,
  });
  const arch = engine.info.arch;
  exportPeft(path.join(out, "adapter"), adapter, meta(arch));
  // the wrong q/k row order: Llama's folder without the un-permutation, Qwen's un-permuted as if it were Llama
  if (arch === "llama") exportPeft(path.join(out, "adapter-wrong-order"), adapter, meta(arch), { unpermute: false });
  else exportPeft(path.join(out, "adapter-wrong-order"), adapter, meta("llama"));
  await engine.dispose();
  return {
    family,
    gguf,
    fullHf,
    vocabIds,
    inputIds: tokens.map((t) => vocabIds.indexOf(t)),
    files: Object.fromEntries(FILES.map((f) => [f, sha256(path.join(out, f))])),
    ropeFactors: fam.llama3Rope ? Array.from(ropeFactors(gguf)) : null,
  };
}

/** The GGUF's rope_freqs.weight (the llama3 divisors, which make-hf-checkpoint checked against ropeScaling). */
function ropeFactors(gguf: string): Float32Array {
  const g = readGguf(gguf);
  return readTensorF32(
    g,
    g.tensors.find((t) => t.name === "rope_freqs.weight")!,
  );
}

export interface PeftCheckFixtureFamily extends Omit<PeftCheckFamilyFiles, "gguf" | "fullHf"> {
  arch: string;
  tokens: number[];
  model: { makeTestModel: { family: string }; sha256: string; hfSha256: string };
  /** Our logits at vocabIds, per position: with the adapter, and with B = 0 (the base model). */
  lora: number[][];
  base: number[][];
}

export interface PeftCheckFixture {
  about: string;
  bound: number;
  adapter: typeof PEFT_CHECK_ADAPTER;
  families: PeftCheckFixtureFamily[];
}

/** Our engine's logits for the fixture: at vocabIds of each position, with the adapter and without (B = 0). */
export async function ourLogits(gguf: string, tokens: number[], vocabIds: number[]): Promise<{ lora: number[][]; base: number[][] }> {
  const { engine, adapter } = await adapterEngine(gguf);
  const pick = (rows: Float32Array[]) => rows.map((row) => vocabIds.map((i) => row[i]!));
  const lora = pick(await engine.logits(tokens));
  await engine.setAdapter(adapter.map((t) => (t.name.endsWith("lora_b") ? { ...t, data: new Float32Array(t.data.length) } : t)));
  const base = pick(await engine.logits(tokens));
  await engine.dispose();
  return { lora, base };
}

/** Writes the folder for every family; with `fixture`, records our logits there too. */
export async function makePeftCheck(dir: string, fixture?: string): Promise<PeftCheckFixture> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "t2s-peft-check-"));
  try {
    const families: PeftCheckFixtureFamily[] = [];
    for (const family of PEFT_CHECK_FAMILIES) {
      const f = await writePeftCheckFamily(family, dir, work);
      const { gguf, fullHf, ...rest } = f;
      const tokens = PEFT_CHECK_TOKENS[family];
      const arch = TEST_FAMILIES[family].arch;
      const model = { makeTestModel: { family }, sha256: sha256(gguf), hfSha256: sha256(path.join(fullHf, "model.safetensors")) };
      families.push({ ...rest, arch, tokens, model, ...(fixture ? await ourLogits(gguf, tokens, f.vocabIds) : { lora: [], base: [] }) });
    }
    const out: PeftCheckFixture = {
      about:
        "our engine's logits (CPU, float32) of the exported PEFT adapters on the tiny test models, for scripts/peft-check.py; written by scripts/make-peft-check.ts (npm run make-peft-fixture)",
      bound: PEFT_CHECK_BOUND,
      adapter: PEFT_CHECK_ADAPTER,
      families,
    };
    if (fixture) {
      const round = (rows: number[][]) => rows.map((r) => r.map((x) => Number(x.toPrecision(9))));
      const json = { ...out, families: families.map((f) => ({ ...f, lora: round(f.lora), base: round(f.base) })) };
      writeFileAtomic(fixture, JSON.stringify(json) + "\n");
    }
    return out;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

const USAGE = `usage: make-peft-check [--files DIR] [--fixture FILE]

  --files DIR      where the checkpoints and adapters go (default build/device/peft-check)
  --fixture FILE   also record our logits there (test/fixtures/peft-check.json)
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { files: { type: "string", default: "build/device/peft-check" }, fixture: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) return void process.stdout.write(USAGE);
  const start = performance.now();
  const out = await makePeftCheck(values.files!, values.fixture);
  const secs = ((performance.now() - start) / 1000).toFixed(1);
  for (const f of out.families)
    process.stdout.write(`${f.family}: ${f.vocabIds.length} vocabulary rows, ${Object.keys(f.files).length} files in ${path.join(values.files!, f.family)}\n`);
  process.stdout.write(`wrote ${values.files}${values.fixture ? ` and ${values.fixture}` : ""} in ${secs} s\n`);
}

if (isMain(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`make-peft-check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
