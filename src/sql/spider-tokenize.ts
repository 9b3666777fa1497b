// Spider's SQL tokenizer: `process_sql.tokenize`, with the nltk word tokenizer it calls ported too.
//
// Spider's official evaluator reads every query through `process_sql.tokenize`: single quotes become
// double quotes, each quoted value is swapped for a placeholder, the rest goes through nltk's
// `word_tokenize` (NLTKWordTokenizer, an improved Penn Treebank tokenizer: a sequence of regular
// expression substitutions, then a split on white space), tokens are lower-cased, placeholders are
// swapped back, and `!` `>` `<` followed by a `=` token merge into one operator. The Treebank rules
// decide what the official parser can read: `a="x"` stays one token (so the query fails), `<>`
// becomes `<` `>`, `==` stays one token, `1,2` stays one token, `$` `%` `&` `;` `@` `#` `?` `!` `*`
// and brackets are split off, and a final period is split off. The rules are ported in their order,
// with Python's Unicode classes for \w, \d, \s and \b; the rules that act on quotes never fire here
// (no quote is left outside the placeholders) but are kept so the sequence reads as nltk's.

/** Python's `str.isspace()` characters (also what `re`'s \s and `str.split()` use). */
const SP = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
/** Python's Unicode \w (letters, digits, underscore). */
const W = "\\p{L}\\p{N}_";
/** Python's `$`: the end, or before a newline at the end. */
const END = "(?=\\n?$)";
/** Python's Unicode \b, on either side of a word character. */
const B_BEFORE = `(?<![${W}])`;
const B_AFTER = `(?![${W}])`;

type Rule = [RegExp, string];
const rx = (source: string, flags = ""): RegExp => new RegExp(source, `gu${flags}`);

const STARTING_QUOTES: Rule[] = [
  [rx("([«“‘„]|[`]+)"), " $1 "],
  [rx('^"'), "``"],
  [rx("(``)"), " $1 "],
  [rx("([ \\(\\[{<])(\"|'{2})"), "$1 `` "],
  [rx(`(')(?!re|ve|ll|m|t|s|d|n)([${W}])${B_AFTER}`, "i"), "$1 $2"],
];

const PUNCTUATION: (Rule | ((text: string) => string))[] = [
  // ([^\.])(\.)([\]\)}>"'» ”’]*)\s*$ -> "\1 \2 \3 "
  (text) => finalPeriod(text, "])}>\"'» ”’", " "),
  [rx("([:,])([^\\p{Nd}])"), " $1 $2"],
  [rx(`([:,])${END}`), " $1 "],
  [rx("\\.{2,}"), " $& "],
  [rx("[;@#$%&]"), " $& "],
  // ([^\.])(\.)([\]\)}>"']*)\s*$ -> "\1 \2\3 "
  (text) => finalPeriod(text, "])}>\"'", ""),
  [rx("[?!]"), " $& "],
  [rx("([^'])' "), "$1 ' "],
  [rx("[*]"), " $& "],
];

const SPACE = new RegExp(`[${SP}]`, "u");

/**
 * nltk's final-period rule, `([^\.])(\.)([<closers>]*)\s*$`, without the regular expression: with
 * a space among the closers, the expression backtracks quadratically over a run of spaces that is
 * not at the end (a minute for 200,000 spaces, in Python as here). The leftmost match is the first
 * `x.` (x not a period) followed only by closers and then only white space.
 */
function finalPeriod(text: string, closers: string, afterDot: string): string {
  const chars = [...text];
  let w = chars.length; // start of the trailing white space
  while (w > 0 && SPACE.test(chars[w - 1]!)) w--;
  let closersFrom = w; // smallest i such that chars[i..w) are all closers
  while (closersFrom > 0 && closers.includes(chars[closersFrom - 1]!)) closersFrom--;
  for (let p = 0; p + 1 < chars.length; p++) {
    if (chars[p] === "." || chars[p + 1] !== ".") continue;
    if (p + 2 < closersFrom) continue;
    let end = p + 2; // the greedy closer run, which may reach into the trailing spaces
    while (end < chars.length && closers.includes(chars[end]!)) end++;
    return `${chars.slice(0, p + 1).join("")} .${afterDot}${chars.slice(p + 2, end).join("")} `;
  }
  return text;
}

const PARENS_BRACKETS: Rule = [rx("[\\]\\[\\(\\)\\{\\}<>]"), " $& "];
const DOUBLE_DASHES: Rule = [rx("--"), " -- "];

const ENDING_QUOTES: Rule[] = [
  [rx("([»”’])"), " $1 "],
  [rx("''"), " '' "],
  [rx('"'), " '' "],
  [rx("([^' ])('[sS]|'[mM]|'[dD]|') "), "$1 $2 "],
  [rx("([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), "$1 $2 "],
];

const CONTRACTIONS: Rule[] = [
  ...["(can)(not)", "(d)('ye)", "(gim)(me)", "(gon)(na)", "(got)(ta)", "(lem)(me)", "(more)('n)"].map((p): Rule => [
    rx(`${B_BEFORE}${p}${B_AFTER}`, "i"),
    " $1 $2 ",
  ]),
  [rx(`${B_BEFORE}(wan)(na)(?=[${SP}])`, "i"), " $1 $2 "],
  [rx(` ('t)(is)${B_AFTER}`, "i"), " $1 $2 "],
  [rx(` ('t)(was)${B_AFTER}`, "i"), " $1 $2 "],
];

/** nltk `word_tokenize(text, preserve_line=True)`: NLTKWordTokenizer on the whole text. */
export function nltkWordTokenize(input: string): string[] {
  let text = input;
  const apply = (rules: (Rule | ((text: string) => string))[]) => {
    for (const r of rules) text = typeof r === "function" ? r(text) : text.replace(r[0], r[1]);
  };
  apply(STARTING_QUOTES);
  apply(PUNCTUATION);
  apply([PARENS_BRACKETS, DOUBLE_DASHES]);
  text = ` ${text} `;
  apply(ENDING_QUOTES);
  apply(CONTRACTIONS);
  return text.split(new RegExp(`[${SP}]+`, "u")).filter((t) => t.length > 0);
}

export class SpiderTokenizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SpiderTokenizeError";
  }
}

/**
 * `process_sql.tokenize`: quoted values kept whole (as double-quoted tokens, case kept), everything
 * else through nltk's word tokenizer and lower-cased, `! =` `> =` `< =` merged. Throws
 * `SpiderTokenizeError` on an odd number of quotes (the reference's "Unexpected quote").
 */
export function spiderTokenize(query: string): string[] {
  let s = query.replace(/'/g, '"');
  const quotes: number[] = [];
  for (let i = 0; i < s.length; i++) if (s[i] === '"') quotes.push(i);
  if (quotes.length % 2 !== 0) throw new SpiderTokenizeError("Unexpected quote");
  const vals = new Map<string, string>();
  for (let i = quotes.length - 1; i >= 0; i -= 2) {
    const q1 = quotes[i - 1]!;
    const q2 = quotes[i]!;
    const key = `__val_${q1}_${q2}__`;
    vals.set(key, s.slice(q1, q2 + 1));
    s = s.slice(0, q1) + key + s.slice(q2 + 1);
  }
  let toks = nltkWordTokenize(s).map((w) => {
    const t = w.toLowerCase();
    return vals.get(t) ?? t;
  });
  // merge `!` `>` `<` with a following `=` token, from the last `=` back; like the reference,
  // a `=` at index 0 looks at the last token (Python's toks[-1])
  const eqs = toks.flatMap((t, i) => (t === "=" ? [i] : [])).reverse();
  for (const i of eqs) {
    const prev = i === 0 ? toks[toks.length - 1]! : toks[i - 1]!;
    if (prev === "!" || prev === ">" || prev === "<") {
      const head = i === 0 ? toks.slice(0, -1) : toks.slice(0, i - 1);
      toks = [...head, `${prev}=`, ...toks.slice(i + 1)];
    }
  }
  return toks;
}
