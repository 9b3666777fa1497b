// `text2sql keys`: every config key with its type, default and meaning.
import { Command } from "commander";
import { DEFAULTS, getPath, SCHEMA } from "../train/config.js";

export function registerKeys(program: Command): void {
  program
    .command("keys")
    .description("list every config key with its type, default and meaning")
    .action(() => {
      for (const [key, f] of Object.entries(SCHEMA)) {
        const def = JSON.stringify(getPath(DEFAULTS, key));
        const type = f.values ? f.values.join(" | ") : f.kind + (f.nullable ? " | null" : "");
        console.log(`${key.padEnd(24)} ${type.padEnd(28)} default ${def}\n${" ".repeat(25)}${f.doc}`);
      }
    });
}
