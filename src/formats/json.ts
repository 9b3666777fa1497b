// JSON files (configs, records, indexes): read through the one bounded reader (a regular file of
// at most MAX_JSON_FILE_BYTES), parsed with errors that name the file.
import { readUserText } from "../util/user-file.js";

/** A JSON file larger than this is refused before it is read (a sharded checkpoint's index is a few hundred KB). */
export const MAX_JSON_FILE_BYTES = 256 * 2 ** 20;

/** Parses a JSON file; a syntax error names the file, a missing, oversized or non-regular one names `label` and the file. */
export function readJsonFile(file: string, label = "JSON file"): unknown {
  const text = readUserText(file, { label, maxBytes: MAX_JSON_FILE_BYTES, what: "a JSON file" });
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** A JSON file that must hold an object. */
export function readJsonObject(file: string, label?: string): Record<string, unknown> {
  const v = readJsonFile(file, label);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}
