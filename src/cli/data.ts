// `text2sql data`: a dry run of the data preparation (read, split, tokenize) that prints its figures.
import { Command } from "commander";
import { prepareData } from "../train/trainer.js";
import { configFrom, withConfigFlags, type CommonFlags } from "./config-flags.js";
import { cliResolveModel } from "./progress.js";

export function registerData(program: Command): void {
  withConfigFlags(program.command("data"))
    .description("dry run: read, split and tokenize the data, and print its figures (no training)")
    .addHelpText(
      "after",
      `
Example:
  npx text2sql data --config configs/config_spider.yaml --data ../shared/spider/spider_text_sql.csv`,
    )
    .action(async (o: CommonFlags) => {
      const cfg = configFrom(o);
      const modelPath = await cliResolveModel(cfg.model.path, { yes: o.yes, dtype: cfg.model.dtype });
      const { summary: s } = await prepareData(cfg, modelPath, o.json ? () => {} : (m) => process.stderr.write(m + "\n"));
      if (o.json) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      const l = (x: { p50: number; p95: number; max: number; mean: number }) => `p50 ${x.p50}, p95 ${x.p95}, max ${x.max}, mean ${x.mean.toFixed(1)}`;
      console.log(`rows read        ${s.rows} (${s.duplicates} duplicates, kept)`);
      console.log(`split            train ${s.split.train} / eval ${s.split.eval} / test ${s.split.test}`);
      console.log(`prompt tokens    ${l(s.promptTokens)}`);
      console.log(`SQL tokens       ${l(s.completionTokens)}`);
      console.log(`example tokens   ${l(s.totalTokens)} (BOS + prompt + SQL + EOS)`);
      console.log(`over 1,024       ${s.over1024}; over 2,048 ${s.over2048}`);
      console.log(
        `over ${s.maxSeqLen} tokens  ${s.overMaxSeqLen} (${cfg.data.too_long === "skip" ? `${s.skippedTooLong} skipped` : `${s.truncated} truncated, ${s.skippedTooLong} skipped`})`,
      );
    });
}
