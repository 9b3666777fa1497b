// The inputs of scripts/peft-check.py (real transformers + PEFT on our exported adapters, issue 24):
// remade now, they are the fixture's byte for byte; our engine's logits now are the fixture's; the
// vocabulary-cut checkpoint is the full make-hf-checkpoint output's rows; the script compiles, its
// file check passes on the remade folder and fails on a changed file, and where a python3 with
// torch, transformers and peft is found (TEXT2SQL_PEFT_PYTHON, else python3) it runs in full.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { readGguf, readTensorF32 } from "../src/formats/gguf.js";
import { readSafetensors } from "../src/formats/safetensors.js";
import { convertHfToGguf } from "../src/models/convert.js";
import { makeHfCheckpoint } from "../scripts/make-hf-checkpoint.js";
import {
  ourLogits,
  PEFT_CHECK_ADAPTER,
  PEFT_CHECK_BOUND,
  PEFT_CHECK_FAMILIES,
  PEFT_CHECK_TOKENS,
  writePeftCheckFamily,
  type PeftCheckFamilyFiles,
  type PeftCheckFixture,
} from "../scripts/make-peft-check.js";
import { relError, tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const SCRIPT = path.join(ROOT, "scripts", "peft-check.py");
const FIXTURE_FILE = path.join(ROOT, "test", "fixtures", "peft-check.json");
const fixture: PeftCheckFixture = JSON.parse(fs.readFileSync(FIXTURE_FILE, "utf8"));
const REMAKE = "remake the fixture with `npm run make-peft-fixture`";

const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const py = (python: string, args: string[], timeout = 120_000) => {
  const r = spawnSync(python, args, { encoding: "utf8", timeout, env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
};

/** Whether python3 runs here (the script needs only its standard library for --files-only). */
const hasPython = spawnSync("python3", ["--version"]).status === 0;

/** The python3 with torch, transformers and peft, or why there is none. */
const peftPython = (() => {
  const tried: string[] = [];
  for (const p of [process.env.TEXT2SQL_PEFT_PYTHON, "python3"].filter((x): x is string => !!x)) {
    const r = py(p, ["-c", "import torch, transformers, peft"], 60_000);
    if (r.status === 0) return { python: p, why: "" };
    tried.push(`${p}: ${r.out.trim().split("\n").pop()}`);
  }
  return { python: "", why: tried.join("; ") };
})();

describe("scripts/peft-check.py's inputs (scripts/make-peft-check.ts)", () => {
  const dir = tempDir("t2s-peft-check-");
  const work = tempDir("t2s-peft-check-work-");
  const made = new Map<string, PeftCheckFamilyFiles>();
  beforeAll(async () => {
    for (const family of PEFT_CHECK_FAMILIES) made.set(family, await writePeftCheckFamily(family, dir, work));
  }, 300_000);

  test("the fixture covers the four families with the tests' adapter, tokens and bound", () => {
    expect(fixture.families.map((f) => f.family)).toEqual([...PEFT_CHECK_FAMILIES]);
    expect(fixture.adapter).toEqual(PEFT_CHECK_ADAPTER);
    expect(fixture.bound).toBe(PEFT_CHECK_BOUND);
    for (const f of fixture.families) expect(f.tokens, f.family).toEqual(PEFT_CHECK_TOKENS[f.family]);
  });

  test("remade now, the models and every file the script reads are the fixture's, byte for byte", async () => {
    for (const f of fixture.families) {
      const m = made.get(f.family)!;
      expect(sha256(await testModel({ family: f.family })), `${f.family}: the test model changed; ${REMAKE}`).toBe(f.model.sha256);
      expect(sha256(m.gguf)).toBe(f.model.sha256);
      expect(sha256(path.join(m.fullHf, "model.safetensors")), `${f.family}: make-hf-checkpoint's output changed; ${REMAKE}`).toBe(f.model.hfSha256);
      expect({ vocabIds: m.vocabIds, inputIds: m.inputIds, ropeFactors: m.ropeFactors }).toEqual({
        vocabIds: f.vocabIds,
        inputIds: f.inputIds,
        ropeFactors: f.ropeFactors,
      });
      expect(m.files, `${f.family}: the checkpoint or the PEFT export changed; ${REMAKE}`).toEqual(f.files);
    }
  });

  test("our engine's logits now are the fixture's (with the adapter and with B = 0), and the adapter moves them", async () => {
    for (const f of fixture.families) {
      const now = await ourLogits(await testModel({ family: f.family }), f.tokens, f.vocabIds);
      // the same program on the same inputs: only a CPU with other kernels could move them, by rounding
      expect(relError(now.lora, f.lora), `${f.family}: our logits changed; ${REMAKE}`).toBeLessThan(1e-6);
      expect(relError(now.base, f.base), f.family).toBeLessThan(1e-6);
      expect(relError(f.lora, f.base), f.family).toBeGreaterThan(0.1);
    }
  });

  test("the cut checkpoint holds the full checkpoint's tensors, its vocabulary rows those of vocabIds", () => {
    for (const f of fixture.families) {
      const m = made.get(f.family)!;
      const full = readSafetensors(path.join(m.fullHf, "model.safetensors")).tensors;
      const cut = readSafetensors(path.join(dir, f.family, "hf", "model.safetensors")).tensors;
      expect(cut.map((t) => t.name)).toEqual(full.map((t) => t.name));
      for (const [i, t] of cut.entries()) {
        const src = full[i]!;
        if (t.name === "model.embed_tokens.weight" || t.name === "lm_head.weight") {
          const cols = src.shape[1]!;
          expect(t.shape).toEqual([f.vocabIds.length, cols]);
          f.vocabIds.forEach((id, j) => expect(t.data.subarray(j * cols, (j + 1) * cols)).toEqual(src.data.subarray(id * cols, (id + 1) * cols)));
        } else {
          expect(t.shape, t.name).toEqual(src.shape);
          expect(Buffer.from(t.data.buffer).equals(Buffer.from(src.data.buffer)), t.name).toBe(true);
        }
      }
      const fullCfg = JSON.parse(fs.readFileSync(path.join(m.fullHf, "config.json"), "utf8"));
      const cutCfg = JSON.parse(fs.readFileSync(path.join(dir, f.family, "hf", "config.json"), "utf8"));
      expect(cutCfg).toEqual({
        ...fullCfg,
        vocab_size: f.vocabIds.length,
        bos_token_id: f.vocabIds.indexOf(fullCfg.bos_token_id),
        eos_token_id: f.vocabIds.indexOf(fullCfg.eos_token_id),
      });
      expect(cutCfg.bos_token_id).toBeGreaterThanOrEqual(0);
    }
  });

  test("llama3: the checkpoint carries rope_scaling (our converter reads back the GGUF's rope_freqs); without it make-hf-checkpoint refuses", async () => {
    const m = made.get("llama3")!;
    expect(JSON.parse(fs.readFileSync(path.join(m.fullHf, "config.json"), "utf8")).rope_scaling).toMatchObject({ rope_type: "llama3", factor: 8 });
    const back = path.join(work, "llama3-back.gguf");
    await convertHfToGguf(m.fullHf, back, { outtype: "f32" });
    const g = readGguf(back);
    expect(
      Array.from(
        readTensorF32(
          g,
          g.tensors.find((t) => t.name === "rope_freqs.weight")!,
        ),
      ),
    ).toEqual(m.ropeFactors);
    await expect(makeHfCheckpoint({ gguf: m.gguf, dir: path.join(work, "no-rope"), dtype: "f32" })).rejects.toThrow(
      /has rope_freqs\.weight \(llama3 RoPE scaling\): pass ropeScaling/,
    );
    const wrong = { factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    await expect(makeHfCheckpoint({ gguf: m.gguf, dir: path.join(work, "bad-rope"), dtype: "f32", ropeScaling: wrong })).rejects.toThrow(/gives other factors/);
  }, 60_000);

  test.runIf(!hasPython)("the script's tests are skipped: no python3 on PATH", () => {
    expect(hasPython).toBe(false);
  });

  test.runIf(hasPython)("scripts/peft-check.py compiles", () => {
    const r = py("python3", [
      "-c",
      "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
      SCRIPT,
      path.join(work, "peft-check.pyc"),
    ]);
    expect(r.status, r.out).toBe(0);
  });

  test.runIf(hasPython)("--files-only: the remade folder passes; a changed adapter file or a missing folder is named", () => {
    const ok = py("python3", [SCRIPT, "--files", dir, "--files-only"]);
    expect(ok.out).toMatch(/^files ok: 4 families, 24 files match test\/fixtures\/peft-check\.json$/m);
    expect(ok.status, ok.out).toBe(0);
    const bad = path.join(work, "changed");
    fs.cpSync(dir, bad, { recursive: true });
    const st = path.join(bad, "qwen2", "adapter", "adapter_model.safetensors");
    const bytes = fs.readFileSync(st);
    bytes[bytes.length - 1] ^= 1;
    fs.writeFileSync(st, bytes);
    const changed = py("python3", [SCRIPT, "--files", bad, "--files-only"]);
    expect(changed.status).toBe(1);
    expect(changed.out).toContain(`FAILED: ${st}: sha256 is not the fixture's`);
    const missing = py("python3", [SCRIPT, "--files", path.join(work, "nowhere"), "--files-only", "--families", "llama"]);
    expect(missing.status).toBe(1);
    expect(missing.out).toMatch(/nowhere\/llama\/hf\/config\.json is missing \(run `npm run device-files`/);
  });

  test.runIf(!!peftPython.python)(
    "real transformers + PEFT load the adapters and reproduce our logits within 1e-5 (the wrong q/k order does not)",
    () => {
      const r = py(peftPython.python, [SCRIPT, "--files", dir], 300_000);
      expect(r.out).toMatch(/^ok$/m);
      expect(r.status, r.out).toBe(0);
      const lines = r.out.split("\n").filter((l) => l.startsWith("peft family="));
      expect(lines.map((l) => /family=(\w+)/.exec(l)![1])).toEqual([...PEFT_CHECK_FAMILIES]);
      for (const l of lines) expect(Number(/rel_lora=(\S+)/.exec(l)![1]), l).toBeLessThanOrEqual(PEFT_CHECK_BOUND);
    },
    300_000,
  );

  test.runIf(!peftPython.python)("the full PEFT run is skipped here: no python3 with torch, transformers and peft", () => {
    expect(peftPython.why).not.toBe("");
  });
});
