#!/usr/bin/env python3
"""Records Spider's official exact-match verdicts for test/spider-official.test.ts.

Runs the official evaluator (`evaluation.py` + `process_sql.py` from https://github.com/taoyds/spider:
evaluation.py as of commit cccfe7bc99c4f5b7229890bbff75bfed50f2b008, whose eval_exact_match compares
FROM as sorted table lists, as test-suite-sql-eval's does; process_sql.py as of 4d065ee5afe5 (the
same code as 2c95626ae9b4); never committed here). Another evaluation.py of that repository
(03e26ec962918a19d11dba30fff69063bf44900c) also sorts `[first ON column, first ON value]`, but the
value is None after rebuild_sql_val, so under Python 3 it raises TypeError on every gold join. on the predictions that scripts/make-spider-official-cases.py makes from
Spider dev, and writes, per case, the exact-match verdict, the gold query's hardness, whether the
prediction parsed, and each partial-match component's F1, exactly as `evaluate()` computes them;
also the hardness of every dev and train gold query.
It also writes spider-official-tokens.json next to it: `process_sql.tokenize` on 1,500 seeded random
strings of the characters nltk's rules treat specially.

Adaptations, none inside the copied scripts:
- nltk's `word_tokenize` needs the punkt model, which cannot be installed here; the recorder
  replaces `process_sql.word_tokenize` by `word_tokenize(s, preserve_line=True)`, the same word
  tokenizer without the sentence splitter (a SQL query has no sentence break outside its quoted
  values, which process_sql.tokenize has replaced by placeholders before nltk sees the text);
- schemas come from tables.json (table_names_original / column_names_original, lower-cased, in
  order) instead of the .sqlite files (`get_schema` reads the same names from sqlite_master);
- foreign keys come from tables.json, as in `evaluate()`.

  apt-get install python3-nltk
  mkdir -p /tmp/spider-official   # evaluation.py and process_sql.py from taoyds/spider (commits above)
  /usr/bin/python3 scripts/make-spider-official-cases.py ../shared/spider /tmp/spider-official-cases.json
  /usr/bin/python3 scripts/record-spider-official.py /tmp/spider-official ../shared/spider \\
      /tmp/spider-official-cases.json test/fixtures/spider-official-verdicts.json
"""
import hashlib
import json
import os
import sys

PARTIAL_TYPES = ["select", "select(no AGG)", "where", "where(no OP)", "group(no Having)", "group", "order", "and/or", "IUEN", "keywords"]


def empty_sql():
    # the empty query evaluate() scores an unparseable prediction as (copied from its except branch)
    return {
        "except": None,
        "from": {"conds": [], "table_units": []},
        "groupBy": [],
        "having": [],
        "intersect": None,
        "limit": None,
        "orderBy": [],
        "select": [False, []],
        "union": None,
        "where": [],
    }


def gold_hash(query):
    return hashlib.sha256(query.encode("utf8")).hexdigest()[:12]


# characters that nltk's Treebank rules treat specially, white space Python and JavaScript disagree
# on, non-ASCII letters and digits, quotes, and SQL operators
FUZZ_ALPHABET = list(". )]}>\u00bb\u201d\u2019\t\n\x1c\x85\u00a0\ufeff,:;1a'\"`<=!-*$%&@#?(x_\u00e9\u0663\u00ab\u201c") + [
    "..", "--", "==", "<>", ">=", "! =", "t1.name", "1,2", "1.5", "can", "not", "wanna ", "'tis ", "select ", " from ", "count(*)",
]


def write_tokens(process_sql, nltk_version, path):
    """process_sql.tokenize on seeded random strings: the tokenizer's edge cases, as a fixture."""
    import random

    rnd = random.Random(15)
    rows = []
    for _ in range(1500):
        s = "".join(rnd.choice(FUZZ_ALPHABET) for _ in range(rnd.randint(1, 16)))
        try:
            rows.append([s, process_sql.tokenize(s)])
        except Exception as e:  # noqa: BLE001
            rows.append([s, type(e).__name__])
    text = '{\n "about": "process_sql.tokenize (nltk ' + nltk_version + ', word_tokenize(s, preserve_line=True)) on seeded random strings; made by scripts/record-spider-official.py",\n "cases": [\n'
    text += ",\n".join("  " + json.dumps(r) for r in rows) + "\n ]\n}\n"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: record-spider-official.py <dir with evaluation.py, process_sql.py> <spider dir> <cases.json> <out.json>")
    official, spider, cases_path, out_path = sys.argv[1:]
    sys.path.insert(0, official)
    import nltk
    import process_sql
    import evaluation

    process_sql.word_tokenize = lambda s: nltk.word_tokenize(s, preserve_line=True)

    with open(os.path.join(spider, "dev.json")) as f:
        dev = json.load(f)
    with open(os.path.join(spider, "tables.json")) as f:
        tables = json.load(f)
    schemas = {}
    for t in tables:
        d = {}
        for name in t["table_names_original"]:
            d[str(name.lower())] = []
        for ti, col in t["column_names_original"]:
            if ti >= 0:
                d[t["table_names_original"][ti].lower()].append(str(col.lower()))
        schemas[t["db_id"]] = evaluation.Schema(d)
    kmaps = evaluation.build_foreign_key_map_from_json(os.path.join(spider, "tables.json"))
    with open(cases_path) as f:
        cases = json.load(f)

    evaluator = evaluation.Evaluator()
    gold_hardness = []
    for ex in dev:
        try:
            gold_hardness.append(evaluator.eval_hardness(process_sql.get_sql(schemas[ex["db_id"]], ex["query"])))
        except Exception as e:  # noqa: BLE001
            gold_hardness.append("error: " + type(e).__name__)

    # train gold queries' hardness as one letter each (e/m/h/x; "!" where the gold does not parse)
    with open(os.path.join(spider, "train_spider.json")) as f:
        train = json.load(f)
    letter = {"easy": "e", "medium": "m", "hard": "h", "extra": "x"}
    letters = []
    for ex in train:
        try:
            letters.append(letter[evaluator.eval_hardness(process_sql.get_sql(schemas[ex["db_id"]], ex["query"]))])
        except Exception:  # noqa: BLE001
            letters.append("!")
    train_hardness = "".join(letters)

    out = []
    crashes = 0
    for c in cases:
        ex = dev[c["dev"]]
        schema = schemas[ex["db_id"]]
        kmap = kmaps[ex["db_id"]]
        rec = {"dev": c["dev"], "kind": c["kind"], "pred": c["pred"]}
        try:
            g_sql = process_sql.get_sql(schema, ex["query"])
        except Exception as e:  # noqa: BLE001
            print(f"dev {c['dev']}: the gold query does not parse ({type(e).__name__}); case left out", file=sys.stderr)
            continue
        rec["hardness"] = evaluator.eval_hardness(g_sql)
        try:
            p_sql = process_sql.get_sql(schema, c["pred"])
            rec["parses"] = True
        except Exception:  # noqa: BLE001
            p_sql = empty_sql()
            rec["parses"] = False
        try:
            g_valid = evaluation.build_valid_col_units(g_sql["from"]["table_units"], schema)
            g_sql = evaluation.rebuild_sql_col(g_valid, evaluation.rebuild_sql_val(g_sql), kmap)
            p_valid = evaluation.build_valid_col_units(p_sql["from"]["table_units"], schema)
            p_sql = evaluation.rebuild_sql_col(p_valid, evaluation.rebuild_sql_val(p_sql), kmap)
            exact = evaluator.eval_exact_match(p_sql, g_sql)
            partial = evaluator.partial_scores
        except Exception as e:  # noqa: BLE001
            # evaluate() itself would stop here: no verdict exists for this case
            crashes += 1
            print(f"dev {c['dev']} {c['kind']}: the official evaluator raises {type(e).__name__}: {e}; case left out", file=sys.stderr)
            continue
        rec["exact"] = int(exact)
        rec["partial"] = "".join(str(int(partial[k]["f1"])) for k in PARTIAL_TYPES)
        rec["gold"] = gold_hash(ex["query"])
        out.append(rec)

    fixture = {
        "about": "Spider's official evaluation.py verdicts on mutated Spider dev predictions; made by scripts/record-spider-official.py",
        "official": {
            "repository": "https://github.com/taoyds/spider",
            "commits": {"evaluation.py": "cccfe7bc99c4f5b7229890bbff75bfed50f2b008", "process_sql.py": "4d065ee5afe5bb6fc8e73e28d371b7fccef0d6ef"},
            "evaluation.py": "eval_exact_match compares FROM as sorted table lists (as in test-suite-sql-eval)",
            "nltk": nltk.__version__,
            "tokenizer": "nltk.word_tokenize(s, preserve_line=True)",
            "schemas": "tables.json",
        },
        "partialTypes": PARTIAL_TYPES,
        "goldHardness": gold_hardness,
        "trainHardness": train_hardness,
        "cases": out,
    }
    # one case a line, so that a re-recording diffs line by line
    head = {k: v for k, v in fixture.items() if k not in ("cases", "goldHardness", "trainHardness")}
    text = json.dumps(head, indent=1)[:-2] + ',\n "goldHardness": ' + json.dumps(gold_hardness)
    text += ',\n "trainHardness": ' + json.dumps(train_hardness) + ',\n "cases": [\n'
    text += ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in out) + "\n ]\n}\n"
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out_path)
    write_tokens(process_sql, nltk.__version__, os.path.join(os.path.dirname(out_path), "spider-official-tokens.json"))
    n_exact = sum(r["exact"] for r in out)
    n_fail = sum(1 for r in out if not r["parses"])
    print(f"{len(out)} cases ({n_exact} exact, {n_fail} unparseable), {crashes} left out where the evaluator raises")


if __name__ == "__main__":
    main()
