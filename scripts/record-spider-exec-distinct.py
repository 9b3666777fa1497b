#!/usr/bin/env python3
"""Records the official execution-match verdicts on DISTINCT for test/spider-official.test.ts.

Makes, deterministically from Spider dev (dev.json, the databases under database/), predictions
that differ from their gold query only in DISTINCT, and scores each with test-suite-sql-eval's
`eval_exec_match` (exec_eval.py of https://github.com/taoyds/test-suite-sql-eval, never committed
here) with plug_value=False, once with keep_distinct=False (the default) and once with True:
  - drop:      a gold query with DISTINCT, every DISTINCT taken out;
  - add:       DISTINCT after the first SELECT of a gold query without one;
  - count:     count(x) -> count(DISTINCT x) in a gold query's first count of a column;
  - group:     SELECT DISTINCT cols FROM ... (no GROUP/ORDER/LIMIT/set operation) -> cols FROM ... GROUP BY cols.
The first PER_KIND examples of each kind in dev order whose database is there, whose gold query
runs, and that the mutation changes.

Needs python3-sqlparse and python3-tqdm (exec_eval.py imports them), exec_eval.py and its parse.py
(only `remove_distinct` is used with plug_value=False) in one folder:

  apt-get install python3-sqlparse python3-tqdm
  /usr/bin/python3 scripts/record-spider-exec-distinct.py /tmp/test-suite-official ../shared/spider \\
      test/fixtures/spider-official-exec-distinct.json
"""
import json
import os
import re
import sqlite3
import sys

PER_KIND = 25


def runs(db, q):
    try:
        con = sqlite3.connect(db)
        con.execute(q).fetchall()
        con.close()
        return True
    except Exception:
        return False


def drop(q):
    out = re.sub(r"(?i)\bdistinct\b\s*", "", q)
    return out if out != q else None


def add(q):
    if re.search(r"(?i)\bdistinct\b", q):
        return None
    out = re.sub(r"(?i)^\s*select\s+", "SELECT DISTINCT ", q, count=1)
    return out if out != q else None


def count(q):
    out = re.sub(r"(?i)\bcount\s*\(\s*(?!\*|distinct\b)", "count(DISTINCT ", q, count=1)
    return out if out != q else None


def group(q):
    m = re.match(r"(?is)^\s*select\s+distinct\s+(.*?)\s+from\s+(.*)$", q)
    if not m or re.search(r"(?i)\b(group|order|limit|union|intersect|except|select)\b", m.group(2)):
        return None
    cols = m.group(1)
    if re.search(r"(?i)\b(count|sum|avg|min|max)\s*\(|\bas\b", cols):
        return None
    return "SELECT %s FROM %s GROUP BY %s" % (cols, m.group(2).rstrip("; "), cols)


def main():
    official, spider, out = sys.argv[1:4]
    sys.path.insert(0, official)
    from exec_eval import eval_exec_match  # noqa: E402

    dev = json.load(open(os.path.join(spider, "dev.json")))
    cases = []
    for kind, fn in [("drop", drop), ("add", add), ("count", count), ("group", group)]:
        n = 0
        for i, ex in enumerate(dev):
            if n >= PER_KIND:
                break
            db = os.path.join(spider, "database", ex["db_id"], ex["db_id"] + ".sqlite")
            gold = ex["query"]
            pred = fn(gold)
            if pred is None or not os.path.exists(db) or not runs(db, gold):
                continue
            verdict = {
                keep: eval_exec_match(db, pred, gold, plug_value=False, keep_distinct=keep, progress_bar_for_each_datapoint=False)
                for keep in (False, True)
            }
            cases.append({"dev": i, "db_id": ex["db_id"], "kind": kind, "gold": gold, "pred": pred, "default": verdict[False], "keep_distinct": verdict[True]})
            n += 1
    with open(out, "w") as f:
        json.dump({"source": "test-suite-sql-eval exec_eval.eval_exec_match, plug_value=False", "cases": cases}, f, indent=1)
        f.write("\n")
    by = {}
    for c in cases:
        by.setdefault(c["kind"], [0, 0, 0])
        by[c["kind"]][0] += 1
        by[c["kind"]][1] += c["default"]
        by[c["kind"]][2] += c["keep_distinct"]
    print(out, {k: "n %d, default %d, keep_distinct %d" % tuple(v) for k, v in by.items()})


if __name__ == "__main__":
    main()
