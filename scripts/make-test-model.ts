// make-test-model: writes a random-weight Llama GGUF with the real SPM vocabulary (see
// src/models/test-model.ts), for benchmarks and experiments.
//   node dist/scripts/make-test-model.js --out m.gguf --type bf16 --tinyllama
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { makeTestModel, TEST_FAMILIES, TEST_MODEL_DEFAULTS, TINYLLAMA_PRESET, type MakeTestModelOptions, type TestFamily } from "../src/models/test-model.js";

const USAGE = `usage: make-test-model --out FILE [options]

  --out FILE          output GGUF path (required)
  --type T            f32 | f16 | bf16 | q8_0 | q4_k | q4_k_m (default f32)
  --tinyllama         TinyLlama-1.1B shapes (2048 embd, 22 layers, 32/4 heads, 5632 ff, 2048 ctx)
  --n-embd N          embedding size (default ${TEST_MODEL_DEFAULTS.nEmbd})
  --n-layer N         blocks (default ${TEST_MODEL_DEFAULTS.nLayer})
  --n-head N          attention heads (default ${TEST_MODEL_DEFAULTS.nHead})
  --n-head-kv N       key/value heads (default ${TEST_MODEL_DEFAULTS.nHeadKv})
  --n-ff N            feed-forward size (default ${TEST_MODEL_DEFAULTS.nFf})
  --n-ctx N           training context length (default ${TEST_MODEL_DEFAULTS.nCtx})
  --seed N            PRNG seed (default ${TEST_MODEL_DEFAULTS.seed})
  --tied              tie output.weight to token_embd.weight
  --arch NAME         architecture name (default: the family's)
  --family F          llama (Llama 2, SPM vocab; default) | llama3 | qwen2 | qwen3 (src/models/test-model.ts)
  --head-dim N        attention head size (default: the family's)
`;

/** Parse CLI arguments into options; the preset applies first, explicit flags override it. */
export function parseArgs(argv: string[]): MakeTestModelOptions {
  const numeric: Record<string, keyof MakeTestModelOptions> = {
    "--n-embd": "nEmbd",
    "--n-layer": "nLayer",
    "--n-head": "nHead",
    "--n-head-kv": "nHeadKv",
    "--n-ff": "nFf",
    "--n-ctx": "nCtx",
    "--seed": "seed",
    "--head-dim": "headDim",
  };
  const explicit: Partial<MakeTestModelOptions> = {};
  let preset: Partial<MakeTestModelOptions> = {};
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    let inline: string | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) [arg, inline] = [arg.slice(0, eq), arg.slice(eq + 1)];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value\n\n${USAGE}`);
      return v;
    };
    if (arg in numeric) {
      const raw = value();
      const n = Number(raw);
      if (!Number.isInteger(n)) throw new Error(`${arg}: expected an integer, got "${raw}"`);
      (explicit as Record<string, number>)[numeric[arg]!] = n;
    } else if (arg === "--out" || arg === "-o") out = value();
    else if (arg === "--type") {
      const t = value();
      const types = ["f32", "f16", "bf16", "q8_0", "q4_k", "q4_k_m"];
      if (!types.includes(t)) throw new Error(`--type: expected one of ${types.join(", ")}, got "${t}"`);
      explicit.type = t as MakeTestModelOptions["type"];
    } else if (arg === "--arch") explicit.arch = value();
    else if (arg === "--family") {
      const f = value();
      if (!(f in TEST_FAMILIES)) throw new Error(`--family: expected one of ${Object.keys(TEST_FAMILIES).join(", ")}, got "${f}"`);
      explicit.family = f as TestFamily;
    } else if (arg === "--tied") explicit.tiedEmbeddings = true;
    else if (arg === "--tinyllama") preset = TINYLLAMA_PRESET;
    else if (arg === "--help" || arg === "-h") {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument "${arg}"\n\n${USAGE}`);
  }
  if (!out) throw new Error(`--out is required\n\n${USAGE}`);
  return { ...preset, ...explicit, path: out };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const start = performance.now();
  const file = await makeTestModel(opts);
  const seconds = (performance.now() - start) / 1000;
  const mb = fs.statSync(file).size / 1e6;
  process.stdout.write(`wrote ${file} (${mb.toFixed(1)} MB) in ${seconds.toFixed(1)} s\n`);
}

/** True when the module at moduleUrl (its import.meta.url) is the process entry point. */
export function isMain(moduleUrl: string): boolean {
  try {
    return !!process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

if (isMain(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`make-test-model: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
