// `text2sql export --merge`: base + adapter into one GGUF, with a bar of the tensors merged.
import { Command, Option } from "commander";
import { mergeAdapter } from "../adapters/merge.js";
import { resolveAdapter } from "../adapters/folder.js";
import { lazyBar } from "../util/bar.js";
import { baseModelOption, cliResolveModel, yesOption } from "./progress.js";

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("write base + adapter into a new GGUF (--merge) that loads with no adapter")
    .requiredOption("--merge", "merge the adapter into the base weights (the only export for now: adapters are saved as GGUF LoRA and PEFT already)")
    .requiredOption("--adapter <path>", "adapter.gguf, or a trainer output / final_model / checkpoint folder")
    .requiredOption("--out <file>", "the merged GGUF to write")
    .addOption(baseModelOption())
    .addOption(yesOption())
    .addOption(new Option("--type <type>", "weight type of the merged matrices (default f16, or the base's type when wider)").choices(["f16", "bf16", "f32"]))
    .addHelpText(
      "after",
      `
Example:
  npx text2sql export --merge --adapter outputs/spider --out tinyllama-spider.gguf`,
    )
    .action(async (o: { adapter: string; out: string; model?: string; yes?: boolean; type?: "f16" | "bf16" | "f32" }) => {
      const a = resolveAdapter(o.adapter);
      const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : a.baseModel;
      if (!model) throw new Error(`--model: the adapter folder records no base model; pass --model base.gguf`);
      const tty = process.stderr.isTTY;
      const bar = lazyBar("merge |{bar}| {value}/{total} tensors | ETA {eta_formatted}");
      const r = await mergeAdapter({
        model,
        adapter: a.adapterFile!,
        out: o.out,
        type: o.type,
        onProgress: (done, total) => {
          if (tty) bar.update(done, total, undefined, 0);
        },
      });
      bar.stop();
      for (const w of r.warnings) process.stderr.write(`text2sql: warning: ${w}\n`);
      process.stderr.write(`text2sql: wrote ${r.out} (${r.type}; ${r.merged} of ${r.tensors} tensors merged) from ${model} + ${a.adapterFile}\n`);
    });
}
