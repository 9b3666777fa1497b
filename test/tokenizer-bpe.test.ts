// Byte-level BPE tokenizers (src/models/convert/bpe-vocab.ts through tokenizer.ts): for each BPE
// vocabulary of the llama.cpp bundle, the GGUF is turned into the Hugging Face tokenizer.json /
// tokenizer_config.json its model publishes (scripts/tokenizer-json.ts), our converter turns those
// back into GGUF keys, and then
// - the keys equal the bundle's (tokens, types, merges, pre-tokenizer, special ids);
// - node-llama-cpp on our GGUF tokenizes the bundle's .inp strings to exactly the .out ids (made
//   with Hugging Face's tokenizers), and so does @huggingface/tokenizers on our tokenizer.json;
// - both agree on 30 SQL-heavy strings.
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import type { LlamaModel, Token } from "node-llama-cpp";
import { readGguf, type GgufValue } from "../src/formats/gguf.js";
import { writeGguf } from "../src/formats/gguf-write.js";
import { convertTokenizer } from "../src/models/convert/tokenizer.js";
import { identifyPreTokenizer } from "../src/models/convert/bpe-vocab.js";
import { llamaCppSourceDir } from "../src/models/test-model.js";
import { cpuLlama } from "../src/train/prompt.js";
import { ggufToTokenizerJson, writeTokenizerJson } from "../scripts/tokenizer-json.js";
import { tempDir } from "./helpers/models.js";

export const SQL_STRINGS = [
  "SELECT count(*) FROM singer",
  "SELECT name ,  country ,  age FROM singer ORDER BY age DESC",
  "SELECT avg(age) ,  min(age) ,  max(age) FROM singer WHERE country  =  'France'",
  'SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id WHERE T1.year = "2014"',
  "SELECT DISTINCT country FROM singer WHERE age  >  20;",
  "select count(*) from head where age > 56",
  "SELECT name FROM employee WHERE employee_id NOT IN (SELECT employee_id FROM evaluation)",
  "SELECT a.x, b.y FROM t1 a LEFT OUTER JOIN t2 b ON a.id=b.t1_id GROUP BY a.x HAVING COUNT(*)>=3",
  'SELECT `first name`, "last name" FROM [Order Details] LIMIT 10 OFFSET 20',
  "CREATE TABLE singer (\n  singer_id INTEGER PRIMARY KEY,\n  name TEXT NOT NULL,\n  age INT\n);",
  "CREATE TABLE concert (concert_id int, stadium_id text, FOREIGN KEY (stadium_id) REFERENCES stadium(stadium_id))",
  "INSERT INTO t VALUES (1, 'O''Brien', 3.14159, -42, 1e-5, NULL);",
  "UPDATE accounts SET balance = balance * 1.05 WHERE opened < '2020-01-01'",
  "WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM cnt WHERE x<100) SELECT x FROM cnt;",
  "SELECT CASE WHEN score >= 90 THEN 'A' WHEN score >= 80 THEN 'B' ELSE 'C' END AS grade FROM exams",
  "SELECT strftime('%Y-%m', created_at) AS month, SUM(amount) FROM orders GROUP BY 1 ORDER BY 2 DESC",
  "SELECT * FROM users WHERE email LIKE '%@example.com' AND name GLOB 'J*'",
  "SELECT id FROM t WHERE x BETWEEN 10 AND 20 OR y IS NOT NULL\n\tAND z <> 'naïve café'",
  "SELECT 名前, 年齢 FROM 社員 WHERE 部署 = '営業'",
  "SELECT COALESCE(a, b, 'n/a') || ' - ' || UPPER(c) FROM x",
  "-- comment: count the rows\nSELECT COUNT(DISTINCT T1.city) FROM airports AS T1",
  "SELECT T1.name FROM students AS T1 JOIN has_pet AS T2 ON T1.stuid  =  T2.stuid WHERE T2.petid  =  'cat' INTERSECT SELECT name FROM s",
  "SELECT max(weight) , petType FROM pets GROUP BY petType",
  "SELECT 1;SELECT 2;;   SELECT   3   ;",
  "SELECT price*quantity/100.0 AS total, ROUND(avg_rating, 2) FROM products WHERE sku IN ('A-1','B-22','C-333')",
  "    SELECT\n        name\n    FROM\n        t\n    WHERE\n        id = 123456789012",
  "Question: How many singers do we have? [/INST] SELECT count(*) FROM singer",
  "SELECT json_extract(data, '$.items[0].name') FROM docs WHERE data->>'$.ok' = 'true'",
  "SELECT 🚀 FROM emoji_table WHERE note = 'I''ve been told he''s there'",
  "SELECT x FROM t WHERE s = '<|im_end|>' AND u = '<|eot_id|>'",
];

/** The bundle's BPE vocabularies with .inp/.out parity files, and whether @huggingface/tokenizers reproduces them. */
const VOCABS = ["llama-bpe", "qwen2", "qwen35", "gpt-2", "starcoder"];

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function readParity(vocabFile: string): { inputs: string[]; outputs: number[][] } {
  const inputs = fs.readFileSync(`${vocabFile}.inp`, "utf8").split("\n__ggml_vocab_test__\n");
  const outLines = fs.readFileSync(`${vocabFile}.out`, "utf8").split("\n");
  // the .inp file ends with the separator line too; .out has one line per input
  if (inputs.at(-1)!.endsWith("\n__ggml_vocab_test__")) inputs[inputs.length - 1] = inputs.at(-1)!.slice(0, -"\n__ggml_vocab_test__".length);
  const outputs = outLines.slice(0, inputs.length).map((l) => (l.trim() ? l.trim().split(/\s+/).map(Number) : []));
  return { inputs, outputs };
}

function value(v: GgufValue | undefined): unknown {
  const x = v?.value;
  return ArrayBuffer.isView(x) ? Array.from(x as unknown as ArrayLike<number>) : typeof x === "bigint" ? Number(x) : x;
}

describe.each(VOCABS)("BPE vocabulary %s", (name) => {
  const vocabFile = path.join(llamaCppSourceDir(), "models", `ggml-vocab-${name}.gguf`);
  const bundle = readGguf(vocabFile);
  const dir = tempDir("t2s-bpe-");
  dirs.push(dir);
  const nVocab = (bundle.metadata.get("tokenizer.ggml.tokens")!.value as string[]).length;
  writeTokenizerJson(bundle, dir);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ vocab_size: nVocab }));
  const warnings: string[] = [];
  const md = convertTokenizer(dir, { warn: (m) => warnings.push(m) });
  const ours = new Map(md);
  const { inputs, outputs } = readParity(vocabFile);

  test("our converter gives the bundle's tokenizer keys", () => {
    expect(warnings).toEqual([]);
    for (const key of ["model", "pre", "tokens", "token_type", "merges", "bos_token_id", "eos_token_id"]) {
      const k = `tokenizer.ggml.${key}`;
      expect(value(ours.get(k)), k).toEqual(value(bundle.metadata.get(k)));
    }
  });

  let model: LlamaModel | undefined;
  const load = async (): Promise<LlamaModel> => {
    if (model) return model;
    // the bundle's hparams with our tokenizer keys: a vocabulary-only GGUF node-llama-cpp loads
    const metadata: [string, GgufValue][] = [...bundle.metadata].filter(([k]) => !k.startsWith("tokenizer."));
    metadata.push(...md);
    const file = path.join(dir, "vocab.gguf");
    writeGguf(file, { metadata, tensors: [] });
    model = await (await cpuLlama()).loadModel({ modelPath: file, vocabOnly: true });
    return model;
  };
  afterAll(async () => model?.dispose());

  test("node-llama-cpp on our GGUF tokenizes the .inp strings to the .out ids", async () => {
    const m = await load();
    expect(inputs.length).toBeGreaterThan(20);
    for (let i = 0; i < inputs.length; i++) {
      expect(Array.from(m.tokenize(inputs[i]!, false) as Token[], Number), JSON.stringify(inputs[i])).toEqual(outputs[i]);
    }
  });

  test("@huggingface/tokenizers on our tokenizer.json agrees: .out ids and 30 SQL strings", async () => {
    const { tokenizer, tokenizerConfig } = ggufToTokenizerJson(bundle);
    const hf = new HfTokenizer(tokenizer, tokenizerConfig);
    for (let i = 0; i < inputs.length; i++) {
      // @huggingface/tokenizers 0.2.0's Digits pre-tokenizer splits ASCII digits only (\d), the
      // Rust original (and llama.cpp) every numeric character: skip those strings for StarCoder
      if (name === "starcoder" && /(?![0-9])\p{N}/u.test(inputs[i]!)) continue;
      expect(hf.encode(inputs[i]!, { add_special_tokens: false }).ids, JSON.stringify(inputs[i])).toEqual(outputs[i]);
    }
    const m = await load();
    for (const s of SQL_STRINGS) {
      // Hugging Face always parses special-token text; llama.cpp does when asked (specialTokens = true)
      const ids = Array.from(m.tokenize(s, true) as Token[], Number);
      expect(ids.length).toBeGreaterThan(3);
      expect(hf.encode(s, { add_special_tokens: false }).ids, JSON.stringify(s)).toEqual(ids);
      if (!s.includes("<|")) expect(Array.from(m.tokenize(s, false) as Token[], Number)).toEqual(ids);
    }
  });
});

describe("bad tokenizer.json", () => {
  const file = "/x/tokenizer.json";
  test("an unknown pre-tokenizer names the file and the supported ones", () => {
    const tok = { pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: "\\w+" }, behavior: "Isolated", invert: false }] } };
    expect(() => identifyPreTokenizer(tok, undefined, file)).toThrow(
      /\/x\/tokenizer\.json: unknown pre-tokenizer \(Split "\\\\w\+"\); supported: llama-bpe \(Llama 3\.x\), qwen2/,
    );
    expect(() => identifyPreTokenizer({ pre_tokenizer: { type: "Metaspace" } }, undefined, file)).toThrow(/unknown pre-tokenizer \(Metaspace\)/);
  });
  test("SmolLM2's StarCoder-shaped tokenizer is smollm when it keeps spaces", () => {
    const tok = {
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Digits", individual_digits: true },
          { type: "ByteLevel", use_regex: true },
        ],
      },
    };
    expect(identifyPreTokenizer(tok, undefined, file)).toBe("starcoder");
    expect(identifyPreTokenizer(tok, { clean_up_tokenization_spaces: false }, file)).toBe("smollm");
  });
  test("a non-BPE model, byte fallback and a huge file are refused naming the file", () => {
    const dir = tempDir("t2s-bpe-bad-");
    dirs.push(dir);
    const write = (j: unknown): void => fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(j));
    write({ model: { type: "Unigram", vocab: [] } });
    expect(() => convertTokenizer(dir)).toThrow(/tokenizer\.json: model\.type is "Unigram"; only BPE/);
    write({ model: { type: "BPE", byte_fallback: true, vocab: {}, merges: [] } });
    expect(() => convertTokenizer(dir)).toThrow(/tokenizer\.json: a BPE model with byte_fallback/);
    fs.rmSync(path.join(dir, "tokenizer.json"));
    expect(() => convertTokenizer(dir)).toThrow(/no tokenizer\.model .* nor tokenizer\.json \(byte-level BPE: llama-bpe/);
  });
});
