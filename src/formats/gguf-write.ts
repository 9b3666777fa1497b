/**
 * The GGUF v3 writer (the format is described in ./gguf.ts): metadata keeps its value types, tensor
 * data may be produced lazily in chunks, and the file appears under its name only when complete.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { f32ToBf16, f32ToF16 } from "./float16.js";
import {
  alignUp,
  assertLittleEndianHost,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgmlType,
  ggmlTensorByteLength,
  ggmlTypeName,
  GgufValueType,
  TYPED_ARRAY,
  type GgufArray,
  type GgufValue,
} from "./gguf.js";

/** Raw tensor payload. Float32Array is converted when the tensor type is F16 or BF16. */
export type TensorData = Uint8Array | Uint16Array | Float32Array | Int32Array;

export interface GgufTensorSpec {
  name: string;
  type: number;
  ne: readonly number[];
  /**
   * The tensor contents, either as one array, or as a function returning chunks
   * (consumed lazily while writing, so huge tensors never need to be in memory at once).
   * Uint8Array is written verbatim; Uint16Array holds f16/bf16 bit patterns; Float32Array is
   * written as-is for F32 and converted (round to nearest even) for F16/BF16.
   */
  data: TensorData | (() => Iterable<TensorData>);
}

export interface GgufWriteSpec {
  /** Metadata in file order. `general.alignment`, if present, sets the alignment. */
  metadata: Iterable<readonly [string, GgufValue]>;
  tensors: readonly GgufTensorSpec[];
}

/** One of Buffer's fixed-size write methods (writeUInt8, writeFloatLE, writeBigInt64LE, ...): it returns the offset after what it wrote. */
type BufferWrite<T> = (this: Buffer, value: T, offset: number) => number;
const B = Buffer.prototype;

/** Little-endian byte builder for the header. */
class ByteSink {
  private chunks: Buffer[] = [];
  private cur = Buffer.allocUnsafe(1 << 16);
  private pos = 0;
  length = 0;

  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.allocUnsafe(Math.max(1 << 16, n));
    this.pos = 0;
  }
  /** Appends v with write, one of Buffer's fixed-size write methods (8 bytes at most), which says where it ended. */
  put<T>(write: BufferWrite<T>, v: T): void {
    this.room(8);
    const end = write.call(this.cur, v, this.pos);
    this.length += end - this.pos;
    this.pos = end;
  }
  u32(v: number): void {
    this.put(B.writeUInt32LE, v);
  }
  u64(v: bigint | number): void {
    this.put(B.writeBigUInt64LE, BigInt(v));
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.cur.set(b, this.pos);
    this.pos += b.length;
    this.length += b.length;
  }
  string(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.bytes(b);
  }
  finish(): Buffer {
    return Buffer.concat([...this.chunks, this.cur.subarray(0, this.pos)]);
  }
}

function writeScalar(sink: ByteSink, type: number, value: unknown, key: string): void {
  const bad = (): never => {
    throw new Error(`gguf: metadata "${key}": value ${String(value)} does not fit value type ${type}`);
  };
  const int = (lo: number, hi: number): number => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < lo || value > hi) bad();
    return value as number;
  };
  switch (type) {
    case GgufValueType.UINT8:
      return sink.put(B.writeUInt8, int(0, 0xff));
    case GgufValueType.INT8:
      return sink.put(B.writeInt8, int(-0x80, 0x7f));
    case GgufValueType.UINT16:
      return sink.put(B.writeUInt16LE, int(0, 0xffff));
    case GgufValueType.INT16:
      return sink.put(B.writeInt16LE, int(-0x8000, 0x7fff));
    case GgufValueType.UINT32:
      return sink.u32(int(0, 0xffffffff));
    case GgufValueType.INT32:
      return sink.put(B.writeInt32LE, int(-0x80000000, 0x7fffffff));
    case GgufValueType.FLOAT32:
      return typeof value === "number" ? sink.put(B.writeFloatLE, value) : bad();
    case GgufValueType.FLOAT64:
      return typeof value === "number" ? sink.put(B.writeDoubleLE, value) : bad();
    case GgufValueType.BOOL:
      return typeof value === "boolean" ? sink.put(B.writeUInt8, value ? 1 : 0) : bad();
    case GgufValueType.STRING:
      return typeof value === "string" ? sink.string(value) : bad();
    case GgufValueType.UINT64:
      if (typeof value !== "bigint" || value < 0n || value >= 1n << 64n) bad();
      return sink.u64(value as bigint);
    case GgufValueType.INT64:
      if (typeof value !== "bigint" || value < -(1n << 63n) || value >= 1n << 63n) bad();
      return sink.put(B.writeBigInt64LE, value as bigint);
    default:
      throw new Error(`gguf: metadata "${key}": unknown value type ${type}`);
  }
}

function writeValue(sink: ByteSink, v: GgufValue, key: string): void {
  if (v.type !== GgufValueType.ARRAY) return writeScalar(sink, v.type, v.value, key);
  sink.u32(v.itemType);
  const items = v.value as ArrayLike<unknown>;
  sink.u64(items.length);
  const Ctor = TYPED_ARRAY[v.itemType];
  if (Ctor && ArrayBuffer.isView(items) && items instanceof Ctor) {
    // Typed arrays of the matching type: bulk copy (host is little-endian).
    sink.bytes(new Uint8Array(items.buffer, items.byteOffset, items.byteLength));
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (v.itemType === GgufValueType.ARRAY) writeValue(sink, item as GgufArray, key);
    else writeScalar(sink, v.itemType, item, `${key}[${i}]`);
  }
}

/** Turn one chunk of user data into the bytes stored for a tensor of the given type. */
function tensorChunkBytes(chunk: TensorData, type: number, name: string): Uint8Array {
  if (chunk instanceof Float32Array) {
    if (type === GgmlType.F32) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const bits = type === GgmlType.F16 ? f32ToF16(chunk) : type === GgmlType.BF16 ? f32ToBf16(chunk) : undefined;
    if (!bits) throw new Error(`gguf: tensor "${name}": Float32Array data cannot be stored as ${ggmlTypeName(type)}`);
    return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
  }
  return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * Write a GGUF v3 file. The file is written to a temporary name next to `filePath`
 * and renamed into place on success, so readers never see a half-written file.
 */
export function writeGguf(filePath: string, spec: GgufWriteSpec): void {
  assertLittleEndianHost();
  const metadata = [...spec.metadata];
  const seenKeys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (const [key, value] of metadata) {
    if (seenKeys.has(key)) throw new Error(`gguf: duplicate metadata key "${key}" (writing ${filePath})`);
    seenKeys.add(key);
    if (key === "general.alignment") {
      if (value.type !== GgufValueType.UINT32 || value.value <= 0 || value.value % 8 !== 0) {
        throw new Error(`gguf: general.alignment must be a UINT32 multiple of 8 (writing ${filePath})`);
      }
      alignment = value.value;
    }
  }

  // Header: magic, version, counts, metadata, tensor infos (offsets laid out up front).
  const sink = new ByteSink();
  sink.u32(GGUF_MAGIC);
  sink.u32(3);
  sink.u64(spec.tensors.length);
  sink.u64(metadata.length);
  for (const [key, value] of metadata) {
    sink.string(key);
    sink.u32(value.type);
    writeValue(sink, value, key);
  }
  const seenTensors = new Set<string>();
  const sizes: number[] = [];
  let offset = 0;
  for (const t of spec.tensors) {
    if (seenTensors.has(t.name)) throw new Error(`gguf: duplicate tensor name "${t.name}" (writing ${filePath})`);
    seenTensors.add(t.name);
    if (t.ne.length < 1 || t.ne.length > 4 || t.ne.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new Error(`gguf: tensor "${t.name}" has invalid shape [${t.ne.join(", ")}] (writing ${filePath})`);
    }
    let size: number;
    try {
      size = ggmlTensorByteLength(t.type, t.ne);
    } catch (e) {
      throw new Error(`gguf: tensor "${t.name}": ${(e as Error).message} (writing ${filePath})`, { cause: e });
    }
    sink.string(t.name);
    sink.u32(t.ne.length);
    for (const d of t.ne) sink.u64(d);
    sink.u32(t.type);
    sink.u64(offset);
    sizes.push(size);
    offset = alignUp(offset + size, alignment);
  }
  const header = sink.finish();

  const tmpPath = path.join(path.dirname(filePath), `.${path.basename(filePath)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmpPath, "w");
  let ok = false;
  try {
    let pos = 0;
    const write = (b: Uint8Array): void => {
      let done = 0;
      while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done, pos + done);
      pos += b.length;
    };
    const zeros = new Uint8Array(alignment);
    const pad = (): void => {
      const n = alignUp(pos, alignment) - pos;
      if (n > 0) write(zeros.subarray(0, n));
    };

    write(header);
    // Like gguf-py, a file without tensors ends right after the header (no padding).
    if (spec.tensors.length > 0) pad();
    spec.tensors.forEach((t, i) => {
      const expected = sizes[i]!;
      const chunks = typeof t.data === "function" ? t.data() : [t.data];
      let produced = 0;
      for (const chunk of chunks) {
        const bytes = tensorChunkBytes(chunk, t.type, t.name);
        produced += bytes.length;
        if (produced > expected) break;
        write(bytes);
      }
      if (produced !== expected) {
        throw new Error(
          `gguf: tensor "${t.name}" (${ggmlTypeName(t.type)} [${t.ne.join(", ")}]) needs ${expected} bytes ` +
            `of data, got ${produced > expected ? "more" : produced} (writing ${filePath})`,
        );
      }
      pad();
    });
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (ok) fs.renameSync(tmpPath, filePath);
    else fs.rmSync(tmpPath, { force: true });
  }
}
