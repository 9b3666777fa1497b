// Where models come from: model.path (and --model) name a GGUF on disk, and resolveModelPath()
// turns every other form into one:
//
//   builtin:tiny                    a tiny random-weight Llama with the real Llama SPM vocabulary,
//                                   made on first use (the quickstart); builtin:tiny-llama3,
//                                   builtin:tiny-qwen2, builtin:tiny-qwen3: the same size in the
//                                   other families, with their real BPE vocabularies
//   hf:owner/repo/file.gguf         a GGUF file on the hub (or an https://....gguf URL), downloaded
//                                   by node-llama-cpp into <cache>/models/gguf/
//   path/to/model.gguf              a GGUF on disk, used as is
//   path/to/checkpoint/             a Hugging Face checkpoint folder (config.json, safetensors,
//                                   tokenizer.model or tokenizer.json): converted once into <cache>/models/converted/
//   owner/name[@revision]           a hub repository: pulled into <cache>/hub/ (./get/hub.ts) after a
//                                   question or --yes, converted once into <cache>/models/
//
// <cache> is $TEXT2SQL_HOME, default ~/.cache/text2sql.
//
// This file is src/models/'s one door: the other layers import models through it. Below it,
// ./get/ gets a model (hub listing, downloads, the cache, progress) and ./convert/ converts a
// Hugging Face checkpoint to a GGUF (read checkpoint -> plan tensors -> metadata -> write);
// ./test-model.ts makes the random-weight models of builtin:tiny.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { resolveModelFile } from "node-llama-cpp";
import { makeTestModel, type TestFamily } from "./test-model.js";
import { cacheHome } from "./get/cache.js";
import { convertHfToGguf, type ConvertOutType } from "./convert/convert.js";
import { formatBytes } from "../util/format.js";
import { planPull, pullModel, type PullPlan } from "./get/hub.js";
import { hubCacheDir, listCachedModels, removeCachedModel } from "./get/hub-cache.js";
import { HubError, parseRepoSpec, type RepoSpec } from "./get/hub-http.js";
import { etaSeconds, progressBarReporter, slidingRate, type PullProgress } from "./get/hub-progress.js";

export { cacheHome } from "./get/cache.js";
export { pullModel, type PullOptions } from "./get/hub.js";
export { listCachedModels, type CachedModel } from "./get/hub-cache.js";
export { HubError, type HubErrorCode } from "./get/hub-http.js";
export { type PullProgress } from "./get/hub-progress.js";
export { convertHfToGguf, SUPPORTED_ARCHITECTURES, type ConvertOptions, type ConvertOutType, type ConvertResult } from "./convert/convert.js";

export const BUILTIN_TINY = "builtin:tiny";
/** The tiny builtin models of the other families (./test-model.ts): builtin:tiny-<family>. */
const BUILTIN_FAMILIES: readonly TestFamily[] = ["llama3", "qwen2", "qwen3"];

/** model.dtype: the weight type a Hugging Face checkpoint is converted to; auto keeps the checkpoint's. */
export type ModelDtype = ConvertOutType;
export const MODEL_DTYPES: readonly ModelDtype[] = ["auto", "bf16", "f16", "f32", "q8_0"];

export const MODEL_PATH_FORMS =
  "a GGUF file (path/to/model.gguf), a Hugging Face checkpoint folder (with config.json), a hub repository " +
  '("owner/name" or "owner/name@revision", e.g. TinyLlama/TinyLlama-1.1B-Chat-v1.0), a GGUF on the hub ' +
  '("hf:owner/repo/file.gguf" or an https://... .gguf URL), or builtin:tiny';

export interface ResolveModelOptions {
  /** what messages call the model (default "model.path"; e.g. "--model") */
  label?: string;
  /** progress messages, one line each */
  log?: (msg: string) => void;
  /** model.dtype: the weight type of a converted checkpoint (default auto: the checkpoint's own) */
  dtype?: ModelDtype;
  /** download a hub repository without asking (also when $TEXT2SQL_YES is 1/true/yes) */
  yes?: boolean;
  /**
   * ask before downloading a hub repository; default: when stdin and stderr are terminals.
   * Without `yes` and not interactive, a download is an error that says how much and where.
   */
  interactive?: boolean;
  /** the question, for an interactive download (default: "Download? [y/N]" on stderr) */
  confirm?: (question: string) => Promise<boolean>;
  /** download progress (hub repositories and hf: files); default: a bar (or plain lines) on stderr */
  onProgress?: (p: PullProgress) => void;
  /** conversion progress in bytes of tensor data */
  onConvertProgress?: (done: number, total: number) => void;
  /** aborts a download; the partial files are kept and the next run resumes them */
  signal?: AbortSignal;
  /**
   * called when a download starts (it listens to `signal`) and when a conversion starts (it runs
   * to the end, blocking the event loop): a CLI handles Ctrl-C during the first only
   */
  onPhase?: (phase: "download" | "convert") => void;
}

/** Resolutions done in this process: a CLI resolves before the trainer does, without a second hub request. */
const resolved = new Map<string, string>();

/**
 * Turns model.path into a GGUF file on disk: makes the builtin model, downloads (hf: URIs, hub
 * repositories) and converts (checkpoint folders, hub repositories) as needed, reusing what the
 * cache already holds. The second argument may be a log function (the older signature).
 */
export async function resolveModelPath(p: string, opts: ((msg: string) => void) | ResolveModelOptions = {}): Promise<string> {
  const o: ResolveModelOptions = typeof opts === "function" ? { log: opts } : opts;
  const log = o.log ?? (() => {});
  const L = o.label ?? "model.path";
  const dtype = o.dtype ?? "auto";
  if (!MODEL_DTYPES.includes(dtype)) throw new Error(`model.dtype: expected one of ${MODEL_DTYPES.join(", ")}, got ${JSON.stringify(dtype)}`);
  if (typeof p !== "string" || !p.trim()) throw new Error(`${L}: expected ${MODEL_PATH_FORMS}; got ${JSON.stringify(p)}`);
  const key = `${p}\0${dtype}\0${cacheHome()}`;
  const done = resolved.get(key);
  if (done && fs.existsSync(done)) return done;
  const file = await resolveUncached(p, dtype, { ...o, log, label: L });
  resolved.set(key, file);
  return file;
}

type Resolve = ResolveModelOptions & { log: (msg: string) => void; label: string };

async function resolveUncached(p: string, dtype: ModelDtype, o: Resolve): Promise<string> {
  const L = o.label;
  if (p === BUILTIN_TINY) return builtinTiny(o.log);
  const fam = BUILTIN_FAMILIES.find((f) => p === `${BUILTIN_TINY}-${f}`);
  if (fam) return builtinTiny(o.log, fam);
  if (p.startsWith("builtin:")) {
    throw new Error(`${L}: unknown builtin model '${p}'; available: ${[BUILTIN_TINY, ...BUILTIN_FAMILIES.map((f) => `${BUILTIN_TINY}-${f}`)].join(", ")}`);
  }
  if (isGgufUri(p)) return resolveGgufUri(p, o);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(p);
  } catch {
    /* not on disk */
  }
  if (st?.isFile()) return p;
  if (st?.isDirectory()) {
    if (!fs.existsSync(path.join(p, "config.json"))) {
      throw new Error(
        `${L}: ${p} is a folder without config.json: expected a GGUF file or a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.model or tokenizer.json)`,
      );
    }
    return (await convertCheckpointCached(p, { dtype, log: o.log, onProgress: o.onConvertProgress, label: L, onPhase: o.onPhase })).file;
  }
  if (/\.gguf$/i.test(p) || /^[.~/\\]/.test(p) || p.includes("\\")) throw new Error(`${L}: file not found: ${p}`);
  if (/^https?:\/\//.test(p) || looksLikeRepo(p)) {
    let spec: RepoSpec;
    try {
      spec = parseRepoSpec(p);
    } catch (e) {
      throw new Error(`${L}: ${p} is not a file or folder, nor a hub repository: ${(e as Error).message}`, { cause: e });
    }
    return resolveHub(spec, dtype, o, p);
  }
  throw new Error(`${L}: ${JSON.stringify(p)} is not a file or folder (${path.resolve(p)} does not exist); expected ${MODEL_PATH_FORMS}`);
}

function looksLikeRepo(p: string): boolean {
  return /^[^/@\s]+\/[^/@\s]+(@\S+)?$/.test(p);
}

function isGgufUri(p: string): boolean {
  if (/^(hf|huggingface):/.test(p) || /^(hf\.co|huggingface\.co)\//.test(p)) return true;
  return /^https?:\/\//.test(p) && /\.gguf$/i.test(p.replace(/[?#].*$/, ""));
}

async function builtinTiny(log: (msg: string) => void, family?: TestFamily): Promise<string> {
  const file = path.join(cacheHome(), "models", family ? `builtin-tiny-${family}-v1.gguf` : "builtin-tiny-v1.gguf");
  if (!fs.existsSync(file)) {
    log(`making the builtin tiny model (random weights, ${family ? `${family} family, its vocab` : "Llama SPM vocab"}): ${file}`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await makeTestModel({ path: file, type: "f32", nEmbd: 128, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 256, nCtx: 512, seed: 7, ...(family ? { family } : {}) });
  }
  return file;
}

function envYes(): boolean {
  return /^(1|true|yes|y|on)$/i.test(process.env.TEXT2SQL_YES ?? "");
}

function seconds(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------------
// GGUF files on the hub (hf: URIs) and at URLs, through node-llama-cpp

/** The folder hf: URIs and .gguf URLs are downloaded to. */
export function ggufDownloadDir(): string {
  return path.join(cacheHome(), "models", "gguf");
}

async function resolveGgufUri(uri: string, o: Resolve): Promise<string> {
  const L = o.label;
  const directory = ggufDownloadDir();
  const t0 = performance.now();
  let reporter: ReturnType<typeof progressBarReporter> | null = null;
  const onProgress = o.onProgress ?? (reporter = progressBarReporter()).onProgress;
  const rate = slidingRate();
  let started = false;
  const name = path.basename(uri.replace(/[?#].*$/, ""));
  let file: string;
  o.onPhase?.("download");
  try {
    file = await resolveModelFile(uri, {
      directory,
      cli: false,
      signal: o.signal,
      deleteTempFileOnCancel: false, // a new run resumes the download
      onProgress: ({ totalSize, downloadedSize }) => {
        if (!started) {
          started = true;
          o.log(`${L}: ${uri} is not in the cache: downloading ${formatBytes(totalSize)} to ${directory}`);
        }
        const rateBytesPerS = rate(downloadedSize);
        onProgress({
          file: name,
          fileBytes: downloadedSize,
          fileTotal: totalSize,
          bytes: downloadedSize,
          total: totalSize,
          rateBytesPerS,
          etaS: etaSeconds(totalSize - downloadedSize, rateBytesPerS),
        });
      },
    });
  } catch (e) {
    if (o.signal?.aborted)
      throw new HubError(`download of ${uri} interrupted; the partial download is kept in ${directory} and resumes on the next run`, "aborted");
    throw new Error(`${L}: ${uri}: ${(e as Error).message}`, { cause: e });
  } finally {
    reporter?.stop();
  }
  o.log(started ? `${L}: downloaded ${uri} in ${seconds(t0)}: ${file}` : `${L}: ${uri}: ${file}`);
  return file;
}

// ---------------------------------------------------------------------------------------------
// Hugging Face checkpoint folders

function shortHash(text: string, n = 8): string {
  return crypto.createHash("sha256").update(text).digest("hex").slice(0, n);
}

/**
 * The cached GGUF of a local checkpoint folder: models/converted/<folder>-<path hash>-<content
 * hash>-<dtype>.gguf, where the content hash covers the names, sizes and modification times of the
 * folder's files (and the dtype): an edited checkpoint is converted again.
 */
export function convertedPathFor(dir: string, dtype: ModelDtype = "auto"): string {
  const real = fs.realpathSync(dir);
  const files = fs
    .readdirSync(real, { withFileTypes: true })
    .filter((e) => !e.name.startsWith(".") && !e.name.endsWith(".incomplete"))
    .map((e) => {
      const st = fs.statSync(path.join(real, e.name));
      return st.isFile() ? [e.name, st.size, Math.round(st.mtimeMs)] : null;
    })
    .filter((x) => x !== null)
    .sort((a, b) => (a![0] < b![0] ? -1 : 1));
  const base =
    path
      .basename(real)
      .replace(/[^A-Za-z0-9._-]+/g, "_")
      .replace(/^[.-]+/, "")
      .slice(0, 80) || "model";
  return path.join(cacheHome(), "models", "converted", `${base}-${shortHash(real)}-${shortHash(JSON.stringify({ files, dtype }))}-${dtype}.gguf`);
}

/** Converts a checkpoint folder once; later calls return the cached GGUF (`converted: false`). */
export async function convertCheckpointCached(
  dir: string,
  o: {
    dtype?: ModelDtype;
    log?: (msg: string) => void;
    onProgress?: (done: number, total: number) => void;
    label?: string;
    onPhase?: (phase: "convert") => void;
  } = {},
): Promise<{ file: string; converted: boolean }> {
  const log = o.log ?? (() => {});
  const L = o.label ?? "model.path";
  const dtype = o.dtype ?? "auto";
  const file = convertedPathFor(dir, dtype);
  if (fs.existsSync(file)) {
    log(`${L}: ${dir} was converted before: ${file}`);
    return { file, converted: false };
  }
  o.onPhase?.("convert");
  await convertLogged(dir, file, { dtype, log, onProgress: o.onProgress, label: L });
  // earlier conversions of the same folder (before it changed) at the same dtype
  const stem = path.basename(file).split("-").slice(0, -3).join("-");
  const pathHash = path.basename(file).split("-").at(-3);
  for (const f of fs.readdirSync(path.dirname(file))) {
    if (f !== path.basename(file) && f.startsWith(`${stem}-${pathHash}-`) && f.endsWith(`-${dtype}.gguf`)) {
      fs.rmSync(path.join(path.dirname(file), f), { force: true });
      log(`${L}: removed the conversion of an earlier state of ${dir}: ${f}`);
    }
  }
  return { file, converted: true };
}

/** Converts a checkpoint folder to `out` (not cached), logging what happens and how long it took. */
export async function convertCheckpoint(
  dir: string,
  out: string,
  o: { dtype?: ModelDtype; log?: (msg: string) => void; onProgress?: (done: number, total: number) => void } = {},
): Promise<void> {
  if (!fs.existsSync(path.join(dir, "config.json"))) throw new Error(`${dir}: not a Hugging Face checkpoint folder (no config.json)`);
  await convertLogged(dir, out, { dtype: o.dtype ?? "auto", log: o.log ?? (() => {}), onProgress: o.onProgress, label: "convert" });
}

/** convertHfToGguf with a log of what happens and how long it took. */
async function convertLogged(
  dir: string,
  out: string,
  o: { dtype: ModelDtype; log: (msg: string) => void; onProgress?: (done: number, total: number) => void; name?: string; sourceRepo?: string; label: string },
): Promise<void> {
  const L = o.label;
  const t0 = performance.now();
  o.log(`${L}: converting ${dir} to GGUF (${o.dtype === "auto" ? "the checkpoint's precision" : o.dtype}): ${out}`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  removeStaleTemps(out);
  const r = await convertHfToGguf(dir, out, {
    outtype: o.dtype,
    name: o.name,
    sourceRepo: o.sourceRepo,
    log: (m) => o.log(`  ${m}`),
    onProgress: o.onProgress,
  });
  o.log(`${L}: converted ${dir} to ${r.outtype.toUpperCase()} in ${seconds(t0)} (${r.nTensors} tensors, ${formatBytes(fs.statSync(out).size)})`);
}

/** `.<file>.<pid>.tmp` left by a conversion that was killed (writeGguf's temporary name). */
function removeStaleTemps(out: string): void {
  const d = path.dirname(out);
  const prefix = `.${path.basename(out)}.`;
  for (const f of fs.readdirSync(d)) {
    const pid = Number(f.startsWith(prefix) && f.endsWith(".tmp") ? f.slice(prefix.length, -4) : NaN);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === "EPERM";
    }
    if (!alive) fs.rmSync(path.join(d, f), { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Hub repositories

/** The converted GGUF of a hub snapshot: models/<owner>--<name>-<commit, 10>-<dtype>.gguf. */
export function hubGgufPath(spec: string | RepoSpec, commit: string, dtype: ModelDtype = "auto"): string {
  const s = typeof spec === "string" ? parseRepoSpec(spec) : spec;
  return path.join(cacheHome(), "models", `${s.owner}--${s.name}-${commit.slice(0, 10)}-${dtype}.gguf`);
}

const HUB_GGUF = /^(.+?)--(.+)-([0-9a-f]{10})-(auto|bf16|f16|f32|q8_0)\.gguf$/;

/** For a GGUF file name made by hubGgufPath: the repository, commit prefix and dtype. */
export function parseHubGgufName(file: string): { repo: string; commit: string; dtype: ModelDtype } | null {
  const m = HUB_GGUF.exec(path.basename(file));
  return m ? { repo: `${m[1]}/${m[2]}`, commit: m[3]!, dtype: m[4] as ModelDtype } : null;
}

export interface HubModelOptions extends ResolveModelOptions {
  /** convert the snapshot to a GGUF (default true) */
  convert?: boolean;
  /** complete the snapshot even when its GGUF is already there (`text2sql model pull`) */
  fullSnapshot?: boolean;
  /** called once the plan is known, before anything is downloaded */
  onPlan?: (plan: PullPlan) => void;
}

export interface HubModelResult {
  plan: PullPlan;
  /** the snapshot folder (may be incomplete when the GGUF was already there) */
  dir: string;
  /** the converted GGUF; null with convert: false */
  gguf: string | null;
  downloaded: boolean;
  converted: boolean;
}

/** What a download of `plan` would fetch: the files not in the cache yet and their bytes. */
export function describeDownload(plan: PullPlan): string {
  const n = plan.files.filter((f) => f.local === "missing" || f.local === "partial").length;
  const partial = plan.files.reduce((a, f) => a + (f.local === "partial" ? f.localBytes : 0), 0);
  return `${n} file${n === 1 ? "" : "s"}, ${formatBytes(plan.bytesToDownload)}${partial ? ` (${formatBytes(partial)} already there, resumed)` : ""}`;
}

/**
 * Pulls a hub repository (asking first, unless `yes`) and converts it to a cached GGUF. When the
 * GGUF of the revision's commit is already there, nothing is downloaded.
 */
export async function pullHubModel(spec: string | RepoSpec, o: HubModelOptions = {}): Promise<HubModelResult> {
  const s = typeof spec === "string" ? parseRepoSpec(spec) : spec;
  const log = o.log ?? (() => {});
  const L = o.label ?? "model.path";
  const dtype = o.dtype ?? "auto";
  const convert = o.convert ?? true;
  const plan = await planPull(s, { signal: o.signal, log });
  o.onPlan?.(plan);
  const at = `${plan.repo}@${plan.revision}`;
  const gguf = hubGgufPath(s, plan.commit, dtype);
  const ggufThere = convert && fs.existsSync(gguf);
  if (ggufThere) {
    log(`${L}: ${at} (commit ${plan.commit.slice(0, 10)}) was converted before: ${gguf}`);
    if (!o.fullSnapshot || plan.bytesToDownload === 0) return { plan, dir: plan.dir, gguf, downloaded: false, converted: false };
  }
  let downloaded = false;
  if (plan.bytesToDownload > 0) {
    log(`${L}: ${at} is not in the cache: will download ${describeDownload(plan)} to ${plan.dir}`);
    await confirmDownload(plan, s, o);
    const t0 = performance.now();
    let reporter: ReturnType<typeof progressBarReporter> | null = null;
    const onProgress = o.onProgress ?? (reporter = progressBarReporter()).onProgress;
    o.onPhase?.("download");
    try {
      await pullModel(plan, { signal: o.signal, log, onProgress });
    } finally {
      reporter?.stop();
    }
    downloaded = true;
    log(`${L}: downloaded ${at} (commit ${plan.commit.slice(0, 10)}) in ${seconds(t0)}: ${plan.dir}`);
  } else if (!plan.offline) {
    await pullModel(plan, { signal: o.signal, log }); // links identical files, records the revision
  }
  if (!convert) return { plan, dir: plan.dir, gguf: null, downloaded, converted: false };
  if (ggufThere) return { plan, dir: plan.dir, gguf, downloaded, converted: false };
  o.onPhase?.("convert");
  await convertLogged(plan.dir, gguf, { dtype, log, onProgress: o.onConvertProgress, name: s.name, sourceRepo: s.repo, label: L });
  return { plan, dir: plan.dir, gguf, downloaded, converted: true };
}

async function confirmDownload(plan: PullPlan, s: RepoSpec, o: ResolveModelOptions): Promise<void> {
  const L = o.label ?? "model.path";
  if (o.yes || envYes()) return;
  const spec = plan.revision === "main" ? plan.repo : `${plan.repo}@${plan.revision}`;
  const interactive = o.interactive ?? (!!process.stdin.isTTY && !!process.stderr.isTTY);
  if (!interactive) {
    throw new Error(
      `${L}: ${plan.repo}@${plan.revision} needs a download of ${describeDownload(plan)} into ${plan.dir}, and there is no terminal to ask on. ` +
        `Rerun with --yes to download it (or set TEXT2SQL_YES=1, or run \`text2sql model pull ${spec}\` first)`,
    );
  }
  const ok = await (o.confirm ?? askYesNo)("Download? [y/N] ");
  if (!ok) throw new Error(`${L}: the download of ${s.repo}@${s.revision} was declined`);
}

/** Asks on stderr, reads a line from stdin; Ctrl-C or anything but y/yes is no. */
export function askYesNo(question: string): Promise<boolean> {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    let answered = false;
    const finish = (v: boolean) => {
      if (answered) return;
      answered = true;
      rl.close();
      resolve(v);
    };
    rl.on("SIGINT", () => {
      process.stderr.write("\n");
      finish(false);
    });
    rl.on("close", () => finish(false));
    rl.question(question, (a) => finish(/^\s*y(es)?\s*$/i.test(a)));
  });
}

async function resolveHub(s: RepoSpec, dtype: ModelDtype, o: Resolve, asGiven: string): Promise<string> {
  const L = o.label;
  try {
    return (await pullHubModel(s, { ...o, dtype })).gguf!;
  } catch (e) {
    if (e instanceof HubError && e.code === "not-found") {
      throw new HubError(`${L}: ${e.message} (${asGiven} is not a file or folder either: ${path.resolve(asGiven)} does not exist)`, e.code, e.status, e.url);
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Removing

/**
 * Removes a cached model: a GGUF by file name (as `text2sql model list` shows it), or a hub
 * repository ("owner/name", "owner/name@revision") with the GGUFs converted from it. Returns the
 * bytes freed and what was removed.
 */
export function removeModel(name: string): { freed: number; removed: string[] } {
  const key = name.trim();
  const ggufs = listCachedModels().filter((m) => m.kind === "gguf");
  const byName = ggufs.find((m) => m.name === key || m.name === `${key}.gguf` || path.basename(m.path) === key || path.basename(m.path) === `${key}.gguf`);
  if (byName || !key.includes("/") || /\.gguf$/.test(key)) {
    const freed = removeCachedModel(byName?.name ?? key);
    return { freed, removed: [byName?.path ?? key] };
  }
  const s = parseRepoSpec(key);
  const rd = path.join(hubCacheDir(), `${s.owner}--${s.name}`);
  let commitPrefix: string | null = null;
  if (key.includes("@")) {
    try {
      commitPrefix = fs
        .readFileSync(path.join(rd, "refs", s.revision), "utf8")
        .trim()
        .slice(0, 10);
    } catch {
      commitPrefix = /^[0-9a-f]{7,40}$/.test(s.revision) ? s.revision.slice(0, 10) : null;
    }
  }
  const converted = ggufs.filter((m) => {
    const h = parseHubGgufName(m.path);
    if (!h || h.repo !== s.repo || path.dirname(m.path) !== path.join(cacheHome(), "models")) return false;
    if (!key.includes("@")) return true;
    return commitPrefix !== null && (h.commit.startsWith(commitPrefix) || commitPrefix.startsWith(h.commit));
  });
  let freed = 0;
  const removed: string[] = [];
  const snapshots = listCachedModels().filter((m) => m.kind === "hf" && m.name === s.repo);
  try {
    freed += removeCachedModel(key);
    removed.push(...(key.includes("@") ? snapshots.filter((m) => m.commit?.startsWith(commitPrefix ?? "\0")).map((m) => m.path) : [rd]));
  } catch (e) {
    if (converted.length === 0) throw e;
  }
  for (const g of converted) {
    freed += removeCachedModel(g.name);
    removed.push(g.path);
  }
  return { freed, removed };
}
