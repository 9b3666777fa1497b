// `text2sql eval`: scores SQL (given or generated) on a Spider-style set; a bar per phase on a terminal.
import { Command } from "commander";
import { evaluateSql, formatEvalReport, type EvalOptions } from "../eval/eval.js";
import { lazyBar, type LazyBar } from "../util/bar.js";
import { baseModelOption, cliResolveModel, yesOption } from "./progress.js";
import { CANDIDATES_HELP, intFlag, QUERY_MAX_BYTES_HELP, queryMaxBytesFlag, threadsFlag } from "./candidate-flags.js";
import { MAX_CANDIDATES } from "../serve/candidates.js";

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description("score SQL: Spider's official exact-set match, components, execution accuracy on SQLite, by Spider hardness; eval loss and token accuracy")
    .requiredOption("--data <file>", "Spider JSON with db_id (or a CSV/JSONL the trainer reads, for the metrics that need no database)")
    .option("--tables <file>", "Spider tables.json (schemas for prompts and parsing; exact match is the official one only with it)")
    .option("--db-dir <dir>", "databases as <dir>/<db_id>/<db_id>.sqlite, for execution accuracy")
    .option("--db <file>", "CSV/JSONL data: one SQLite database for every example without its own db column")
    .option("--keep-distinct", "execution accuracy runs DISTINCT as written (the official keep_distinct); by default it is taken out of both queries")
    .option("--predictions <file>", "score these predictions (one SQL per line, dataset order) instead of generating")
    .option("--adapter <path>", "adapter or trainer output folder to generate with (and for eval loss / token accuracy)")
    .addOption(baseModelOption("the adapter's recorded base"))
    .addOption(yesOption())
    .requiredOption("--output <dir>", "where eval.json and predictions.jsonl go")
    .option("--limit <n>", "only the first n examples")
    .option("--parallel <n>", "questions generated at once", "4")
    .option("--threads <n>", "CPU threads")
    .option("--candidates <n>", `with --db-dir, on each example's database: ${CANDIDATES_HELP}`)
    .option("--query-timeout <ms>", "wall-clock limit per query (gold, prediction, each candidate)", "5000")
    .option("--query-max-bytes <n>", QUERY_MAX_BYTES_HELP)
    .option("--json", "print the report as JSON")
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql eval --data ../shared/spider/dev.json --tables ../shared/spider/tables.json --db-dir ../shared/spider/database --predictions gold.sql --output outputs/eval-gold
  npx text2sql eval --data data/quickstart.csv --db data/quickstart.sqlite --adapter outputs/quickstart --output outputs/eval-quickstart
  npx text2sql eval --data dev.json --tables tables.json --db-dir database/ --adapter outputs/spider-schema --output outputs/eval
  npx text2sql eval --data dev.json --tables tables.json --db-dir database/ --adapter outputs/spider-schema --candidates 8 --output outputs/eval-vote`,
    )
    .action(
      async (
        o: Pick<EvalOptions, "data" | "tables" | "dbDir" | "db" | "keepDistinct" | "predictions" | "adapter" | "model" | "output"> & {
          yes?: boolean;
          limit?: string;
          parallel: string;
          threads?: string;
          candidates?: string;
          queryTimeout: string;
          queryMaxBytes?: string;
          json?: boolean;
        },
      ) => {
        const tty = !o.json && process.stderr.isTTY;
        let bar: LazyBar | null = null;
        let phase = "";
        const threads = o.threads !== undefined ? threadsFlag(o.threads) : undefined;
        const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : undefined;
        const report = await evaluateSql({
          data: o.data,
          tables: o.tables,
          dbDir: o.dbDir,
          db: o.db,
          keepDistinct: !!o.keepDistinct,
          predictions: o.predictions,
          adapter: o.adapter,
          model,
          output: o.output,
          limit: o.limit ? Number(o.limit) : undefined,
          parallel: Number(o.parallel),
          threads,
          candidates: o.candidates !== undefined ? intFlag("--candidates", o.candidates, 1, MAX_CANDIDATES) : undefined,
          timeoutMs: intFlag("--query-timeout", o.queryTimeout, 1),
          maxBytes: queryMaxBytesFlag(o.queryMaxBytes),
          onProgress: (p, done, total) => {
            if (!tty) return;
            if (p !== phase) {
              bar?.stop();
              phase = p;
              bar = lazyBar(`${p.padEnd(8)} |{bar}| {value}/{total} | ETA {eta_formatted}`);
            }
            bar?.update(done, total, undefined, 0);
          },
        });
        (bar as LazyBar | null)?.stop();
        if (o.json) console.log(JSON.stringify(report, null, 2));
        else console.log(formatEvalReport(report));
      },
    );
}
