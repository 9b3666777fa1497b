// `text2sql generate`: one question to SQL with a trained adapter (and --schema, a CREATE TABLE file).
import { Command, Option } from "commander";
import { disposeGenerators, generateSql } from "../serve/generate.js";
import { MAX_SCHEMA_CHARS } from "../sql/sql-text.js";
import { readUserText } from "../util/user-file.js";
import { baseModelOption, cliResolveModel, yesOption } from "./progress.js";
import { CANDIDATES_HELP, intFlag, QUERY_MAX_BYTES_HELP, queryMaxBytesFlag, threadsFlag, QUERY_TIMEOUT_HELP } from "./candidate-flags.js";
import { describeCandidates, MAX_CANDIDATES } from "../serve/candidates.js";

/** A --schema file: a regular file of at most 4 × MAX_SCHEMA_CHARS bytes (never a device or a pipe without end), through the one bounded reader. */
function readSchemaFile(file: string): string {
  return readUserText(file, { label: "--schema", maxBytes: 4 * MAX_SCHEMA_CHARS, what: `a schema (at most ${MAX_SCHEMA_CHARS} characters)` });
}

export function registerGenerate(program: Command): void {
  program
    .command("generate")
    .description("turn a question into SQL with a trained adapter (greedy decoding through node-llama-cpp; with --db, execution-guided candidates)")
    .argument("<question...>", "the question (quote it, or pass it as several words)")
    .option("--adapter <path>", "adapter.gguf, or a trainer output / final_model / checkpoint folder", undefined)
    .addOption(baseModelOption())
    .addOption(yesOption())
    .option("--schema <file>", "CREATE TABLE statements: fills {schema} in schema-aware templates and validates the SQL in SQLite")
    .option("--db <file>", "a SQLite database to run the candidates on, read-only (its schema fills {schema} unless --schema is given)")
    .option("--candidates <n>", `with --db: ${CANDIDATES_HELP}`)
    .option("--query-timeout <ms>", QUERY_TIMEOUT_HELP)
    .option("--query-max-bytes <n>", QUERY_MAX_BYTES_HELP)
    .option("--constrain", "decode only SELECTs over the schema's tables and columns (the default with --schema or --db)")
    .option("--no-constrain", "decode freely even with --schema or --db")
    .option("--max-tokens <n>", "longest SQL in tokens", "256")
    .addOption(new Option("--device <device>", "where to run").choices(["auto", "cpu"]).default("auto"))
    .option("--threads <n>", "CPU threads")
    .option("--json", "print the whole result as JSON")
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql generate "How many heads of the departments are older than 56?" --adapter outputs/spider
  npx text2sql generate "Which singers are from France?" --adapter outputs/spider --schema schema.sql --json
  npx text2sql generate "Which singers are from France?" --adapter outputs/spider --db concert_singer.sqlite --candidates 8
  npx text2sql generate "Which singers are from France?" --adapter outputs/spider --schema schema.sql --no-constrain`,
    )
    .action(
      async (
        words: string[],
        o: {
          adapter?: string;
          model?: string;
          yes?: boolean;
          schema?: string;
          db?: string;
          candidates?: string;
          queryTimeout?: string;
          queryMaxBytes?: string;
          constrain?: boolean;
          maxTokens: string;
          device: "auto" | "cpu";
          threads?: string;
          json?: boolean;
        },
      ) => {
        const question = words.join(" ");
        if (!o.adapter && !o.model) throw new Error("give --adapter (a trainer output folder) and/or --model (a base GGUF)");
        const threads = o.threads !== undefined ? threadsFlag(o.threads) : undefined;
        const schema = o.schema ? readSchemaFile(o.schema) : undefined;
        if (o.constrain === true && !schema && !o.db) throw new Error("--constrain: constrained decoding needs --schema (a CREATE TABLE file) or --db");
        const maxTokens = Number(o.maxTokens);
        if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`--max-tokens: expected an integer >= 1, got ${JSON.stringify(o.maxTokens)}`);
        if ((o.candidates !== undefined || o.queryTimeout !== undefined || o.queryMaxBytes !== undefined) && !o.db)
          throw new Error("--candidates / --query-timeout / --query-max-bytes: give --db, the database the candidates run on");
        const vote = o.db
          ? {
              db: o.db,
              candidates: o.candidates !== undefined ? intFlag("--candidates", o.candidates, 1, MAX_CANDIDATES) : undefined,
              queryTimeoutMs: o.queryTimeout !== undefined ? intFlag("--query-timeout", o.queryTimeout, 1) : undefined,
              queryMaxBytes: queryMaxBytesFlag(o.queryMaxBytes),
            }
          : {};
        const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : undefined;
        const r = await generateSql({
          question,
          adapter: o.adapter,
          model,
          schema,
          constrain: o.constrain,
          maxTokens,
          device: o.device,
          threads,
          parallel: 1,
          ...vote,
        });
        await disposeGenerators();
        if (r.candidates) console.error(`text2sql: ${describeCandidates(r.candidates)}`);
        if (r.note) console.error(`text2sql: ${r.note}`);
        if (o.json) console.log(JSON.stringify(r, null, 2));
        else {
          console.log(r.sql);
          if (r.valid === false) console.error(r.candidates ? `text2sql: ${r.error}` : `text2sql: the SQL does not fit the schema: ${r.error}`);
        }
      },
    );
}
