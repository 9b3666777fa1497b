/**
 * Writes the quickstart dataset: data/quickstart.csv (question/SQL pairs over three small schemas)
 * and data/quickstart_schema.sql (their DDL). Deterministic; the outputs are committed.
 *
 *   node dist/scripts/make-quickstart-data.js
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SCHEMA = `-- company
CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL, budget REAL);
CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL, department_id INTEGER REFERENCES departments(id), salary REAL, hire_year INTEGER);
-- shop
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT, price REAL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), product_id INTEGER REFERENCES products(id), quantity INTEGER, order_year INTEGER);
-- school
CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT NOT NULL, grade INTEGER, city TEXT);
CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT NOT NULL, credits INTEGER);
CREATE TABLE enrollments (student_id INTEGER REFERENCES students(id), course_id INTEGER REFERENCES courses(id), score REAL, PRIMARY KEY (student_id, course_id));
`;

const DEPTS = ["Sales", "Engineering", "Marketing", "Finance", "Support", "Research"];
const CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Prague", "Dublin"];
const CATEGORIES = ["books", "toys", "garden", "kitchen", "music", "sports"];
const COURSES = ["Algebra", "Biology", "Chemistry", "History", "Physics", "Poetry"];
const YEARS = [2018, 2019, 2020, 2021, 2022, 2023];
const NUMS = [2, 3, 5, 10];
const AMOUNTS = [20, 50, 100, 40000, 60000, 80000];

type Pair = [string, string];

function templates(): Pair[] {
  const out: Pair[] = [];
  for (const d of DEPTS) {
    out.push([
      `How many employees work in the ${d} department?`,
      `SELECT count(*) FROM employees AS e JOIN departments AS d ON e.department_id = d.id WHERE d.name = '${d}'`,
    ]);
    out.push([
      `List the names of employees in ${d}.`,
      `SELECT e.name FROM employees AS e JOIN departments AS d ON e.department_id = d.id WHERE d.name = '${d}'`,
    ]);
    out.push([
      `What is the average salary in the ${d} department?`,
      `SELECT avg(e.salary) FROM employees AS e JOIN departments AS d ON e.department_id = d.id WHERE d.name = '${d}'`,
    ]);
    out.push([`What is the budget of the ${d} department?`, `SELECT budget FROM departments WHERE name = '${d}'`]);
  }
  for (const y of YEARS) {
    out.push([`How many employees were hired in ${y}?`, `SELECT count(*) FROM employees WHERE hire_year = ${y}`]);
    out.push([`Which employees were hired after ${y}?`, `SELECT name FROM employees WHERE hire_year > ${y}`]);
    out.push([`How many orders were placed in ${y}?`, `SELECT count(*) FROM orders WHERE order_year = ${y}`]);
    out.push([`What is the total quantity ordered in ${y}?`, `SELECT sum(quantity) FROM orders WHERE order_year = ${y}`]);
  }
  for (const a of AMOUNTS) {
    out.push([`Which employees earn more than ${a}?`, `SELECT name FROM employees WHERE salary > ${a}`]);
    out.push([`How many products cost less than ${a}?`, `SELECT count(*) FROM products WHERE price < ${a}`]);
    out.push([`List the products priced above ${a}.`, `SELECT name FROM products WHERE price > ${a}`]);
  }
  for (const c of CITIES) {
    out.push([`How many customers live in ${c}?`, `SELECT count(*) FROM customers WHERE city = '${c}'`]);
    out.push([`List the names of customers from ${c}.`, `SELECT name FROM customers WHERE city = '${c}'`]);
    out.push([`Which students live in ${c}?`, `SELECT name FROM students WHERE city = '${c}'`]);
    out.push([`What is the average grade of students in ${c}?`, `SELECT avg(grade) FROM students WHERE city = '${c}'`]);
    out.push([
      `How many orders were made by customers in ${c}?`,
      `SELECT count(*) FROM orders AS o JOIN customers AS c ON o.customer_id = c.id WHERE c.city = '${c}'`,
    ]);
  }
  for (const k of CATEGORIES) {
    out.push([`How many products are in the ${k} category?`, `SELECT count(*) FROM products WHERE category = '${k}'`]);
    out.push([`What is the most expensive product in ${k}?`, `SELECT name FROM products WHERE category = '${k}' ORDER BY price DESC LIMIT 1`]);
    out.push([`What is the average price of ${k} products?`, `SELECT avg(price) FROM products WHERE category = '${k}'`]);
    out.push([
      `How many ${k} products were ordered in total?`,
      `SELECT sum(o.quantity) FROM orders AS o JOIN products AS p ON o.product_id = p.id WHERE p.category = '${k}'`,
    ]);
  }
  for (const t of COURSES) {
    out.push([
      `How many students are enrolled in ${t}?`,
      `SELECT count(*) FROM enrollments AS e JOIN courses AS c ON e.course_id = c.id WHERE c.title = '${t}'`,
    ]);
    out.push([
      `What is the average score in ${t}?`,
      `SELECT avg(e.score) FROM enrollments AS e JOIN courses AS c ON e.course_id = c.id WHERE c.title = '${t}'`,
    ]);
    out.push([`How many credits is ${t} worth?`, `SELECT credits FROM courses WHERE title = '${t}'`]);
    out.push([
      `Which students take ${t}?`,
      `SELECT s.name FROM students AS s JOIN enrollments AS e ON s.id = e.student_id JOIN courses AS c ON e.course_id = c.id WHERE c.title = '${t}'`,
    ]);
  }
  for (const n of NUMS) {
    out.push([`List the ${n} highest paid employees.`, `SELECT name FROM employees ORDER BY salary DESC LIMIT ${n}`]);
    out.push([`Show the ${n} cheapest products.`, `SELECT name FROM products ORDER BY price ASC LIMIT ${n}`]);
    out.push([`Which ${n} students have the highest grades?`, `SELECT name FROM students ORDER BY grade DESC LIMIT ${n}`]);
    out.push([
      `Which departments have more than ${n} employees?`,
      `SELECT d.name FROM departments AS d JOIN employees AS e ON e.department_id = d.id GROUP BY d.name HAVING count(*) > ${n}`,
    ]);
    out.push([
      `Which customers placed more than ${n} orders?`,
      `SELECT c.name FROM customers AS c JOIN orders AS o ON o.customer_id = c.id GROUP BY c.name HAVING count(*) > ${n}`,
    ]);
  }
  for (const d of DEPTS) {
    for (const y of YEARS) {
      out.push([
        `How many ${d} employees were hired in ${y}?`,
        `SELECT count(*) FROM employees AS e JOIN departments AS d ON e.department_id = d.id WHERE d.name = '${d}' AND e.hire_year = ${y}`,
      ]);
    }
  }
  for (const c of CITIES) {
    for (const k of CATEGORIES) {
      out.push([
        `How many ${k} products did customers in ${c} order?`,
        `SELECT sum(o.quantity) FROM orders AS o JOIN customers AS c ON o.customer_id = c.id JOIN products AS p ON o.product_id = p.id WHERE c.city = '${c}' AND p.category = '${k}'`,
      ]);
    }
  }
  for (const t of COURSES) {
    out.push([
      `Which students scored above 80 in ${t}?`,
      `SELECT s.name FROM students AS s JOIN enrollments AS e ON s.id = e.student_id JOIN courses AS c ON e.course_id = c.id WHERE c.title = '${t}' AND e.score > 80`,
    ]);
  }
  out.push(["How many employees are there?", "SELECT count(*) FROM employees"]);
  out.push(["How many departments are there?", "SELECT count(*) FROM departments"]);
  out.push(["List all product categories.", "SELECT DISTINCT category FROM products"]);
  out.push(["How many students are there in each grade?", "SELECT grade, count(*) FROM students GROUP BY grade"]);
  out.push(["What is the total budget of all departments?", "SELECT sum(budget) FROM departments"]);
  out.push(["Which course has the most credits?", "SELECT title FROM courses ORDER BY credits DESC LIMIT 1"]);
  out.push([
    "How many orders did each customer place?",
    "SELECT c.name, count(*) FROM customers AS c JOIN orders AS o ON o.customer_id = c.id GROUP BY c.name",
  ]);
  out.push(["What is the average salary of all employees?", "SELECT avg(salary) FROM employees"]);
  return out;
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function writeQuickstartData(dir: string): { rows: number } {
  const pairs = templates();
  fs.mkdirSync(dir, { recursive: true });
  const csv = ["text_query,sql_command", ...pairs.map(([q, s]) => `${csvField(q)},${csvField(s)}`)].join("\n") + "\n";
  fs.writeFileSync(path.join(dir, "quickstart.csv"), csv);
  fs.writeFileSync(path.join(dir, "quickstart_schema.sql"), SCHEMA);
  return { rows: pairs.length };
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
  const dir = path.join(fs.existsSync(path.join(root, "package.json")) ? root : path.resolve(path.dirname(fileURLToPath(import.meta.url)), ".."), "data");
  const r = writeQuickstartData(dir);
  console.log(`wrote ${path.join(dir, "quickstart.csv")} (${r.rows} pairs) and quickstart_schema.sql`);
}
