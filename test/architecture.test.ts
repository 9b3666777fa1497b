// The shape of the code, checked: src/ folders are layers and imports only go down; nothing in
// src/ reaches into scripts/ or test/; no two files import each other, directly or round a
// circle; every src file says what it is for; files and functions
// stay short enough to read (no file in src/ or native/ over 700 lines, no function over 120).
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { expect, test } from "vitest";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const SRC = path.join(ROOT, "src");

/** The layers, lowest first: a folder may import its own files and those of lower layers only. */
const LAYERS: string[][] = [["util"], ["formats", "sql"], ["engine"], ["adapters"], ["models"], ["train"], ["serve"], ["eval"], ["cli"], ["."]];
const rank = (folder: string) => LAYERS.findIndex((l) => l.includes(folder));

const MAX_FILE_LINES = 700;
const MAX_FUNCTION_LINES = 120;

function walk(dir: string, ext: RegExp): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p, ext) : ext.test(e.name) ? [p] : [];
  });
}
const tsFiles = walk(SRC, /\.ts$/);
const nativeFiles = walk(path.join(ROOT, "native"), /\.(cpp|h)$/);
const rel = (f: string) => path.relative(ROOT, f);
const folderOf = (f: string) => {
  const r = path.relative(SRC, f).split(path.sep);
  return r.length === 1 ? "." : r[0];
};

function imports(file: string): string[] {
  const sf = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (n: ts.Node) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier))
      out.push(n.moduleSpecifier.text);
    if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && ts.isStringLiteral(n.arguments[0])) out.push(n.arguments[0].text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out.filter((s) => s.startsWith("."));
}

test("every src folder is a known layer and imports flow one way, down", () => {
  const problems: string[] = [];
  for (const f of tsFiles) {
    const from = folderOf(f);
    if (rank(from) < 0) problems.push(`${rel(f)}: folder src/${from} is not in the layer list of test/architecture.test.ts`);
    for (const spec of imports(f)) {
      const target = path.resolve(path.dirname(f), spec);
      if (!target.startsWith(SRC + path.sep)) {
        problems.push(`${rel(f)} imports ${spec}, outside src/`);
        continue;
      }
      const to = folderOf(target);
      if (to !== from && !(rank(to) < rank(from))) problems.push(`${rel(f)} (src/${from}) imports ${spec} (src/${to}), a layer that is not below it`);
    }
  }
  expect(problems).toEqual([]);
});

/**
 * src/models/ inside: model-path.ts is the one door the other layers import; get/ (getting a
 * model) and convert/ (HF checkpoint -> GGUF) each import only their own files and lower layers,
 * never each other nor the files above them; test-model.ts imports no other file of src/models/.
 */
const MODELS = path.join(SRC, "models");
const MODELS_DOOR = path.join(MODELS, "model-path.ts");
const MODELS_ROOMS = ["get", "convert"].map((d) => path.join(MODELS, d));

test("src/models/ is reached through model-path.ts, and get/ and convert/ import only their own files", () => {
  const problems: string[] = [];
  const inModels = (f: string) => f.startsWith(MODELS + path.sep);
  for (const f of tsFiles) {
    for (const spec of imports(f)) {
      const target = path.resolve(path.dirname(f), spec).replace(/\.js$/, ".ts");
      if (!inModels(target)) continue;
      if (!inModels(f)) {
        if (target !== MODELS_DOOR) problems.push(`${rel(f)} imports ${spec}: other layers import src/models/ through src/models/model-path.ts only`);
        continue;
      }
      const room = MODELS_ROOMS.find((r) => f.startsWith(r + path.sep));
      if (room && !target.startsWith(room + path.sep)) problems.push(`${rel(f)} imports ${spec}, outside ${rel(room)}/`);
      if (f === path.join(MODELS, "test-model.ts")) problems.push(`${rel(f)} imports ${spec}: the test models use no other file of src/models/`);
    }
  }
  for (const room of MODELS_ROOMS) expect(fs.existsSync(room), `${rel(room)}/ exists`).toBe(true);
  expect(problems).toEqual([]);
});

/** The import circles of a graph (file -> files it imports), each as its files in import order, first again at the end. */
export function importCircles(graph: Map<string, string[]>): string[][] {
  // Tarjan's strongly connected components; a component of two or more files (or a file that
  // imports itself) holds a circle, shown as one path through it back to its first file.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) circles.push(circleThrough(graph, new Set(component)));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
  return circles;
}

/** One circle inside a strongly connected set: a shortest way from its first file back to itself. */
function circleThrough(graph: Map<string, string[]>, members: Set<string>): string[] {
  const start = [...members].sort()[0];
  const from = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const way = [start];
        for (let x = v; x !== start; x = from.get(x)!) way.splice(1, 0, x);
        return [...way, start];
      }
      if (!from.has(w)) {
        from.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

test("the circle finder names the files of each circle, and only circles", () => {
  const g = new Map([
    ["a", ["b"]],
    ["b", ["c", "d"]],
    ["c", ["a"]],
    ["d", []],
    ["e", ["e"]],
    ["f", ["d"]],
  ]);
  expect(importCircles(g)).toEqual([
    ["a", "b", "c", "a"],
    ["e", "e"],
  ]);
  expect(
    importCircles(
      new Map([
        ["x", ["y"]],
        ["y", []],
      ]),
    ),
  ).toEqual([]);
});

test("no import circle between files of src/ (types imports included)", () => {
  const graph = new Map<string, string[]>();
  for (const f of tsFiles) {
    const targets = imports(f).map((spec) => {
      const t = path.resolve(path.dirname(f), spec).replace(/\.js$/, ".ts");
      return rel(fs.existsSync(t) ? t : path.join(t.replace(/\.ts$/, ""), "index.ts"));
    });
    graph.set(rel(f), targets);
  }
  expect(graph.size).toBeGreaterThan(50);
  expect(importCircles(graph).map((c) => c.join(" -> "))).toEqual([]);
});

test("every src file opens with a comment that says what it is for", () => {
  const bare = tsFiles.filter((f) => !/^(#!.*\n)?\s*(\/\/|\/\*)/.test(fs.readFileSync(f, "utf8")));
  expect(bare.map(rel)).toEqual([]);
});

test(`no file in src/ or native/ over ${MAX_FILE_LINES} lines`, () => {
  const long = [...tsFiles, ...nativeFiles].map((f) => ({ f: rel(f), n: fs.readFileSync(f, "utf8").split("\n").length })).filter((x) => x.n > MAX_FILE_LINES);
  expect(long).toEqual([]);
});

test(`no TypeScript function in src/ over ${MAX_FUNCTION_LINES} lines`, () => {
  const long: string[] = [];
  for (const f of tsFiles) {
    const sf = ts.createSourceFile(f, fs.readFileSync(f, "utf8"), ts.ScriptTarget.Latest, true);
    const visit = (n: ts.Node) => {
      if (ts.isFunctionLike(n) && "body" in n && n.body) {
        const a = sf.getLineAndCharacterOfPosition(n.getStart()).line;
        const b = sf.getLineAndCharacterOfPosition(n.end).line;
        if (b - a + 1 > MAX_FUNCTION_LINES) long.push(`${rel(f)}:${a + 1} ${b - a + 1} lines`);
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  expect(long).toEqual([]);
});

/** C++ function bodies: a `{` after a `)` at namespace or class level opens one; its `}` closes it. */
function cppFunctions(text: string): { line: number; lines: number }[] {
  const code = text
    .replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, " "))
    .replace(/\/\/.*$/gm, "")
    .replace(/^\s*#.*$/gm, "")
    .replace(/"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'/g, (m) => " ".repeat(m.length));
  const out: { line: number; lines: number }[] = [];
  const stack: { kind: "scope" | "function" | "block"; line: number }[] = [];
  let line = 1;
  let head = "";
  for (const c of code) {
    if (c === "\n") line++;
    if (c === "{") {
      const h = head.trim();
      const atScope = stack.every((s) => s.kind === "scope");
      const kind =
        /^(namespace|struct|class|enum|union|extern)\b/.test(h) || /\b(struct|class|enum)\s+\w+\s*(:[^)]*)?$/.test(h)
          ? "scope"
          : atScope && h.includes(")") && !/=\s*$/.test(h)
            ? "function"
            : "block";
      stack.push({ kind, line });
      head = "";
    } else if (c === "}") {
      const s = stack.pop();
      if (s?.kind === "function") out.push({ line: s.line, lines: line - s.line + 1 });
      head = "";
    } else if (c === ";") {
      head = "";
    } else {
      head += c;
    }
  }
  return out;
}

test("the C++ scanner sees functions, and only functions", () => {
  const body = Array.from({ length: 128 }, (_, i) => `    x += ${i}; // {`).join("\n");
  const text = `#include <a>\nnamespace t2s {\nstruct s { int f() const { return 1; } };\nstatic int g(int x) {\n${body}\n    if (x) { x = 2; }\n    return x;\n}\nconst char * k[] = { "{" };\n}\n`;
  expect(cppFunctions(text)).toEqual([
    { line: 3, lines: 1 },
    { line: 4, lines: 132 },
  ]);
});

test(`no C++ function in native/ over ${MAX_FUNCTION_LINES} lines`, () => {
  const all = nativeFiles.flatMap((f) => cppFunctions(fs.readFileSync(f, "utf8")).map((x) => ({ ...x, f: rel(f) })));
  expect(all.length).toBeGreaterThan(50); // the scanner finds the functions at all
  expect(all.filter((x) => x.lines > MAX_FUNCTION_LINES).map((x) => `${x.f}:${x.line} ${x.lines} lines`)).toEqual([]);
});
