// A tiny model with an adapter overfit on four question/SQL pairs, trained once per test process
// (about 10 s): generation from it returns exactly the trained SQL, so tests can check answers.
import fs from "node:fs";
import path from "node:path";
import { trainSft } from "../../src/train/trainer.js";
import { tempDir, testModel } from "./models.js";

export const PAIRS: [string, string][] = [
  ["How many heads of the departments are older than 56?", "SELECT count(*) FROM head WHERE age > 56"],
  ["List the name and age of every head, oldest first.", "SELECT name , age FROM head ORDER BY age DESC"],
  ["What is the average budget of departments in Texas?", "SELECT avg(budget) FROM department WHERE state = 'Texas'"],
  ["Which singers are from France?", "SELECT name FROM singer WHERE country = 'France'"],
];

export const SCHEMA =
  "CREATE TABLE head (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);\nCREATE TABLE department (id INTEGER PRIMARY KEY, state TEXT, budget REAL);\nCREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT);";

let pending: Promise<{ outputDir: string; trainLoss: number }> | undefined;

/** Trains (once) and returns the trainer's output folder; final_model/ holds the adapter. */
export function overfitAdapter(): Promise<{ outputDir: string; trainLoss: number }> {
  pending ??= (async () => {
    const dir = tempDir("t2s-overfit-");
    const csv = path.join(dir, "pairs.csv");
    fs.writeFileSync(csv, ["text_query,sql_command", ...PAIRS.map(([q, s]) => `"${q}","${s}"`)].join("\n") + "\n");
    const summary = await trainSft({
      model: { path: await testModel({ nEmbd: 128, nHead: 4, nHeadKv: 2, nFf: 256 }) },
      lora: { r: 16, alpha: 32, dropout: 0, target_modules: ["q", "k", "v", "o", "gate", "up", "down"] },
      data: { path: csv, split: [1, 0, 0] },
      train: { max_steps: 150, batch_size: 4, grad_accum: 1, lr: 1e-2, lr_schedule: "constant", eval_every: 0, save_every: 0, threads: 2 },
      output: { dir: path.join(dir, "out") },
    });
    return { outputDir: summary.outputDir, trainLoss: summary.trainLoss };
  })();
  return pending;
}
