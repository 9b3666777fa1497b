// The docs' links, checked: every relative link in README.md and docs/*.md names a file that
// exists, and every #anchor names a heading of its target (GitHub's slugs: lower case, spaces to
// hyphens, punctuation dropped, repeats numbered -1, -2, ...).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect, test } from "vitest";
import { docPages } from "./helpers/doc-pages.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const DOCS = docPages(ROOT);

/** Markdown text without fenced code blocks (lines kept). */
const unfenced = (text: string) => text.replace(/^(```|~~~)[\s\S]*?^\1/gm, (m) => m.replace(/[^\n]/g, " "));
/** ... and without inline code spans (links there are not links). */
const prose = (text: string) => unfenced(text).replace(/`[^`\n]*`/g, (m) => " ".repeat(m.length));

/** GitHub's heading anchors of a Markdown file. */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of unfenced(text).matchAll(/^#{1,6}\s+(.*?)\s*#*\s*$/gm)) {
    const base = m[1]
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/<[^>]+>/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative links (inline and reference-style targets) of a Markdown file, with their lines. */
function links(text: string): { line: number; target: string }[] {
  const p = prose(text);
  const out: { line: number; target: string }[] = [];
  const at = (i: number) => p.slice(0, i).split("\n").length;
  for (const m of p.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ line: at(m.index), target: m[1] });
  for (const m of p.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm)) out.push({ line: at(m.index), target: m[1] });
  for (const m of p.matchAll(/<(?:a|img)\s[^>]*(?:href|src)="([^"]+)"/g)) out.push({ line: at(m.index), target: m[1] });
  return out.filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l.target));
}

export function brokenLinks(root: string, docs: string[]): string[] {
  const problems: string[] = [];
  for (const doc of docs) {
    const text = fs.readFileSync(path.join(root, doc), "utf8");
    for (const { line, target } of links(text)) {
      const [file, anchor] = target.split("#", 2);
      const resolved = file === "" ? path.join(root, doc) : path.resolve(path.dirname(path.join(root, doc)), decodeURIComponent(file));
      if (!fs.existsSync(resolved)) {
        problems.push(`${doc}:${line}: ${target}: no file ${path.relative(root, resolved)}`);
        continue;
      }
      if (anchor === undefined || anchor === "") continue;
      if (!resolved.endsWith(".md")) {
        problems.push(`${doc}:${line}: ${target}: an anchor into a file that is not Markdown`);
        continue;
      }
      if (!anchors(fs.readFileSync(resolved, "utf8")).has(decodeURIComponent(anchor).toLowerCase()))
        problems.push(`${doc}:${line}: ${target}: no heading #${anchor} in ${path.relative(root, resolved)}`);
    }
  }
  return problems;
}

test("GitHub's heading slugs", () => {
  const text = "# Set up\n## GRPO (reinforcement learning with an execution reward)\n## Set up\n```sh\n# not a heading\n```\n### `--db` and Ctrl-C: 1.5x!\n";
  expect([...anchors(text)]).toEqual(["set-up", "grpo-reinforcement-learning-with-an-execution-reward", "set-up-1", "--db-and-ctrl-c-15x"]);
});

test("the checker sees a missing file and a missing anchor", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "t2s-links-"));
  try {
    fs.mkdirSync(path.join(dir, "docs"));
    fs.writeFileSync(path.join(dir, "docs", "a.md"), "# A page\n## Two words\n");
    const readme = "[ok](docs/a.md) [ok](docs/a.md#two-words) [web](https://x.org/y.md)\n[gone](docs/b.md)\n[bad](docs/a.md#three-words) `[code](nope.md)`\n";
    fs.writeFileSync(path.join(dir, "README.md"), readme);
    expect(brokenLinks(dir, ["README.md", "docs/a.md"])).toEqual([
      "README.md:2: docs/b.md: no file docs/b.md",
      "README.md:3: docs/a.md#three-words: no heading #three-words in docs/a.md",
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("every relative link in README.md and docs/*.md resolves, anchors included", () => {
  expect(DOCS.length).toBeGreaterThanOrEqual(9);
  expect(brokenLinks(ROOT, DOCS)).toEqual([]);
});
