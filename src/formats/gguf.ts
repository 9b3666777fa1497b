/**
 * A small GGUF (v2/v3) reader and writer.
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
import * as path from "node:path";

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

/** Fixed byte size of scalar value types (STRING and ARRAY are variable). */
const SCALAR_SIZE: Partial<Record<GgufValueType, number>> = {
    0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8,
};

/** Typed array constructors for the numeric value types. */
const TYPED_ARRAY: Partial<Record<GgufValueType, { new (n: number): ArrayBufferView & { length: number }; BYTES_PER_ELEMENT: number }>> = {
    0: Uint8Array, 1: Int8Array, 2: Uint16Array, 3: Int16Array, 4: Uint32Array, 5: Int32Array,
    6: Float32Array, 10: BigUint64Array, 11: BigInt64Array, 12: Float64Array,
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
    I8: 24,
    I16: 25,
    I32: 26,
    I64: 27,
    F64: 28,
    BF16: 30,
} as const;
export type GgmlType = number;

/** [elements per block, bytes per block] as in gguf-py's GGML_QUANT_SIZES (QK_K = 256). */
const GGML_TYPE_SIZE: Record<number, readonly [number, number]> = {
    0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 9: [32, 40],
    10: [256, 84], 11: [256, 110], 12: [256, 144], 13: [256, 176], 14: [256, 210], 15: [256, 292],
    16: [256, 66], 17: [256, 74], 18: [256, 98], 19: [256, 50], 20: [32, 18], 21: [256, 110],
    22: [256, 82], 23: [256, 136], 24: [1, 1], 25: [1, 2], 26: [1, 4], 27: [1, 8], 28: [1, 8],
    29: [256, 56], 30: [1, 2], 34: [256, 54], 35: [256, 66], 39: [32, 17],
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
// Float conversions
// ---------------------------------------------------------------------------

// Scratch views for bit-casting single values.
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Convert the bit pattern of an f32 to the nearest f16 bit pattern (round to nearest, ties to even). */
function f32BitsToF16Bits(x: number): number {
    const sign = (x >>> 16) & 0x8000;
    const abs = x & 0x7fffffff;
    if (abs >= 0x7f800000) {
        // Inf stays Inf; NaN stays a quiet NaN keeping the top payload bits.
        return abs === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
    }
    if (abs >= 0x47800000) return sign | 0x7c00; // >= 65536: overflows to Inf
    if (abs < 0x38800000) {
        // Below the smallest normal f16 (2^-14): the result is a subnormal (or zero),
        // i.e. a multiple of 2^-24. m = mantissa_with_hidden_bit >> shift, rounded.
        if (abs < 0x33000000) return sign; // < 2^-25 rounds to zero (2^-25 itself ties to even 0)
        const exp = abs >>> 23;
        const mant = (abs & 0x7fffff) | 0x800000;
        const shift = 126 - exp; // 14..24
        let q = mant >>> shift;
        const rem = mant & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && (q & 1) !== 0)) q++; // may carry into the smallest normal: fine
        return sign | q;
    }
    // Normal range: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits.
    let h = (abs >>> 13) - ((127 - 15) << 10);
    const rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry may round up to Inf: correct
    return sign | h;
}

/** Convert the bit pattern of an f32 to the nearest bf16 bit pattern (round to nearest, ties to even). */
function f32BitsToBf16Bits(x: number): number {
    if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
    return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Lookup table f16 bits -> f32 value, built on first use (256 KiB). */
let f16Table: Float32Array | undefined;
function getF16Table(): Float32Array {
    if (f16Table) return f16Table;
    const table = new Float32Array(65536);
    const bits = new Uint32Array(table.buffer);
    for (let h = 0; h < 65536; h++) {
        const sign = (h & 0x8000) << 16;
        const exp = (h >>> 10) & 0x1f;
        const mant = h & 0x3ff;
        if (exp === 0) {
            // zero or subnormal: mant * 2^-24, exactly representable in f32
            table[h] = (sign ? -1 : 1) * mant * 2 ** -24;
        } else if (exp === 0x1f) {
            bits[h] = sign | 0x7f800000 | (mant << 13);
        } else {
            bits[h] = sign | ((exp + 127 - 15) << 23) | (mant << 13);
        }
    }
    f16Table = table;
    return table;
}

/** Convert f32 values to f16 bit patterns (round to nearest, ties to even; subnormals, Inf and NaN handled). */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
    if (out.length < src.length) throw new RangeError("f32ToF16: output array is too short");
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
    return out;
}

/** Convert f16 bit patterns to f32 values (exact). */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
    if (out.length < src.length) throw new RangeError("f16ToF32: output array is too short");
    const table = getF16Table();
    for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
    return out;
}

/** Convert f32 values to bf16 bit patterns (round to nearest, ties to even; NaN stays NaN). */
export function f32ToBf16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
    if (out.length < src.length) throw new RangeError("f32ToBf16: output array is too short");
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16Bits(bits[i]!);
    return out;
}

/** Convert bf16 bit patterns to f32 values (exact). */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
    if (out.length < src.length) throw new RangeError("bf16ToF32: output array is too short");
    const bits = new Uint32Array(out.buffer, out.byteOffset, src.length);
    for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
    return out;
}

/** Scalar helpers: f16/bf16 bits of a single number, and back. */
export function f32ToF16Bits(value: number): number {
    f32Scratch[0] = value;
    return f32BitsToF16Bits(u32Scratch[0]!);
}
export function f16BitsToF32(bits: number): number {
    return getF16Table()[bits & 0xffff]!;
}
export function f32ToBf16Bits(value: number): number {
    f32Scratch[0] = value;
    return f32BitsToBf16Bits(u32Scratch[0]!);
}
export function bf16BitsToF32(bits: number): number {
    u32Scratch[0] = (bits & 0xffff) << 16;
    return f32Scratch[0]!;
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

function assertLittleEndianHost(): void {
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
            `${this.filePath}: truncated GGUF file: need ${n} bytes for ${what} at offset ${this.offset}, ` +
                `but the file is ${this.fileSize} bytes long`,
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
        const size = SCALAR_SIZE[type as GgufValueType];
        if (type === GgufValueType.STRING) return this.string(what);
        if (size === undefined) throw new Error(`${this.filePath}: corrupt GGUF file: unknown value type ${type} for ${what}`);
        this.ensure(size, what);
        const b = this.buf;
        const p = this.pos;
        this.pos += size;
        switch (type) {
            case GgufValueType.UINT8: return b.readUInt8(p);
            case GgufValueType.INT8: return b.readInt8(p);
            case GgufValueType.UINT16: return b.readUInt16LE(p);
            case GgufValueType.INT16: return b.readInt16LE(p);
            case GgufValueType.UINT32: return b.readUInt32LE(p);
            case GgufValueType.INT32: return b.readInt32LE(p);
            case GgufValueType.FLOAT32: return b.readFloatLE(p);
            case GgufValueType.BOOL: return b.readUInt8(p) !== 0;
            case GgufValueType.UINT64: return b.readBigUInt64LE(p);
            case GgufValueType.INT64: return b.readBigInt64LE(p);
            default: return b.readDoubleLE(p); // FLOAT64
        }
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
        return { type, itemType, value: new (Ctor as any)(bytes.buffer, 0, count) } as GgufValue;
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
                throw new Error(`${filePath}: tensor "${name}": ${(e as Error).message}`);
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

/** Read one F32/F16/BF16 tensor as f32 values (other types are rejected). */
export function readTensorF32(file: GgufFile, tensor: GgufTensorInfo | string): Float32Array {
    const info = findTensorInfo(file, tensor);
    const bytes = readTensorBytes(file, info);
    switch (info.type) {
        case GgmlType.F32: return new Float32Array(bytes.buffer, 0, bytes.length / 4);
        case GgmlType.F16: return f16ToF32(new Uint16Array(bytes.buffer, 0, bytes.length / 2));
        case GgmlType.BF16: return bf16ToF32(new Uint16Array(bytes.buffer, 0, bytes.length / 2));
        default:
            throw new Error(`${file.path}: tensor "${info.name}" has type ${ggmlTypeName(info.type)}; only F32, F16 and BF16 can be read as f32`);
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

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

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
    u8(v: number): void { this.room(1); this.cur.writeUInt8(v, this.pos); this.pos += 1; this.length += 1; }
    i8(v: number): void { this.room(1); this.cur.writeInt8(v, this.pos); this.pos += 1; this.length += 1; }
    u16(v: number): void { this.room(2); this.cur.writeUInt16LE(v, this.pos); this.pos += 2; this.length += 2; }
    i16(v: number): void { this.room(2); this.cur.writeInt16LE(v, this.pos); this.pos += 2; this.length += 2; }
    u32(v: number): void { this.room(4); this.cur.writeUInt32LE(v, this.pos); this.pos += 4; this.length += 4; }
    i32(v: number): void { this.room(4); this.cur.writeInt32LE(v, this.pos); this.pos += 4; this.length += 4; }
    f32(v: number): void { this.room(4); this.cur.writeFloatLE(v, this.pos); this.pos += 4; this.length += 4; }
    f64(v: number): void { this.room(8); this.cur.writeDoubleLE(v, this.pos); this.pos += 8; this.length += 8; }
    u64(v: bigint | number): void { this.room(8); this.cur.writeBigUInt64LE(BigInt(v), this.pos); this.pos += 8; this.length += 8; }
    i64(v: bigint): void { this.room(8); this.cur.writeBigInt64LE(v, this.pos); this.pos += 8; this.length += 8; }
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
        case GgufValueType.UINT8: return sink.u8(int(0, 0xff));
        case GgufValueType.INT8: return sink.i8(int(-0x80, 0x7f));
        case GgufValueType.UINT16: return sink.u16(int(0, 0xffff));
        case GgufValueType.INT16: return sink.i16(int(-0x8000, 0x7fff));
        case GgufValueType.UINT32: return sink.u32(int(0, 0xffffffff));
        case GgufValueType.INT32: return sink.i32(int(-0x80000000, 0x7fffffff));
        case GgufValueType.FLOAT32: return typeof value === "number" ? sink.f32(value) : bad();
        case GgufValueType.FLOAT64: return typeof value === "number" ? sink.f64(value) : bad();
        case GgufValueType.BOOL: return typeof value === "boolean" ? sink.u8(value ? 1 : 0) : bad();
        case GgufValueType.STRING: return typeof value === "string" ? sink.string(value) : bad();
        case GgufValueType.UINT64:
            if (typeof value !== "bigint" || value < 0n || value >= 1n << 64n) bad();
            return sink.u64(value as bigint);
        case GgufValueType.INT64:
            if (typeof value !== "bigint" || value < -(1n << 63n) || value >= 1n << 63n) bad();
            return sink.i64(value as bigint);
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

function alignUp(n: number, alignment: number): number {
    return Math.ceil(n / alignment) * alignment;
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
            throw new Error(`gguf: tensor "${t.name}": ${(e as Error).message} (writing ${filePath})`);
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
