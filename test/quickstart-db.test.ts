// data/quickstart.sqlite: made by scripts/make-quickstart-db.ts (seeded: the same rows every run),
// every gold query of data/quickstart.csv runs on it read-only, most return rows, and different
// queries mostly return different results (so execution accuracy on the quickstart means something).
import Database from "better-sqlite3";
import path from "node:path";
import { afterAll, expect, test } from "vitest";
import { makeQuickstartDb } from "../scripts/make-quickstart-db.js";
import { closeAll, runReadOnly } from "../src/sql/query-process.js";
import { tempDir } from "./helpers/models.js";
import { quickstartExamples } from "./helpers/quickstart.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const DB = path.join(ROOT, "data", "quickstart.sqlite");

afterAll(() => closeAll());

function dump(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[];
    return JSON.stringify(tables.map((t) => [t, db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).raw(true).all()]));
  } finally {
    db.close();
  }
}

test("every quickstart gold query runs on data/quickstart.sqlite; 95% return rows; most results differ", async () => {
  const rows = await quickstartExamples();
  expect(rows).toHaveLength(272);
  let empty = 0;
  const results = new Set<string>();
  for (const r of rows) {
    const res = await runReadOnly(DB, r.sql);
    if (!res.ok) throw new Error(`${r.source}: ${res.error}: ${r.sql}`);
    if (res.rows.length === 0) empty++;
    results.add(JSON.stringify(res.rows));
  }
  expect(empty).toBeLessThanOrEqual(Math.floor(0.05 * rows.length));
  expect(results.size).toBeGreaterThan(0.5 * rows.length);
});

test("scripts/make-quickstart-db.ts makes the committed database's rows again (seeded)", () => {
  const out = path.join(tempDir(), "q.sqlite");
  const r = makeQuickstartDb(path.join(ROOT, "data", "quickstart_schema.sql"), out);
  expect(r.rows).toMatchObject({ departments: 6, employees: 60, customers: 40, products: 30, orders: 160, students: 48, courses: 6 });
  expect(dump(out)).toBe(dump(DB));
});
