// Tiny datasets with their SQLite databases, as Spider and BIRD lay them out: Spider's train/dev
// JSON, tables.json and database/<db_id>/<db_id>.sqlite; BIRD's dev.json (question, evidence, SQL,
// db_id) beside dev_databases/<db_id>/<db_id>.sqlite.
import Database from "better-sqlite3";
import fs from "node:fs";
import path from "node:path";
import { tempDir } from "./models.js";

export const SHOP_DDL = `CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL, kind TEXT);
CREATE TABLE sale (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES item(id), qty INTEGER);`;

/** A shop database with rows: 6 items of 3 kinds, 10 sales. */
export function makeShopDb(file: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.exec(SHOP_DDL);
  const kinds = ["tool", "toy", "food"];
  for (let i = 1; i <= 6; i++) db.prepare("INSERT INTO item VALUES (?, ?, ?, ?)").run(i, `item${i}`, 2.5 * i, kinds[i % 3]);
  for (let i = 1; i <= 10; i++) db.prepare("INSERT INTO sale VALUES (?, ?, ?)").run(i, (i % 6) + 1, i);
  db.close();
  return file;
}

/** Question/gold pairs over the shop database (each gold runs, with a different result). */
export const SHOP_PAIRS: [string, string][] = [
  ["How many items are there?", "SELECT count(*) FROM item"],
  ["List the names of toys.", "SELECT name FROM item WHERE kind = 'toy'"],
  ["What is the most expensive item?", "SELECT name FROM item ORDER BY price DESC LIMIT 1"],
  ["How many sales were there?", "SELECT count(*) FROM sale"],
  ["What is the total quantity sold?", "SELECT sum(qty) FROM sale"],
  ["Which kinds of items are there?", "SELECT DISTINCT kind FROM item"],
  ["What is the average price?", "SELECT avg(price) FROM item"],
  ["List items cheaper than 5.", "SELECT name FROM item WHERE price < 5"],
];

const SHOP_TABLES = {
  db_id: "shop",
  table_names_original: ["item", "sale"],
  table_names: ["item", "sale"],
  column_names_original: [
    [-1, "*"],
    [0, "id"],
    [0, "name"],
    [0, "price"],
    [0, "kind"],
    [1, "id"],
    [1, "item_id"],
    [1, "qty"],
  ],
  column_names: [],
  column_types: ["text", "number", "text", "number", "text", "number", "number", "number"],
  primary_keys: [1, 5],
  foreign_keys: [[6, 1]],
};

/** A Spider-layout folder: train.json and dev.json (db_id shop), tables.json, database/shop/shop.sqlite. */
export function makeSpiderLayout(o: { dir?: string; train?: [string, string][]; dev?: [string, string][] } = {}) {
  const dir = o.dir ?? tempDir("t2s-spider-");
  const db = makeShopDb(path.join(dir, "database", "shop", "shop.sqlite"));
  fs.writeFileSync(path.join(dir, "tables.json"), JSON.stringify([SHOP_TABLES], null, 2));
  const items = (pairs: [string, string][]) =>
    JSON.stringify(
      pairs.map(([question, query]) => ({ db_id: "shop", question, query })),
      null,
      2,
    );
  fs.writeFileSync(path.join(dir, "train.json"), items(o.train ?? SHOP_PAIRS));
  fs.writeFileSync(path.join(dir, "dev.json"), items(o.dev ?? SHOP_PAIRS.slice(0, 4)));
  return { dir, db, tables: path.join(dir, "tables.json"), train: path.join(dir, "train.json"), dev: path.join(dir, "dev.json") };
}

/** A BIRD-layout folder: dev.json with question, evidence, SQL, db_id, and dev_databases/shop/shop.sqlite. */
export function makeBirdLayout() {
  const dir = tempDir("t2s-bird-");
  const db = makeShopDb(path.join(dir, "dev_databases", "shop", "shop.sqlite"));
  const rows = SHOP_PAIRS.slice(0, 3).map(([question, SQL], i) => ({ question_id: i, db_id: "shop", question, evidence: i === 0 ? "" : `hint ${i}`, SQL }));
  fs.writeFileSync(path.join(dir, "dev.json"), JSON.stringify(rows, null, 2));
  return { dir, db, dev: path.join(dir, "dev.json") };
}
