// SQLite databases for the server's and the page's tests, made by the test: `school` answers the
// overfit adapter's SQL (helpers/overfit.ts) with 30 heads, one named by a blob; in `runaway` and
// `bomb` the table `head` is a view whose rows never end or are 100 KB strings, so the same SQL is
// hostile there.
import Database from "better-sqlite3";
import fs from "node:fs";
import path from "node:path";

const TABLES = `CREATE TABLE department (id INTEGER PRIMARY KEY, state TEXT, budget REAL);
  CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT);
  INSERT INTO department VALUES (1, 'Texas', 10.5), (2, 'Texas', 20.5), (3, 'Ohio', 7);
  INSERT INTO singer VALUES (1, 'Edith', 'France'), (2, 'Joe', 'USA');`;

/** The heads of `school`, oldest first (as SELECT name , age FROM head ORDER BY age DESC gives them); the first name is a 4-byte blob. */
const FIRST = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo"];
const LAST = ["Park", "Nakamura", "Okafor", "Silva", "Novak"];
export const HEADS: [string | Buffer, number][] = Array.from({ length: 30 }, (_, i) => [
  i === 0 ? Buffer.from([0xde, 0xad, 0xbe, 0xef]) : `${FIRST[i % FIRST.length]} ${LAST[(i * 3 + Math.floor(i / 10)) % LAST.length]}`,
  90 - i,
]);

/** Writes school.sqlite, runaway.sqlite and bomb.sqlite into `dir`; returns their paths by name. */
export function makeServeDatabases(dir: string): { school: string; runaway: string; bomb: string } {
  fs.mkdirSync(dir, { recursive: true });
  const make = (name: string, sql: string, fill?: (d: Database.Database) => void) => {
    const file = path.join(dir, `${name}.sqlite`);
    const d = new Database(file);
    d.exec(TABLES + sql);
    fill?.(d);
    d.close();
    return file;
  };
  return {
    school: make("school", "CREATE TABLE head (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);", (d) => {
      const ins = d.prepare("INSERT INTO head (name, age) VALUES (?, ?)");
      for (const [name, age] of HEADS) ins.run(name, age);
    }),
    runaway: make(
      "runaway",
      "CREATE VIEW head AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n AS id, 'x' AS name, n AS age FROM r;",
    ),
    bomb: make(
      "bomb",
      "CREATE VIEW head AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 200) SELECT n AS id, printf('%.*c', 100000, 'x') AS name, n AS age FROM r;",
    ),
  };
}
