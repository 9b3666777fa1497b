#!/usr/bin/env node
// The text2sql command line. Training, generation and serving commands arrive with their issues;
// this entry point already checks an install and describes a model.
import { Command } from "commander";
import { createRequire } from "node:module";
import { LoraEngine } from "./engine.js";
import { systemInfo } from "./system.js";

const pkg = createRequire(import.meta.url)("../../package.json") as { version: string };

const program = new Command();
program
  .name("text2sql")
  .description("Fine-tune small Llama-family models with LoRA to turn questions into SQL (no Python).")
  .version(pkg.version);

program
  .command("doctor")
  .description("check the native engine: builds it if needed and lists the devices it can use")
  .action(() => {
    const info = systemInfo();
    for (const d of info.devices) console.log(`${d.backend.padEnd(6)} ${d.name}: ${d.description}`);
  });

program
  .command("info")
  .description("load a Llama GGUF and print its shape and the LoRA parameter count")
  .argument("<model>", "path to a Llama-architecture GGUF (F32, F16 or BF16 weights)")
  .option("-r, --rank <r>", "LoRA rank", "8")
  .option("-t, --targets <list>", "comma-separated LoRA targets (q,k,v,o,gate,up,down or q_proj,...)", "q_proj,v_proj")
  .option("--device <device>", "auto | cpu | cuda | metal", "auto")
  .option("--json", "print JSON")
  .action(async (model: string, o: { rank: string; targets: string; device: string; json?: boolean }) => {
    const e = await LoraEngine.create({
      model,
      device: o.device as "auto",
      lora: { r: Number(o.rank), targetModules: o.targets.split(",").map((s) => s.trim()).filter(Boolean) },
    });
    const i = e.info;
    await e.dispose();
    if (o.json) {
      console.log(JSON.stringify(i, null, 2));
      return;
    }
    console.log(`model       ${model}`);
    console.log(`shape       ${i.nLayer} layers, n_embd ${i.nEmbd}, ${i.nHead} heads (${i.nHeadKv} KV), FFN ${i.nFf}, vocab ${i.nVocab}, context ${i.nCtx}`);
    console.log(`weights     ${i.weightType}`);
    console.log(`device      ${i.device}`);
    console.log(`LoRA        r=${o.rank} on ${i.targets.join(", ")}: ${i.trainableParams.toLocaleString("en-US")} trainable parameters`);
  });

program.parseAsync().catch((err: unknown) => {
  console.error(`text2sql: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
