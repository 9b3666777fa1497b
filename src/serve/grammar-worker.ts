// Building a schema's constrained-decoding grammar off the event loop: parsing the schema text,
// writing the GBNF (src/sql/sql-grammar.ts) and parsing it back for closing answers
// (src/formats/gbnf.ts) take up to a second for the widest schemas, which would stall every other
// request of the server (and its /health). buildGrammar runs them in a worker thread bounded in
// time and heap; this file is also that worker's entry (the compiled dist/src/serve/grammar-worker.js).
import fs from "node:fs";
import path from "node:path";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { parseGbnf, type Gbnf } from "../formats/gbnf.js";
import { parseSchema, sqlGrammar } from "../sql/sql-grammar.js";
import { packageRoot } from "../engine/native.js";

/** What the worker sends back: the grammar, or why there is none. */
export type BuiltGrammar = { gbnf: string; parsed: Gbnf; notes: string[] } | { skipped: string } | { error: string };

/** The most time and V8 heap one grammar build may take. */
export const GRAMMAR_BUILD_TIMEOUT_MS = 20_000;
const GRAMMAR_BUILD_HEAP_MB = 1024;

/** The build itself (in the worker): `maxTables` bounds the schemas constrained at all. */
function build(schema: string, maxTables: number): BuiltGrammar {
  try {
    const info = parseSchema(schema);
    if (info.tables.length > maxTables) {
      return { skipped: `the schema has ${info.tables.length} tables, more than ${maxTables}; decoding without the grammar` };
    }
    const built = sqlGrammar(info);
    return { gbnf: built.gbnf, parsed: parseGbnf(built.gbnf), notes: built.notes };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

if (!isMainThread && (workerData as { grammarWorker?: boolean } | null)?.grammarWorker) {
  const d = workerData as { schema: string; maxTables: number };
  parentPort!.postMessage(build(d.schema, d.maxTables));
}

/**
 * The grammar of `schema` built in a fresh worker thread (the compiled one, also when this module
 * runs from the TypeScript sources): an Error past GRAMMAR_BUILD_TIMEOUT_MS or the heap bound.
 */
export function buildGrammar(schema: string, maxTables: number): Promise<BuiltGrammar> {
  const file = path.join(packageRoot(), "dist", "src", "serve", "grammar-worker.js");
  if (!fs.existsSync(file)) return Promise.reject(new Error(`constrained decoding: ${file} is missing (build the package: npm run build:ts)`));
  return new Promise((resolve, reject) => {
    const w = new Worker(file, {
      workerData: { grammarWorker: true, schema, maxTables },
      resourceLimits: { maxOldGenerationSizeMb: GRAMMAR_BUILD_HEAP_MB },
    });
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void w.terminate();
      f();
    };
    const timer = setTimeout(
      () => finish(() => reject(new Error(`constrained decoding: building the schema's grammar ran longer than ${GRAMMAR_BUILD_TIMEOUT_MS} ms`))),
      GRAMMAR_BUILD_TIMEOUT_MS,
    );
    w.once("message", (m: BuiltGrammar) => finish(() => resolve(m)));
    w.once("error", (e) => finish(() => reject(new Error(`constrained decoding: building the schema's grammar failed: ${e.message}`, { cause: e }))));
    w.once("exit", (code) => finish(() => reject(new Error(`constrained decoding: the grammar worker exited (code ${code}) without a grammar`))));
  });
}
