// The hub's part of text2sql's cache: snapshot folders, manifests, refs and the lock of a pull in
// progress, what the cache holds of a snapshot's files, and listing and removing cached models.
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
import fs from "node:fs";
import path from "node:path";
import { cacheHome } from "./cache.js";
import { HubError, parseRepoSpec, type RepoSpec } from "./hub-http.js";

// ---------------------------------------------------------------------------------------------
// Snapshots

/** A file of a snapshot, as the hub lists it and the manifest records it. */
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

export function hubCacheDir(): string {
  return path.join(cacheHome(), "hub");
}

export function repoDir(s: RepoSpec): string {
  return path.join(hubCacheDir(), `${s.owner}--${s.name}`);
}

export interface Manifest {
  repo: string;
  commit: string;
  files: RepoFile[];
}

export function readManifest(dir: string, commit: string): Manifest | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, "manifests", `${commit}.json`), "utf8")) as Manifest;
    return Array.isArray(m.files) ? m : null;
  } catch {
    return null;
  }
}

export function writeFileAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

export function fileSize(p: string): number | null {
  try {
    const st = fs.statSync(p);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

export function isComplete(snapshot: string, m: Manifest): boolean {
  return m.files.every((f) => fileSize(path.join(snapshot, f.name)) === f.size);
}

/** Free bytes on the file system that holds `p` (or its nearest existing parent); null if unknown. */
export function freeBytes(p: string): number | null {
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

export function localState(s: RepoSpec, commit: string, files: RepoFile[]): PullFile[] {
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

/** The commit a revision resolves to in the cache (refs/<revision>, or the revision itself). */
export function cachedCommit(s: RepoSpec): string | null {
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

// ---------------------------------------------------------------------------------------------
// The lock of a pull

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
export function lockRepo(rd: string, repo: string): () => void {
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
        throw new HubError(
          `${repo}: another text2sql (pid ${pid}) is pulling this repository; wait for it to finish (or remove ${lock} if it is not running)`,
          "busy",
        );
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
  const commit =
    cachedCommit(s) ?? (/^[0-9a-f]{7,40}$/.test(s.revision) ? fs.readdirSync(rd).find((c) => /^[0-9a-f]{40}$/.test(c) && c.startsWith(s.revision)) : undefined);
  if (!commit || !fs.existsSync(path.join(rd, commit))) throw new Error(`no cached model named ${JSON.stringify(key)}; ${describeCache()}`);
  let freed = removeCounting(path.join(rd, commit));
  freed += removeCounting(path.join(rd, "manifests", `${commit}.json`));
  for (const ref of readRefs(rd).get(commit) ?? []) fs.rmSync(path.join(rd, "refs", ref), { force: true });
  const left = fs.readdirSync(rd).filter((c) => /^[0-9a-f]{40}$/.test(c));
  if (left.length === 0) freed += removeCounting(rd);
  return freed;
}
