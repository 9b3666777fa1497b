/**
 * ggml's quantized block formats: the one owner of their layouts in TypeScript.
 *
 * Which quantized types the engine trains on (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K),
 * dequantization of each (as ggml-quants.c's dequantize_row_*: the same float32 products), the
 * Q8_0 quantizer (exactly ggml's quantize_row_q8_0_ref) and a Q4_K encoder for test models (the
 * same block layout and final rounding as ggml's quantize_row_q4_K_ref, but each 32-value
 * sub-block's scale and min come from its plain min/max instead of ggml's iterative search, so
 * the bytes differ from llama-quantize's; any reader decodes them the same way).
 *
 * Type ids are ggml's (`enum ggml_type`, mirrored by GgmlType in ./gguf.ts, which imports this
 * module: the ids are literals here to keep the import one-way).
 */
import { f16BitsToF32, f32ToF16Bits } from "./float16.js";

/** Block layout of one quantized type: elements and bytes per block. */
export interface QuantLayout {
  name: string;
  blockElems: number;
  blockBytes: number;
}

/** The quantized types a frozen matrix may have for training, by ggml type id. */
export const TRAINABLE_QUANTS: ReadonlyMap<number, QuantLayout> = new Map([
  [8, { name: "Q8_0", blockElems: 32, blockBytes: 34 }], // d f16, qs i8[32]
  [2, { name: "Q4_0", blockElems: 32, blockBytes: 18 }], // d f16, qs u8[16]
  [3, { name: "Q4_1", blockElems: 32, blockBytes: 20 }], // d f16, m f16, qs u8[16]
  [6, { name: "Q5_0", blockElems: 32, blockBytes: 22 }], // d f16, qh u8[4], qs u8[16]
  [7, { name: "Q5_1", blockElems: 32, blockBytes: 24 }], // d f16, m f16, qh u8[4], qs u8[16]
  [12, { name: "Q4_K", blockElems: 256, blockBytes: 144 }], // d f16, dmin f16, scales u8[12], qs u8[128]
  [13, { name: "Q5_K", blockElems: 256, blockBytes: 176 }], // d f16, dmin f16, scales u8[12], qh u8[32], qs u8[128]
  [14, { name: "Q6_K", blockElems: 256, blockBytes: 210 }], // ql u8[128], qh u8[64], scales i8[16], d f16
]);

/** "Q8_0, Q4_0, ...": the supported list, for error messages. */
export const TRAINABLE_QUANT_NAMES = [...TRAINABLE_QUANTS.values()].map((l) => l.name).join(", ");

/** The quantized types `model convert --dtype` writes. */
export const CONVERT_QUANTS = { q8_0: 8 } as const;

const f32 = Math.fround;

function f16(b: Uint8Array, o: number): number {
  return f16BitsToF32(b[o] | (b[o + 1] << 8));
}

function i8(v: number): number {
  return (v << 24) >> 24;
}

// The 6-bit scale and min j of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [(q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4), (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4)];
}

type BlockDecoder = (b: Uint8Array, o: number, y: Float32Array, yo: number) => void;

const DECODERS: Record<number, BlockDecoder> = {
  8: (b, o, y, yo) => {
    const d = f16(b, o);
    for (let j = 0; j < 32; j++) y[yo + j] = f32(i8(b[o + 2 + j]) * d);
  },
  2: (b, o, y, yo) => {
    const d = f16(b, o);
    for (let j = 0; j < 16; j++) {
      y[yo + j] = f32(((b[o + 2 + j] & 0xf) - 8) * d);
      y[yo + j + 16] = f32(((b[o + 2 + j] >> 4) - 8) * d);
    }
  },
  3: (b, o, y, yo) => {
    const d = f16(b, o);
    const m = f16(b, o + 2);
    for (let j = 0; j < 16; j++) {
      y[yo + j] = f32(f32((b[o + 4 + j] & 0xf) * d) + m);
      y[yo + j + 16] = f32(f32((b[o + 4 + j] >> 4) * d) + m);
    }
  },
  6: (b, o, y, yo) => {
    const d = f16(b, o);
    const qh = (b[o + 2] | (b[o + 3] << 8) | (b[o + 4] << 16) | (b[o + 5] << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[yo + j] = f32((((b[o + 6 + j] & 0xf) | h0) - 16) * d);
      y[yo + j + 16] = f32((((b[o + 6 + j] >> 4) | h1) - 16) * d);
    }
  },
  7: (b, o, y, yo) => {
    const d = f16(b, o);
    const m = f16(b, o + 2);
    const qh = (b[o + 4] | (b[o + 5] << 8) | (b[o + 6] << 16) | (b[o + 7] << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[yo + j] = f32(f32(((b[o + 8 + j] & 0xf) | h0) * d) + m);
      y[yo + j + 16] = f32(f32(((b[o + 8 + j] >> 4) | h1) * d) + m);
    }
  },
  12: (b, o, y, yo) => decodeK45(b, o, y, yo, false),
  13: (b, o, y, yo) => decodeK45(b, o, y, yo, true),
  14: (b, o, y, yo) => {
    const d = f16(b, o + 208);
    for (let n = 0; n < 2; n++) {
      const ql = o + n * 64;
      const qh = o + 128 + n * 32;
      const sc = o + 192 + n * 8;
      const yb = yo + n * 128;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const q1 = ((b[ql + l] & 0xf) | (((b[qh + l] >> 0) & 3) << 4)) - 32;
        const q2 = ((b[ql + l + 32] & 0xf) | (((b[qh + l] >> 2) & 3) << 4)) - 32;
        const q3 = ((b[ql + l] >> 4) | (((b[qh + l] >> 4) & 3) << 4)) - 32;
        const q4 = ((b[ql + l + 32] >> 4) | (((b[qh + l] >> 6) & 3) << 4)) - 32;
        y[yb + l] = f32(f32(d * i8(b[sc + is])) * q1);
        y[yb + l + 32] = f32(f32(d * i8(b[sc + is + 2])) * q2);
        y[yb + l + 64] = f32(f32(d * i8(b[sc + is + 4])) * q3);
        y[yb + l + 96] = f32(f32(d * i8(b[sc + is + 6])) * q4);
      }
    }
  },
};

// Q4_K (hasHigh = false) and Q5_K blocks: 8 sub-blocks of 32 with 6-bit scales and mins.
function decodeK45(b: Uint8Array, o: number, y: Float32Array, yo: number, hasHigh: boolean): void {
  const d = f16(b, o);
  const min = f16(b, o + 2);
  const scales = o + 4;
  const qh = o + 16;
  let qs = hasHigh ? o + 48 : o + 16;
  let u1 = 1;
  let u2 = 2;
  for (let j = 0, is = 0; j < 256; j += 64, is += 2) {
    const [sc1, m1q] = scaleMinK4(is, b, scales);
    const [sc2, m2q] = scaleMinK4(is + 1, b, scales);
    const d1 = f32(d * sc1);
    const m1 = f32(min * m1q);
    const d2 = f32(d * sc2);
    const m2 = f32(min * m2q);
    for (let l = 0; l < 32; l++) {
      const lo = (b[qs + l] & 0xf) + (hasHigh && b[qh + l] & u1 ? 16 : 0);
      const hi = (b[qs + l] >> 4) + (hasHigh && b[qh + l] & u2 ? 16 : 0);
      y[yo + j + l] = f32(f32(d1 * lo) - m1);
      y[yo + j + 32 + l] = f32(f32(d2 * hi) - m2);
    }
    qs += 32;
    u1 <<= 2;
    u2 <<= 2;
  }
}

/** The layout of a trainable quantized type, or undefined for any other type. */
export function quantLayout(type: number): QuantLayout | undefined {
  return TRAINABLE_QUANTS.get(type);
}

/** Dequantizes `n` values (whole blocks) of a trainable quantized type to float32. */
export function dequantize(type: number, bytes: Uint8Array, n: number): Float32Array {
  const layout = TRAINABLE_QUANTS.get(type);
  const decode = DECODERS[type];
  if (!layout || !decode) throw new Error(`cannot dequantize ggml type ${type}: supported ${TRAINABLE_QUANT_NAMES}`);
  if (n % layout.blockElems !== 0) throw new Error(`${layout.name}: ${n} values is not a whole number of ${layout.blockElems}-value blocks`);
  const blocks = n / layout.blockElems;
  if (bytes.length < blocks * layout.blockBytes) {
    throw new Error(`${layout.name}: ${bytes.length} bytes hold fewer than ${blocks} blocks of ${layout.blockBytes}`);
  }
  const y = new Float32Array(n);
  for (let i = 0; i < blocks; i++) decode(bytes, i * layout.blockBytes, y, i * layout.blockElems);
  return y;
}

// C's roundf (half away from zero) on a float32 value.
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

// ggml's nearest_int: round half to even (the magic-number trick rounds to nearest even).
function nearestInt(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Q8_0 bytes of `x` (a multiple of 32 values): exactly ggml's quantize_row_q8_0_ref. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new Error(`Q8_0: ${x.length} values is not a multiple of 32`);
  const out = new Uint8Array((x.length / 32) * 34);
  for (let i = 0, o = 0; i < x.length; i += 32, o += 34) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i + j]));
    const d = f32(amax / 127);
    const id = d ? f32(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >> 8;
    for (let j = 0; j < 32; j++) out[o + 2 + j] = roundf(f32(x[i + j] * id)) & 0xff;
  }
  return out;
}

/**
 * Q4_K bytes of `x` (a multiple of 256 values), for test models: each 32-value sub-block's scale
 * is (max - min) / 15 with min = min(0, smallest value); the 6-bit scale/min codes, the block's
 * d and dmin and the final rounding of each value are as in ggml's quantize_row_q4_K_ref.
 */
export function quantizeQ4K(x: Float32Array): Uint8Array {
  if (x.length % 256 !== 0) throw new Error(`Q4_K: ${x.length} values is not a multiple of 256`);
  const out = new Uint8Array((x.length / 256) * 144);
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  const L = new Uint8Array(256);
  for (let i = 0, o = 0; i < x.length; i += 256, o += 144) {
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let lo = 0;
      let hi = -Infinity;
      for (let l = 0; l < 32; l++) {
        lo = Math.min(lo, x[i + 32 * j + l]);
        hi = Math.max(hi, x[i + 32 * j + l]);
      }
      scales[j] = f32((hi - lo) / 15);
      mins[j] = -lo;
      maxScale = Math.max(maxScale, scales[j]);
      maxMin = Math.max(maxMin, mins[j]);
    }
    const invScale = maxScale > 0 ? f32(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? f32(63 / maxMin) : 0;
    const sc = out.subarray(o + 4, o + 16);
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(f32(invScale * scales[j])));
      const lm = Math.min(63, nearestInt(f32(invMin * mins[j])));
      if (j < 4) {
        sc[j] = ls;
        sc[j + 4] = lm;
      } else {
        sc[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        sc[j - 4] |= (ls >> 4) << 6;
        sc[j] |= (lm >> 4) << 6;
      }
    }
    const dBits = f32ToF16Bits(f32(maxScale / 63));
    const mBits = f32ToF16Bits(f32(maxMin / 63));
    out[o] = dBits & 0xff;
    out[o + 1] = dBits >> 8;
    out[o + 2] = mBits & 0xff;
    out[o + 3] = mBits >> 8;
    for (let j = 0; j < 8; j++) {
      const [s, m] = scaleMinK4(j, out, o + 4);
      const d = f32(f16BitsToF32(dBits) * s);
      if (!d) {
        L.fill(0, 32 * j, 32 * j + 32);
        continue;
      }
      const dm = f32(f16BitsToF32(mBits) * m);
      for (let l = 0; l < 32; l++) L[32 * j + l] = Math.max(0, Math.min(15, nearestInt(f32(f32(x[i + 32 * j + l] + dm) / d))));
    }
    for (let j = 0, q = o + 16; j < 256; j += 64, q += 32) {
      for (let l = 0; l < 32; l++) out[q + l] = L[j + l] | (L[j + l + 32] << 4);
    }
  }
  return out;
}

/**
 * The first matrix (a tensor of 2 or more dimensions) whose type the engine cannot train on
 * (F32, F16, BF16 and TRAINABLE_QUANTS can; IQ*, TQ*, Q2_K, Q3_K, MXFP4, ... cannot), or undefined.
 */
export function untrainableMatrix<T extends { name: string; type: number; ne: readonly number[] }>(tensors: readonly T[]): T | undefined {
  return tensors.find((t) => t.ne.length >= 2 && t.ne[1] > 1 && t.type !== 0 && t.type !== 1 && t.type !== 30 && !TRAINABLE_QUANTS.has(t.type));
}
