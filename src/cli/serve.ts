// `text2sql serve`: the HTTP API and web page; SIGINT/SIGTERM finish the requests in flight, then exit.
import { Command, Option } from "commander";
import { DEFAULT_DECODE_TIMEOUT_MS, startServer } from "../serve/server.js";
import { baseModelOption, cliResolveModel, onInterrupt, yesOption } from "./progress.js";
import { CANDIDATES_HELP, intFlag, QUERY_MAX_BYTES_HELP, queryMaxBytesFlag, threadsFlag, QUERY_TIMEOUT_HELP } from "./candidate-flags.js";
import { MAX_CANDIDATES } from "../serve/candidates.js";

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("serve question → SQL over HTTP (POST /generate_sql, GET /health) with a web page at /")
    .option("--adapter <path>", "adapter.gguf, or a trainer output / final_model / checkpoint folder")
    .addOption(baseModelOption())
    .addOption(yesOption())
    .option("--port <n>", "port", "8080")
    .option("--host <host>", "address to bind; anything but 127.0.0.1 exposes the API to the network", "127.0.0.1")
    .option("--token <token>", "require 'Authorization: Bearer <token>' on the API (default: $TEXT2SQL_TOKEN)")
    .option("--parallel <n>", "questions decoded at once (parallel decoders over the one loaded model)", "4")
    .option("--queue <n>", "requests that may wait beyond those being decoded (more get 503)", "64")
    .addOption(new Option("--device <device>", "where to run").choices(["auto", "cpu"]).default("auto"))
    .option("--threads <n>", "CPU threads for decoding")
    .option(
      "--db <file>",
      "a SQLite database requests may name in their db field (by file name without extension) to run candidates on; repeat for more",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option("--db-dir <dir>", "databases as <dir>/<name>/<name>.sqlite that requests may name in their db field")
    .option("--candidates <n>", `for requests that name a db: ${CANDIDATES_HELP}; also the most a request may ask for`, "1")
    .option("--query-timeout <ms>", QUERY_TIMEOUT_HELP)
    .option("--query-max-bytes <n>", QUERY_MAX_BYTES_HELP)
    .option(
      "--decode-timeout <ms>",
      "wall-clock limit for decoding one request's answer, candidates included; a request that reaches it is answered as at the token budget (truncated: time)",
      String(DEFAULT_DECODE_TIMEOUT_MS),
    )
    .addHelpText(
      "after",
      `
Examples:
  npx text2sql serve --adapter outputs/spider
  curl -s localhost:8080/generate_sql -H 'content-type: application/json' -d '{"question": "How many singers are there?"}'
  npx text2sql serve --adapter outputs/spider --db-dir database/ --candidates 8
  curl -s localhost:8080/generate_sql -H 'content-type: application/json' -d '{"question": "How many singers are there?", "db": "concert_singer"}'`,
    )
    .action(
      async (o: {
        adapter?: string;
        model?: string;
        yes?: boolean;
        port: string;
        host: string;
        token?: string;
        parallel: string;
        queue: string;
        device: "auto" | "cpu";
        threads?: string;
        db: string[];
        dbDir?: string;
        candidates: string;
        queryTimeout?: string;
        queryMaxBytes?: string;
        decodeTimeout: string;
      }) => {
        if (!o.adapter && !o.model) throw new Error("give --adapter (a trainer output folder) and/or --model (a base GGUF)");
        const int = (flag: string, v: string, min: number) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
          return n;
        };
        const threads = o.threads !== undefined ? threadsFlag(o.threads, 1) : undefined;
        const model = o.model ? await cliResolveModel(o.model, { yes: o.yes, label: "--model" }) : undefined;
        const server = await startServer({
          adapter: o.adapter,
          model,
          port: int("--port", o.port, 0),
          host: o.host,
          token: o.token ?? process.env.TEXT2SQL_TOKEN,
          parallel: int("--parallel", o.parallel, 1),
          maxQueue: int("--queue", o.queue, 0),
          device: o.device,
          threads,
          db: o.db,
          dbDir: o.dbDir,
          candidates: intFlag("--candidates", o.candidates, 1, MAX_CANDIDATES),
          queryTimeoutMs: o.queryTimeout !== undefined ? intFlag("--query-timeout", o.queryTimeout, 1) : undefined,
          queryMaxBytes: queryMaxBytesFlag(o.queryMaxBytes),
          decodeTimeoutMs: intFlag("--decode-timeout", o.decodeTimeout, 1),
        });
        // the first SIGINT or SIGTERM closes the server; more are ignored while it closes
        const listen = onInterrupt((sig) => {
          process.stderr.write(`text2sql serve: ${sig}: finishing requests in flight, then exiting\n`);
          server.close().then(
            () => process.exit(0),
            (err: unknown) => {
              process.stderr.write(`text2sql serve: ${(err as Error).message}\n`);
              process.exit(1);
            },
          );
        }, "ignore");
        listen(true);
      },
    );
}
