// Files from a user (data, predictions, tables.json, schema files, the config YAML, JSON records and
// model configs, a database's header) are read through this one reader: the file is opened without
// blocking (O_NONBLOCK, so a FIFO cannot hang the open), its kind is checked on the open descriptor
// after symlinks are followed (a regular file only: never a device such as /dev/zero, a FIFO, a
// socket or a folder), its size is capped before a byte is read, and the read itself stops one
// byte past the cap (a file that grows while read, or one whose size the kernel does not report,
// is refused too). Errors name the option (or what the file is for) and the path.
import fs from "node:fs";

/** An error about a file from a user: `${label}: ${file}: ${problem}` (missing: `${label}: file not found: ${file}`). */
export class UserFileError extends Error {
  constructor(
    readonly label: string,
    readonly file: string,
    /** what is wrong, without the label and the path: "not found", "not a regular file (...)", "cannot be read (...)", "N bytes, more than ..." */
    readonly problem: string,
  ) {
    super(problem === "not found" ? `${label}: file not found: ${file}` : `${label}: ${file}: ${problem}`);
    this.name = "UserFileError";
  }
}

export interface UserFileOptions {
  /** the option or key that named the file ("--predictions", "data.path"), first in every error */
  label: string;
  /** the most bytes the file may have */
  maxBytes: number;
  /** what the file is, for the size error ("a predictions file"; default "the file") */
  what?: string;
}

const KIND: [(s: fs.Stats) => boolean, string][] = [
  [(s) => s.isDirectory(), "a folder"],
  [(s) => s.isCharacterDevice(), "a character device"],
  [(s) => s.isBlockDevice(), "a block device"],
  [(s) => s.isFIFO(), "a FIFO (named pipe)"],
  [(s) => s.isSocket(), "a socket"],
];

function kindOf(st: fs.Stats): string {
  return KIND.find(([is]) => is(st))?.[1] ?? "not a file";
}

const codeOf = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/** Opens `file` for reading without blocking and checks that it is a regular file; the caller closes the fd. */
function openRegular(file: string, label: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = codeOf(err);
    if (code === "ENOENT") throw new UserFileError(label, file, "not found");
    if (code === "EISDIR") throw new UserFileError(label, file, "not a regular file (it is a folder)");
    throw new UserFileError(label, file, `cannot be read (${code})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new UserFileError(label, file, `not a regular file (it is ${kindOf(st)}; a device, a pipe or a folder cannot be read)`);
    return { fd, size: st.size };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** The whole file, at most `maxBytes`: a regular file only (see the header). */
export function readUserFile(file: string, o: UserFileOptions): Buffer {
  const what = o.what ?? "the file";
  const tooBig = (n?: number) =>
    new UserFileError(
      o.label,
      file,
      n !== undefined ? `${n} bytes, more than the ${o.maxBytes} ${what} may have` : `more than the ${o.maxBytes} bytes ${what} may have`,
    );
  const { fd, size } = openRegular(file, o.label);
  try {
    if (size > o.maxBytes) throw tooBig(size);
    // one byte past the size to see a file that grew; chunks past it, up to one byte past the cap
    let buf = Buffer.allocUnsafe(Math.min(size, o.maxBytes) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (n > o.maxBytes) throw tooBig();
        const bigger = Buffer.allocUnsafe(Math.min(o.maxBytes + 1, Math.max(2 * buf.length, 1 << 16)));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      let got: number;
      try {
        got = fs.readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        throw new UserFileError(o.label, file, `cannot be read (${codeOf(err)})`);
      }
      if (got === 0) break;
      n += got;
    }
    if (n > o.maxBytes) throw tooBig();
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** The file as UTF-8 text (invalid bytes become U+FFFD; callers that must refuse them check the buffer), at most `maxBytes`. */
export function readUserText(file: string, o: UserFileOptions): string {
  return readUserFile(file, o).toString("utf8");
}

/** The first `n` bytes of a regular file (fewer if it is shorter), with the same kind check: for header checks. */
export function readUserFileHead(file: string, n: number, label: string): Buffer {
  const { fd } = openRegular(file, label);
  try {
    const head = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      let r: number;
      try {
        r = fs.readSync(fd, head, got, n - got, got);
      } catch (err) {
        throw new UserFileError(label, file, `cannot be read (${codeOf(err)})`);
      }
      if (r === 0) break;
      got += r;
    }
    return head.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** Checks that `file` is a regular file of at most `maxBytes` without reading it (for files another reader opens: SQLite, GGUF loaders). */
export function checkUserFile(file: string, o: UserFileOptions): number {
  const { fd, size } = openRegular(file, o.label);
  fs.closeSync(fd);
  if (size > o.maxBytes) throw new UserFileError(o.label, file, `${size} bytes, more than the ${o.maxBytes} ${o.what ?? "the file"} may have`);
  return size;
}
