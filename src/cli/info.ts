// `text2sql info`: loads a model and prints its shape and the LoRA parameter count.
import { Command } from "commander";
import { LoraEngine } from "../engine/engine.js";
import { ggmlTypeName, readGguf } from "../formats/gguf.js";
import { formatBytes } from "../util/format.js";

/** The mix of storage types of a GGUF's tensors, most bytes first: "Q4_K 154 tensors (0.52 GB), ...". */
export function tensorTypeMix(model: string): { type: string; tensors: number; bytes: number }[] {
  const mix = new Map<string, { type: string; tensors: number; bytes: number }>();
  for (const t of readGguf(model).tensors) {
    const name = ggmlTypeName(t.type);
    const m = mix.get(name) ?? { type: name, tensors: 0, bytes: 0 };
    m.tensors++;
    m.bytes += t.byteLength;
    mix.set(name, m);
  }
  return [...mix.values()].sort((a, b) => b.bytes - a.bytes);
}
import { cliResolveModel } from "./progress.js";

export function registerInfo(program: Command): void {
  program
    .command("info")
    .description("load a Llama GGUF and print its shape and the LoRA parameter count")
    .argument(
      "<model>",
      "a Llama-architecture GGUF (F32, F16, BF16 or Q8_0 ... Q6_K weights), or any model.path form (checkpoint folder, hub repository, hf: URI)",
    )
    .option("-y, --yes", "download the model from the hub without asking when it is not in the cache")
    .option("-r, --rank <r>", "LoRA rank", "8")
    .option("-t, --targets <list>", "comma-separated LoRA targets (q,k,v,o,gate,up,down or q_proj,...)", "q_proj,v_proj")
    .option("--device <device>", "auto | cpu | cuda | metal", "auto")
    .option("--json", "print JSON")
    .action(async (spec: string, o: { rank: string; targets: string; device: string; json?: boolean; yes?: boolean }) => {
      const model = await cliResolveModel(spec, { yes: o.yes, label: "model" });
      const e = await LoraEngine.create({
        model,
        device: o.device as "auto",
        lora: {
          r: Number(o.rank),
          targetModules: o.targets
            .split(",")
            .map((s) => s.trim())
            .filter(Boolean),
        },
      });
      const i = e.info;
      await e.dispose();
      const mix = tensorTypeMix(model);
      if (o.json) {
        console.log(JSON.stringify({ ...i, tensorTypes: mix }, null, 2));
        return;
      }
      console.log(`model       ${model}`);
      console.log(`arch        ${i.arch}`);
      console.log(
        `shape       ${i.nLayer} layers, n_embd ${i.nEmbd}, ${i.nHead} heads (${i.nHeadKv} KV) of ${i.headDim}, FFN ${i.nFf}, vocab ${i.nVocab}, context ${i.nCtx}`,
      );
      console.log(`weights     ${i.weightType} (blk.0.attn_q); all tensors: ${mix.map((m) => `${m.type} ${m.tensors} (${formatBytes(m.bytes)})`).join(", ")}`);
      console.log(`device      ${i.device}`);
      console.log(`LoRA        r=${o.rank} on ${i.targets.join(", ")}: ${i.trainableParams.toLocaleString("en-US")} trainable parameters`);
    });
}
