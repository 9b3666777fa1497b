// The Hugging Face hub's side of a pull: repository specs ("owner/name@revision"), the endpoint and
// token, the HubError a failure becomes, and GETs with retries, stall timeouts and redirects
// followed by hand (`redirect: "manual"`): the hub sends LFS files to a CDN with a signed URL, and,
// like huggingface_hub, the token goes only to the hub's own origin, never to the host a redirect
// leads to.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

// ---------------------------------------------------------------------------------------------
// Repo specs, endpoint, token

export interface RepoSpec {
  /** "owner/name" */
  repo: string;
  owner: string;
  name: string;
  /** branch, tag or commit; "main" when not given */
  revision: string;
}

const SPEC_HINT = `expected "<owner>/<name>" or "<owner>/<name>@<revision>", e.g. "TinyLlama/TinyLlama-1.1B-Chat-v1.0"`;

function checkRepoPart(part: string, what: string, spec: string): void {
  const bad = (why: string) => new Error(`model repo: ${what} ${JSON.stringify(part)} ${why}; ${SPEC_HINT}, got ${JSON.stringify(spec)}`);
  if (!part) throw new Error(`model repo: missing ${what}; ${SPEC_HINT}, got ${JSON.stringify(spec)}`);
  if (part.length > 96) throw bad("is longer than 96 characters");
  if (!/^[A-Za-z0-9._-]+$/.test(part)) throw bad("may only contain letters, digits, '-', '_' and '.'");
  if (/^[-.]|[-.]$/.test(part)) throw bad("may not start or end with '-' or '.'");
  if (part.includes("--") || part.includes("..")) throw bad("may not contain '--' or '..'");
}

/**
 * Parses "owner/name[@revision]" (also a hub URL: https://huggingface.co/owner/name[/tree/rev]).
 * The revision is a branch, tag or commit, "main" by default.
 */
export function parseRepoSpec(spec: string): RepoSpec {
  if (typeof spec !== "string") throw new Error(`model repo: ${SPEC_HINT}, got ${typeof spec}`);
  let s = spec.trim();
  let revision: string | undefined;
  const url = /^https?:\/\/[^/]+\/(.*)$/.exec(s);
  if (url) {
    const parts = url[1]
      .replace(/[?#].*$/, "")
      .split("/")
      .filter(Boolean);
    if (parts.length >= 4 && parts[2] === "tree") revision = decodeURIComponent(parts.slice(3).join("/"));
    else if (parts.length !== 2) throw new Error(`model repo: cannot read a repository from the URL ${JSON.stringify(spec)}; ${SPEC_HINT}`);
    s = `${parts[0]}/${parts[1]}`;
  } else {
    const at = s.indexOf("@");
    if (at >= 0) {
      revision = s.slice(at + 1);
      s = s.slice(0, at);
      if (!revision) throw new Error(`model repo: empty revision after '@'; ${SPEC_HINT}, got ${JSON.stringify(spec)}`);
    }
  }
  const parts = s.split("/");
  if (parts.length !== 2) throw new Error(`model repo: ${SPEC_HINT}, got ${JSON.stringify(spec)}`);
  checkRepoPart(parts[0], "owner", spec);
  checkRepoPart(parts[1], "name", spec);
  revision ??= "main";
  if (revision.length > 255 || !/^[A-Za-z0-9._/-]+$/.test(revision) || revision.includes("..") || /^\/|\/$|\/\//.test(revision)) {
    throw new Error(
      `model repo: bad revision ${JSON.stringify(revision)}: expected a branch, tag or commit (letters, digits, '.', '_', '-', '/'), got ${JSON.stringify(spec)}`,
    );
  }
  return { repo: `${parts[0]}/${parts[1]}`, owner: parts[0], name: parts[1], revision };
}

export function toSpec(spec: string | RepoSpec): RepoSpec {
  return typeof spec === "string" ? parseRepoSpec(spec) : spec;
}

/** $HF_ENDPOINT or https://huggingface.co, without a trailing slash. */
export function hubEndpoint(): string {
  const e = (process.env.HF_ENDPOINT || "https://huggingface.co").trim().replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(e)) throw new Error(`HF_ENDPOINT: expected a URL like https://huggingface.co, got ${JSON.stringify(process.env.HF_ENDPOINT)}`);
  return e;
}

/**
 * The hub token: $HF_TOKEN, else $HUGGING_FACE_HUB_TOKEN, else the file `huggingface-cli login`
 * writes ($HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token).
 */
export function hubToken(): string | undefined {
  const env = (process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN || "").trim();
  if (env) return env;
  const hfHome = process.env.HF_HOME || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "huggingface");
  const file = process.env.HF_TOKEN_PATH || path.join(hfHome, "token");
  try {
    return fs.readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

export type HubErrorCode =
  | "auth" // 401/403: gated or private
  | "not-found" // 404
  | "http" // another HTTP status
  | "network" // cannot reach the hub, connection dropped, stalled (after the retries)
  | "checksum" // size or hash mismatch; the file was removed
  | "disk-full" // ENOSPC or not enough free space; the partial file was removed
  | "aborted" // the AbortSignal fired; the partial file is kept for resuming
  | "unsupported" // no safetensors, no config/tokenizer
  | "busy"; // another pull of the same repo is running

export class HubError extends Error {
  constructor(
    message: string,
    readonly code: HubErrorCode,
    readonly status?: number,
    readonly url?: string,
    /** worth another attempt (5xx, 429, network) */
    readonly retryable = false,
  ) {
    super(message);
    this.name = "HubError";
  }
}

/** What went wrong on the network, from undici's "fetch failed" / "terminated" and their causes. */
export function causeText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const c = (e as { cause?: unknown }).cause;
  let text = e.message;
  if (c instanceof Error) {
    const code = (c as NodeJS.ErrnoException).code;
    text = code && !c.message.includes(code) ? `${c.message} (${code})` : c.message;
  }
  return e.message === "terminated" ? `connection lost (${text})` : text;
}

/** A URL fit for a message: no query (the CDN's are signed) unless it is the hub's API. */
function shownUrl(u: string): string {
  return u.includes("/api/") ? u : u.replace(/\?.*$/, "");
}

/** Turns a non-2xx hub answer into a HubError that says what to do. */
export function httpError(res: Response, requested: string, spec: RepoSpec, file?: string): HubError {
  const status = res.status;
  const url = shownUrl(res.url || requested);
  const code = res.headers.get("x-error-code") ?? "";
  const hubMsg = res.headers.get("x-error-message");
  const says = hubMsg ? ` (the hub says: ${hubMsg})` : "";
  const page = `${hubEndpoint()}/${spec.repo}`;
  if (status === 401 || status === 403) {
    const tokenHint = hubToken()
      ? `the token in HF_TOKEN was refused (HTTP ${status}): accept the model's licence on its page (${page}) and check that the token can read it`
      : `set HF_TOKEN (https://huggingface.co/settings/tokens) and accept the model's licence on its page (${page})`;
    const what = code === "RepoNotFound" ? `repository not found, or gated or private repository` : `gated or private repository`;
    return new HubError(`${spec.repo}: ${what}: ${tokenHint}${says}`, "auth", status, url);
  }
  if (status === 404) {
    let what: string;
    if (code === "RepoNotFound") what = `repository not found: ${spec.repo}`;
    else if (code === "RevisionNotFound") what = `revision not found: ${spec.revision} of ${spec.repo}`;
    else if (code === "EntryNotFound" || file) what = `file not found: ${file ?? "?"} in ${spec.repo}@${spec.revision}`;
    else what = `repository or revision not found: ${spec.repo}@${spec.revision}`;
    return new HubError(`${what}: ${url}${says}`, "not-found", status, url);
  }
  const retryable = status === 429 || status >= 500;
  return new HubError(`HTTP ${status} ${res.statusText || ""} from ${url}${says}`.replace(/ +/g, " "), "http", status, url, retryable);
}

export function isRetryable(e: unknown): boolean {
  if (e instanceof HubError) return e.retryable;
  if (e instanceof StallError) return true;
  // undici: "fetch failed" (cannot connect) and "terminated" (connection lost mid-body) are TypeErrors
  return e instanceof TypeError;
}

export class StallError extends Error {
  constructor(seconds: number) {
    super(`no data for ${seconds} s`);
  }
}

export function isNoSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

// ---------------------------------------------------------------------------------------------
// HTTP

const USER_AGENT = `text2sql; node/${process.versions.node}`;

/**
 * GET with redirects followed by hand: the Authorization header goes to the hub's origin only,
 * and is dropped for good once a redirect leaves it (the CDN's URLs are signed).
 */
export async function hubGet(url: string, o: { signal: AbortSignal; from?: number }): Promise<Response> {
  const origin = new URL(hubEndpoint()).origin;
  const token = hubToken();
  let current = url;
  let sameOrigin = new URL(current).origin === origin;
  for (let hop = 0; hop <= 10; hop++) {
    const headers: Record<string, string> = { "user-agent": USER_AGENT, "accept-encoding": "identity" };
    if (token && sameOrigin) headers.authorization = `Bearer ${token}`;
    if (o.from) headers.range = `bytes=${o.from}-`;
    const res = await fetch(current, { headers, redirect: "manual", signal: o.signal });
    const location = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel().catch(() => {});
      current = new URL(location, current).toString();
      sameOrigin &&= new URL(current).origin === origin;
      continue;
    }
    return res;
  }
  throw new HubError(`too many redirects from ${url}`, "http", undefined, url);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** An AbortController that follows `parent` and fires by itself after `ms` without a `touch()`. */
export function stallGuard(parent: AbortSignal | undefined, ms: number) {
  const ac = new AbortController();
  const onAbort = () => ac.abort(parent!.reason);
  if (parent?.aborted) ac.abort(parent.reason);
  else parent?.addEventListener("abort", onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ac.abort(new StallError(ms / 1000)), ms);
  };
  touch();
  return {
    signal: ac.signal,
    touch,
    dispose: () => {
      clearTimeout(timer);
      parent?.removeEventListener("abort", onAbort);
    },
  };
}

export interface NetOptions {
  signal?: AbortSignal;
  log?: (msg: string) => void;
  /** attempts after a failure that made no progress (network errors, 5xx, 429, stalls); default 3 */
  retries?: number;
  /** first backoff delay, doubled each retry; default 1000 ms */
  retryDelayMs?: number;
  /** a request that receives nothing for this long is dropped and retried; default 60 s */
  stallTimeoutMs?: number;
}

/** NetOptions with the defaults filled in. */
export type Net = ReturnType<typeof netDefaults>;

export function netDefaults(o: NetOptions) {
  return {
    signal: o.signal,
    log: o.log ?? (() => {}),
    retries: o.retries ?? 3,
    retryDelayMs: o.retryDelayMs ?? 1000,
    stallTimeoutMs: o.stallTimeoutMs ?? 60_000,
  };
}

export function abortedError(signal: AbortSignal, what: string): HubError {
  const r = signal.reason;
  const why = r instanceof Error && r.name !== "AbortError" ? `: ${r.message}` : "";
  return new HubError(`${what} interrupted${why}`, "aborted");
}

/** GETs a small body (JSON metadata, the safetensors index) with retries. */
export async function fetchText(url: string, spec: RepoSpec, o: NetOptions, file?: string): Promise<string> {
  const n = netDefaults(o);
  for (let attempt = 0; ; attempt++) {
    const guard = stallGuard(n.signal, n.stallTimeoutMs);
    try {
      const res = await hubGet(url, { signal: guard.signal });
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        throw httpError(res, url, spec, file);
      }
      return await res.text();
    } catch (e) {
      if (n.signal?.aborted) throw abortedError(n.signal, `request to ${url}`);
      const err = guard.signal.reason instanceof StallError ? guard.signal.reason : e;
      if (!isRetryable(err) || attempt >= n.retries) {
        if (err instanceof HubError) throw err;
        throw new HubError(`cannot reach ${new URL(url).origin} (${url}): ${causeText(err)}`, "network", undefined, url, true);
      }
      const delay = n.retryDelayMs * 2 ** attempt;
      n.log(`${url}: ${err instanceof HubError ? err.message : causeText(err)}; retrying in ${(delay / 1000).toFixed(1)} s`);
      await sleep(delay, n.signal).catch(() => {});
    } finally {
      guard.dispose();
    }
  }
}
