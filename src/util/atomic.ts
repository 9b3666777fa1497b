// Crash-safe writes: a file or a whole folder is written under a temporary name next to its place
// (<name>.tmp-<pid>) and renamed into it, so that a crash at any moment leaves either the old or
// the new one complete. A folder is swapped: the old one is renamed away (<name>.old-<pid>), the
// new one in, then the old one removed; a folder is removed by renaming it away (<name>.del-<pid>)
// first. cleanLeftovers, at the next start, finishes a swap a crash cut and removes the leftovers of
// processes that are gone.
import fs from "node:fs";
import path from "node:path";

const tmpName = (p: string) => `${p}.tmp-${process.pid}`;
const LEFTOVER = /^(.+)\.(tmp|old|del)-(\d+)$/;

/** Writes `file` whole or not at all: into a temporary file, then renamed over it. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = tmpName(file);
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/**
 * Writes folder `dir` as a whole: `fill` writes every file into a temporary folder, which then
 * replaces `dir` (any old `dir` is renamed away first and removed after).
 */
export async function writeDirAtomic(dir: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = tmpName(dir);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    await fill(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const old = `${dir}.old-${process.pid}`;
  const had = fs.existsSync(dir);
  if (had) fs.renameSync(dir, old);
  fs.renameSync(tmp, dir);
  if (had) fs.rmSync(old, { recursive: true, force: true });
}

/** Removes file or folder `p` (if there) as a whole: renamed away first, so a crash never leaves part of it in place. */
export function removeAtomic(p: string): void {
  if (!fs.existsSync(p)) return;
  const gone = `${p}.del-${process.pid}`;
  fs.renameSync(p, gone);
  fs.rmSync(gone, { recursive: true, force: true });
}

/** Whether process `pid` is running (this process counts as gone: nothing of it is in flight at a start). */
function alive(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * In `folder`, for the <name>.tmp-<pid>, .old-<pid> and .del-<pid> entries of processes that are gone:
 * finishes a folder swap cut between its two renames (the new folder is complete then: it is
 * moved in; without one, the old one is moved back), then removes the rest. Resolves to a line per thing done, for the log.
 */
export function cleanLeftovers(folder: string): string[] {
  const done: string[] = [];
  const stale = () =>
    (fs.existsSync(folder) ? fs.readdirSync(folder) : []).map((n) => ({ n, m: LEFTOVER.exec(n) })).filter((x) => x.m && !alive(Number(x.m[3])));
  for (const { n, m } of stale().filter((x) => x.m![2] === "old")) {
    const target = path.join(folder, m![1]);
    const fresh = path.join(folder, `${m![1]}.tmp-${m![3]}`);
    if (fs.existsSync(target)) continue;
    fs.renameSync(fs.existsSync(fresh) ? fresh : path.join(folder, n), target);
    done.push(`finished replacing ${target}, which a crash interrupted`);
  }
  for (const { n } of stale()) {
    fs.rmSync(path.join(folder, n), { recursive: true, force: true });
    done.push(`removed ${path.join(folder, n)}, left by a process that is gone`);
  }
  return done;
}
