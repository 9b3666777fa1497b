// Where models come from. Today: a local GGUF, or `builtin:tiny`, a tiny random-weight Llama with
// the real Llama SPM vocabulary, made on first use for the quickstart.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { makeTestModel } from "../scripts/make-test-model.js";

/** text2sql's cache folder: $TEXT2SQL_HOME, default ~/.cache/text2sql. */
export function cacheHome(): string {
  return process.env.TEXT2SQL_HOME || path.join(os.homedir(), ".cache", "text2sql");
}

export const BUILTIN_TINY = "builtin:tiny";

/** Turns model.path into a GGUF file on disk, making the builtin model when asked for. */
export async function resolveModelPath(p: string, log: (msg: string) => void = () => {}): Promise<string> {
  if (p === BUILTIN_TINY) {
    const file = path.join(cacheHome(), "models", "builtin-tiny-v1.gguf");
    if (!fs.existsSync(file)) {
      log(`making the builtin tiny model (random weights, Llama SPM vocab): ${file}`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      await makeTestModel({ path: file, type: "f32", nEmbd: 128, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 256, nCtx: 512, seed: 7 });
    }
    return file;
  }
  if (p.startsWith("builtin:")) throw new Error(`model.path: unknown builtin model '${p}'; available: ${BUILTIN_TINY}`);
  if (!fs.existsSync(p)) throw new Error(`model.path: file not found: ${p}`);
  return p;
}
