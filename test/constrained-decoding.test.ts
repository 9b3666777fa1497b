// Schema-constrained decoding end to end: an adapter trained only a few steps on the quickstart
// data writes SQL that SQLite refuses; constrained to the schema's grammar, over 100 quickstart
// questions all the answers prepare in SQLite and name only the schema's tables and columns. The
// model rarely ends within the token budget: the answer is then the longest prefix of what it wrote
// that the grammar's shortest completion closes within the budget, and says so (truncated: "budget").
import path from "node:path";
import { afterAll, expect, test } from "vitest";
import { SqlGenerator, validateSql, type GenerateResult } from "../src/serve/generate.js";
import { parseSchema } from "../src/sql/sql-grammar.js";
import { sqlTokens } from "../src/sql/sql-text.js";
import { closeAll } from "../src/sql/query-process.js";
import { trainSft } from "../src/train/trainer.js";
import { tempDir, testModel } from "./helpers/models.js";
import { QUICKSTART_CSV, QUICKSTART_SCHEMA, quickstartExamples } from "./helpers/quickstart.js";

afterAll(() => closeAll());

const MAX_TOKENS = 64;
const SCHEMA = QUICKSTART_SCHEMA;
const KEYWORDS = new Set(
  "select distinct from where group by having order asc desc limit join inner left outer cross on as and or not in like between is null exists union all intersect except count sum avg min max".split(
    " ",
  ),
);

/**
 * Names in the SQL that are neither keywords nor aliases it declares (AS x), and are not in the
 * schema. A double-quoted word that names nothing is a string to SQLite (as default builds read
 * it, and as validation does: src/sql/sql-text.ts withDoubleQuotedStrings), not a name.
 */
function unknownNames(sql: string, names: Set<string>): string[] {
  const toks = sqlTokens(sql);
  const unquote = (s: string) => (/^["`[]/.test(s) ? s.slice(1, -1) : s).toLowerCase();
  // aliases: the word after AS, or right after a name (FROM employees e, FROM `orders` o)
  const aliases = new Set(
    toks.flatMap((t, i) =>
      toks[i + 1]?.kind === "word" && ((t.kind === "word" && t.text === "as") || (names.has(unquote(t.text)) && !KEYWORDS.has(toks[i + 1].text)))
        ? [toks[i + 1].text]
        : [],
    ),
  );
  return toks
    .filter((t) => (t.kind === "word" || (t.kind === "quoted" && !t.text.startsWith('"'))) && !KEYWORDS.has(t.text))
    .filter((t) => !aliases.has(unquote(t.text)) && !names.has(unquote(t.text)))
    .map((t) => t.text);
}

test(
  "an undertrained adapter: constrained answers end within the token budget as complete statements that prepare in SQLite and name only the schema's identifiers",
  { timeout: 600_000 },
  async () => {
    const questions = (await quickstartExamples()).map((e) => e.question);
    const dir = tempDir("t2s-undertrained-");
    const summary = await trainSft({
      model: { path: await testModel({ nEmbd: 128, nHead: 4, nHeadKv: 2, nFf: 256 }) },
      lora: { r: 8, alpha: 16, dropout: 0, target_modules: ["q", "k", "v", "o", "gate", "up", "down"] },
      data: { path: QUICKSTART_CSV, split: [1, 0, 0] },
      train: { max_steps: 40, batch_size: 4, grad_accum: 1, lr: 3e-3, lr_schedule: "constant", eval_every: 0, save_every: 0, threads: 2 },
      output: { dir: path.join(dir, "out") },
    });
    const g = await SqlGenerator.load({ adapter: summary.outputDir, device: "cpu", parallel: 2, threads: 1 });
    const picked = Array.from({ length: 100 }, (_, i) => questions[(i * 7) % questions.length]);
    const wall: number[] = [];
    let free: GenerateResult[];
    let constrained: GenerateResult[];
    try {
      let t0 = performance.now();
      free = await g.generateMany(picked.map((question) => ({ question, schema: SCHEMA, constrain: false, maxTokens: MAX_TOKENS })));
      wall.push(performance.now() - t0);
      t0 = performance.now();
      constrained = await g.generateMany(picked.map((question) => ({ question, schema: SCHEMA, constrain: true, maxTokens: MAX_TOKENS })));
      wall.push(performance.now() - t0);
      // the decode time limit ends an answer as the token budget does: a question whose answer ran
      // out of tokens, again with a limit far below the time its 64 tokens took
      const long = constrained.find((r) => r.truncated === "budget" && r.valid)!;
      const again = await g.generate({ question: picked[constrained.indexOf(long)], schema: SCHEMA, maxTokens: MAX_TOKENS, decodeTimeoutMs: 300 });
      expect(again, JSON.stringify(again)).toMatchObject({ truncated: "time", constrained: true });
      expect(again.tokens).toBeLessThan(MAX_TOKENS);
      expect(again.note).toMatch(/^the decoding time limit \(300 ms\) ran out after \d+ tokens/);
      expect(again.valid, again.error).toBe(true);
      expect(again.note).toMatch(
        /; (closed after its first \d+ tokens with the shortest completion the schema's grammar allows, ".+" \(\d+ tokens?\)|answered with its first \d+ tokens, a complete statement)$/,
      );
      await expect(g.generate({ question: "q?", decodeTimeoutMs: 0 })).rejects.toThrow(/^decodeTimeoutMs: expected a positive number of milliseconds, got 0$/);
    } finally {
      await g.dispose();
    }
    const info = parseSchema(SCHEMA);
    const names = new Set(info.tables.flatMap((t) => [t.name, ...t.columns].map((n) => n.toLowerCase())));
    const share = (rs: GenerateResult[]) => rs.filter((r) => r.valid).length / rs.length;
    // tokens per second over each batch of 100 (2 decoders): a request's own ms includes its wait
    const tokensPerS = (rs: GenerateResult[], ms: number) => rs.reduce((a, r) => a + r.tokens, 0) / (ms / 1000);
    const cut = constrained.filter((r) => r.truncated === "budget");
    const closed = cut.filter((r) => r.note?.includes("closed after its first"));
    const whole = cut.filter((r) => r.note?.includes(`answered with its first ${MAX_TOKENS} tokens`)).length;
    const complete = cut.filter((r) => r.note?.includes("a complete statement")).length - whole;
    const refused = cut.filter((r) => r.note?.includes("SQLite refused")).length;
    // the tokens kept, and the close's: "closed after its first K tokens ... (N tokens)"
    const kept = (r: GenerateResult) => Number(/ its first (\d+) tokens/.exec(r.note ?? "")?.[1] ?? NaN);
    const closeTokens = (r: GenerateResult) => Number(/ \((\d+) tokens?\)$/.exec(r.note ?? "")?.[1] ?? NaN);
    console.log(
      `undertrained adapter (40 steps), 100 quickstart questions, ${MAX_TOKENS} tokens at most: SQLite prepares ${(100 * share(free)).toFixed(0)}% ` +
        `unconstrained, ${(100 * share(constrained)).toFixed(0)}% constrained (${cut.length} ran out of tokens: ${whole} were complete as the budget ` +
        `ended, ${complete} answered with a shorter complete prefix, ${closed.length} were closed with the grammar's shortest completion ` +
        `(${closed.reduce((a, r) => a + MAX_TOKENS - kept(r), 0) / Math.max(1, closed.length)} tokens left out on average); ${refused} had SQLite ` +
        `refuse a longer way); ${tokensPerS(free, wall[0]).toFixed(0)} vs ${tokensPerS(constrained, wall[1]).toFixed(0)} tokens/s (2 decoders, 1 thread each)\n` +
        [
          ...free.slice(0, 3).map((r) => `  free: ${r.sql}`),
          ...constrained.slice(0, 5).map((r) => `  constrained: ${r.sql}`),
          ...closed.slice(0, 4).map((r) => `  closed: ${r.sql} (${r.note})`),
        ].join("\n"),
    );
    expect(share(free)).toBeLessThan(0.2); // the adapter is undertrained: the unconstrained answers fail
    expect(free.filter((r) => r.truncated === "budget").length).toBeGreaterThan(0); // and often run out of tokens
    for (const r of constrained) expect(r.constrained).toBe(true);
    // every constrained answer prepares (an arithmetic "-" before a negative number once wrote a
    // "--" comment; a wandering SELECT list once had no complete prefix within the budget)
    expect(constrained.filter((r) => !r.valid).map((r) => `${r.sql} (${r.error}; ${r.note})`)).toEqual([]);
    expect(share(constrained)).toBe(1);
    // the closes fit the budget: the tokens kept plus the close's
    for (const r of closed) expect(kept(r) + closeTokens(r), r.note).toBeLessThanOrEqual(MAX_TOKENS);
    expect(closed.length).toBeGreaterThanOrEqual(10);
    // the text followed here to close statements never left the grammar llama.cpp constrained it to
    for (const r of constrained) expect(r.note ?? "").not.toMatch(/left the grammar/);
    // every answer that prepares names only the schema's tables and columns
    for (const r of constrained.filter((x) => x.valid)) expect(unknownNames(r.sql, names), r.sql).toEqual([]);
    // the budget did run out (the end-of-budget rule was exercised), and each such answer says so
    for (const r of cut) expect(r.note, r.sql).toMatch(/^the token budget \(64 tokens\) ran out before the statement ended; /);
    // the unknown-name check itself can fail
    expect(unknownNames("SELECT nme FROM employees AS e", names)).toEqual(["nme"]);
    expect(unknownNames('SELECT `nme`, [x] FROM employees WHERE name = "nme"', names)).toEqual(["`nme`", "[x]"]);
    expect(await validateSql(constrained.find((r) => r.valid)!.sql, SCHEMA)).toEqual({ valid: true });
  },
);
