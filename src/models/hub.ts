// Pulls a Hugging Face model repository (the files a Llama safetensors checkpoint needs) into
// text2sql's cache, robustly: resumable downloads (`<file>.incomplete` + Range), size and hash
// checks before an atomic rename, retries with backoff, clear errors for gated/missing repos and a
// full disk, and progress events for a bar.
//
// Cache layout, under cacheHome() ($TEXT2SQL_HOME or ~/.cache/text2sql):
//   hub/<owner>--<name>/<commit>/<file>            the snapshot: config.json, tokenizer, *.safetensors
//   hub/<owner>--<name>/<commit>/<file>.incomplete a download in progress (resumed by the next pull)
//   hub/<owner>--<name>/refs/<revision>            the commit the revision pointed to at the last pull
//   hub/<owner>--<name>/manifests/<commit>.json    the files of the snapshot with sizes and hashes
//   hub/<owner>--<name>/.lock                      the pid of a pull in progress
//   models/*.gguf                                  converted snapshots (listed and removable here too)
//   models/converted/*.gguf                        converted local checkpoint folders
//   models/gguf/*.gguf                             GGUFs downloaded by hf: URI (node-llama-cpp)
//
// Redirects are followed by hand (`redirect: "manual"`): the hub sends LFS files to a CDN with a
// signed URL, and, like huggingface_hub, the token goes only to the hub's own origin, never to the
// host a redirect leads to.
import crypto from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import cliProgress from "cli-progress";
import { cacheHome } from "./cache.js";

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
    const parts = url[1].replace(/[?#].*$/, "").split("/").filter(Boolean);
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
    throw new Error(`model repo: bad revision ${JSON.stringify(revision)}: expected a branch, tag or commit (letters, digits, '.', '_', '-', '/'), got ${JSON.stringify(spec)}`);
  }
  return { repo: `${parts[0]}/${parts[1]}`, owner: parts[0], name: parts[1], revision };
}

function toSpec(spec: string | RepoSpec): RepoSpec {
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
function causeText(e: unknown): string {
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
function httpError(res: Response, requested: string, spec: RepoSpec, file?: string): HubError {
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

function isRetryable(e: unknown): boolean {
  if (e instanceof HubError) return e.retryable;
  if (e instanceof StallError) return true;
  // undici: "fetch failed" (cannot connect) and "terminated" (connection lost mid-body) are TypeErrors
  return e instanceof TypeError;
}

class StallError extends Error {
  constructor(seconds: number) {
    super(`no data for ${seconds} s`);
  }
}

function isNoSpace(e: unknown): boolean {
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
async function hubGet(url: string, o: { signal: AbortSignal; from?: number }): Promise<Response> {
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

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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
function stallGuard(parent: AbortSignal | undefined, ms: number) {
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

function netDefaults(o: NetOptions) {
  return {
    signal: o.signal,
    log: o.log ?? (() => {}),
    retries: o.retries ?? 3,
    retryDelayMs: o.retryDelayMs ?? 1000,
    stallTimeoutMs: o.stallTimeoutMs ?? 60_000,
  };
}

function abortedError(signal: AbortSignal, what: string): HubError {
  const r = signal.reason;
  const why = r instanceof Error && r.name !== "AbortError" ? `: ${r.message}` : "";
  return new HubError(`${what} interrupted${why}`, "aborted");
}

/** GETs a small body (JSON metadata, the safetensors index) with retries. */
async function fetchText(url: string, spec: RepoSpec, o: NetOptions, file?: string): Promise<string> {
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

// ---------------------------------------------------------------------------------------------
// Listing a repository

export interface RepoFile {
  /** file name at the repository's top level */
  name: string;
  size: number;
  /** stored in LFS (safetensors, tokenizer.model): checked by sha256 */
  lfs: boolean;
  /** LFS files: the sha256 of the content */
  sha256?: string;
  /** other files: git's blob id, sha1("blob <size>\0" + content) */
  gitSha1?: string;
}

export interface RepoListing {
  repo: string;
  revision: string;
  /** the commit the revision points to */
  commit: string;
  /** the files a Llama checkpoint needs, in download order (small files first) */
  files: RepoFile[];
  /** the repository's other files, not downloaded */
  skipped: string[];
}

interface Sibling {
  rfilename: string;
  size?: number;
  blobId?: string;
  lfs?: { sha256?: string; oid?: string; size?: number };
}

const NEEDED = new Set([
  "config.json",
  "generation_config.json",
  "tokenizer.model",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "model.safetensors.index.json",
]);
const INDEX = "model.safetensors.index.json";

/**
 * The repository's commit and the files to download: config.json, the tokenizer files,
 * generation_config.json, the safetensors index and the shards it names (without an index:
 * model.safetensors, else every top-level *.safetensors). Only safetensors checkpoints are
 * supported.
 */
export async function listRepoFiles(spec: string | RepoSpec, o: NetOptions = {}): Promise<RepoListing> {
  const s = toSpec(spec);
  const url = `${hubEndpoint()}/api/models/${s.repo}/revision/${encodeURIComponent(s.revision)}?blobs=true`;
  let info: { sha?: unknown; siblings?: unknown };
  const text = await fetchText(url, s, o);
  try {
    info = JSON.parse(text) as typeof info;
  } catch {
    throw new HubError(`${url}: expected JSON from the hub, got ${JSON.stringify(text.slice(0, 80))}`, "http", 200, url);
  }
  const commit = typeof info.sha === "string" ? info.sha : "";
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new HubError(`${url}: the answer has no commit (sha)`, "http", 200, url);
  if (!Array.isArray(info.siblings)) throw new HubError(`${url}: the answer has no file list (siblings)`, "http", 200, url);
  const siblings = new Map<string, Sibling>();
  for (const sib of info.siblings as Sibling[]) if (sib && typeof sib.rfilename === "string") siblings.set(sib.rfilename, sib);
  const at = `${s.repo}@${s.revision}`;

  let shards: string[];
  if (siblings.has(INDEX)) {
    const indexText = await readIndex(s, commit, siblings.get(INDEX)!, o);
    let weightMap: unknown;
    try {
      weightMap = (JSON.parse(indexText) as { weight_map?: unknown }).weight_map;
    } catch {
      throw new HubError(`${at}: ${INDEX} is not valid JSON`, "unsupported");
    }
    if (!weightMap || typeof weightMap !== "object") throw new HubError(`${at}: ${INDEX} has no weight_map`, "unsupported");
    shards = [...new Set(Object.values(weightMap as Record<string, unknown>).map(String))].sort();
    for (const sh of shards) {
      // a plain file name: nothing that could leave the snapshot folder
      if (!siblings.has(sh) || !/^[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors$/.test(sh)) {
        throw new HubError(`${at}: ${INDEX} names ${JSON.stringify(sh)}, which is not a .safetensors file at the top of the repository`, "unsupported");
      }
    }
  } else if (siblings.has("model.safetensors")) {
    shards = ["model.safetensors"];
  } else {
    shards = [...siblings.keys()].filter((n) => !n.includes("/") && n.endsWith(".safetensors")).sort();
  }
  if (shards.length === 0) {
    const bins = [...siblings.keys()].filter((n) => !n.includes("/") && /\.(bin|pt|pth|ckpt|gguf)$/.test(n));
    if (bins.length) {
      throw new HubError(
        `${at}: only safetensors checkpoints are supported, and this revision has ${bins.slice(0, 3).join(", ")}${bins.length > 3 ? ", ..." : ""} ` +
          `but no .safetensors; look for a safetensors revision (the hub's conversion bot opens one as a pull request: "@refs/pr/<n>") or another upload of the model`,
        "unsupported",
      );
    }
    throw new HubError(`${at}: no model weights (.safetensors) in the repository`, "unsupported");
  }
  if (!siblings.has("config.json")) throw new HubError(`${at}: no config.json in the repository; is it a transformers model?`, "unsupported");
  if (!siblings.has("tokenizer.model") && !siblings.has("tokenizer.json")) {
    throw new HubError(`${at}: no tokenizer (tokenizer.model or tokenizer.json) in the repository`, "unsupported");
  }

  const want = new Set([...[...siblings.keys()].filter((n) => NEEDED.has(n)), ...shards]);
  const files: RepoFile[] = [];
  for (const name of want) {
    const sib = siblings.get(name)!;
    const size = sib.lfs?.size ?? sib.size;
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
      throw new HubError(`${url}: no size for ${name} (the endpoint does not support ?blobs=true?)`, "http", 200, url);
    }
    const sha256 = sib.lfs?.sha256 ?? sib.lfs?.oid;
    files.push({ name, size, lfs: !!sib.lfs, ...(sha256 ? { sha256 } : {}), ...(!sib.lfs && sib.blobId ? { gitSha1: sib.blobId } : {}) });
  }
  // small files first: a wrong repo fails before gigabytes are spent
  files.sort((a, b) => Number(a.name.endsWith(".safetensors")) - Number(b.name.endsWith(".safetensors")) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const skipped = [...siblings.keys()].filter((n) => !want.has(n)).sort();
  return { repo: s.repo, revision: s.revision, commit, files, skipped };
}

/** The safetensors index: from the cache (this snapshot, or an identical one of another commit), else the hub. */
async function readIndex(s: RepoSpec, commit: string, sib: Sibling, o: NetOptions): Promise<string> {
  const rd = repoDir(s);
  const candidates = [path.join(rd, commit, INDEX)];
  try {
    for (const m of fs.readdirSync(path.join(rd, "manifests"))) {
      const c = m.replace(/\.json$/, "");
      const f = readManifest(rd, c)?.files.find((g) => g.name === INDEX);
      if (c !== commit && f && sib.blobId && f.gitSha1 === sib.blobId) candidates.push(path.join(rd, c, INDEX));
    }
  } catch {
    /* no manifests */
  }
  for (const cached of candidates) if (fileSize(cached) === sib.size) return fs.readFileSync(cached, "utf8");
  return fetchText(`${hubEndpoint()}/${s.repo}/resolve/${commit}/${INDEX}`, s, o, INDEX);
}

// ---------------------------------------------------------------------------------------------
// Cache

export function hubCacheDir(): string {
  return path.join(cacheHome(), "hub");
}

function repoDir(s: RepoSpec): string {
  return path.join(hubCacheDir(), `${s.owner}--${s.name}`);
}

interface Manifest {
  repo: string;
  commit: string;
  files: RepoFile[];
}

function readManifest(dir: string, commit: string): Manifest | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, "manifests", `${commit}.json`), "utf8")) as Manifest;
    return Array.isArray(m.files) ? m : null;
  } catch {
    return null;
  }
}

function writeFileAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

function fileSize(p: string): number | null {
  try {
    const st = fs.statSync(p);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

function isComplete(snapshot: string, m: Manifest): boolean {
  return m.files.every((f) => fileSize(path.join(snapshot, f.name)) === f.size);
}

/** Free bytes on the file system that holds `p` (or its nearest existing parent); null if unknown. */
function freeBytes(p: string): number | null {
  let d = path.resolve(p);
  for (;;) {
    try {
      const st = fs.statfsSync(d);
      return st.bavail * st.bsize;
    } catch {
      const up = path.dirname(d);
      if (up === d) return null;
      d = up;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Planning

export interface PullFile extends RepoFile {
  /**
   * what the cache holds: complete (nothing to do), partial (`.incomplete`, resumed), link (an
   * identical file in another snapshot of the repo, hard-linked), missing
   */
  local: "complete" | "partial" | "link" | "missing";
  /** bytes already present (the file's size when complete or linkable) */
  localBytes: number;
  /** for "link": the identical file */
  linkFrom?: string;
}

export interface PullPlan {
  repo: string;
  revision: string;
  commit: string;
  /** the snapshot folder the files go to (what pullModel returns) */
  dir: string;
  files: PullFile[];
  /** files in the repository that are not downloaded (pytorch_model.bin, README.md, ...) */
  skipped: string[];
  totalBytes: number;
  /** totalBytes less what is already in the cache (complete files, linkable files, partial downloads) */
  bytesToDownload: number;
  /** free space where the files go; null when unknown */
  freeBytes: number | null;
  /** the hub could not be reached (or HF_HUB_OFFLINE is set) and the cached snapshot is complete */
  offline: boolean;
}

function localState(s: RepoSpec, commit: string, files: RepoFile[]): PullFile[] {
  const rd = repoDir(s);
  const snapshot = path.join(rd, commit);
  // identical files in the repo's other snapshots (by hash and size), for hard links
  const others: { dir: string; files: RepoFile[] }[] = [];
  try {
    for (const m of fs.readdirSync(path.join(rd, "manifests"))) {
      const c = m.replace(/\.json$/, "");
      if (c === commit || !m.endsWith(".json")) continue;
      const man = readManifest(rd, c);
      if (man) others.push({ dir: path.join(rd, c), files: man.files });
    }
  } catch {
    /* no manifests */
  }
  return files.map((f): PullFile => {
    const final = path.join(snapshot, f.name);
    if (fileSize(final) === f.size) return { ...f, local: "complete", localBytes: f.size };
    for (const o of others) {
      const same = o.files.find((g) => g.size === f.size && ((f.sha256 && g.sha256 === f.sha256) || (f.gitSha1 && g.gitSha1 === f.gitSha1)));
      if (same && fileSize(path.join(o.dir, same.name)) === f.size) return { ...f, local: "link", localBytes: f.size, linkFrom: path.join(o.dir, same.name) };
    }
    const part = fileSize(`${final}.incomplete`);
    if (part !== null && part > 0 && part <= f.size) return { ...f, local: "partial", localBytes: part };
    return { ...f, local: "missing", localBytes: 0 };
  });
}

function makePlan(s: RepoSpec, commit: string, files: RepoFile[], skipped: string[], offline: boolean): PullPlan {
  const dir = path.join(repoDir(s), commit);
  const pf = localState(s, commit, files);
  const totalBytes = pf.reduce((a, f) => a + f.size, 0);
  const bytesToDownload = pf.reduce((a, f) => a + f.size - f.localBytes, 0);
  return { repo: s.repo, revision: s.revision, commit, dir, files: pf, skipped, totalBytes, bytesToDownload, freeBytes: freeBytes(dir), offline };
}

/** The commit a revision resolves to in the cache (refs/<revision>, or the revision itself). */
function cachedCommit(s: RepoSpec): string | null {
  const rd = repoDir(s);
  try {
    const c = fs.readFileSync(path.join(rd, "refs", s.revision), "utf8").trim();
    if (/^[0-9a-f]{40}$/.test(c)) return c;
  } catch {
    /* no ref */
  }
  if (/^[0-9a-f]{40}$/.test(s.revision) && fs.existsSync(path.join(rd, s.revision))) return s.revision;
  return null;
}

function offlinePlan(s: RepoSpec): PullPlan | null {
  const commit = cachedCommit(s);
  const m = commit ? readManifest(repoDir(s), commit) : null;
  if (!commit || !m || !isComplete(path.join(repoDir(s), commit), m)) return null;
  return makePlan(s, commit, m.files, [], true);
}

/**
 * What a pull would do: the commit, the files with their sizes, how many bytes are already in the
 * cache and how many remain to download, and where they go. Asks the hub (metadata only); when the
 * hub cannot be reached, or HF_HUB_OFFLINE=1, a complete cached snapshot of the revision is used.
 */
export async function planPull(spec: string | RepoSpec, o: NetOptions = {}): Promise<PullPlan> {
  const s = toSpec(spec);
  const log = o.log ?? (() => {});
  if (/^(1|true|yes|on)$/i.test(process.env.HF_HUB_OFFLINE ?? "")) {
    const p = offlinePlan(s);
    if (!p) throw new HubError(`${s.repo}@${s.revision} is not in the cache (${repoDir(s)}) and HF_HUB_OFFLINE is set`, "network");
    return p;
  }
  let listing: RepoListing;
  try {
    listing = await listRepoFiles(s, o);
  } catch (e) {
    if (e instanceof HubError && e.code === "network") {
      const p = offlinePlan(s);
      if (p) {
        log(`${e.message}; using the cached ${s.repo}@${s.revision} (commit ${p.commit.slice(0, 12)})`);
        return p;
      }
    }
    throw e;
  }
  return makePlan(s, listing.commit, listing.files, listing.skipped, false);
}

// ---------------------------------------------------------------------------------------------
// Progress

export interface PullProgress {
  /** the file being downloaded */
  file: string;
  /** bytes of it on disk */
  fileBytes: number;
  fileTotal: number;
  /** bytes of the whole snapshot on disk (completed files + this file) */
  bytes: number;
  total: number;
  /** download rate over the last few seconds */
  rateBytesPerS: number;
  /** seconds left at that rate; null while unknown */
  etaS: number | null;
}

/**
 * A download rate over the last ~5 s: call it with the bytes received so far, get bytes/s; and
 * the seconds left for `left` bytes at that rate (null while unknown).
 */
export function slidingRate(): (received: number) => number {
  const samples: { t: number; b: number }[] = [];
  return (received) => {
    const now = performance.now();
    samples.push({ t: now, b: received });
    while (samples.length > 2 && now - samples[1].t > 5000) samples.shift();
    const span = (now - samples[0].t) / 1000;
    return span > 0.05 ? (received - samples[0].b) / span : 0;
  };
}

export function etaSeconds(left: number, rateBytesPerS: number): number | null {
  return left <= 0 ? 0 : rateBytesPerS > 0 ? left / rateBytesPerS : null;
}

class Progress {
  private done = 0; // bytes of completed files
  private downloaded = 0; // bytes received this session
  private rate = slidingRate();
  private lastEmit = -Infinity;
  private file = "";
  private fileBytes = 0;
  private fileTotal = 0;

  constructor(
    private readonly total: number,
    private readonly cb?: (p: PullProgress) => void,
  ) {}

  /** a download (attempt) of `f` starts with `have` bytes on disk */
  start(f: PullFile, have: number): void {
    this.file = f.name;
    this.fileTotal = f.size;
    this.fileBytes = have;
    this.emit(true);
  }

  /** the file's bytes on disk went down (the server ignored the range): not a download */
  reset(have: number): void {
    this.fileBytes = have;
  }

  /** `n` bytes received and written; `force` for the first chunk of a response */
  add(n: number, force: boolean): void {
    this.fileBytes += n;
    this.downloaded += n;
    this.emit(force);
  }

  /** `f` is complete (downloaded, linked or already there) */
  finish(f: PullFile): void {
    this.file = f.name;
    this.fileTotal = f.size;
    this.fileBytes = f.size;
    this.emit(true);
    this.done += f.size;
    this.fileBytes = 0;
  }

  private emit(force: boolean): void {
    if (!this.cb) return;
    const now = performance.now();
    if (!force && now - this.lastEmit < 100) return;
    this.lastEmit = now;
    const rate = this.rate(this.downloaded);
    const bytes = Math.min(this.total, this.done + this.fileBytes);
    const left = this.total - bytes;
    this.cb({
      file: this.file,
      fileBytes: this.fileBytes,
      fileTotal: this.fileTotal,
      bytes,
      total: this.total,
      rateBytesPerS: rate,
      etaS: etaSeconds(left, rate),
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Pulling

export interface PullOptions extends NetOptions {
  /** progress of the download, at most ~10 times a second, and at the start and end of each file */
  onProgress?: (p: PullProgress) => void;
}

const pullsInProcess = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes hub/<owner>--<name>/.lock (our pid); a lock left by a dead process is taken over. */
function lockRepo(rd: string, repo: string): () => void {
  if (pullsInProcess.has(rd)) throw new HubError(`${repo}: a pull of this repository is already running in this process`, "busy");
  fs.mkdirSync(rd, { recursive: true });
  const lock = path.join(rd, ".lock");
  for (let i = 0; ; i++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || i > 0) throw e;
      const pid = Number(fs.readFileSync(lock, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new HubError(`${repo}: another text2sql (pid ${pid}) is pulling this repository; wait for it to finish (or remove ${lock} if it is not running)`, "busy");
      }
      fs.rmSync(lock, { force: true });
    }
  }
  pullsInProcess.add(rd);
  return () => {
    pullsInProcess.delete(rd);
    fs.rmSync(lock, { force: true });
  };
}

function fmtFree(dir: string): string {
  const free = freeBytes(dir);
  return free === null ? "" : `, ${formatBytes(free)} free`;
}

function diskFullError(dir: string, needed: number, removed?: string): HubError {
  return new HubError(
    `not enough disk space in ${dir}: the download needs ${formatBytes(needed)} (${needed} bytes) more${fmtFree(dir)}` +
      `${removed ? `; the partial file ${path.basename(removed)} was removed` : ""}. Free some space, or set TEXT2SQL_HOME to a folder on a bigger disk`,
    "disk-full",
  );
}

/**
 * Downloads the checkpoint into the cache (see the layout at the top of this file) and returns the
 * snapshot folder. Files already complete are not downloaded again; `.incomplete` files left by an
 * interrupted pull are resumed. Takes a spec ("owner/name@rev") or a plan from planPull (so a CLI
 * can show the plan, ask, and pull without a second metadata request).
 */
export async function pullModel(spec: string | RepoSpec | PullPlan, o: PullOptions = {}): Promise<string> {
  const plan0 = typeof spec === "object" && "files" in spec ? spec : await planPull(spec as string | RepoSpec, o);
  const s = parseRepoSpec(`${plan0.repo}@${plan0.revision}`);
  const n = netDefaults(o);
  const rd = repoDir(s);
  if (plan0.offline) {
    o.onProgress?.({ file: "", fileBytes: 0, fileTotal: 0, bytes: plan0.totalBytes, total: plan0.totalBytes, rateBytesPerS: 0, etaS: 0 });
    return plan0.dir;
  }
  let unlock: (() => void) | undefined;
  try {
    unlock = lockRepo(rd, s.repo);
    fs.mkdirSync(plan0.dir, { recursive: true });
    const files: RepoFile[] = plan0.files.map(({ name, size, lfs, sha256, gitSha1 }) => ({ name, size, lfs, ...(sha256 ? { sha256 } : {}), ...(gitSha1 ? { gitSha1 } : {}) }));
    writeFileAtomic(path.join(rd, "manifests", `${plan0.commit}.json`), JSON.stringify({ repo: s.repo, commit: plan0.commit, files } satisfies Manifest, null, 1));
    // the cache may have changed since the plan was made
    const plan = makePlan(s, plan0.commit, files, plan0.skipped, false);
    if (plan.freeBytes !== null && plan.freeBytes < plan.bytesToDownload) throw diskFullError(plan.dir, plan.bytesToDownload);

    const progress = new Progress(plan.totalBytes, o.onProgress);
    let remaining = plan.bytesToDownload;
    for (const f of plan.files) {
      if (n.signal?.aborted) throw abortedError(n.signal, "download");
      const final = path.join(plan.dir, f.name);
      if (f.local === "link" && f.linkFrom) {
        try {
          fs.rmSync(`${final}.incomplete`, { force: true });
          try {
            fs.linkSync(f.linkFrom, final);
          } catch {
            fs.copyFileSync(f.linkFrom, final);
          }
          n.log(`${f.name}: identical to ${path.relative(rd, f.linkFrom)}, linked`);
        } catch (e) {
          if (isNoSpace(e)) {
            fs.rmSync(final, { force: true });
            throw diskFullError(plan.dir, remaining + f.size, final);
          }
          throw e;
        }
      } else if (f.local !== "complete") {
        await downloadFile(s, plan, f, n, progress, () => remaining);
        remaining -= f.size - f.localBytes;
      }
      progress.finish(f);
    }
    if (s.revision !== plan.commit) writeFileAtomic(path.join(rd, "refs", s.revision), plan.commit);
    return plan.dir;
  } catch (e) {
    // the lock, the manifest or the ref on a full disk
    if (isNoSpace(e)) throw diskFullError(plan0.dir, plan0.bytesToDownload);
    throw e;
  } finally {
    unlock?.();
  }
}

/** sha256 (LFS) or git's blob sha1 of a file's content, fed incrementally. */
function makeHasher(f: RepoFile): { kind: string; expected: string; update: (b: Uint8Array) => void; digest: () => string } | null {
  if (f.sha256) {
    const h = crypto.createHash("sha256");
    return { kind: "sha256", expected: f.sha256, update: (b) => h.update(b), digest: () => h.digest("hex") };
  }
  if (f.gitSha1) {
    const h = crypto.createHash("sha1").update(`blob ${f.size}\0`);
    return { kind: "git blob sha1", expected: f.gitSha1, update: (b) => h.update(b), digest: () => h.digest("hex") };
  }
  return null;
}

async function hashExisting(file: string, upTo: number, hasher: { update: (b: Uint8Array) => void }): Promise<void> {
  if (upTo === 0) return;
  const stream = fs.createReadStream(file, { start: 0, end: upTo - 1, highWaterMark: 1 << 20 });
  for await (const chunk of stream) hasher.update(chunk as Buffer);
}

async function writeAll(fh: fsp.FileHandle, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

class Restart extends Error {}

/** Downloads one file into `<name>.incomplete`, resuming, with retries; verifies; renames. */
async function downloadFile(
  s: RepoSpec,
  plan: PullPlan,
  f: PullFile,
  n: ReturnType<typeof netDefaults>,
  progress: Progress,
  remaining: () => number,
): Promise<void> {
  const final = path.join(plan.dir, f.name);
  const part = `${final}.incomplete`;
  const url = `${hubEndpoint()}/${s.repo}/resolve/${plan.commit}/${encodeURIComponent(f.name)}`;
  let failures = 0;
  let attempts = 0;
  let restarts = 0;
  fs.rmSync(final, { force: true }); // a wrong-sized leftover
  for (;;) {
    let have = fileSize(part) ?? 0;
    if (have > f.size) {
      n.log(`${f.name}: the partial download is bigger than the file (${have} > ${f.size} bytes); starting over`);
      fs.rmSync(part, { force: true });
      have = 0;
    }
    const before = have;
    progress.start(f, have);
    const guard = stallGuard(n.signal, n.stallTimeoutMs);
    attempts++;
    let hasher = makeHasher(f);
    try {
      if (have < f.size) {
        const res = await hubGet(url, { signal: guard.signal, from: have });
        if (res.status === 416 || (res.status === 206 && !contentRangeStartsAt(res, have))) {
          await res.body?.cancel().catch(() => {});
          throw new Restart(res.status === 416 ? "the server refused the range (416)" : "the server sent another range");
        }
        if (!res.ok) {
          await res.body?.cancel().catch(() => {});
          throw httpError(res, url, s, f.name);
        }
        if (res.status === 200 && have > 0) {
          n.log(`${f.name}: the server ignored the range request; starting over`);
          have = 0;
          progress.reset(0);
        }
        const fh = await fsp.open(part, have > 0 ? "a" : "w");
        try {
          if (hasher) await hashExisting(part, have, hasher);
          const reader = res.body!.getReader();
          let first = true;
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            guard.touch();
            if (have + value.length > f.size) {
              await reader.cancel().catch(() => {});
              throw new HubError(`${f.name}: the server sent more than the expected ${f.size} bytes; the download was removed (${part})`, "checksum", res.status, url);
            }
            await writeAll(fh, value);
            hasher?.update(value);
            have += value.length;
            progress.add(value.length, first);
            first = false;
          }
          if (have === f.size) await fh.sync();
        } finally {
          await fh.close();
        }
        if (have < f.size) {
          throw new HubError(`connection closed after ${have} of ${f.size} bytes`, "network", res.status, url, true);
        }
      } else if (hasher) {
        await hashExisting(part, have, hasher);
      }
      // complete: check and commit
      const size = fileSize(part);
      if (size !== f.size) throw new HubError(`${f.name}: expected ${f.size} bytes, got ${size}; the download was removed (${part})`, "checksum", undefined, url);
      if (hasher) {
        const got = hasher.digest();
        if (got !== hasher.expected) {
          throw new HubError(
            `checksum mismatch for ${f.name}: expected ${hasher.kind} ${hasher.expected}, got ${got}; the download was removed (${part}). ` +
              `Run the pull again; if it happens again, whatever serves ${new URL(url).origin} (a proxy, a mirror) is changing the file`,
            "checksum",
            undefined,
            url,
          );
        }
      }
      fs.renameSync(part, final);
      return;
    } catch (e0) {
      const e = guard.signal.aborted && guard.signal.reason instanceof StallError && !n.signal?.aborted ? guard.signal.reason : e0;
      const now = fileSize(part) ?? 0;
      if (n.signal?.aborted) {
        throw abortedError(n.signal, `download of ${f.name}${now ? ` (${formatBytes(now)} of ${formatBytes(f.size)} kept in ${part}; run the same pull again to resume)` : ""}`);
      }
      if (isNoSpace(e)) {
        fs.rmSync(part, { force: true });
        throw diskFullError(plan.dir, remaining() + f.localBytes, part);
      }
      if (e instanceof HubError && e.code === "checksum") {
        fs.rmSync(part, { force: true });
        throw e;
      }
      if (e instanceof Restart) {
        fs.rmSync(part, { force: true });
        if (++restarts > 2) throw new HubError(`${f.name}: cannot resume the download: ${e.message}`, "http", undefined, url);
        n.log(`${f.name}: ${e.message}; starting over`);
        continue;
      }
      if (!isRetryable(e)) throw e;
      failures = now > before ? 1 : failures + 1;
      const why = e instanceof HubError ? e.message : causeText(e);
      if (failures > n.retries) {
        throw new HubError(
          `download of ${f.name} failed${attempts > 1 ? ` after ${attempts} attempts` : ""}: ${why} (${url}); ` +
            `${formatBytes(now)} of ${formatBytes(f.size)} kept in ${part}: run the same pull again to resume`,
          "network",
          e instanceof HubError ? e.status : undefined,
          url,
        );
      }
      const delay = n.retryDelayMs * 2 ** (failures - 1);
      n.log(`${f.name}: ${why}; retrying in ${(delay / 1000).toFixed(1)} s from byte ${now}`);
      try {
        await sleep(delay, n.signal);
      } catch {
        throw abortedError(n.signal!, `download of ${f.name} (${formatBytes(now)} of ${formatBytes(f.size)} kept in ${part}; run the same pull again to resume)`);
      }
    } finally {
      guard.dispose();
      hasher = null;
    }
  }
}

function contentRangeStartsAt(res: Response, from: number): boolean {
  const m = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
  return !!m && Number(m[1]) === from;
}

// ---------------------------------------------------------------------------------------------
// Cached models

export interface CachedModel {
  /** hf: a snapshot pulled from the hub; gguf: a converted model in models/ */
  kind: "hf" | "gguf";
  /** "owner/name" or the GGUF's file name */
  name: string;
  /** hf: the commit of the snapshot */
  commit?: string;
  /** hf: the revisions (refs) that point to the snapshot */
  revisions: string[];
  /** the snapshot folder or the GGUF file */
  path: string;
  /** bytes on disk (with partial downloads; hard-linked files counted in each snapshot) */
  bytes: number;
  /** hf: every file of the snapshot is there and verified; false while a pull is unfinished */
  complete: boolean;
}

function dirBytes(d: string): number {
  let total = 0;
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

function readRefs(rd: string): Map<string, string[]> {
  const byCommit = new Map<string, string[]>();
  const walk = (d: string, prefix: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) walk(path.join(d, e.name), `${prefix}${e.name}/`);
      else if (e.isFile() && !e.name.endsWith(".tmp")) {
        const c = fs.readFileSync(path.join(d, e.name), "utf8").trim();
        byCommit.set(c, [...(byCommit.get(c) ?? []), `${prefix}${e.name}`]);
      }
    }
  };
  walk(path.join(rd, "refs"), "");
  return byCommit;
}

/** The hub snapshots (hub/) and converted GGUFs (models/) in the cache. */
export function listCachedModels(): CachedModel[] {
  const out: CachedModel[] = [];
  const hub = hubCacheDir();
  let repos: fs.Dirent[] = [];
  try {
    repos = fs.readdirSync(hub, { withFileTypes: true });
  } catch {
    /* no hub cache */
  }
  for (const r of repos.filter((e) => e.isDirectory() && e.name.includes("--")).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rd = path.join(hub, r.name);
    const refs = readRefs(rd);
    for (const c of fs.readdirSync(rd, { withFileTypes: true })) {
      if (!c.isDirectory() || !/^[0-9a-f]{40}$/.test(c.name)) continue;
      const snap = path.join(rd, c.name);
      const m = readManifest(rd, c.name);
      out.push({
        kind: "hf",
        name: m?.repo ?? r.name.replace("--", "/"),
        commit: c.name,
        revisions: (refs.get(c.name) ?? []).sort(),
        path: snap,
        bytes: dirBytes(snap),
        complete: !!m && isComplete(snap, m),
      });
    }
  }
  const models = path.join(cacheHome(), "models");
  for (const sub of GGUF_SUBDIRS) {
    try {
      const entries = fs.readdirSync(path.join(models, sub), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (!e.isFile() || !e.name.endsWith(".gguf") || e.name.startsWith(".")) continue;
        const p = path.join(models, sub, e.name);
        out.push({ kind: "gguf", name: sub ? `${sub}/${e.name}` : e.name, revisions: [], path: p, bytes: fs.statSync(p).size, complete: true });
      }
    } catch {
      /* no models */
    }
  }
  return out;
}

/**
 * Where GGUFs live under models/: converted hub snapshots and the builtin model (top level),
 * conversions of local checkpoint folders (converted/), files downloaded by hf: URI (gguf/).
 */
const GGUF_SUBDIRS = ["", "converted", "gguf"];

/** A cached GGUF by name: "file.gguf", "file" or "converted/file.gguf", in models/ or its subfolders. */
function findCachedGguf(key: string): string | null {
  const models = path.resolve(cacheHome(), "models");
  for (const sub of GGUF_SUBDIRS) {
    for (const cand of [key, `${key}.gguf`]) {
      if (!cand.endsWith(".gguf")) continue;
      const p = path.resolve(models, sub, cand);
      const rel = path.relative(models, p);
      if (rel.startsWith("..") || path.isAbsolute(rel) || !GGUF_SUBDIRS.includes(path.dirname(rel) === "." ? "" : path.dirname(rel))) continue;
      if (fileSize(p) !== null) return p;
    }
  }
  return null;
}

/** Deletes a file or folder; returns the bytes freed (a file still hard-linked elsewhere frees none). */
function removeCounting(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return 0;
  }
  if (st.isDirectory()) {
    let freed = 0;
    for (const e of fs.readdirSync(p)) freed += removeCounting(path.join(p, e));
    fs.rmdirSync(p);
    return freed;
  }
  fs.unlinkSync(p);
  return st.nlink <= 1 ? st.size : 0;
}

function describeCache(): string {
  const all = listCachedModels();
  if (all.length === 0) return `the cache (${cacheHome()}) holds no models`;
  const names = all.map((m) => (m.kind === "hf" ? `${m.name}@${m.revisions[0] ?? m.commit}` : m.name));
  return `cached: ${[...new Set(names)].join(", ")}`;
}

/**
 * Removes a cached model and returns the bytes freed: "owner/name" (every snapshot of the repo),
 * "owner/name@revision" (that revision's snapshot; also a commit), or a GGUF in models/ (or its
 * converted/ and gguf/ subfolders) by file name (with or without .gguf).
 */
export function removeCachedModel(nameOrRepo: string): number {
  const key = nameOrRepo.trim();
  const gguf = findCachedGguf(key);
  if (gguf) return removeCounting(gguf);
  if (!key.includes("/") || /\.gguf$/.test(key)) throw new Error(`no cached model named ${JSON.stringify(key)}; ${describeCache()}`);
  const s = parseRepoSpec(key);
  const rd = repoDir(s);
  if (!fs.existsSync(rd)) throw new Error(`no cached model named ${JSON.stringify(key)}; ${describeCache()}`);
  const lock = path.join(rd, ".lock");
  const pid = Number(fs.existsSync(lock) ? fs.readFileSync(lock, "utf8").trim() : NaN);
  if (Number.isInteger(pid) && pid > 0 && (pid === process.pid ? pullsInProcess.has(rd) : pidAlive(pid))) {
    throw new HubError(`${s.repo}: a pull (pid ${pid}) is running; stop it before removing the model`, "busy");
  }
  if (!key.includes("@")) return removeCounting(rd);
  // one revision
  const commit = cachedCommit(s) ?? (/^[0-9a-f]{7,40}$/.test(s.revision) ? fs.readdirSync(rd).find((c) => /^[0-9a-f]{40}$/.test(c) && c.startsWith(s.revision)) : undefined);
  if (!commit || !fs.existsSync(path.join(rd, commit))) throw new Error(`no cached model named ${JSON.stringify(key)}; ${describeCache()}`);
  let freed = removeCounting(path.join(rd, commit));
  freed += removeCounting(path.join(rd, "manifests", `${commit}.json`));
  for (const ref of readRefs(rd).get(commit) ?? []) fs.rmSync(path.join(rd, "refs", ref), { force: true });
  const left = fs.readdirSync(rd).filter((c) => /^[0-9a-f]{40}$/.test(c));
  if (left.length === 0) freed += removeCounting(rd);
  return freed;
}

// ---------------------------------------------------------------------------------------------
// Display

/** 2.2 GB, 512.0 MB, 3.4 kB (decimal units, like the hub's pages). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function fmtTime(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

/**
 * A progress reporter for pullModel's onProgress: a cli-progress bar (bytes, rate, ETA, file) when
 * the stream is a TTY, else a plain line per file and every `intervalS` seconds. Call stop() after
 * the pull (also after an error).
 */
export function progressBarReporter(o: { stream?: NodeJS.WriteStream; tty?: boolean; intervalS?: number } = {}): {
  onProgress: (p: PullProgress) => void;
  stop: () => void;
} {
  const stream = o.stream ?? process.stderr;
  const tty = o.tty ?? !!stream.isTTY;
  const interval = (o.intervalS ?? 10) * 1000;
  let bar: cliProgress.SingleBar | null = null;
  let lastLine = performance.now();
  let lastDone = "";
  const payload = (p: PullProgress) => ({
    done: formatBytes(p.bytes),
    size: formatBytes(p.total),
    rate: `${formatBytes(p.rateBytesPerS)}/s`,
    remaining: fmtTime(p.etaS),
    file: p.file,
  });
  return {
    onProgress: (p) => {
      if (tty) {
        if (!bar) {
          bar = new cliProgress.SingleBar(
            {
              format: "pull |{bar}| {percentage}% | {done}/{size} | {rate} | ETA {remaining} | {file}",
              barsize: 24,
              hideCursor: true,
              stream,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(Math.max(1, p.total), p.bytes, payload(p));
        }
        bar.update(p.bytes, payload(p));
        return;
      }
      // plain lines: one per finished file, and one every intervalS seconds
      const now = performance.now();
      const fileDone = p.file !== "" && p.fileBytes === p.fileTotal;
      if (fileDone ? lastDone === p.file : now - lastLine < interval) return;
      if (fileDone) lastDone = p.file;
      lastLine = now;
      const q = payload(p);
      const pct = p.total ? Math.floor((100 * p.bytes) / p.total) : 100;
      const what = fileDone ? `${p.file} done` : `${p.file} ${formatBytes(p.fileBytes)}/${formatBytes(p.fileTotal)}`;
      stream.write(`pull ${q.done}/${q.size} (${pct}%) | ${q.rate} | ETA ${q.remaining} | ${what}\n`);
    },
    stop: () => {
      (bar as cliProgress.SingleBar | null)?.stop();
      bar = null;
    },
  };
}
