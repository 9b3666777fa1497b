/**
 * A small GGUF (v2/v3) reader, and the types and constants of the format (the writer is
 * ./gguf-write.ts, the f16/bf16 conversions ./float16.ts).
 *
 * File layout (all little-endian):
 *
 *   magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
 *   n_kv x { key: string, value_type: u32, value }
 *   n_tensors x { name: string, n_dims: u32, ne: u64[n_dims], ggml_type: u32, offset: u64 }
 *   padding up to `general.alignment` (default 32)
 *   tensor data; each tensor's `offset` is relative to the start of this section
 *   and is itself a multiple of the alignment.
 *
 * A string is a u64 byte length followed by UTF-8 bytes (no terminator). An array
 * is an item type u32, a u64 count, then the items.
 *
 * Metadata values keep their GGUF type so that a file can be read and written back
 * without changing a single byte of its metadata (e.g. `tokenizer.ggml.token_type`
 * stays INT32, 64-bit integers stay bigint).
 *
 * Reference: llama.cpp gguf-py/gguf/{gguf_reader,gguf_writer,constants}.py and
 * ggml/include/gguf.h.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { bf16ToF32, f16ToF32 } from "./float16.js";
import { dequantize, quantLayout, TRAINABLE_QUANT_NAMES } from "./quant.js";

// ---------------------------------------------------------------------------
// Metadata value types
// ---------------------------------------------------------------------------

/** GGUF metadata value type ids. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

/** JS representation of a scalar of each GGUF value type. */
interface GgufScalarMap {
  0: number;
  1: number;
  2: number;
  3: number;
  4: number;
  5: number;
  6: number;
  7: boolean;
  8: string;
  10: bigint;
  11: bigint;
  12: number;
}

/** JS representation of an array whose items have the given GGUF value type. */
interface GgufArrayMap {
  0: Uint8Array;
  1: Int8Array;
  2: Uint16Array;
  3: Int16Array;
  4: Uint32Array;
  5: Int32Array;
  6: Float32Array;
  7: boolean[];
  8: string[];
  9: GgufArray[];
  10: BigUint64Array;
  11: BigInt64Array;
  12: Float64Array;
}

/** A typed scalar metadata value, e.g. `{ type: GgufValueType.UINT32, value: 2048 }`. */
export type GgufScalar = { [T in keyof GgufScalarMap]: { type: T; value: GgufScalarMap[T] } }[keyof GgufScalarMap];
/** A typed array metadata value, e.g. `{ type: ARRAY, itemType: STRING, value: ["a", "b"] }`. */
export type GgufArray = {
  [T in keyof GgufArrayMap]: { type: typeof GgufValueType.ARRAY; itemType: T; value: GgufArrayMap[T] };
}[keyof GgufArrayMap];
export type GgufValue = GgufScalar | GgufArray;

/** Constructors for typed metadata values. */
export const gv = {
  u8: (value: number): GgufValue => ({ type: GgufValueType.UINT8, value }),
  i8: (value: number): GgufValue => ({ type: GgufValueType.INT8, value }),
  u16: (value: number): GgufValue => ({ type: GgufValueType.UINT16, value }),
  i16: (value: number): GgufValue => ({ type: GgufValueType.INT16, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  f64: (value: number): GgufValue => ({ type: GgufValueType.FLOAT64, value }),
  u64: (value: bigint | number): GgufValue => ({ type: GgufValueType.UINT64, value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: GgufValueType.INT64, value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  strings: (value: string[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType: GgufValueType.FLOAT32,
    value: Float32Array.from(value),
  }),
  i32s: (value: ArrayLike<number>): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType: GgufValueType.INT32,
    value: Int32Array.from(value),
  }),
  u32s: (value: ArrayLike<number>): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType: GgufValueType.UINT32,
    value: Uint32Array.from(value),
  }),
} as const;

/** One of Buffer's fixed-size little-endian read methods (readUInt8, readFloatLE, readBigInt64LE, ...). */
type BufferRead = (this: Buffer, offset: number) => number | bigint;
const B = Buffer.prototype;

/** The fixed-size scalar value types (STRING and ARRAY are variable): byte size and read method (BOOL as its byte). */
const SCALAR_READ: Partial<Record<GgufValueType, readonly [number, BufferRead]>> = {
  [GgufValueType.UINT8]: [1, B.readUInt8],
  [GgufValueType.INT8]: [1, B.readInt8],
  [GgufValueType.UINT16]: [2, B.readUInt16LE],
  [GgufValueType.INT16]: [2, B.readInt16LE],
  [GgufValueType.UINT32]: [4, B.readUInt32LE],
  [GgufValueType.INT32]: [4, B.readInt32LE],
  [GgufValueType.FLOAT32]: [4, B.readFloatLE],
  [GgufValueType.BOOL]: [1, B.readUInt8],
  [GgufValueType.UINT64]: [8, B.readBigUInt64LE],
  [GgufValueType.INT64]: [8, B.readBigInt64LE],
  [GgufValueType.FLOAT64]: [8, B.readDoubleLE],
};

/** Typed array constructors for the numeric value types. */
export const TYPED_ARRAY: Partial<Record<GgufValueType, { new (n: number): ArrayBufferView & { length: number }; BYTES_PER_ELEMENT: number }>> = {
  0: Uint8Array,
  1: Int8Array,
  2: Uint16Array,
  3: Int16Array,
  4: Uint32Array,
  5: Int32Array,
  6: Float32Array,
  10: BigUint64Array,
  11: BigInt64Array,
  12: Float64Array,
};

// ---------------------------------------------------------------------------
// ggml tensor types
// ---------------------------------------------------------------------------

/** ggml tensor type ids (ggml.h `enum ggml_type`); F32, F16 and BF16 are what this project writes. */
export const GgmlType = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q8_1: 9,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  Q8_K: 15,
  IQ2_XXS: 16,
  IQ2_XS: 17,
  IQ3_XXS: 18,
  IQ1_S: 19,
  IQ4_NL: 20,
  IQ3_S: 21,
  IQ2_S: 22,
  IQ4_XS: 23,
  I8: 24,
  I16: 25,
  I32: 26,
  I64: 27,
  F64: 28,
  IQ1_M: 29,
  BF16: 30,
  TQ1_0: 34,
  TQ2_0: 35,
  MXFP4: 39,
} as const;
export type GgmlType = number;

/** [elements per block, bytes per block] as in gguf-py's GGML_QUANT_SIZES (QK_K = 256). */
const GGML_TYPE_SIZE: Record<number, readonly [number, number]> = {
  0: [1, 4],
  1: [1, 2],
  2: [32, 18],
  3: [32, 20],
  6: [32, 22],
  7: [32, 24],
  8: [32, 34],
  9: [32, 40],
  10: [256, 84],
  11: [256, 110],
  12: [256, 144],
  13: [256, 176],
  14: [256, 210],
  15: [256, 292],
  16: [256, 66],
  17: [256, 74],
  18: [256, 98],
  19: [256, 50],
  20: [32, 18],
  21: [256, 110],
  22: [256, 82],
  23: [256, 136],
  24: [1, 1],
  25: [1, 2],
  26: [1, 4],
  27: [1, 8],
  28: [1, 8],
  29: [256, 56],
  30: [1, 2],
  34: [256, 54],
  35: [256, 66],
  39: [32, 17],
};

/** Human-readable name of a ggml type id (for error messages). */
export function ggmlTypeName(type: number): string {
  for (const [name, id] of Object.entries(GgmlType)) if (id === type) return name;
  return `type#${type}`;
}

/**
 * Number of bytes a tensor of the given type and shape occupies.
 * Throws if the type is unknown or ne[0] is not a multiple of the type's block size.
 */
export function ggmlTensorByteLength(type: number, ne: readonly number[]): number {
  const size = GGML_TYPE_SIZE[type];
  if (size === undefined) throw new Error(`unknown ggml type ${type}`);
  const [blockElems, blockBytes] = size;
  const ne0 = ne[0] ?? 1;
  if (ne0 % blockElems !== 0) {
    throw new Error(`ne[0]=${ne0} is not a multiple of the ${ggmlTypeName(type)} block size ${blockElems}`);
  }
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i]!;
  return (ne0 / blockElems) * blockBytes * rows;
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

export interface GgufTensorInfo {
  name: string;
  /** ggml type id (see {@link GgmlType}). */
  type: number;
  /** Shape in ggml order: ne[0] is the innermost (contiguous) dimension. */
  ne: number[];
  /** Offset of the data relative to {@link GgufFile.dataOffset}. */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute file offset of the tensor data section. */
  dataOffset: number;
  alignment: number;
  fileSize: number;
}

/** n rounded up to a multiple of alignment. */
export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

export function assertLittleEndianHost(): void {
  if (os.endianness() !== "LE") throw new Error("gguf: only little-endian hosts are supported");
}

/**
 * Sequential reader over a file descriptor with a growable read-ahead buffer,
 * so that large metadata arrays (e.g. 32k vocab strings) are parsed without
 * reading the (possibly multi-GB) tensor data.
 */
class FileCursor {
  private buf: Buffer = Buffer.allocUnsafe(1 << 20);
  private bufStart = 0; // file offset of buf[0]
  private pos = 0; // read position inside buf
  private end = 0; // number of valid bytes in buf

  constructor(
    private readonly fd: number,
    private readonly filePath: string,
    readonly fileSize: number,
  ) {}

  get offset(): number {
    return this.bufStart + this.pos;
  }

  private fail(what: string, n: number): never {
    throw new Error(
      `${this.filePath}: truncated GGUF file: need ${n} bytes for ${what} at offset ${this.offset}, ` + `but the file is ${this.fileSize} bytes long`,
    );
  }

  /** Make sure n bytes are buffered at the read position. */
  private ensure(n: number, what: string): void {
    if (this.end - this.pos >= n) return;
    if (this.offset + n > this.fileSize) this.fail(what, n);
    // Move the unread tail to the front, growing the buffer if needed.
    const tail = this.end - this.pos;
    if (n > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
      this.buf.copy(bigger, 0, this.pos, this.end);
      this.buf = bigger;
    } else {
      this.buf.copy(this.buf, 0, this.pos, this.end);
    }
    this.bufStart += this.pos;
    this.pos = 0;
    this.end = tail;
    while (this.end < n) {
      const read = fs.readSync(this.fd, this.buf, this.end, this.buf.length - this.end, this.bufStart + this.end);
      if (read === 0) this.fail(what, n);
      this.end += read;
    }
  }

  u8(what: string): number {
    this.ensure(1, what);
    return this.buf[this.pos++]!;
  }
  u32(what: string): number {
    this.ensure(4, what);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.ensure(8, what);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  size(what: string): number {
    const v = this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Error(`${this.filePath}: corrupt GGUF file: ${what} = ${v} at offset ${this.offset - 8} is too large`);
    }
    return Number(v);
  }
  string(what: string): string {
    const len = this.size(`${what} (length)`);
    this.ensure(len, what);
    const s = this.buf.toString("utf8", this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
  /** Copy n raw bytes out (into a fresh, suitably aligned buffer). */
  bytes(n: number, what: string): Uint8Array {
    this.ensure(n, what);
    const out = new Uint8Array(n);
    out.set(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }
  scalar(type: number, what: string): GgufScalar["value"] {
    const read = SCALAR_READ[type as GgufValueType];
    if (type === GgufValueType.STRING) return this.string(what);
    if (read === undefined) throw new Error(`${this.filePath}: corrupt GGUF file: unknown value type ${type} for ${what}`);
    const [size, method] = read;
    this.ensure(size, what);
    const v = method.call(this.buf, this.pos);
    this.pos += size;
    return type === GgufValueType.BOOL ? v !== 0 : v;
  }
}

function readValue(cur: FileCursor, type: number, key: string, depth = 0): GgufValue {
  if (type !== GgufValueType.ARRAY) return { type, value: cur.scalar(type, `value of "${key}"`) } as GgufValue;
  if (depth > 8) throw new Error(`corrupt GGUF file: arrays nested too deeply in "${key}"`);
  const itemType = cur.u32(`array item type of "${key}"`);
  const count = cur.size(`array length of "${key}"`);
  const what = `array "${key}"`;
  const Ctor = TYPED_ARRAY[itemType as GgufValueType];
  if (Ctor) {
    // Numeric arrays: one bulk copy, viewed as the matching typed array (host is little-endian).
    const bytes = cur.bytes(count * Ctor.BYTES_PER_ELEMENT, what);
    const View = Ctor as unknown as new (buffer: ArrayBufferLike, byteOffset: number, length: number) => ArrayBufferView;
    return { type, itemType, value: new View(bytes.buffer, 0, count) } as GgufValue;
  }
  // Guard against absurd counts before allocating (every item takes at least one byte).
  if (count > cur.fileSize - cur.offset) cur.bytes(count, what); // throws "truncated"
  const items: unknown[] = new Array(count);
  if (itemType === GgufValueType.STRING) {
    for (let i = 0; i < count; i++) items[i] = cur.string(what);
  } else if (itemType === GgufValueType.BOOL) {
    const bytes = cur.bytes(count, what);
    for (let i = 0; i < count; i++) items[i] = bytes[i] !== 0;
  } else if (itemType === GgufValueType.ARRAY) {
    for (let i = 0; i < count; i++) items[i] = readValue(cur, GgufValueType.ARRAY, key, depth + 1);
  } else {
    throw new Error(`corrupt GGUF file: unknown array item type ${itemType} in "${key}"`);
  }
  return { type, itemType, value: items } as GgufValue;
}

/**
 * Read the header of a GGUF file: version, typed metadata and tensor infos.
 * Tensor data is not read; use {@link readTensorBytes} / {@link readTensorF32}.
 */
export function readGguf(filePath: string): GgufFile {
  assertLittleEndianHost();
  const fd = fs.openSync(filePath, "r");
  try {
    const fileSize = fs.fstatSync(fd).size;
    const cur = new FileCursor(fd, filePath, fileSize);
    if (fileSize < 4) throw new Error(`${filePath}: not a GGUF file (only ${fileSize} bytes long)`);
    const magic = cur.u32("magic");
    if (magic !== GGUF_MAGIC) {
      const shown = Buffer.alloc(4);
      shown.writeUInt32LE(magic);
      throw new Error(`${filePath}: not a GGUF file (bad magic ${JSON.stringify(shown.toString("latin1"))}, expected "GGUF")`);
    }
    const version = cur.u32("version");
    if (version !== 2 && version !== 3) {
      const hint = (version & 0xffff) === 0 && version !== 0 ? " (big-endian GGUF files are not supported)" : "";
      throw new Error(`${filePath}: unsupported GGUF version ${version}${hint}; only versions 2 and 3 are supported`);
    }
    const nTensors = cur.size("tensor count");
    const nKv = cur.size("metadata count");

    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = cur.string(`metadata key #${i}`);
      const type = cur.u32(`value type of "${key}"`);
      if (type > 12) throw new Error(`${filePath}: corrupt GGUF file: unknown value type ${type} for "${key}"`);
      if (metadata.has(key)) throw new Error(`${filePath}: corrupt GGUF file: duplicate metadata key "${key}"`);
      metadata.set(key, readValue(cur, type, key));
    }

    let alignment = GGUF_DEFAULT_ALIGNMENT;
    const alignValue = metadata.get("general.alignment");
    if (alignValue !== undefined) {
      if (alignValue.type !== GgufValueType.UINT32 || alignValue.value <= 0 || alignValue.value % 8 !== 0) {
        throw new Error(`${filePath}: invalid general.alignment ${JSON.stringify(alignValue)}`);
      }
      alignment = alignValue.value;
    }

    const tensors: GgufTensorInfo[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = cur.string(`name of tensor #${i}`);
      const nDims = cur.u32(`n_dims of tensor "${name}"`);
      if (nDims > 4) throw new Error(`${filePath}: corrupt GGUF file: tensor "${name}" has ${nDims} dimensions (max 4)`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(cur.size(`ne[${d}] of tensor "${name}"`));
      const type = cur.u32(`type of tensor "${name}"`);
      const offset = cur.size(`data offset of tensor "${name}"`);
      if (GGML_TYPE_SIZE[type] === undefined) {
        throw new Error(`${filePath}: tensor "${name}" has unknown ggml type ${type}`);
      }
      if (offset % alignment !== 0) {
        throw new Error(`${filePath}: tensor "${name}" data offset ${offset} is not aligned to ${alignment}`);
      }
      let byteLength: number;
      try {
        byteLength = ggmlTensorByteLength(type, ne);
      } catch (e) {
        throw new Error(`${filePath}: tensor "${name}": ${(e as Error).message}`, { cause: e });
      }
      tensors.push({ name, type, ne, offset, byteLength });
    }

    const dataOffset = alignUp(cur.offset, alignment);
    for (const t of tensors) {
      if (dataOffset + t.offset + t.byteLength > fileSize) {
        throw new Error(
          `${filePath}: truncated GGUF file: tensor "${t.name}" (${t.byteLength} bytes at data offset ${t.offset}) ` +
            `extends past the end of the file (${fileSize} bytes, data section at ${dataOffset})`,
        );
      }
    }
    return { path: filePath, version, metadata, tensors, dataOffset, alignment, fileSize };
  } finally {
    fs.closeSync(fd);
  }
}

function findTensorInfo(file: GgufFile, tensor: GgufTensorInfo | string): GgufTensorInfo {
  if (typeof tensor !== "string") return tensor;
  const info = file.tensors.find((t) => t.name === tensor);
  if (!info) throw new Error(`${file.path}: no tensor named "${tensor}"`);
  return info;
}

/** Read the raw bytes of one tensor. */
export function readTensorBytes(file: GgufFile, tensor: GgufTensorInfo | string): Uint8Array {
  const info = findTensorInfo(file, tensor);
  const out = new Uint8Array(info.byteLength);
  const fd = fs.openSync(file.path, "r");
  try {
    let done = 0;
    while (done < out.length) {
      const n = fs.readSync(fd, out, done, out.length - done, file.dataOffset + info.offset + done);
      if (n === 0) throw new Error(`${file.path}: truncated GGUF file while reading tensor "${info.name}"`);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/** Read one F32/F16/BF16 or trainable quantized tensor (./quant.ts) as f32 values (other types are rejected). */
export function readTensorF32(file: GgufFile, tensor: GgufTensorInfo | string): Float32Array {
  const info = findTensorInfo(file, tensor);
  const bytes = readTensorBytes(file, info);
  if (quantLayout(info.type))
    return dequantize(
      info.type,
      bytes,
      info.ne.reduce((a, b) => a * b, 1),
    );
  switch (info.type) {
    case GgmlType.F32:
      return new Float32Array(bytes.buffer, 0, bytes.length / 4);
    case GgmlType.F16:
      return f16ToF32(new Uint16Array(bytes.buffer, 0, bytes.length / 2));
    case GgmlType.BF16:
      return bf16ToF32(new Uint16Array(bytes.buffer, 0, bytes.length / 2));
    default:
      throw new Error(
        `${file.path}: tensor "${info.name}" has type ${ggmlTypeName(info.type)}; only F32, F16, BF16 and ${TRAINABLE_QUANT_NAMES} can be read as f32`,
      );
  }
}

/** Unwrap a scalar metadata value, checking that it exists (and optionally its type). */
export function getMetadata<T extends GgufScalar["value"]>(file: GgufFile, key: string, type?: GgufValueType): T {
  const v = file.metadata.get(key);
  if (v === undefined) throw new Error(`${file.path}: missing metadata key "${key}"`);
  if (v.type === GgufValueType.ARRAY) throw new Error(`${file.path}: metadata "${key}" is an array, expected a scalar`);
  if (type !== undefined && v.type !== type) {
    throw new Error(`${file.path}: metadata "${key}" has value type ${v.type}, expected ${type}`);
  }
  return v.value as T;
}
