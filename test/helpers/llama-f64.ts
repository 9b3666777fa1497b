// An independent float64 Llama forward pass over a GGUF (the tiny test models), written from the
// architecture, not from our engine: the reference that tells which of two kernels is closer to
// exact. The weights are read as stored (F16/BF16 values are exact in float64); every sum,
// product and transcendental is float64. `round` models a CPU kernel that rounds the activations
// to a 16-bit float before each frozen-weight product (ggml's vec_dot_type conversion), and does
// nothing else in 16 bits: the input of each weight product is rounded to F32 and then to F16/BF16
// (round to nearest even), as ggml's from_float does with the F32 activations it holds.
import { getMetadata, readGguf, readTensorF32 } from "../../src/formats/gguf.js";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../../src/formats/float16.js";

export type ActivationRounding = "none" | "f16" | "bf16";

interface Weights {
  nEmbd: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  nVocab: number;
  eps: number;
  ropeBase: number;
  tok: Float64Array;
  outNorm: Float64Array;
  out: Float64Array;
  layers: {
    attnNorm: Float64Array;
    ffnNorm: Float64Array;
    q: Float64Array;
    k: Float64Array;
    v: Float64Array;
    o: Float64Array;
    gate: Float64Array;
    up: Float64Array;
    down: Float64Array;
  }[];
}

const cache = new Map<string, Weights>();

function load(modelPath: string): Weights {
  const hit = cache.get(modelPath);
  if (hit) return hit;
  const f = readGguf(modelPath);
  const arch = getMetadata<string>(f, "general.architecture");
  if (arch !== "llama") throw new Error(`llama-f64: ${modelPath} has architecture ${arch}, expected llama`);
  const t = (name: string) => Float64Array.from(readTensorF32(f, name));
  const nLayer = getMetadata<number>(f, "llama.block_count");
  const tok = t("token_embd.weight");
  const nEmbd = getMetadata<number>(f, "llama.embedding_length");
  const hasOut = f.tensors.some((x) => x.name === "output.weight");
  const w: Weights = {
    nEmbd,
    nHead: getMetadata<number>(f, "llama.attention.head_count"),
    nHeadKv: getMetadata<number>(f, "llama.attention.head_count_kv"),
    nFf: getMetadata<number>(f, "llama.feed_forward_length"),
    nVocab: tok.length / nEmbd,
    eps: getMetadata<number>(f, "llama.attention.layer_norm_rms_epsilon"),
    ropeBase: getMetadata<number>(f, "llama.rope.freq_base"),
    tok,
    outNorm: t("output_norm.weight"),
    out: hasOut ? t("output.weight") : tok,
    layers: [],
  };
  for (let il = 0; il < nLayer; il++) {
    const p = `blk.${il}.`;
    w.layers.push({
      attnNorm: t(p + "attn_norm.weight"),
      ffnNorm: t(p + "ffn_norm.weight"),
      q: t(p + "attn_q.weight"),
      k: t(p + "attn_k.weight"),
      v: t(p + "attn_v.weight"),
      o: t(p + "attn_output.weight"),
      gate: t(p + "ffn_gate.weight"),
      up: t(p + "ffn_up.weight"),
      down: t(p + "ffn_down.weight"),
    });
  }
  cache.set(modelPath, w);
  return w;
}

function rounder(mode: ActivationRounding): (x: Float64Array) => Float64Array {
  if (mode === "none") return (x) => x;
  const r = mode === "f16" ? (v: number) => f16BitsToF32(f32ToF16Bits(v)) : (v: number) => bf16BitsToF32(f32ToBf16Bits(v));
  return (x) => x.map((v) => r(Math.fround(v)));
}

// y [n_out] = W [n_in, n_out] · x [n_in]  (ggml layout: row o of W is W[o·n_in .. o·n_in + n_in))
function matvec(w: Float64Array, x: Float64Array): Float64Array {
  const nIn = x.length;
  const nOut = w.length / nIn;
  const y = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = 0;
    for (let i = 0, b = o * nIn; i < nIn; i++) s += w[b + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]!);
}

// ggml's RoPE mode 0 (llama.cpp's LLAMA_ROPE_TYPE_NORM) on the GGUF (permuted) q/k rows: adjacent
// pairs (2i, 2i+1) of each head turn by pos · base^(-2i/hd)
function rope(x: Float64Array, nHeads: number, pos: number, base: number): Float64Array {
  const hd = x.length / nHeads;
  const y = new Float64Array(x.length);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      const th = pos * Math.pow(base, (-2 * i) / hd);
      const c = Math.cos(th);
      const s = Math.sin(th);
      const a = x[h * hd + 2 * i]!;
      const b = x[h * hd + 2 * i + 1]!;
      y[h * hd + 2 * i] = a * c - b * s;
      y[h * hd + 2 * i + 1] = a * s + b * c;
    }
  }
  return y;
}

/** The logits [n_tokens][n_vocab] of a Llama GGUF for `tokens` (positions 0..n-1), in float64. */
export function llamaLogitsF64(modelPath: string, tokens: readonly number[], round: ActivationRounding = "none"): Float64Array[] {
  const w = load(modelPath);
  const r = rounder(round);
  const T = tokens.length;
  const hd = w.nEmbd / w.nHead;
  const grp = w.nHead / w.nHeadKv;
  let xs: Float64Array[] = tokens.map((t) => w.tok.slice(t * w.nEmbd, (t + 1) * w.nEmbd));
  for (const L of w.layers) {
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    for (let p = 0; p < T; p++) {
      const h = r(rmsNorm(xs[p]!, L.attnNorm, w.eps));
      qs.push(rope(matvec(L.q, h), w.nHead, p, w.ropeBase));
      ks.push(rope(matvec(L.k, h), w.nHeadKv, p, w.ropeBase));
      vs.push(matvec(L.v, h));
    }
    const next: Float64Array[] = [];
    for (let p = 0; p < T; p++) {
      const att = new Float64Array(w.nEmbd);
      for (let hh = 0; hh < w.nHead; hh++) {
        const kv = Math.floor(hh / grp);
        const sc = new Float64Array(p + 1);
        let mx = -Infinity;
        for (let j = 0; j <= p; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qs[p]![hh * hd + d]! * ks[j]![kv * hd + d]!;
          sc[j] = s / Math.sqrt(hd);
          mx = Math.max(mx, sc[j]!);
        }
        let den = 0;
        for (let j = 0; j <= p; j++) den += sc[j] = Math.exp(sc[j]! - mx);
        for (let j = 0; j <= p; j++) for (let d = 0; d < hd; d++) att[hh * hd + d]! += (sc[j]! / den) * vs[j]![kv * hd + d]!;
      }
      const o = matvec(L.o, r(att));
      const x1 = xs[p]!.map((v, i) => v + o[i]!);
      const h2 = r(rmsNorm(x1, L.ffnNorm, w.eps));
      const g = matvec(L.gate, h2);
      const u = matvec(L.up, h2);
      const a = r(g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]!));
      const d = matvec(L.down, a);
      next.push(x1.map((v, i) => v + d[i]!));
    }
    xs = next;
  }
  return xs.map((x) => matvec(w.out, r(rmsNorm(x, w.outNorm, w.eps))));
}
