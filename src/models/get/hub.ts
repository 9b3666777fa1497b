// Pulls a Hugging Face model repository (the files a Llama safetensors checkpoint needs) into
// text2sql's cache, robustly: resumable downloads (`<file>.incomplete` + Range), size and hash
// checks before an atomic rename, retries with backoff, clear errors for gated/missing repos and a
// full disk, and progress events for a bar.
//
// This file lists a repository (which files a checkpoint needs), plans a pull against the cache and
// runs it. The rest of the protocol: hub-http.ts (specs, endpoint, token, errors, GETs),
// hub-cache.ts (the cache layout, locks, listing and removing cached models), hub-download.ts (one
// file: Range resume, retries, checksums), hub-progress.ts (progress events and their display).
import fs from "node:fs";
import path from "node:path";
import {
  cachedCommit,
  fileSize,
  freeBytes,
  isComplete,
  localState,
  lockRepo,
  readManifest,
  repoDir,
  writeFileAtomic,
  type Manifest,
  type PullFile,
  type RepoFile,
} from "./hub-cache.js";
import { diskFullError, downloadFile } from "./hub-download.js";
import { abortedError, fetchText, HubError, hubEndpoint, isNoSpace, netDefaults, parseRepoSpec, toSpec, type NetOptions, type RepoSpec } from "./hub-http.js";
import { Progress, type PullProgress } from "./hub-progress.js";

// ---------------------------------------------------------------------------------------------
// Listing a repository

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
// Planning

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

function makePlan(s: RepoSpec, commit: string, files: RepoFile[], skipped: string[], offline: boolean): PullPlan {
  const dir = path.join(repoDir(s), commit);
  const pf = localState(s, commit, files);
  const totalBytes = pf.reduce((a, f) => a + f.size, 0);
  const bytesToDownload = pf.reduce((a, f) => a + f.size - f.localBytes, 0);
  return { repo: s.repo, revision: s.revision, commit, dir, files: pf, skipped, totalBytes, bytesToDownload, freeBytes: freeBytes(dir), offline };
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
// Pulling

export interface PullOptions extends NetOptions {
  /** progress of the download, at most ~10 times a second, and at the start and end of each file */
  onProgress?: (p: PullProgress) => void;
}

/**
 * Downloads the checkpoint into the cache (see the layout in hub-cache.ts) and returns the
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
    const files: RepoFile[] = plan0.files.map(({ name, size, lfs, sha256, gitSha1 }) => ({
      name,
      size,
      lfs,
      ...(sha256 ? { sha256 } : {}),
      ...(gitSha1 ? { gitSha1 } : {}),
    }));
    writeFileAtomic(
      path.join(rd, "manifests", `${plan0.commit}.json`),
      JSON.stringify({ repo: s.repo, commit: plan0.commit, files } satisfies Manifest, null, 1),
    );
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
