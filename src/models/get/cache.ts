// text2sql's cache folder (hub snapshots, converted and downloaded GGUFs, the builtin model).
import os from "node:os";
import path from "node:path";

/** text2sql's cache folder: $TEXT2SQL_HOME, default ~/.cache/text2sql. */
export function cacheHome(): string {
  return process.env.TEXT2SQL_HOME || path.join(os.homedir(), ".cache", "text2sql");
}
