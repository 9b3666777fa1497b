// GBNF, llama.cpp's grammar format: its text parsed into rules (groups and repetitions become
// rules, as llama.cpp's parser makes them), a text followed through them character by character
// with llama.cpp's stack algorithm, and the shortest text that completes what was followed.
// Constrained decoding uses it to close an answer within its token budget (src/serve/generate.ts);
// llama.cpp's own engine (through node-llama-cpp) does the constraining itself.

/** A character element: code-point ranges [lo, hi, lo, hi, ...], or everything but them. */
interface Chars {
  kind: "chars";
  ranges: number[];
  negate: boolean;
}
interface Ref {
  kind: "ref";
  rule: number;
}
type Elem = Chars | Ref;
type Alt = Elem[];

export interface GbnfRule {
  /** as written; rules made for groups and repetitions are named `<rule they are in>_<n>` */
  name: string;
  alts: Alt[];
}

export interface Gbnf {
  rules: GbnfRule[];
  root: number;
  /** per rule: the length in characters of its shortest text (Infinity: it has none) */
  minLen: number[];
  /** per rule: the alternative that gives it */
  minAlt: number[];
}

const NAME = /[a-zA-Z0-9_-]/;

/** Parses GBNF text; throws an Error naming the line on what it cannot read. */
export function parseGbnf(text: string): Gbnf {
  const p = new Parser(text);
  for (;;) {
    p.space(true);
    if (p.pos >= text.length) break;
    const n = p.name();
    p.space(false);
    if (text.slice(p.pos, p.pos + 3) !== "::=") p.fail(`expected ::= after ${n}`);
    p.pos += 3;
    const id = p.ruleId(n);
    if (p.defined.has(id)) p.fail(`rule ${n} defined twice`);
    p.defined.add(id);
    p.rules[id].alts = p.alternatives(n, false);
    if (p.pos < text.length && text[p.pos] !== "\n") p.fail("expected the end of the line");
  }
  for (const [i, r] of p.rules.entries()) if (!p.defined.has(i)) throw new Error(`gbnf: rule ${r.name} is used but not defined`);
  const root = p.byName.get("root");
  if (root === undefined) throw new Error("gbnf: no root rule");
  const { minLen, minAlt } = shortest(p.rules);
  return { rules: p.rules, root, minLen, minAlt };
}

const ESCAPES: Record<string, number> = { n: 10, r: 13, t: 9, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45, "^": 94, "'": 39 };

/** llama.cpp's GBNF parser, read as it reads: a position in the text, the rules made so far. */
class Parser {
  pos = 0;
  readonly rules: GbnfRule[] = [];
  readonly byName = new Map<string, number>();
  readonly defined = new Set<number>();
  private synth = 0;
  constructor(private readonly text: string) {}

  ruleId(name: string): number {
    let id = this.byName.get(name);
    if (id === undefined) {
      id = this.rules.length;
      this.byName.set(name, id);
      this.rules.push({ name, alts: [] });
    }
    return id;
  }

  fail(what: string): never {
    const line = this.text.slice(0, this.pos).split("\n").length;
    throw new Error(`gbnf: line ${line}: ${what} (at ${JSON.stringify(this.text.slice(this.pos, this.pos + 20))})`);
  }

  /** skips blanks and comments; newlines too when nested (inside a group) */
  space(newlines: boolean): void {
    for (const t = this.text; ;) {
      const c = t[this.pos];
      if (c === " " || c === "\t" || c === "\r" || (newlines && c === "\n")) this.pos++;
      else if (c === "#") while (this.pos < t.length && t[this.pos] !== "\n") this.pos++;
      else return;
    }
  }

  name(): string {
    const start = this.pos;
    while (this.pos < this.text.length && NAME.test(this.text[this.pos])) this.pos++;
    if (this.pos === start) this.fail("expected a rule name");
    return this.text.slice(start, this.pos);
  }

  private int(): number | undefined {
    const start = this.pos;
    while (/[0-9]/.test(this.text[this.pos] ?? "")) this.pos++;
    return this.pos > start ? Number(this.text.slice(start, this.pos)) : undefined;
  }

  /** one character of a literal or class, escapes decoded */
  private char(): number {
    const t = this.text;
    if (this.pos >= t.length) this.fail("unexpected end of text");
    if (t[this.pos] !== "\\") {
      const cp = t.codePointAt(this.pos)!;
      this.pos += cp > 0xffff ? 2 : 1;
      return cp;
    }
    const e = t[this.pos + 1];
    this.pos += 2;
    if (e in ESCAPES) return ESCAPES[e];
    const digits = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (!digits) this.fail(`unknown escape \\${e}`);
    const hex = t.slice(this.pos, this.pos + digits);
    if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) this.fail(`bad escape \\${e}${hex}`);
    this.pos += digits;
    return parseInt(hex, 16);
  }

  private newRule(base: string, alts: Alt[]): number {
    const id = this.ruleId(`${base}_${this.synth++}`);
    this.rules[id].alts = alts;
    this.defined.add(id);
    return id;
  }

  /** `item{min,max}` (max Infinity: unbounded) as llama.cpp writes it: copies, then a tail rule */
  private repeat(base: string, item: Elem, min: number, max: number): Elem[] {
    const out: Elem[] = Array.from({ length: min }, () => item);
    if (max === Infinity) {
      const id = this.newRule(base, []);
      this.rules[id].alts = [[item, { kind: "ref", rule: id }], []];
      out.push({ kind: "ref", rule: id });
    } else if (max > min) {
      let tail: number | undefined;
      for (let k = min; k < max; k++) tail = this.newRule(base, [tail === undefined ? [item] : [item, { kind: "ref", rule: tail }], []]);
      out.push({ kind: "ref", rule: tail! });
    }
    return out;
  }

  private literal(): Elem[] {
    const item: Elem[] = [];
    for (this.pos++; this.text[this.pos] !== '"';) {
      if (this.pos >= this.text.length || this.text[this.pos] === "\n") this.fail("unterminated literal");
      const cp = this.char();
      item.push({ kind: "chars", ranges: [cp, cp], negate: false });
    }
    this.pos++;
    return item;
  }

  private charClass(): Elem {
    this.pos++;
    const negate = this.text[this.pos] === "^";
    if (negate) this.pos++;
    const ranges: number[] = [];
    while (this.text[this.pos] !== "]") {
      if (this.pos >= this.text.length || this.text[this.pos] === "\n") this.fail("unterminated character class");
      const lo = this.char();
      let hi = lo;
      if (this.text[this.pos] === "-" && this.text[this.pos + 1] !== "]") {
        this.pos++;
        hi = this.char();
      }
      ranges.push(lo, hi);
    }
    this.pos++;
    return { kind: "chars", ranges, negate };
  }

  /** the bounds of a repetition operator at pos: *, +, ?, {m}, {m,}, {m,n} */
  private bounds(): [number, number] {
    const c = this.text[this.pos++];
    if (c !== "{") return [c === "+" ? 1 : 0, c === "?" ? 1 : Infinity];
    this.space(false);
    const min = this.int() ?? this.fail("expected a number after {");
    this.space(false);
    let max = min;
    if (this.text[this.pos] === ",") {
      this.pos++;
      this.space(false);
      max = this.int() ?? Infinity;
      this.space(false);
    }
    if (this.text[this.pos] !== "}") this.fail("expected }");
    this.pos++;
    return [min, max];
  }

  private sequence(base: string, nested: boolean): Alt {
    const seq: Alt = [];
    let last: Elem[] = []; // the elements of the last item (a literal has several)
    for (;;) {
      this.space(nested);
      const c = this.text[this.pos];
      if (c === undefined || c === "|" || c === ")" || c === "\n") return seq;
      let item: Elem[];
      if (c === '"') item = this.literal();
      else if (c === "[") item = [this.charClass()];
      else if (c === ".") {
        this.pos++;
        item = [{ kind: "chars", ranges: [], negate: true }];
      } else if (c === "(") {
        this.pos++;
        const alts = this.alternatives(base, true);
        if (this.text[this.pos] !== ")") this.fail("expected )");
        this.pos++;
        item = [{ kind: "ref", rule: this.newRule(base, alts) }];
      } else if (NAME.test(c)) item = [{ kind: "ref", rule: this.ruleId(this.name()) }];
      else if (c === "*" || c === "+" || c === "?" || c === "{") {
        if (last.length === 0) this.fail(`${c} with nothing before it`);
        const [min, max] = this.bounds();
        // a literal's repetition repeats the whole literal: group it first
        const unit: Elem = last.length === 1 ? last[0] : { kind: "ref", rule: this.newRule(base, [last]) };
        seq.splice(seq.length - last.length, last.length, ...this.repeat(base, unit, min, max));
        last = [];
        continue;
      } else item = this.fail("unexpected character");
      seq.push(...item);
      last = item;
    }
  }

  alternatives(base: string, nested: boolean): Alt[] {
    const alts = [this.sequence(base, nested)];
    while (this.text[this.pos] === "|") {
      this.pos++;
      alts.push(this.sequence(base, nested));
    }
    return alts;
  }
}

/** The shortest text of each rule, as lengths, by relaxation to a fixed point. */
function shortest(rules: GbnfRule[]): { minLen: number[]; minAlt: number[] } {
  const minLen = rules.map(() => Infinity);
  const minAlt = rules.map(() => -1);
  for (let changed = true; changed;) {
    changed = false;
    for (const [i, r] of rules.entries())
      for (const [a, alt] of r.alts.entries()) {
        const len = alt.reduce((s, e) => s + (e.kind === "chars" ? 1 : minLen[e.rule]), 0);
        if (len < minLen[i]) {
          minLen[i] = len;
          minAlt[i] = a;
          changed = true;
        }
      }
  }
  return { minLen, minAlt };
}

/** One frame of a parse stack: the position `i` in an alternative, and the frame to return to. */
interface Frame {
  alt: Alt;
  i: number;
  up: Frame | null;
  key: string;
  /** the length of the shortest text that empties the stack from here */
  rest: number;
}

/** Stacks past this many mean the grammar is ambiguous beyond use here: following stops. */
const MAX_STACKS = 100_000;

/**
 * A text followed through a grammar: the live parse stacks after each character, as llama.cpp's
 * llama-grammar.cpp keeps them (each stack's top is a character element; an empty stack means the
 * text so far is complete).
 */
export class GbnfFollower {
  private stacks: (Frame | null)[];
  /** per alternative: an id, and the shortest lengths of its suffixes (from each position) */
  private readonly alts = new Map<Alt, { id: number; suffix: number[] }>();

  constructor(private readonly g: Gbnf) {
    this.stacks = this.start();
  }

  private start(): (Frame | null)[] {
    const out = new Map<string, Frame | null>();
    for (const alt of this.g.rules[this.g.root].alts) this.advance(this.frame(alt, 0, null), out, 0);
    return [...out.values()];
  }

  private frame(alt: Alt, i: number, up: Frame | null): Frame {
    let a = this.alts.get(alt);
    if (!a) {
      const suffix = new Array<number>(alt.length + 1).fill(0);
      for (let j = alt.length - 1; j >= 0; j--) suffix[j] = suffix[j + 1] + this.elemLen(alt[j]);
      this.alts.set(alt, (a = { id: this.alts.size, suffix }));
    }
    return { alt, i, up, key: `${a.id}.${i}${up ? `,${up.key}` : ""}`, rest: a.suffix[i] + (up ? up.rest : 0) };
  }

  /** Expands rule references until each stack's top is a character element (or the stack is empty). */
  private advance(f: Frame | null, out: Map<string, Frame | null>, depth: number): void {
    if (depth > 1_000) throw new Error("gbnf: the grammar recurses without consuming text (left recursion)");
    while (f && f.i === f.alt.length) f = f.up;
    if (!f) {
      out.set("", null);
      return;
    }
    const e = f.alt[f.i];
    if (e.kind === "chars") {
      out.set(f.key, f);
      return;
    }
    const next = f.i + 1 < f.alt.length ? this.frame(f.alt, f.i + 1, f.up) : f.up;
    for (const alt of this.g.rules[e.rule].alts) this.advance(this.frame(alt, 0, next), out, depth + 1);
  }

  /** A follower at the same place, which goes on independently (the stacks are shared, never changed). */
  clone(): GbnfFollower {
    const c = Object.create(GbnfFollower.prototype) as GbnfFollower;
    Object.assign(c, this);
    return c;
  }

  /** Follows more text; false once the text has left the grammar (and stays false). */
  feed(text: string): boolean {
    for (const ch of text) {
      const cp = ch.codePointAt(0)!;
      const out = new Map<string, Frame | null>();
      for (const f of this.stacks) {
        if (!f) continue;
        const e = f.alt[f.i] as Chars;
        if (matches(e, cp)) this.advance(this.frame(f.alt, f.i + 1, f.up), out, 0);
      }
      this.stacks = out.size > MAX_STACKS ? [] : [...out.values()];
      if (this.stacks.length === 0) return false;
    }
    return this.stacks.length > 0;
  }

  /** Whether the text so far is complete under the grammar. */
  get complete(): boolean {
    return this.stacks.includes(null);
  }

  /** The length of the shortest text that completes the text so far (Infinity when it left the grammar). */
  get completionLength(): number {
    let best = Infinity;
    for (const f of this.stacks) best = Math.min(best, f ? f.rest : 0);
    return best;
  }

  /** Whether the text so far is still a prefix of the grammar's texts. */
  get alive(): boolean {
    return this.stacks.length > 0;
  }

  /**
   * The shortest text that completes the text so far ("" when it is complete; null when it left the
   * grammar). Where a character may be either case of a letter, it is written in lower case but in
   * the rules `upper` names (by rule name; made rules carry their rule's name as a prefix).
   */
  completion(upper: (rule: string) => boolean = () => false): string | null {
    let best: Frame | null | undefined;
    let bestLen = Infinity;
    for (const f of this.stacks) if ((f ? f.rest : 0) < bestLen) [best, bestLen] = [f, f ? f.rest : 0];
    if (best === undefined || bestLen === Infinity) return null;
    let text = "";
    for (let s = best; s; s = s.up) {
      const up = upper(this.g.rules[this.ruleOf(s.alt)].name);
      for (let j = s.i; j < s.alt.length; j++) text += this.shortestOf(s.alt[j], up, upper);
    }
    return text;
  }

  /** The rule an alternative belongs to. */
  private ruleOf(alt: Alt): number {
    if (!this.owners) {
      this.owners = new Map();
      for (const [i, r] of this.g.rules.entries()) for (const a of r.alts) this.owners.set(a, i);
    }
    return this.owners.get(alt)!;
  }
  private owners: Map<Alt, number> | undefined;

  private elemLen(e: Elem): number {
    return e.kind === "chars" ? 1 : this.g.minLen[e.rule];
  }

  private shortestOf(e: Elem, up: boolean, upper: (rule: string) => boolean): string {
    if (e.kind === "chars") return representative(e, up);
    const r = this.g.rules[e.rule];
    const inner = upper(r.name);
    return r.alts[this.g.minAlt[e.rule]].map((x) => this.shortestOf(x, inner, upper)).join("");
  }
}

function matches(e: Chars, cp: number): boolean {
  let inside = false;
  for (let k = 0; k < e.ranges.length && !inside; k += 2) inside = e.ranges[k] <= cp && cp <= e.ranges[k + 1];
  return inside !== e.negate;
}

/**
 * A character an element accepts: a space if it may be one, a letter in the case asked for if it
 * may be either, else its lowest code point, or for a negated class a plain one.
 */
function representative(e: Chars, upper: boolean): string {
  if (matches(e, 32)) return " ";
  if (!e.negate) {
    const c = String.fromCodePoint(Math.min(...e.ranges.filter((_, k) => k % 2 === 0)));
    const other = upper ? c.toUpperCase() : c.toLowerCase();
    return matches(e, other.codePointAt(0)!) ? other : c;
  }
  for (const c of "a0x _.") if (matches(e, c.codePointAt(0)!)) return c;
  for (let cp = 32; cp < 0x10000; cp++) if (matches(e, cp)) return String.fromCodePoint(cp);
  throw new Error("gbnf: a character class that accepts nothing");
}
