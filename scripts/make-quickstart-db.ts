/**
 * Writes data/quickstart.sqlite: the tables of data/quickstart_schema.sql filled with seeded rows
 * (a fixed PRNG, so the rows, and so every gold query's result, are the same on every run), sized
 * so that the quickstart's gold queries mostly return rows and different queries differ: six
 * departments, 60 employees hired 2016-2024, 40 customers in eight cities, 30 products in six
 * categories, 160 orders 2018-2023, 48 students, six courses and their enrollments. The output is
 * committed (about 60 KB); configs/quickstart.yaml points every row at it (data.db).
 *
 *   node dist/scripts/make-quickstart-db.js [out.sqlite]
 */
import Database from "better-sqlite3";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const DEPTS = ["Sales", "Engineering", "Marketing", "Finance", "Support", "Research"];
const CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Prague", "Dublin"];
const CATEGORIES = ["books", "toys", "garden", "kitchen", "music", "sports"];
const COURSES = ["Algebra", "Biology", "Chemistry", "History", "Physics", "Poetry"];
const FIRST = ["Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ida", "Jon", "Kai", "Lea", "Max", "Nia", "Oto", "Pia"];
const LAST = ["Alder", "Brook", "Crane", "Dale", "Ellis", "Frost", "Grove", "Hart", "Irwin", "Jude"];
const PRODUCT_WORDS = ["Classic", "Deluxe", "Mini", "Pro", "Eco"];

/** mulberry32: a small seeded PRNG, the same on every platform. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export function makeQuickstartDb(schemaFile: string, out: string, seed = 7): { rows: Record<string, number> } {
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const person = (i: number) => `${FIRST[i % FIRST.length]} ${LAST[Math.floor(i / FIRST.length) % LAST.length]}`;
  const tmp = `${out}.tmp-${process.pid}`;
  fs.rmSync(tmp, { force: true });
  const db = new Database(tmp);
  try {
    db.exec(fs.readFileSync(schemaFile, "utf8"));
    const rows: Record<string, number> = {};
    const insert = (table: string, values: unknown[][]) => {
      const stmt = db.prepare(`INSERT INTO ${table} VALUES (${values[0].map(() => "?").join(", ")})`);
      db.transaction(() => values.forEach((v) => stmt.run(...v)))();
      rows[table] = values.length;
    };
    insert(
      "departments",
      DEPTS.map((d, i) => [i + 1, d, 50_000 * int(2, 20)]),
    );
    // every department gets at least three employees, the rest at random
    insert(
      "employees",
      Array.from({ length: 60 }, (_, i) => [i + 1, person(i), i < 18 ? (i % DEPTS.length) + 1 : int(1, DEPTS.length), 1000 * int(30, 99), int(2016, 2024)]),
    );
    insert(
      "customers",
      Array.from({ length: 40 }, (_, i) => [i + 1, person(i + 60), CITIES[i < 16 ? i % CITIES.length : int(0, CITIES.length - 1)]]),
    );
    insert(
      "products",
      Array.from({ length: 30 }, (_, i) => {
        const category = CATEGORIES[i % CATEGORIES.length];
        return [i + 1, `${PRODUCT_WORDS[Math.floor(i / CATEGORIES.length)]} ${category}`, category, int(5, 180) + int(0, 99) / 100];
      }),
    );
    insert(
      "orders",
      Array.from({ length: 160 }, (_, i) => [i + 1, int(1, 40), int(1, 30), int(1, 9), int(2018, 2023)]),
    );
    insert(
      "students",
      Array.from({ length: 48 }, (_, i) => [i + 1, person(i + 100), int(6, 12), pick(CITIES)]),
    );
    insert(
      "courses",
      COURSES.map((t, i) => [i + 1, t, int(2, 8)]),
    );
    const enroll: unknown[][] = [];
    for (let s = 1; s <= 48; s++) {
      const taken = new Set<number>();
      const n = int(2, 4);
      while (taken.size < n) taken.add(int(1, COURSES.length));
      for (const c of [...taken].sort((a, b) => a - b)) enroll.push([s, c, int(35, 100)]);
    }
    insert("enrollments", enroll);
    db.exec("VACUUM");
    db.close();
    fs.renameSync(tmp, out);
    return { rows };
  } catch (e) {
    if (db.open) db.close();
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = [path.resolve(here, "..", ".."), path.resolve(here, "..")].find((d) => fs.existsSync(path.join(d, "package.json")))!;
  const out = process.argv[2] ?? path.join(root, "data", "quickstart.sqlite");
  const r = makeQuickstartDb(path.join(root, "data", "quickstart_schema.sql"), out);
  console.log(
    `wrote ${out} (${Object.entries(r.rows)
      .map(([t, n]) => `${t} ${n}`)
      .join(", ")}; ${fs.statSync(out).size} bytes)`,
  );
}
