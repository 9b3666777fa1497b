/**
 * npm run bench:generate: question-to-SQL generation at TinyLlama shape (random weights), through
 * generateSql's SqlGenerator with and without a LoRA adapter, next to a plain node-llama-cpp
 * decode loop on the same model and prompt. Prints time to first token and decode tokens/s.
 *
 *   npm run bench:generate -- [--type bf16|f16] [--tokens 64] [--runs 3] [--threads N] [--constrain]
 *
 * --constrain adds the adapter's decode with the quickstart schema (data/quickstart_schema.sql),
 * free and constrained to the schema's grammar. Random weights are the worst case for the
 * grammar: nearly every token the model picks is refused, so llama.cpp checks the whole
 * vocabulary against the grammar at each step (a trained model's pick is usually allowed).
 *
 * Also times prompt processing: a 512-token prompt (a schema-sized one) evaluated at once.
 * Random weights never emit EOS or a semicolon on purpose, so every run decodes --tokens tokens.
 *
 * node-llama-cpp uses a local build of its llama.cpp when one exists (`npx text2sql doctor
 * --build-llama`, or `npx node-llama-cpp source download --gpu false`), else its prebuilt binaries:
 * the header says which one ran. Run once with each to compare.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { LoraEngine } from "../src/engine/engine.js";
import { SqlGenerator } from "../src/serve/generate.js";
import { tinyLlamaBenchModel, type TestModelType } from "../src/models/test-model.js";

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

const QUESTION = "How many heads of the departments are older than 56 ?";

async function main(): Promise<void> {
  const type = arg("type", "bf16") as TestModelType;
  const nTokens = Number(arg("tokens", "64"));
  const runs = Number(arg("runs", "3"));
  const threads = Number(arg("threads", String(os.availableParallelism())));
  const constrain = process.argv.includes("--constrain");
  const model = await tinyLlamaBenchModel(type);
  const adapter = path.join(path.dirname(model), "tinyllama-shape-qv-r8.gguf");
  if (!fs.existsSync(adapter)) {
    // a non-zero adapter (B random): what a trained one costs at inference
    const e = await LoraEngine.create({ model, device: "cpu", lora: { r: 8, targetModules: ["q_proj", "v_proj"] } });
    const ts = await e.getAdapter();
    await e.setAdapter(ts.map((t) => ({ ...t, data: Float32Array.from(t.data, (_, i) => Math.sin(i) * 0.01) })));
    await e.saveAdapter(adapter);
    await e.dispose();
  }

  const rows: { name: string; ttftMs: number; tokensPerS: number }[] = [];
  let binary: string;
  let ppTokensPerS: number;
  const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

  const schema = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "../../data/quickstart_schema.sql"), "utf8");
  const cases: { name: string; adapter: boolean; schema?: string; constrain?: boolean }[] = [
    { name: "generateSql, no adapter", adapter: false },
    { name: "generateSql + LoRA", adapter: true },
    ...(constrain
      ? [
          { name: "+ schema, free", adapter: true, schema, constrain: false },
          { name: "+ schema, constrained", adapter: true, schema, constrain: true },
        ]
      : []),
  ];
  for (const c of cases) {
    const g = await SqlGenerator.load({ model, adapter: c.adapter ? adapter : undefined, device: "cpu", parallel: 1, threads, contextSize: 512 });
    const ttft: number[] = [];
    const tps: number[] = [];
    for (let r = 0; r <= runs; r++) {
      // time to first token: one generate with maxTokens 1; throughput: the full run minus it
      const o = { question: QUESTION, schema: c.schema, constrain: c.constrain, validate: false };
      const first = await g.generate({ ...o, maxTokens: 1 });
      const full = await g.generate({ ...o, maxTokens: nTokens });
      if (r === 0) continue; // warm-up (and the grammar's one-time build)
      ttft.push(first.ms);
      tps.push((full.tokens - 1) / ((full.ms - first.ms) / 1000));
    }
    rows.push({ name: c.name, ttftMs: median(ttft), tokensPerS: median(tps) });
    await g.dispose();
  }

  // plain node-llama-cpp on the same prompt tokens
  {
    const llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
    binary = llama.buildType === "localBuild" ? "local build of node-llama-cpp's llama.cpp" : "node-llama-cpp's prebuilt binaries";
    const m = await llama.loadModel({ modelPath: model });
    const ctx = await m.createContext({ contextSize: 512, threads });
    const seq = ctx.getSequence();
    const g = await SqlGenerator.load({ model, device: "cpu", parallel: 1, threads: 1, contextSize: 256 });
    const prompt = g.promptTokens(QUESTION);
    await g.dispose();
    const ttft: number[] = [];
    const tps: number[] = [];
    for (let r = 0; r <= runs; r++) {
      await seq.clearHistory();
      const t0 = performance.now();
      let n = 0;
      let tFirst = 0;
      for await (const _t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
        if (n++ === 0) tFirst = performance.now();
        if (n >= nTokens) break;
      }
      const t1 = performance.now();
      if (r === 0) continue;
      ttft.push(tFirst - t0);
      tps.push((n - 1) / ((t1 - tFirst) / 1000));
    }
    rows.push({ name: "plain node-llama-cpp", ttftMs: median(ttft), tokensPerS: median(tps) });
    // prompt processing: 512 tokens in one evaluation (batch size 512)
    const long = Array.from({ length: 512 }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 31000))) as Token[];
    const pp: number[] = [];
    for (let r = 0; r <= runs; r++) {
      await seq.clearHistory();
      const t0 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(long);
      if (r > 0) pp.push(long.length / ((performance.now() - t0) / 1000));
    }
    ppTokensPerS = median(pp);
    await ctx.dispose();
    await m.dispose();
  }

  console.log(
    `\nGeneration at TinyLlama shape (${type}, random weights; prompt of the seed's template; ${nTokens} tokens; ${threads} threads; ${os.cpus()[0]?.model ?? ""})`,
  );
  console.log(`binary: ${binary}`);
  console.log(`prompt processing (512 tokens at once): ${ppTokensPerS.toFixed(1)} tokens/s`);
  console.log("                           TTFT ms   decode tokens/s");
  for (const r of rows) console.log(`${r.name.padEnd(26)} ${r.ttftMs.toFixed(0).padStart(7)}   ${r.tokensPerS.toFixed(1).padStart(8)}`);
}

main().catch((err: unknown) => {
  console.error(`bench:generate: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
