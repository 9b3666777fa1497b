// `text2sql serve`: an HTTP API and a web page for question → SQL, on Fastify. The model and
// adapter load once; requests queue onto the model's parallel decoders, with a cap (503 and
// Retry-After beyond it). Every request is validated by JSON schema; bad requests get clear JSON
// errors, never a crash.
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { SqlGenerator, type GenerateResult } from "./generate.js";
import { CANDIDATE_MAX_ROWS, candidateAnswer, DEFAULT_QUERY_TIMEOUT_MS, describeCandidates, listDatabases, MAX_CANDIDATES } from "./candidates.js";
import { resultRows, type ResultRows } from "./result-rows.js";
import { DEFAULT_QUERY_MAX_BYTES } from "../sql/query-process.js";
import { packageRoot } from "../engine/native.js";

export interface ServerOptions {
  /** adapter.gguf or a trainer output folder (its base model is used unless `model` is given) */
  adapter?: string;
  /** base model: a GGUF or any model.path form (see resolveModelPath); default: the adapter's recorded base */
  model?: string;
  host?: string;
  port?: number;
  /** require `Authorization: Bearer <token>` on the API */
  token?: string;
  /** questions decoded at once (parallel decoders over the one loaded model) */
  parallel?: number;
  /** requests allowed to wait beyond the ones being decoded; more get 503 */
  maxQueue?: number;
  device?: "auto" | "cpu";
  threads?: number;
  maxTokens?: number;
  /** SQLite files a request may name in `db` (by file name without extension) to run candidates on */
  db?: string[];
  /** a folder of <name>/<name>.sqlite databases a request may name in `db` */
  dbDir?: string;
  /** candidates per request that names a database, and the most a request may ask for (default 1) */
  candidates?: number;
  /** wall-clock limit per candidate query in ms (default 2000) */
  queryTimeoutMs?: number;
  /** byte cap of each candidate's result (default 64 MiB) */
  queryMaxBytes?: number;
  /**
   * wall-clock limit for decoding one request's answer, candidates included (default 30000): a
   * request whose decoding wanders is answered at the limit, as at the token budget
   */
  decodeTimeoutMs?: number;
  /** log lines (default: stderr) */
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  generator: SqlGenerator;
  /** stop taking requests, finish those in flight, free the model */
  close(): Promise<void>;
}

export const BODY_LIMIT = 64 * 1024;
/** The server's default wall-clock limit for decoding one request's answer. */
export const DEFAULT_DECODE_TIMEOUT_MS = 30_000;

const generateSchema = {
  body: {
    type: "object",
    required: ["question"],
    additionalProperties: false,
    properties: {
      question: { type: "string", minLength: 1, maxLength: 4000 },
      schema: { type: "string", maxLength: 60000 },
      /** decode only SELECTs over the schema's names (default: true when a schema is given) */
      constrain: { type: "boolean" },
      db: { type: "string", minLength: 1, maxLength: 128 },
      candidates: { type: "integer", minimum: 1, maximum: MAX_CANDIDATES },
    },
  },
} as const;

function fieldOf(err: FastifyError): string {
  const v = err.validation?.[0];
  if (!v) return "body";
  const missing = (v.params as { missingProperty?: string; additionalProperty?: string }).missingProperty;
  const extra = (v.params as { additionalProperty?: string }).additionalProperty;
  if (missing) return `${missing}: required`;
  if (extra) return `${extra}: unknown field (send question and optionally schema, constrain, db, candidates)`;
  const field = v.instancePath.replace(/^\//, "") || "body";
  if (field === "body" && v.keyword === "type") return 'body: send a JSON object like {"question": "...", "schema": "CREATE TABLE ..."}';
  if (v.keyword === "minLength") return `${field}: must not be empty`;
  if (v.keyword === "maxLength") return `${field}: too long (${v.message})`;
  return `${field}: ${v.message}`;
}

/** Every error as a JSON answer that names the problem: 400 naming the field, 413, 415, 404, 500 logged. */
function answerErrors(app: FastifyInstance, log: (line: string) => void): void {
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err.validation) return reply.code(400).send({ error: fieldOf(err) });
    if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") return reply.code(413).send({ error: `request body over ${BODY_LIMIT / 1024} KiB` });
    if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return reply.code(415).send({ error: "content-type: send application/json" });
    if (err.code === "FST_ERR_CTP_EMPTY_JSON_BODY") return reply.code(400).send({ error: 'body: empty; send JSON like {"question": "..."}' });
    if (err.statusCode === 400 && (err.code === "FST_ERR_CTP_INVALID_JSON_BODY" || err instanceof SyntaxError || /JSON/.test(err.message))) {
      return reply.code(400).send({ error: `body: malformed JSON (${err.message})` });
    }
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message });
    log(`error: ${err.stack ?? err.message}`);
    return reply.code(500).send({ error: `internal error: ${err.message}` });
  });

  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no route ${req.method} ${req.url.split("?")[0]}; routes: GET /, GET /health, POST /generate_sql` }),
  );
}

/** The startup lines: where it listens, what it serves, and a warning when it is exposed without a token. */
function logReady(
  log: (line: string) => void,
  r: { address: string; generator: SqlGenerator; host: string; parallel: number; maxQueue: number; token?: string; seconds: number },
): void {
  log(`text2sql serve: listening on ${r.address}`);
  log(`  model   ${r.generator.modelPath}`);
  log(`  adapter ${r.generator.adapterPath ?? "(none)"}`);
  log(`  device  ${r.generator.device}, ${r.parallel} parallel decoders, queue of ${r.maxQueue}`);
  log(`  ready in ${r.seconds.toFixed(1)} s`);
  if (r.host !== "127.0.0.1" && r.host !== "localhost" && r.host !== "::1") {
    log(
      r.token
        ? `  note: bound to ${r.host}; the API wants 'Authorization: Bearer <token>'`
        : `  WARNING: bound to ${r.host} with no authentication: anyone who can reach this address can use the API (pass --token to require one)`,
    );
  }
}

/** The request's database (a name from the server's list, never a path) and candidate count, or the 400 message. */
function pickDatabase(
  body: { db?: string; candidates?: number },
  databases: Map<string, string>,
  maxCandidates: number,
): { db?: string; candidates?: number } | { error: string } {
  const names = [...databases.keys()];
  const offer = names.length
    ? `this server has: ${names.slice(0, 20).join(", ")}${names.length > 20 ? `, ... (${names.length})` : ""}`
    : "this server has none (start it with --db or --db-dir)";
  if (body.db === undefined) return body.candidates === undefined ? {} : { error: `candidates: the candidates run on a database; send db too (${offer})` };
  const db = databases.get(body.db);
  if (!db) return { error: `db: unknown database ${JSON.stringify(body.db)}; ${offer}` };
  const candidates = body.candidates ?? maxCandidates;
  if (candidates > maxCandidates) return { error: `candidates: this server runs at most ${maxCandidates} per request (serve --candidates), got ${candidates}` };
  return { db, candidates };
}

/**
 * The answer's first rows on its database, run under the candidates' bounds; a SQL that failed as
 * a candidate is answered with that failure, not run again.
 */
function answerRows(db: string, r: GenerateResult, o: ServerOptions): Promise<ResultRows> {
  const bounds = { timeoutMs: o.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS, maxRows: CANDIDATE_MAX_ROWS, maxBytes: o.queryMaxBytes ?? DEFAULT_QUERY_MAX_BYTES };
  return resultRows(db, r.sql, bounds, r.candidates?.list);
}

/**
 * Whether an Authorization header carries the bearer token, in time that does not depend on where
 * they differ: the SHA-256 digests of both (equal lengths whatever the header's) are compared with
 * crypto.timingSafeEqual.
 */
export function authorized(header: string | undefined, token: string): boolean {
  const digest = (s: string) => crypto.createHash("sha256").update(s, "utf8").digest();
  return crypto.timingSafeEqual(digest(header ?? ""), digest(`Bearer ${token}`));
}

/**
 * The Fastify app with the request rules every route shares: a body limit, JSON only, unknown
 * fields refused, the bearer token when one is set, and Connection: close while stopping.
 */
function newApp(token: string | undefined, isStopping: () => boolean): FastifyInstance {
  const app = Fastify({
    bodyLimit: BODY_LIMIT,
    logger: false,
    return503OnClosing: true,
    // JSON.parse makes "__proto__" an own key (no prototype is touched), which the schema then names
    // as an unknown field; Fastify's default calls such a body malformed JSON
    onProtoPoisoning: "ignore",
    onConstructorPoisoning: "ignore",
    // reject unknown fields instead of silently dropping them
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  });
  app.removeContentTypeParser("text/plain"); // JSON only: anything else is 415
  // while stopping, answer in-flight requests with Connection: close, so no idle keep-alive
  // socket holds the shutdown until its timeout
  app.addHook("onSend", async (_req, reply, payload) => {
    if (isStopping()) reply.header("connection", "close");
    return payload;
  });
  app.addHook("onRequest", async (req, reply) => {
    if (!token || req.url === "/" || req.method === "OPTIONS") return;
    if (!authorized(req.headers.authorization, token)) {
      return reply.code(401).header("WWW-Authenticate", "Bearer").send({ error: "authorization: this server wants 'Authorization: Bearer <token>'" });
    }
  });
  return app;
}

export async function startServer(o: ServerOptions = {}): Promise<RunningServer> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const t0 = performance.now();
  const host = o.host ?? "127.0.0.1";
  const parallel = o.parallel ?? 4;
  const maxQueue = o.maxQueue ?? 64;
  const databases = listDatabases(o.db, o.dbDir, log);
  const maxCandidates = o.candidates ?? 1;
  if (!Number.isInteger(maxCandidates) || maxCandidates < 1 || maxCandidates > MAX_CANDIDATES) {
    throw new TypeError(`candidates: expected an integer from 1 to ${MAX_CANDIDATES}, got ${maxCandidates}`);
  }
  const decodeTimeoutMs = o.decodeTimeoutMs ?? DEFAULT_DECODE_TIMEOUT_MS;
  if (!(typeof decodeTimeoutMs === "number" && decodeTimeoutMs > 0 && Number.isFinite(decodeTimeoutMs)))
    throw new TypeError(`decodeTimeoutMs: expected a positive number of milliseconds, got ${JSON.stringify(o.decodeTimeoutMs)}`);
  if (maxCandidates > 1 && databases.size === 0) throw new Error("candidates: the candidates run on databases; give db or dbDir (--db / --db-dir)");
  const generator = await SqlGenerator.load({ adapter: o.adapter, model: o.model, device: o.device, parallel, threads: o.threads });
  const page = fs.readFileSync(path.join(packageRoot(), "src", "serve", "web", "index.html"));
  const started = Date.now();
  let served = 0;
  let pending = 0;

  let stopping = false;
  const app = newApp(o.token, () => stopping);
  answerErrors(app, log);

  app.get("/", async (_req, reply) => reply.type("text/html; charset=utf-8").send(page));

  app.get("/health", async () => ({
    status: "ok",
    model: generator.modelPath,
    adapter: generator.adapterPath ?? null,
    device: generator.device,
    uptimeS: (Date.now() - started) / 1000,
    requestsServed: served,
    inFlight: pending,
    parallel,
    maxQueue,
    databases: [...databases.keys()],
    candidates: maxCandidates,
  }));

  app.post("/generate_sql", { schema: generateSchema }, async (req, reply) => {
    const body = req.body as { question: string; schema?: string; constrain?: boolean; db?: string; candidates?: number };
    const question = body.question.trim();
    if (!question) return reply.code(400).send({ error: "question: must not be empty" });
    const vote = pickDatabase(body, databases, maxCandidates);
    if ("error" in vote) return reply.code(400).send({ error: vote.error });
    if (pending >= parallel + maxQueue) {
      return reply
        .code(503)
        .header("Retry-After", "1")
        .send({ error: `busy: ${pending} requests in flight or queued; retry shortly` });
    }
    pending++;
    try {
      const schema = body.schema?.trim() ? body.schema : undefined;
      if (body.constrain && !schema && !vote.db)
        return reply.code(400).send({ error: "constrain: constrained decoding needs a schema (send schema, CREATE TABLE statements, or db)" });
      const r = await generator.generate({
        question,
        schema,
        maxTokens: o.maxTokens,
        constrain: body.constrain,
        decodeTimeoutMs,
        ...(vote.db ? { ...vote, queryTimeoutMs: o.queryTimeoutMs, queryMaxBytes: o.queryMaxBytes } : {}),
      });
      served++;
      if (r.candidates) log(`generate_sql: db ${body.db}: ${describeCandidates(r.candidates)}`);
      const rows = vote.db ? await answerRows(vote.db, r, o) : undefined;
      if (rows && "error" in rows) log(`generate_sql: db ${body.db}: the answer's rows: ${rows.category}: ${rows.error}`);
      return {
        sql: r.sql,
        ...(r.valid !== undefined ? { valid: r.valid } : {}),
        ...(r.error ? { error: r.error } : {}),
        constrained: r.constrained === true,
        ...(r.grammarNotes ? { grammar_notes: r.grammarNotes } : {}),
        ...(r.truncated ? { truncated: r.truncated, note: r.note } : {}),
        ms: Math.round(r.ms * 10) / 10,
        ...(r.candidates ? { candidates: candidateAnswer(r.candidates) } : {}),
        ...(rows ? { rows } : {}),
      };
    } catch (err) {
      const msg = (err as Error).message;
      if (/^schema: /.test(msg)) return reply.code(400).send({ error: msg });
      throw err;
    } finally {
      pending--;
    }
  });

  const address = await app.listen({ host, port: o.port ?? 8080 });
  logReady(log, { address, generator, host, parallel, maxQueue, token: o.token, seconds: (performance.now() - t0) / 1000 });
  if (databases.size) {
    const names = [...databases.keys()];
    log(`  databases ${names.length} (${names.slice(0, 10).join(", ")}${names.length > 10 ? ", ..." : ""}); up to ${maxCandidates} candidates per request`);
  }
  let closing: Promise<void> | undefined;
  return {
    url: address,
    app,
    generator,
    close() {
      closing ??= (async () => {
        stopping = true;
        await app.close();
        await generator.dispose();
      })();
      return closing;
    },
  };
}
