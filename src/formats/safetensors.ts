// safetensors files, read and written here and nowhere else: the header reader (only the JSON
// header is parsed up front; a tensor's bytes are read on demand with fs.readSync at their offset,
// in pieces as small as the caller wants, so a 2.2 GB model shard is never in memory), the weights
// of a Hugging Face checkpoint folder (`model.safetensors`, or shards listed by
// `model.safetensors.index.json`), a whole small file as f32 (an adapter), and the streaming
// writer (header first, then each tensor's bytes as its producer yields them).
//
// safetensors layout: an 8-byte little-endian header length N, N bytes of JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}` (padded with spaces
// to a multiple of 8), then the data; offsets are relative to the start of the data (8 + N).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./float16.js";
import { readJsonFile } from "./json.js";

/** Element size of the dtypes this project reads; other dtypes are listed but cannot be read. */
export const SAFETENSORS_DTYPE_SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };
/** Sizes of every dtype safetensors defines, to validate headers that hold other dtypes too. */
const ALL_DTYPE_SIZE: Record<string, number> = {
  ...SAFETENSORS_DTYPE_SIZE,
  F64: 8,
  I64: 8,
  U64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export interface StTensorInfo {
  name: string;
  /** "F32", "F16", "BF16" (readable) or another safetensors dtype. */
  dtype: string;
  /** Row-major (torch) shape. */
  shape: number[];
  /** The file holding it. */
  file: string;
  /** Absolute byte offset of its data in the file. */
  offset: number;
  byteLength: number;
}

export interface StHeader {
  tensors: StTensorInfo[];
  metadata: Record<string, string>;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function readFully(fd: number, out: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < out.length) {
    const n = fs.readSync(fd, out, done, out.length - done, position + done);
    if (n === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done} (truncated download?)`);
    done += n;
  }
}

/** Parse the header of a safetensors file (reads only the header, never the tensor data). */
export function readSafetensorsHeader(file: string): StHeader {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  const bad = (what: string): never => {
    throw new Error(`${file}: not a valid safetensors file: ${what}`);
  };
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) bad(`only ${size} bytes long (the header length alone takes 8)`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, file);
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(Math.min(size - 8, 100 * 1024 * 1024))) bad(`header length ${headerLen} is larger than the file (${size} bytes) or than 100 MB`);
    const n = Number(headerLen);
    const headBuf = Buffer.alloc(n);
    readFully(fd, headBuf, 8, file);
    let header: unknown;
    try {
      header = JSON.parse(headBuf.toString("utf8"));
    } catch (e) {
      bad(`the header is not JSON (${(e as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) bad("the header is not a JSON object");
    const dataStart = 8 + n;
    const out: StHeader = { tensors: [], metadata: {} };
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof v === "object" && v !== null && !Array.isArray(v)) out.metadata = v as Record<string, string>;
        continue;
      }
      if (typeof v !== "object" || v === null) bad(`tensor ${name}: its header entry is not an object`);
      const { dtype, shape, data_offsets: offs } = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== "string" || !(dtype in ALL_DTYPE_SIZE)) bad(`tensor ${name} has unknown dtype ${JSON.stringify(dtype)}`);
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
        bad(`tensor ${name} has shape ${JSON.stringify(shape)}; expected a list of non-negative integers`);
      }
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0) || offs[1] < offs[0]) {
        bad(`tensor ${name} has data_offsets ${JSON.stringify(offs)}; expected [begin, end]`);
      }
      const [begin, end] = offs as [number, number];
      const need = product(shape as number[]) * ALL_DTYPE_SIZE[dtype as string]!;
      if (end - begin !== need) {
        bad(`tensor ${name}: shape ${JSON.stringify(shape)} of ${dtype} needs ${need} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`);
      }
      if (dataStart + end > size) {
        bad(`tensor ${name}: data_offsets [${begin}, ${end}] run past the end of the data (${size - dataStart} bytes; truncated file?)`);
      }
      out.tensors.push({ name, dtype: dtype as string, shape: shape as number[], file, offset: dataStart + begin, byteLength: end - begin });
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** The weights of a Hugging Face checkpoint folder, by tensor name (headers only). */
export interface HfWeights {
  dir: string;
  /** The safetensors files, relative to dir, in the order they were read. */
  files: string[];
  tensors: Map<string, StTensorInfo>;
}

const SHARD_RE = /^model-(\d+)-of-(\d+)\.safetensors$/;

/**
 * Index the weights of a checkpoint folder: `model.safetensors.index.json` (its weight_map must
 * agree with the shards' headers), else `model.safetensors`, else `model-XXXXX-of-YYYYY.safetensors`
 * shards without an index (all of them must be present).
 */
export function openHfWeights(dir: string): HfWeights {
  const indexFile = path.join(dir, "model.safetensors.index.json");
  let files: string[];
  let weightMap: Record<string, string> | undefined;
  if (fs.existsSync(indexFile)) {
    const index = readJsonFile(indexFile);
    const wm = (index as { weight_map?: unknown } | null)?.weight_map;
    if (typeof wm !== "object" || wm === null || Array.isArray(wm) || !Object.values(wm).every((f) => typeof f === "string")) {
      throw new Error(`${indexFile}: no "weight_map" object of tensor name -> file name`);
    }
    weightMap = wm as Record<string, string>;
    files = [...new Set(Object.values(weightMap))].sort();
    const missing = files.filter((f) => !fs.existsSync(path.join(dir, f)));
    if (missing.length > 0) {
      throw new Error(`${dir}: missing weight file(s) ${missing.join(", ")} listed in model.safetensors.index.json (incomplete download?)`);
    }
  } else if (fs.existsSync(path.join(dir, "model.safetensors"))) {
    files = ["model.safetensors"];
  } else {
    const entries = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    files = entries.filter((f) => SHARD_RE.test(f)).sort();
    if (files.length > 0) {
      const total = Number(SHARD_RE.exec(files[0]!)![2]);
      const want = Array.from({ length: total }, (_, i) => `model-${String(i + 1).padStart(5, "0")}-of-${String(total).padStart(5, "0")}.safetensors`);
      const missing = want.filter((f) => !files.includes(f));
      if (missing.length > 0) throw new Error(`${dir}: missing weight shard(s) ${missing.join(", ")} (incomplete download?)`);
    } else {
      const bin = entries.filter((f) => /^pytorch_model.*\.bin$/.test(f) || f.endsWith(".pt") || f.endsWith(".pth"));
      throw new Error(
        bin.length > 0
          ? `${dir}: only PyTorch pickle weights (${bin.slice(0, 3).join(", ")}) were found; only safetensors checkpoints are supported (model.safetensors or model.safetensors.index.json)`
          : `${dir}: no model weights found (expected model.safetensors or model.safetensors.index.json)`,
      );
    }
  }

  const tensors = new Map<string, StTensorInfo>();
  for (const f of files) {
    for (const t of readSafetensorsHeader(path.join(dir, f)).tensors) {
      const prev = tensors.get(t.name);
      if (prev) throw new Error(`${dir}: tensor ${t.name} is in both ${path.basename(prev.file)} and ${f}`);
      tensors.set(t.name, t);
    }
  }
  if (weightMap) {
    for (const [name, f] of Object.entries(weightMap)) {
      const t = tensors.get(name);
      if (!t) throw new Error(`${dir}: tensor ${name} is listed in model.safetensors.index.json (in ${f}) but no weight file holds it (incomplete download?)`);
      if (path.basename(t.file) !== path.basename(f))
        throw new Error(`${dir}: model.safetensors.index.json puts ${name} in ${f}, but it is in ${path.basename(t.file)}`);
    }
    const extra = [...tensors.keys()].filter((n) => !(n in weightMap!));
    if (extra.length > 0) throw new Error(`${dir}: tensor(s) ${extra.slice(0, 5).join(", ")} are in the weight files but not in model.safetensors.index.json`);
  }
  return { dir, files, tensors };
}

/**
 * Reads byte ranges of tensors, keeping one file descriptor per file open until close().
 */
export class StReader {
  private fds = new Map<string, number>();

  /** Read `length` bytes of `t` starting `start` bytes into its data (into `out` when given). */
  read(t: StTensorInfo, start = 0, length = t.byteLength - start, out?: Uint8Array): Uint8Array {
    if (start < 0 || length < 0 || start + length > t.byteLength) {
      throw new RangeError(`${t.file}: tensor ${t.name}: byte range [${start}, ${start + length}) outside its ${t.byteLength} bytes`);
    }
    let fd = this.fds.get(t.file);
    if (fd === undefined) {
      fd = fs.openSync(t.file, "r");
      this.fds.set(t.file, fd);
    }
    const buf = out ? out.subarray(0, length) : new Uint8Array(length);
    readFully(fd, buf, t.offset + start, t.file);
    return buf;
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}

// ---------------------------------------------------------------------------
// A whole small file as f32
// ---------------------------------------------------------------------------

/** The readable dtypes, as this project names them. */
export type SafetensorsDtype = "F32" | "F16" | "BF16";

export interface SafetensorsTensor {
  name: string;
  /** Row-major (torch) shape. */
  shape: number[];
  /** Values as f32 (converted from F16/BF16 when read). */
  data: Float32Array;
}

export interface SafetensorsFile {
  tensors: (SafetensorsTensor & { dtype: string })[];
  metadata: Record<string, string>;
}

const LITTLE_ENDIAN_HOST = os.endianness() === "LE";

function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Little-endian F32, F16 or BF16 bytes as f32 values. */
function bytesToF32(bytes: Uint8Array, dtype: SafetensorsDtype, count: number): Float32Array {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (dtype === "F32") {
    const values = new Float32Array(count);
    if (LITTLE_ENDIAN_HOST) new Uint8Array(values.buffer).set(bytes);
    else for (let i = 0; i < count; i++) values[i] = buf.readFloatLE(i * 4);
    return values;
  }
  const bits = new Uint16Array(count);
  for (let i = 0; i < count; i++) bits[i] = buf.readUInt16LE(i * 2);
  return dtype === "F16" ? f16ToF32(bits) : bf16ToF32(bits);
}

/** Reads a whole safetensors file; F32, F16 and BF16 tensors come back as f32. Errors name the file. */
export function readSafetensors(file: string): SafetensorsFile {
  const header = readSafetensorsHeader(file);
  const out: SafetensorsFile = { tensors: [], metadata: header.metadata };
  const reader = new StReader();
  try {
    for (const t of header.tensors) {
      if (!(t.dtype in SAFETENSORS_DTYPE_SIZE)) {
        throw new Error(`${file}: not a valid safetensors file: tensor ${t.name} has dtype ${JSON.stringify(t.dtype)}; only F32, F16 and BF16 are supported`);
      }
      const data = bytesToF32(reader.read(t), t.dtype as SafetensorsDtype, product(t.shape));
      out.tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data });
    }
  } finally {
    reader.close();
  }
  return out;
}

// ---------------------------------------------------------------------------
// Streaming writer
// ---------------------------------------------------------------------------

export interface StWriteEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** The tensor's little-endian bytes, whole or as chunks produced on demand. */
  data: Uint8Array | (() => Iterable<Uint8Array>);
}

/**
 * Write a safetensors file tensor by tensor (the header is laid out from the shapes first), so
 * only one chunk of data is in memory at a time. Written to a temporary name, then renamed.
 */
export function writeSafetensorsStream(file: string, entries: readonly StWriteEntry[], metadata: Record<string, string> = { format: "pt" }): void {
  if (os.endianness() !== "LE") throw new Error("writeSafetensorsStream: only little-endian hosts are supported");
  writeEntries("writeSafetensorsStream", file, entries, metadata);
}

/** The one safetensors writer: entries hold little-endian bytes; errors start with `who`. */
function writeEntries(who: string, file: string, entries: readonly StWriteEntry[], metadata: Record<string, string>): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const sizes: number[] = [];
  let offset = 0;
  for (const e of entries) {
    const size = ALL_DTYPE_SIZE[e.dtype];
    if (size === undefined) throw new TypeError(`${who}: tensor ${e.name}: unknown dtype ${e.dtype}`);
    if (e.name === "__metadata__" || e.name in header) throw new TypeError(`${who}: duplicate or reserved tensor name ${JSON.stringify(e.name)}`);
    const n = product(e.shape) * size;
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + n] };
    sizes.push(n);
    offset += n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json, "utf8") % 8)) % 8);
  const head = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length));

  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, "w");
  let ok = false;
  try {
    const write = (b: Uint8Array): void => {
      let done = 0;
      while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done);
    };
    write(len);
    write(head);
    entries.forEach((e, i) => {
      let produced = 0;
      for (const chunk of typeof e.data === "function" ? e.data() : [e.data]) {
        produced += chunk.length;
        if (produced > sizes[i]!) break;
        write(chunk);
      }
      if (produced !== sizes[i]) throw new Error(`${who}: tensor ${e.name} needs ${sizes[i]} bytes, got ${produced > sizes[i]! ? "more" : produced}`);
    });
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (ok) fs.renameSync(tmp, file);
    else fs.rmSync(tmp, { force: true });
  }
}

/** f32 values as the little-endian bytes of `dtype`. */
function f32ToBytes(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  if (dtype === "F32") {
    if (LITTLE_ENDIAN_HOST) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const bytes = Buffer.alloc(data.length * 4);
    data.forEach((x, i) => bytes.writeFloatLE(x, i * 4));
    return bytes;
  }
  const bits = dtype === "F16" ? f32ToF16(data) : f32ToBf16(data);
  const bytes = Buffer.alloc(bits.length * 2);
  bits.forEach((x, i) => bytes.writeUInt16LE(x, i * 2));
  return bytes;
}

/**
 * Writes a safetensors file of f32 values, each tensor stored as its dtype (F32 by default), in
 * the order given.
 */
export function writeSafetensors(
  file: string,
  tensors: (SafetensorsTensor & { dtype?: SafetensorsDtype })[],
  metadata: Record<string, string> = { format: "pt" },
): void {
  const entries = tensors.map((t): StWriteEntry => {
    const dtype = t.dtype ?? "F32";
    if (!(dtype in SAFETENSORS_DTYPE_SIZE)) throw new TypeError(`writeSafetensors: tensor ${t.name}: unsupported dtype ${dtype}`);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0) || product(t.shape) !== t.data.length) {
      throw new TypeError(`writeSafetensors: tensor ${t.name}: shape ${shapeStr(t.shape)} does not hold ${t.data.length} values`);
    }
    return { name: t.name, dtype, shape: t.shape, data: f32ToBytes(t.data, dtype) };
  });
  writeEntries("writeSafetensors", file, entries, metadata);
}
