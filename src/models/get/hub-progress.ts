// Progress of a pull: the events pullModel reports (bytes, a sliding rate, ETA), and a reporter that
// shows them on a terminal (a bar) or as plain lines.
import { lazyBar } from "../../util/bar.js";
import { formatBytes, formatDuration } from "../../util/format.js";
import type { PullFile } from "./hub-cache.js";

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

export class Progress {
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
// Display

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
  const bar = lazyBar("pull |{bar}| {percentage}% | {done}/{size} | {rate} | ETA {remaining} | {file}", { stream, hideCursor: true });
  let lastLine = performance.now();
  let lastDone = "";
  const payload = (p: PullProgress) => ({
    done: formatBytes(p.bytes),
    size: formatBytes(p.total),
    rate: `${formatBytes(p.rateBytesPerS)}/s`,
    remaining: formatDuration(p.etaS),
    file: p.file,
  });
  return {
    onProgress: (p) => {
      if (tty) {
        bar.update(p.bytes, Math.max(1, p.total), payload(p));
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
    stop: () => bar.stop(),
  };
}
