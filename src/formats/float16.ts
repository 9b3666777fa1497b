/**
 * f32 <-> f16 and f32 <-> bf16 conversions (round to nearest, ties to even), of arrays and of
 * single values, as GGUF and safetensors store half-precision weights.
 */

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
  return fromF32("f32ToF16", "f16", src, out);
}

/** Convert f16 bit patterns to f32 values (exact). */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  return toF32("f16ToF32", "f16", src, out);
}

/** Convert f32 values to bf16 bit patterns (round to nearest, ties to even; NaN stays NaN). */
export function f32ToBf16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  return fromF32("f32ToBf16", "bf16", src, out);
}

/** Convert bf16 bit patterns to f32 values (exact). */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  return toF32("bf16ToF32", "bf16", src, out);
}

/**
 * The array conversions' two loops, one per direction; each kind keeps its own loop with the
 * element conversion written in it (a shared loop calling a per-element function ran 2-4x slower).
 */
function fromF32(name: string, kind: "f16" | "bf16", src: Float32Array, out: Uint16Array): Uint16Array {
  if (out.length < src.length) throw new RangeError(`${name}: output array is too short`);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  if (kind === "f16") for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
  else for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16Bits(bits[i]!);
  return out;
}

function toF32(name: string, kind: "f16" | "bf16", src: Uint16Array, out: Float32Array): Float32Array {
  if (out.length < src.length) throw new RangeError(`${name}: output array is too short`);
  if (kind === "f16") {
    const table = getF16Table();
    for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  } else {
    const bits = new Uint32Array(out.buffer, out.byteOffset, src.length);
    for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  }
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
