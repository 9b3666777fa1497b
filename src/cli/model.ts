// `text2sql model pull|list|rm|convert`: the model cache (hub snapshots and GGUFs) by hand.
import { Command, Option } from "commander";
import { formatBytes } from "../util/format.js";
import {
  cacheHome,
  listCachedModels,
  convertCheckpoint,
  convertCheckpointCached,
  MODEL_DTYPES,
  parseHubGgufName,
  pullHubModel,
  removeModel,
  type CachedModel,
  type ModelDtype,
} from "../models/model-path.js";
import { convertBar, downloadable, stderrLine } from "./progress.js";

function registerPull(model: Command): void {
  model
    .command("pull")
    .description("download a hub repository's checkpoint into the cache and convert it to a GGUF")
    .argument("<repo>", 'owner/name or owner/name@revision (a branch, tag or commit), e.g. "TinyLlama/TinyLlama-1.1B-Chat-v1.0"')
    .option("-y, --yes", "do not ask before downloading (without a terminal, pull never asks)")
    .addOption(new Option("--dtype <type>", "weight type of the GGUF (auto: the checkpoint's own)").choices(MODEL_DTYPES).default("auto"))
    .option("--no-convert", "only download the checkpoint (safetensors, config, tokenizer)")
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql model pull TinyLlama/TinyLlama-1.1B-Chat-v1.0
  npx text2sql model pull TinyLlama/TinyLlama-1.1B-Chat-v1.0@main --dtype bf16 --yes
  HF_TOKEN=hf_... npx text2sql model pull meta-llama/Llama-2-7b-hf --no-convert

Files go to $TEXT2SQL_HOME/hub/<owner>--<name>/<commit>/ (resumed where a pull was interrupted;
checked by size and hash), the GGUF to $TEXT2SQL_HOME/models/<owner>--<name>-<commit>-<dtype>.gguf.
Ctrl-C stops the download and keeps what arrived; the next pull resumes it.`,
    )
    .action(async (repo: string, o: { yes?: boolean; dtype: ModelDtype; convert: boolean }) => {
      const interactive = !!process.stdin.isTTY && !!process.stderr.isTTY;
      const r = await downloadable(({ signal, onPhase }) =>
        pullHubModel(repo, {
          yes: o.yes || !interactive,
          dtype: o.dtype,
          convert: o.convert,
          fullSnapshot: true,
          log: stderrLine,
          label: "model pull",
          onConvertProgress: convertBar(),
          signal,
          onPhase,
          onPlan: (p) =>
            stderrLine(
              `model pull: ${p.repo}@${p.revision} is commit ${p.commit}: ${p.files.length} files, ${formatBytes(p.totalBytes)}` +
                (p.bytesToDownload ? "" : ", all in the cache") +
                (p.offline ? " (the hub is out of reach: using the cache)" : ""),
            ),
        }),
      );
      console.log(`snapshot  ${r.dir}`);
      if (r.gguf) console.log(`gguf      ${r.gguf}`);
    });
}

function describeCached(m: CachedModel): string {
  if (m.kind === "hf") {
    const refs = m.revisions.length ? `${m.revisions.join(", ")} -> ` : "";
    return `${refs}${m.commit!.slice(0, 10)}${m.complete ? "" : " (incomplete: pull again to finish)"}`;
  }
  const h = parseHubGgufName(m.path);
  if (h) return `from ${h.repo} @ ${h.commit} (${h.dtype})`;
  if (m.name.startsWith("converted/")) return "converted checkpoint folder";
  if (m.name.startsWith("gguf/")) return "downloaded GGUF";
  return "";
}

function registerList(model: Command): void {
  model
    .command("list")
    .description("list the cached hub checkpoints and GGUFs with their sizes")
    .option("--json", "print JSON")
    .action((o: { json?: boolean }) => {
      const all = listCachedModels();
      if (o.json) {
        console.log(JSON.stringify(all, null, 2));
        return;
      }
      if (all.length === 0) {
        console.log(`no models in ${cacheHome()}`);
        return;
      }
      const rows = [
        ["NAME", "KIND", "SIZE", "REVISION / SOURCE", "PATH"],
        ...all.map((m) => [m.name, m.kind, formatBytes(m.bytes), describeCached(m), m.path]),
      ];
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      for (const r of rows) console.log(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  "));
      console.log(`\n${all.length} model${all.length === 1 ? "" : "s"}, ${formatBytes(all.reduce((a, m) => a + m.bytes, 0))} in ${cacheHome()}`);
    });
}

function registerRm(model: Command): void {
  model
    .command("rm")
    .description("remove a cached model: a hub repository (its snapshots and the GGUFs converted from it) or a GGUF")
    .argument("<name>", "owner/name (every revision), owner/name@revision, or a GGUF's name as `model list` shows it")
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql model rm TinyLlama/TinyLlama-1.1B-Chat-v1.0
  npx text2sql model rm TinyLlama/TinyLlama-1.1B-Chat-v1.0@main
  npx text2sql model rm converted/my-hf-checkpoint-0a1b2c3d-4e5f6a7b-auto.gguf`,
    )
    .action((name: string) => {
      const r = removeModel(name);
      for (const p of r.removed) console.log(`removed ${p}`);
      console.log(`freed ${formatBytes(r.freed)} (${r.freed} bytes)`);
    });
}

function registerConvert(model: Command): void {
  model
    .command("convert")
    .description("convert a Hugging Face Llama, Qwen2 or Qwen3 checkpoint folder (config.json, safetensors, tokenizer.model or tokenizer.json) to a GGUF")
    .argument("<hf-folder>", "the checkpoint folder")
    .addOption(new Option("--dtype <type>", "weight type of the GGUF (auto: the checkpoint's own)").choices(MODEL_DTYPES).default("auto"))
    .option("--output <file>", "the GGUF to write (default: the cache, where model.path finds it again)")
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql model convert ./my-hf-checkpoint
  npx text2sql model convert ./my-hf-checkpoint --dtype bf16 --output my-model.bf16.gguf

Without --output the GGUF goes to $TEXT2SQL_HOME/models/converted/ (keyed by the folder and its files'
sizes and times), where --model ./my-hf-checkpoint finds it without converting again.`,
    )
    .action(async (dir: string, o: { dtype: ModelDtype; output?: string }) => {
      const log = (m: string) => stderrLine(m);
      if (o.output) {
        await convertCheckpoint(dir, o.output, { dtype: o.dtype, log, onProgress: convertBar() });
        console.log(o.output);
      } else {
        const r = await convertCheckpointCached(dir, { dtype: o.dtype, log, onProgress: convertBar(), label: "model convert" });
        console.log(r.file);
      }
    });
}

export function registerModel(program: Command): void {
  const model = program
    .command("model")
    .description("download, convert, list and remove base models (the cache: $TEXT2SQL_HOME, default ~/.cache/text2sql)")
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql model pull TinyLlama/TinyLlama-1.1B-Chat-v1.0 --dtype bf16
  npx text2sql model list
  npx text2sql model rm TinyLlama/TinyLlama-1.1B-Chat-v1.0
  npx text2sql model convert ./my-hf-checkpoint --output my-model.bf16.gguf --dtype bf16

model.path (and --model) takes a hub repository directly: the first run downloads and converts it
(after a question, or at once with --yes). HF_ENDPOINT points at another hub (a mirror), HF_TOKEN
(or \`huggingface-cli login\`) opens gated repositories.`,
    );
  registerPull(model);
  registerList(model);
  registerRm(model);
  registerConvert(model);
}
