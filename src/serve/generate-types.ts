// The shapes of one question's answer, shared by generate.ts (SqlGenerator, generateSql) and
// candidates.ts (execution-guided candidates): GenerateOptions in, GenerateResult out, and the
// CandidateReport a result carries when candidates ran. Types only, so that both files import
// from here and neither from the other's types (generate.ts calls into candidates.ts).

export interface GenerateOptions {
  question: string;
  /** CREATE TABLE statements: fills {schema} in schema-aware templates, and enables validation */
  schema?: string;
  /** fills {evidence} in templates that have it (BIRD's hint) */
  evidence?: string;
  maxTokens?: number;
  /** 0 (default) decodes greedily; with candidates, the temperature of the sampled ones (default 1) */
  temperature?: number;
  /** check the SQL against the schema in an in-memory SQLite (default: true when a schema is given) */
  validate?: boolean;
  /**
   * a SQLite file: decode `candidates` SQL candidates, run each read-only with a timeout, answer
   * with the result most of them share (see candidates.ts); the schema defaults to the file's
   */
  db?: string;
  /** candidates with `db`: the greedy one plus candidates - 1 sampled ones (default 1, at most 32) */
  candidates?: number;
  /** seed of the first sampled candidate (default 1; candidate k uses seed + k - 1) */
  seed?: number;
  /** wall-clock limit per candidate query in ms (default 2000) */
  queryTimeoutMs?: number;
  /** byte cap of each candidate's result, counted as its rows stream (default 64 MiB; see src/sql/query-process.ts) */
  queryMaxBytes?: number;
  /**
   * decode only SELECTs over the schema's tables and columns (a grammar of the schema; see
   * src/sql/sql-grammar.ts). Default: true when a schema is given; true without a schema is an error.
   */
  constrain?: boolean;
  /**
   * wall-clock limit in ms for decoding one answer (with candidates: all of them together, and no
   * more are decoded once it has run out); when it runs out the answer ends as at the token budget
   * (`truncated: "time"`). Default: none.
   */
  decodeTimeoutMs?: number;
}

export interface GenerateResult {
  sql: string;
  /** generated tokens */
  tokens: number;
  ms: number;
  /** true when decoding was constrained to the schema's grammar */
  constrained?: boolean;
  /** set when the SQL was validated against a schema (with `db`: whether the answer ran) */
  valid?: boolean;
  error?: string;
  /** with `db`: every candidate, what failed or was killed, the votes */
  candidates?: CandidateReport;
  /**
   * "budget": maxTokens ran out before the model ended the statement ("time": decodeTimeoutMs did).
   * Constrained, the SQL is then the longest prefix of the decoded text that, closed with the
   * shortest text the grammar allows, fits the budget and prepares in SQLite (a complete prefix
   * needs no close; when none does, `valid` is false). Unconstrained, the SQL is cut where the
   * budget ended. `note` says which.
   */
  truncated?: "budget" | "time";
  note?: string;
  /** constrained: what the grammar left out of the schema or checks loosely (also warned), e.g. columns past MAX_GRAMMAR_COLUMNS */
  grammarNotes?: string[];
}

/** What the candidates did: reported with every answer that ran candidates. */
export interface CandidateReport {
  /** the database the candidates ran on */
  db: string;
  /** candidates decoded */
  n: number;
  /** distinct SQL texts among them (each ran once) */
  distinct: number;
  /** candidates dropped because their SQL failed (timeouts included) */
  failed: number;
  /** candidates whose query was killed at the timeout */
  timedOut: number;
  /** queries killed at the timeout (candidates with the same SQL share one run) */
  killed: number;
  /** failed candidates by category (syntax, no_such_column, timeout, ...) */
  errors: Record<string, number>;
  /** one entry per distinct result, most votes first: its votes, its SQL, its row count; the first won */
  votes: { votes: number; sql: string; rows: number; greedy: boolean }[];
  /** the greedy candidate's SQL, and whether the vote answered with another result */
  greedySql: string;
  changed: boolean;
  temperature: number;
  seed: number;
  timeoutMs: number;
  /** every candidate in decoding order, with its outcome and the index of its entry in `votes` */
  list: {
    sql: string;
    greedy: boolean;
    logprob: number | null;
    ok: boolean;
    vote?: number;
    category?: string;
    error?: string;
    truncated?: "budget" | "time";
  }[];
}
