// The first rows of the answer's result, for the HTTP answer and the page: the chosen SQL run once
// more, read-only, through the bounded query runner (query-process.ts: a killable child, a
// timeout, row and byte caps), with the bounds the candidates ran under. Blobs become
// `{ blob: <bytes> }` so that the JSON carries no binary; a failed run is `{ error, category }`.
// A SQL the candidates already saw fail (a runaway, a byte bomb) is not run a second time.
import { runReadOnly, type ExecErrorCategory } from "../sql/query-process.js";

/** Rows an answer shows. */
export const PREVIEW_ROWS = 20;

/** A cell of a preview: a SQLite value, with a blob given by its length. */
export type PreviewCell = string | number | null | { blob: number };

export type ResultRows = { columns: string[]; rows: PreviewCell[][]; count: number; truncated: boolean } | { error: string; category: ExecErrorCategory };

function cell(v: unknown): PreviewCell {
  if (v === null || v === undefined) return null;
  if (typeof v === "string" || typeof v === "number") return v;
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return { blob: v.byteLength };
  return String(v);
}

/**
 * Runs `sql` read-only on `db` within the bounds and keeps the first `keep` rows; `count` is the
 * whole result's row count and `truncated` whether rows were left out. `ran` is what the
 * candidates' run of each SQL gave (CandidateReport.list): a failure there is the answer as it is.
 */
export async function resultRows(
  db: string,
  sql: string,
  bounds: { timeoutMs: number; maxRows: number; maxBytes: number },
  ran: { sql: string; ok: boolean; category?: string; error?: string }[] = [],
  keep = PREVIEW_ROWS,
): Promise<ResultRows> {
  const failed = ran.find((c) => c.sql === sql && !c.ok);
  if (failed) return { error: failed.error ?? "the query failed", category: (failed.category ?? "error") as ExecErrorCategory };
  const r = await runReadOnly(db, sql, bounds);
  if (!r.ok) return { error: r.error, category: r.category };
  return { columns: r.columns, rows: r.rows.slice(0, keep).map((row) => row.map(cell)), count: r.rows.length, truncated: r.rows.length > keep };
}
