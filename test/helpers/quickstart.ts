// The quickstart dataset (data/quickstart.csv: question and gold SQL pairs over
// data/quickstart_schema.sql), read by the project's own data reader.
import fs from "node:fs";
import path from "node:path";
import { DEFAULTS } from "../../src/train/config.js";
import { readExamples, type Example } from "../../src/train/data.js";

export const QUICKSTART_CSV = path.resolve(import.meta.dirname, "../../data/quickstart.csv");
/** The CREATE TABLE statements of the quickstart databases. */
export const QUICKSTART_SCHEMA = fs.readFileSync(path.resolve(import.meta.dirname, "../../data/quickstart_schema.sql"), "utf8");

/** The quickstart pairs, in file order. */
export function quickstartExamples(): Promise<Example[]> {
  return readExamples(QUICKSTART_CSV, DEFAULTS.data);
}
