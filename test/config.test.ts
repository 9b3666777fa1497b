// Config: the whole file is validated before any work, unknown keys name the closest known key,
// wrong types say what was expected, CLI flags and --set override the file.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { closestKey, DEFAULTS, loadConfig } from "../src/train/config.js";
import { tempDir } from "./helpers/models.js";

function yaml(text: string): string {
  const f = path.join(tempDir(), "c.yaml");
  fs.writeFileSync(f, text);
  return f;
}

const base = "model:\n  path: m.gguf\ndata:\n  path: d.csv\n";

describe("config", () => {
  test("configs/config_spider.yaml carries the seed's job", () => {
    const c = loadConfig({ file: "configs/config_spider.yaml" });
    expect(c.lora).toMatchObject({ r: 8, alpha: 16, dropout: 0.05, target_modules: ["q_proj", "v_proj"] });
    expect(c.train).toMatchObject({
      epochs: 3,
      batch_size: 1,
      grad_accum: 16,
      lr: 2e-4,
      lr_schedule: "cosine",
      max_grad_norm: 1,
      eval_every: 100,
      save_every: 200,
      seed: 42,
    });
    expect(c.data).toMatchObject({ max_seq_len: 256, split: [0.9, 0.05, 0.05], columns: { question: "text_query", sql: "sql_command" } });
    expect(c.output.dir).toBe("outputs/spider");
    expect(loadConfig({ file: "configs/quickstart.yaml" }).model.path).toBe("builtin:tiny");
  });

  test("an unknown key names the closest known key", () => {
    expect(() => loadConfig({ file: yaml(base + "train:\n  learning_rate: 0.1\n") })).toThrow(/unknown key 'train.learning_rate'; did you mean 'train.lr'\?/);
    expect(() => loadConfig({ file: yaml(base + "lora:\n  rank: 4\n") })).toThrow(/unknown key 'lora.rank'; did you mean 'lora.r'\?/);
    expect(() => loadConfig({ file: yaml(base + "trian:\n  epochs: 1\n") })).toThrow(/unknown section 'trian'; did you mean 'train'\?/);
    expect(() => loadConfig({ file: yaml(base + "train:\n  grad_acum: 4\n") })).toThrow(/did you mean 'train.grad_accum'/);
    expect(closestKey("data.max_len")).toBe("data.max_seq_len");
    expect(() => loadConfig({ file: yaml(base), set: ["train.epoch=2"] })).toThrow(/--set: unknown key 'train.epoch'; did you mean 'train.epochs'\?/);
  });

  test("a wrong type says what was expected and what arrived, with the file", () => {
    const f = yaml(base + "train:\n  lr: fast\n");
    expect(() => loadConfig({ file: f })).toThrow(`${f}: train.lr: expected a number >= 0, got the string "fast"`);
    expect(() => loadConfig({ file: yaml(base + "lora:\n  r: 2.5\n") })).toThrow(/lora.r: expected an integer >= 1, got number 2.5/);
    expect(() => loadConfig({ file: yaml(base + "train:\n  lr_schedule: exp\n") })).toThrow(
      /train.lr_schedule: expected one of cosine, linear, constant, got the string "exp"/,
    );
    expect(() => loadConfig({ file: yaml(base + "lora:\n  target_modules: q_proj\n") })).toThrow(/lora.target_modules: expected a non-empty list of names/);
    expect(() => loadConfig({ file: yaml(base), set: ["data.split=[0.5, 0.2]"] })).toThrow(/data.split: expected three fractions/);
    expect(() => loadConfig({ file: yaml(base), set: ["data.template=Q: {question} {query}"] })).toThrow(/data.template: unknown placeholder \{query\}/);
    expect(() => loadConfig({ file: yaml("train: [1, 2\n") })).toThrow(/invalid YAML/);
    expect(() => loadConfig({ file: yaml("data:\n  path: d.csv\n") })).toThrow(/model.path: expected a GGUF path/);
  });

  test("CLI flags and --set override the file; defaults fill the rest", () => {
    const c = loadConfig({
      file: yaml(base + "train:\n  lr: 0.1\n  epochs: 2\n"),
      overrides: { "train.max_steps": 7, "output.dir": "out/x", "train.device": undefined },
      set: ["train.lr=1e-4", "lora.target_modules=[q_proj, k_proj]", "data.shuffle=false", "lora.init_adapter=null"],
    });
    expect(c.train.lr).toBe(1e-4);
    expect(c.train.epochs).toBe(2);
    expect(c.train.max_steps).toBe(7);
    expect(c.output.dir).toBe("out/x");
    expect(c.lora.target_modules).toEqual(["q_proj", "k_proj"]);
    expect(c.data.shuffle).toBe(false);
    expect(c.train.grad_accum).toBe(DEFAULTS.train.grad_accum);
    expect(() => loadConfig({ file: yaml(base), set: ["train.lr"] })).toThrow(/expected key=value/);
    expect(() => loadConfig({ file: yaml(base), set: ["train.batch_size=0"] })).toThrow(/--set train.batch_size: expected an integer >= 1, got number 0/);
  });
});
