// GBNF read and followed here (src/formats/gbnf.ts), the shortest completions that close constrained
// answers: exact cases on small grammars, then agreement with llama.cpp's own grammar engine on the
// quickstart schema's grammar: where a gold query is cut, the follower and llama.cpp agree whether
// the cut is complete, and the cut plus its shortest completion is a text llama.cpp accepts.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { GbnfFollower, parseGbnf } from "../src/formats/gbnf.js";
import { keywordRule, parseSchema, sqlGrammar } from "../src/sql/sql-grammar.js";
import { gbnfMatcher, type GbnfMatcher } from "./helpers/gbnf.js";
import { testModel } from "./helpers/models.js";
import { QUICKSTART_SCHEMA, quickstartExamples } from "./helpers/quickstart.js";

const follow = (gbnf: string, text: string) => {
  const f = new GbnfFollower(parseGbnf(gbnf));
  const alive = f.feed(text);
  return { alive, complete: f.complete, completion: f.completion(), length: f.completionLength };
};

describe("reading and following GBNF", () => {
  test("literals, classes, groups and every repetition; the shortest completion of each prefix", () => {
    const g = [
      "# a comment",
      'root ::= "ab" [0-9]{2,4} ( "x" | "yy" )? tail  # trailing comment',
      "tail ::= [^a-z\\n]+ | (",
      '  "q" "\\"" "\\x41" [\\t-] # nested groups may span lines',
      ")",
    ].join("\n");
    expect(follow(g, "")).toMatchObject({ alive: true, complete: false, completion: "ab00 ", length: 5 });
    expect(follow(g, "ab1")).toMatchObject({ alive: true, completion: "0 " });
    expect(follow(g, "ab123x")).toMatchObject({ alive: true, completion: " " });
    expect(follow(g, "ab12345")).toMatchObject({ alive: true, completion: "" }); // 4 digits, then "5" as tail
    expect(follow(g, "ab12q")).toMatchObject({ alive: true, completion: '"A\t' });
    expect(follow(g, 'ab12q"A-')).toMatchObject({ alive: true, complete: true, completion: "" });
    expect(follow(g, "ab12yy!!")).toMatchObject({ alive: true, complete: true });
    expect(follow(g, "ab12345a")).toMatchObject({ alive: false, complete: false, completion: null, length: Infinity });
    expect(follow(g, "ab1x")).toMatchObject({ alive: false });
    // {m}, {m,} and *; a repeated literal repeats whole
    const r = 'root ::= "a"{3} "b"{2,} "cd"* "e"';
    expect(follow(r, "aa").completion).toBe("abbe");
    expect(follow(r, "aaabbbbcdc").completion).toBe("de");
    expect(follow(r, "aaabbcdce").alive).toBe(false);
  });

  test("letters that may be either case are written as the rules named ask", () => {
    const g = 'root ::= k-select " " name\nk-select ::= [sS] [eE] [lL]\nname ::= [aA] [bB]';
    expect(new GbnfFollower(parseGbnf(g)).completion(keywordRule)).toBe("SEL ab");
    const f = new GbnfFollower(parseGbnf(g));
    f.feed("se");
    expect(f.completion(keywordRule)).toBe("L ab");
    expect(f.completion()).toBe("l ab");
  });

  test("what it cannot read is an error naming the line", () => {
    expect(() => parseGbnf('root ::= "a"\nroot ::= "b"')).toThrow(/^gbnf: line 2: rule root defined twice/);
    expect(() => parseGbnf('root ::= "a" x')).toThrow("gbnf: rule x is used but not defined");
    expect(() => parseGbnf('x ::= "a"')).toThrow("gbnf: no root rule");
    expect(() => parseGbnf('root ::= "a\n"')).toThrow(/^gbnf: line 1: unterminated literal/);
    expect(() => parseGbnf("root ::= [ab")).toThrow(/^gbnf: line 1: unterminated character class/);
    expect(() => parseGbnf("root ::= [a-")).toThrow(/^gbnf: line 1: unexpected end of text/);
    expect(() => parseGbnf('root ::= "a" {2')).toThrow(/^gbnf: line 1: expected }/);
    expect(() => parseGbnf("root ::= * ")).toThrow(/^gbnf: line 1: \* with nothing before it/);
    expect(() => parseGbnf('root ::= "\\q"')).toThrow(/^gbnf: line 1: unknown escape \\q/);
    expect(() => new GbnfFollower(parseGbnf('root ::= root "a" | "b"'))).toThrow(/left recursion/);
  });
});

let m: GbnfMatcher;
beforeAll(async () => {
  m = await gbnfMatcher(await testModel());
});
afterAll(() => m?.dispose());

test(
  "on the quickstart schema's grammar, each gold query is followed to its end, and cut anywhere is followed as llama.cpp follows it and closed into a text llama.cpp accepts",
  { timeout: 300_000 },
  async () => {
    const gbnf = sqlGrammar(parseSchema(QUICKSTART_SCHEMA)).gbnf;
    const g = parseGbnf(gbnf);
    const llama = await m.grammar(gbnf);
    const gold = (await quickstartExamples()).map((e) => e.sql);
    expect(gold.length).toBeGreaterThan(250);
    let cuts = 0;
    const wrong: string[] = [];
    for (const [k, sql] of gold.entries()) {
      // followed character by character: alive throughout, complete at the end; every cut's close is
      // as long as the completion length says
      const f = new GbnfFollower(g);
      for (const [i, ch] of [...sql].entries()) {
        if (!f.feed(ch)) {
          wrong.push(`follower refused ${JSON.stringify(sql.slice(0, i + 1))}`);
          break;
        }
        if (f.completion()!.length !== f.completionLength) wrong.push(`completion length differs at ${JSON.stringify(sql.slice(0, i + 1))}`);
      }
      if (!f.complete) wrong.push(`follower: not complete ${JSON.stringify(sql)}`);
      // one cut per query (llama.cpp's check costs ~30 ms here), at a different place in each
      const cut = sql.slice(0, 1 + ((k * 37) % (sql.length - 1)));
      const c = new GbnfFollower(g);
      c.feed(cut);
      const closed = cut + c.completion(keywordRule);
      if (m.refusal(llama, closed) !== null) wrong.push(`llama.cpp refused the close ${JSON.stringify(closed)}`);
      if (c.complete !== (m.refusal(llama, cut) === null)) wrong.push(`completeness differs on ${JSON.stringify(cut)}`);
      cuts++;
      // a wrong turn: both refuse a column the schema does not have
      const bad = sql.replace(/^SELECT /i, "SELECT nosuchcolumn ");
      const refusal = m.refusal(llama, bad);
      if (new GbnfFollower(g).feed(bad) || refusal === null || refusal.endsWith("<end>"))
        wrong.push(`both should refuse ${JSON.stringify(bad)} (llama.cpp: ${refusal})`);
    }
    expect(cuts).toBe(gold.length);
    expect(wrong).toEqual([]);
  },
);
