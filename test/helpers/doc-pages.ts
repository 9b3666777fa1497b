// The documentation pages a user reads: README.md and every docs/*.md, as paths from the repository
// root (sorted). The link check and the public-API sample compile both walk this one list.
import fs from "node:fs";
import path from "node:path";

export function docPages(root: string): string[] {
  const docs = fs
    .readdirSync(path.join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`);
  return ["README.md", ...docs];
}
