// Downloading one file of a pull into the cache: `<file>.incomplete` resumed with a Range request,
// retries with backoff after failures that made no progress, size and hash (sha256 for LFS files,
// git's blob sha1 for others) checked before the atomic rename, and the disk-full error.
import crypto from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { formatBytes } from "../../util/format.js";
import { fileSize, freeBytes, type PullFile, type RepoFile } from "./hub-cache.js";
import {
  abortedError,
  causeText,
  HubError,
  hubEndpoint,
  hubGet,
  httpError,
  isNoSpace,
  isRetryable,
  sleep,
  StallError,
  stallGuard,
  type Net,
  type RepoSpec,
} from "./hub-http.js";
import type { Progress } from "./hub-progress.js";

function fmtFree(dir: string): string {
  const free = freeBytes(dir);
  return free === null ? "" : `, ${formatBytes(free)} free`;
}

export function diskFullError(dir: string, needed: number, removed?: string): HubError {
  return new HubError(
    `not enough disk space in ${dir}: the download needs ${formatBytes(needed)} (${needed} bytes) more${fmtFree(dir)}` +
      `${removed ? `; the partial file ${path.basename(removed)} was removed` : ""}. Free some space, or set TEXT2SQL_HOME to a folder on a bigger disk`,
    "disk-full",
  );
}

interface Hasher {
  kind: string;
  expected: string;
  update: (b: Uint8Array) => void;
  digest: () => string;
}

/** sha256 (LFS) or git's blob sha1 of a file's content, fed incrementally. */
function makeHasher(f: RepoFile): Hasher | null {
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

/** The server cannot resume from the partial file: it is removed and the download starts over. */
class Restart extends Error {}

/** One file's download: where it goes, where it comes from, and what to report to. */
interface Job {
  s: RepoSpec;
  f: PullFile;
  /** the snapshot folder */
  dir: string;
  final: string;
  /** `<final>.incomplete` */
  part: string;
  url: string;
  n: Net;
  progress: Progress;
  /** bytes the pull still has to download */
  remaining: () => number;
}

/** Attempts so far: failures in a row that made no progress, all attempts, starts over from byte 0. */
interface Tries {
  failures: number;
  attempts: number;
  restarts: number;
}

/** Downloads one file into `<name>.incomplete`, resuming, with retries; verifies; renames. */
export async function downloadFile(
  s: RepoSpec,
  plan: { dir: string; commit: string },
  f: PullFile,
  n: Net,
  progress: Progress,
  remaining: () => number,
): Promise<void> {
  const final = path.join(plan.dir, f.name);
  const url = `${hubEndpoint()}/${s.repo}/resolve/${plan.commit}/${encodeURIComponent(f.name)}`;
  const job: Job = { s, f, dir: plan.dir, final, part: `${final}.incomplete`, url, n, progress, remaining };
  const tries: Tries = { failures: 0, attempts: 0, restarts: 0 };
  fs.rmSync(final, { force: true }); // a wrong-sized leftover
  for (;;) {
    const before = resumeFrom(job);
    progress.start(f, before);
    const guard = stallGuard(n.signal, n.stallTimeoutMs);
    tries.attempts++;
    const hasher = makeHasher(f);
    try {
      if (before < f.size) await receive(job, before, guard, hasher);
      else if (hasher) await hashExisting(job.part, before, hasher);
      verifyAndRename(job, hasher);
      return;
    } catch (e0) {
      const e = guard.signal.aborted && guard.signal.reason instanceof StallError && !n.signal?.aborted ? guard.signal.reason : e0;
      await recover(job, e, before, tries);
    } finally {
      guard.dispose();
    }
  }
}

/** The bytes of the partial download to resume from (0 when it is bigger than the file: removed). */
function resumeFrom({ f, part, n }: Job): number {
  const have = fileSize(part) ?? 0;
  if (have <= f.size) return have;
  n.log(`${f.name}: the partial download is bigger than the file (${have} > ${f.size} bytes); starting over`);
  fs.rmSync(part, { force: true });
  return 0;
}

function contentRangeStartsAt(res: Response, from: number): boolean {
  const m = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
  return !!m && Number(m[1]) === from;
}

/** GETs the file from byte `have`: the answer, and the byte its body starts at (0 when the server ignored the range). */
async function requestFrom({ s, f, url, n, progress }: Job, have: number, signal: AbortSignal): Promise<{ res: Response; have: number }> {
  const res = await hubGet(url, { signal, from: have });
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
    progress.reset(0);
    return { res, have: 0 };
  }
  return { res, have };
}

/** Writes the file from byte `from` on into `<name>.incomplete`, feeding the hasher (from byte 0). */
async function receive(job: Job, from: number, guard: ReturnType<typeof stallGuard>, hasher: Hasher | null): Promise<void> {
  const { f, part, url } = job;
  const answer = await requestFrom(job, from, guard.signal);
  const res = answer.res;
  let have = answer.have;
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
        throw new HubError(
          `${f.name}: the server sent more than the expected ${f.size} bytes; the download was removed (${part})`,
          "checksum",
          res.status,
          url,
        );
      }
      await writeAll(fh, value);
      hasher?.update(value);
      have += value.length;
      job.progress.add(value.length, first);
      first = false;
    }
    if (have === f.size) await fh.sync();
  } finally {
    await fh.close();
  }
  if (have < f.size) {
    throw new HubError(`connection closed after ${have} of ${f.size} bytes`, "network", res.status, url, true);
  }
}

/** Checks the complete `<name>.incomplete` (size, then hash) and renames it to the file. */
function verifyAndRename({ f, part, final, url }: Job, hasher: Hasher | null): void {
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
}

/**
 * After a failed attempt that started with `before` bytes on disk: throws what ends the download
 * (abort, full disk, bad checksum, too many failures), else says why and waits before the next try.
 */
async function recover(job: Job, e: unknown, before: number, tries: Tries): Promise<void> {
  const { f, part, url, n } = job;
  const now = fileSize(part) ?? 0;
  const kept = `${formatBytes(now)} of ${formatBytes(f.size)} kept in ${part}`;
  if (n.signal?.aborted) {
    throw abortedError(n.signal, `download of ${f.name}${now ? ` (${kept}; run the same pull again to resume)` : ""}`);
  }
  if (isNoSpace(e)) {
    fs.rmSync(part, { force: true });
    throw diskFullError(job.dir, job.remaining() + f.localBytes, part);
  }
  if (e instanceof HubError && e.code === "checksum") {
    fs.rmSync(part, { force: true });
    throw e;
  }
  if (e instanceof Restart) {
    fs.rmSync(part, { force: true });
    if (++tries.restarts > 2) throw new HubError(`${f.name}: cannot resume the download: ${e.message}`, "http", undefined, url);
    n.log(`${f.name}: ${e.message}; starting over`);
    return;
  }
  if (!isRetryable(e)) throw e;
  tries.failures = now > before ? 1 : tries.failures + 1;
  const why = e instanceof HubError ? e.message : causeText(e);
  if (tries.failures > n.retries) {
    throw new HubError(
      `download of ${f.name} failed${tries.attempts > 1 ? ` after ${tries.attempts} attempts` : ""}: ${why} (${url}); ${kept}: run the same pull again to resume`,
      "network",
      e instanceof HubError ? e.status : undefined,
      url,
    );
  }
  const delay = n.retryDelayMs * 2 ** (tries.failures - 1);
  n.log(`${f.name}: ${why}; retrying in ${(delay / 1000).toFixed(1)} s from byte ${now}`);
  try {
    await sleep(delay, n.signal);
  } catch {
    throw abortedError(n.signal!, `download of ${f.name} (${kept}; run the same pull again to resume)`);
  }
}
