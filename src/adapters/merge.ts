/**
 * Merge a GGUF LoRA adapter into its base model: a stand-alone GGUF that needs no adapter.
 *
 * For every adapted weight W (ggml ne = [n_in, n_out], rows of n_in values):
 *
 *     W' = W + scale · B·A,   scale = adapter.lora.alpha / r   (1 when alpha is 0 or missing)
 *
 * with B = `<name>.lora_b` (ne = [r, n_out], i.e. [n_out][r]) and A = `<name>.lora_a`
 * (ne = [n_in, r], i.e. [r][n_in]), exactly what llama.cpp computes at run time for a GGUF LoRA
 * loaded with scale 1 (llama_adapter_lora_weight::get_scale; alpha already carries rsLoRA's
 * sqrt(r) in our adapters). `token_embd.weight` LoRAs use llama.cpp's own layout for embeddings
 * (lora_a ne = [r, n_vocab], lora_b ne = [r, n_embd]; see llm_graph_context::build_inp_embd).
 * Norm vectors in an adapter (`*_norm.weight`) are ignored, as llama.cpp ignores them.
 *
 * The product B·A is accumulated in float64 one output row at a time (r multiply-adds per
 * value), added to W in float64 and rounded once to float32, then to the output type.
 *
 * Quantized bases (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; src/formats/quant.ts) are
 * dequantized to float32 as ggml does, the adapter added, and written unquantized.
 *
 * Output types: the 2D matrices (token_embd and output included) are written as `type` when
 * given; otherwise as F16 (quantized bases included), or as the base's own matrix type when that is "wider": F32 stays F32,
 * and BF16 stays BF16 (its exponent range is F32's, so casting BF16 weights to F16 could overflow
 * and would round them anyway). The base's matrix type is the type holding most of its 2D weight
 * elements. 1D tensors (norms) are always F32. `general.file_type` is set to match
 * (0 F32, 1 F16, 32 BF16); all other metadata (tokenizer included) is copied unchanged.
 *
 * Memory: the model is streamed tensor by tensor, and each tensor in blocks of rows (about
 * 4M values), so the peak is the adapter pair of one tensor plus a few blocks, whatever the model
 * size. The output is written to a temporary file next to `out` and renamed into place at the
 * end, so a failed merge never leaves a partial `out`. The work is synchronous CPU and disk
 * work: it blocks the event loop until done (about a second per GB on one core, plus
 * n_in·n_out·r multiply-adds per adapted tensor).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { archSpec } from "../formats/architectures.js";
import { GgmlType, GgufValueType, ggmlTypeName, gv, readGguf, readTensorF32 } from "../formats/gguf.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../formats/float16.js";
import { writeGguf } from "../formats/gguf-write.js";
import { dequantize, quantLayout, TRAINABLE_QUANT_NAMES } from "../formats/quant.js";
import type { GgufFile, GgufTensorInfo, GgufValue } from "../formats/gguf.js";
import type { GgufTensorSpec, TensorData } from "../formats/gguf-write.js";

export type MergeType = "f16" | "bf16" | "f32";

export interface MergeOptions {
  /** Base model: a GGUF of a trained architecture (llama, qwen2, qwen3) with F32, F16, BF16 or quantized (Q8_0 ... Q6_K) weights. */
  model: string;
  /** A GGUF LoRA (general.type = "adapter", adapter.type = "lora"), e.g. final_model/adapter.gguf. */
  adapter: string;
  /** Output GGUF path (must differ from `model` and `adapter`); its folder is created if needed. */
  out: string;
  /** Storage type of the 2D matrices. Default: f16, or the base's own type when it is F32 or BF16. */
  type?: MergeType;
  /** Called after each tensor is written: `done` of `total` tensors. */
  onProgress?: (done: number, total: number) => void;
}

export interface MergeResult {
  out: string;
  /** Storage type of the 2D matrices in the output. */
  type: MergeType;
  /** Tensors written (all tensors of the base). */
  tensors: number;
  /** Tensors that had a LoRA merged into them. */
  merged: number;
  /** Values that did not fit F16 (|x| > 65504) when writing F16; 0 otherwise. */
  f16Overflows: number;
  /** Human-readable warnings (F16 overflow per tensor, ignored adapter tensors). */
  warnings: string[];
}

const TYPE_BY_NAME: Record<MergeType, number> = { f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16 };
const NAME_BY_TYPE = new Map<number, MergeType>([
  [GgmlType.F32, "f32"],
  [GgmlType.F16, "f16"],
  [GgmlType.BF16, "bf16"],
]);
/** llama_ftype of a model whose matrices have this type. */
const FILE_TYPE: Record<MergeType, number> = { f32: 0, f16: 1, bf16: 32 };
const F16_MAX = 65504;
/** Values per streamed block (16 MiB as f32). */
const BLOCK_ELEMS = 1 << 22;
const EMBD_NAME = "token_embd.weight";

const shape = (ne: readonly number[]): string => `[${ne.join(", ")}]`;

function metaString(file: GgufFile, key: string): string | undefined {
  const v = file.metadata.get(key);
  return v !== undefined && v.type === GgufValueType.STRING ? v.value : undefined;
}

function metaNumber(file: GgufFile, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (v === undefined || v.type === GgufValueType.ARRAY || v.type === GgufValueType.STRING || v.type === GgufValueType.BOOL) return undefined;
  return Number(v.value);
}

function readGgufNamed(file: string, what: string): GgufFile {
  if (!fs.existsSync(file)) throw new Error(`mergeAdapter: ${what} file not found: ${file}`);
  if (!fs.statSync(file).isFile()) throw new Error(`mergeAdapter: ${what} is not a file: ${file}`);
  try {
    return readGguf(file);
  } catch (e) {
    throw new Error(`mergeAdapter: cannot read the ${what} as GGUF: ${(e as Error).message}`, { cause: e });
  }
}

/** One adapted base tensor, validated, before its LoRA data is read. */
interface LoraPair {
  base: GgufTensorInfo;
  a: GgufTensorInfo;
  b: GgufTensorInfo;
  r: number;
  /** llama.cpp's transposed token-embedding layout. */
  embd: boolean;
}

/** The adapter as the merge applies it: delta[o][i] = scale · Σ_k Bm[o·r + k] · Am[k·n_in + i]. */
interface Delta {
  r: number;
  nIn: number;
  scale: number;
  Am: Float64Array; // [r][n_in]
  Bm: Float64Array; // [n_out][r]
}

function checkAdapter(
  model: GgufFile,
  adapter: GgufFile,
  warnings: string[],
  who = "mergeAdapter",
): { pairs: Map<string, LoraPair>; scale: number; r: number; alpha: number } {
  const ap = adapter.path;
  const gtype = metaString(adapter, "general.type");
  const atype = metaString(adapter, "adapter.type");
  if (gtype !== "adapter" || atype !== "lora") {
    throw new Error(
      `${who}: ${ap} is not a GGUF LoRA adapter (general.type ${JSON.stringify(gtype ?? null)}, ` +
        `adapter.type ${JSON.stringify(atype ?? null)}; expected "adapter" and "lora")`,
    );
  }
  const arch = metaString(adapter, "general.architecture");
  const modelArch = metaString(model, "general.architecture");
  if (arch !== modelArch) {
    throw new Error(
      `${who}: ${ap} is an adapter for architecture ${JSON.stringify(arch ?? null)} but the model ${model.path} is ${JSON.stringify(modelArch ?? null)}`,
    );
  }
  archSpec(arch, `${who}: ${ap}`);

  const baseByName = new Map(model.tensors.map((t) => [t.name, t]));
  const halves = new Map<string, { a?: GgufTensorInfo; b?: GgufTensorInfo }>();
  const ignored: string[] = [];
  for (const t of adapter.tensors) {
    const m = /^(.*)\.lora_([ab])$/.exec(t.name);
    if (!m) {
      if (t.name.endsWith("_norm.weight")) {
        ignored.push(t.name);
        continue;
      }
      throw new Error(`${who}: ${ap}: tensor "${t.name}" is neither a .lora_a nor a .lora_b tensor`);
    }
    const [, baseName, which] = m as unknown as [string, string, "a" | "b"];
    const h = halves.get(baseName) ?? {};
    h[which] = t;
    halves.set(baseName, h);
  }
  if (ignored.length > 0) {
    warnings.push(`ignored ${ignored.length} norm tensor(s) in the adapter (${ignored.join(", ")}), as llama.cpp does`);
  }
  if (halves.size === 0) throw new Error(`${who}: ${ap} holds no LoRA tensors`);

  const textR = metaNumber(adapter, "text2sql.lora.r");
  const pairs = new Map<string, LoraPair>();
  let rAll: number | undefined;
  let rFrom = "";
  for (const [name, h] of halves) {
    if (!h.a || !h.b) {
      throw new Error(`${who}: ${ap}: "${name}.lora_${h.a ? "a" : "b"}" has no matching "${name}.lora_${h.a ? "b" : "a"}"`);
    }
    const { a, b } = h;
    const base = baseByName.get(name);
    if (!base) throw new Error(`${who}: ${ap}: tensor "${a.name}" adapts "${name}", which the base model ${model.path} does not have`);
    for (const t of [a, b]) {
      if (t.ne.length !== 2) throw new Error(`${who}: ${ap}: tensor "${t.name}" has shape ${shape(t.ne)}; expected 2 dimensions`);
      if (t.type !== GgmlType.F32 && t.type !== GgmlType.F16 && t.type !== GgmlType.BF16) {
        throw new Error(`${who}: ${ap}: tensor "${t.name}" has type ${ggmlTypeName(t.type)}; supported: F32, F16, BF16`);
      }
    }
    if (base.ne.length !== 2) {
      throw new Error(`${who}: ${ap}: tensor "${a.name}" adapts "${name}", which has shape ${shape(base.ne)} in the base; only 2D weights can be adapted`);
    }
    const [nIn, nOut] = base.ne as [number, number];
    const embd = name === EMBD_NAME;
    if (embd && !baseByName.has("output.weight")) {
      throw new Error(
        `${who}: ${ap} adapts token_embd.weight, which this model ties to its output head (no output.weight): merged, the ` +
          `update would reach the output too, unlike llama.cpp's adapter (tied embeddings are never an adapter target)`,
      );
    }
    // expected shapes (r taken from lora_b, as llama.cpp does)
    const r = b.ne[0]!;
    const wantA = embd ? [r, nOut] : [nIn, r];
    const wantB = embd ? [r, nIn] : [r, nOut];
    for (const [t, want, layout] of [
      [a, wantA, embd ? "[r, n_vocab]" : "[n_in, r]"],
      [b, wantB, embd ? "[r, n_embd]" : "[r, n_out]"],
    ] as const) {
      if (t.ne[0] !== want[0] || t.ne[1] !== want[1]) {
        throw new Error(
          `${who}: the adapter does not fit this model: tensor "${t.name}" has shape ${shape(t.ne)} but ` +
            `base tensor "${name}" has shape ${shape(base.ne)} (so ${t.name.slice(name.length + 1)} must be ${layout} = ${shape(want)}); ` +
            `adapter ${ap}, model ${model.path}`,
        );
      }
    }
    if (r < 1) throw new Error(`${who}: ${ap}: tensor "${b.name}" has rank 0`);
    if (rAll === undefined) {
      rAll = r;
      rFrom = name;
    } else if (r !== rAll) {
      throw new Error(`${who}: ${ap}: inconsistent LoRA rank: "${name}" has r = ${r} but "${rFrom}" has r = ${rAll}`);
    }
    pairs.set(name, { base, a, b, r, embd });
  }
  const r = rAll!;
  if (textR !== undefined && textR !== r) {
    throw new Error(`${who}: ${ap}: text2sql.lora.r is ${textR} but the LoRA tensors have rank ${r}`);
  }
  const alphaValue = adapter.metadata.get("adapter.lora.alpha");
  let alpha = 0;
  if (alphaValue !== undefined) {
    if (alphaValue.type !== GgufValueType.FLOAT32) {
      throw new Error(`${who}: ${ap}: adapter.lora.alpha has value type ${alphaValue.type}; expected FLOAT32 (${GgufValueType.FLOAT32})`);
    }
    alpha = alphaValue.value;
    if (!Number.isFinite(alpha)) throw new Error(`${who}: ${ap}: adapter.lora.alpha is ${alpha}`);
  }
  // llama.cpp: scale = alpha ? alpha / rank : 1 (rank = lora_b ne[0]), computed in float32
  const scale = alpha !== 0 ? Math.fround(alpha / r) : 1;
  return { pairs, scale, r, alpha };
}

/**
 * Checks that a GGUF LoRA fits a base GGUF (architecture, pairing, every shape, one rank) without
 * reading tensor data; throws naming the tensor and both shapes. Generation calls it before
 * llama.cpp sees the adapter.
 */
export function checkAdapterFits(modelPath: string, adapterPath: string): void {
  const model = readGgufNamed(modelPath, "model");
  const adapter = readGgufNamed(adapterPath, "adapter");
  checkAdapter(model, adapter, [], "adapter");
}

/** Read one pair's A and B as the float64 [r][n_in] and [n_out][r] matrices of the generic formula. */
function loadDelta(adapter: GgufFile, p: LoraPair, scale: number): Delta {
  const a = readTensorF32(adapter, p.a);
  const b = readTensorF32(adapter, p.b);
  for (const [t, data] of [
    [p.a, a],
    [p.b, b],
  ] as const) {
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) throw new Error(`mergeAdapter: ${adapter.path}: tensor "${t.name}" holds a non-finite value (${data[i]}) at index ${i}`);
    }
  }
  const [nIn, nOut] = p.base.ne as [number, number];
  const r = p.r;
  if (!p.embd) return { r, nIn, scale, Am: Float64Array.from(a), Bm: Float64Array.from(b) };
  // token_embd: W[v][e] += scale · Σ_k a[v][k] · b[e][k]   (a ne = [r, n_vocab], b ne = [r, n_embd])
  const Am = new Float64Array(r * nIn);
  for (let e = 0; e < nIn; e++) for (let k = 0; k < r; k++) Am[k * nIn + e] = b[e * r + k]!;
  if (a.length !== nOut * r) throw new Error("mergeAdapter: internal error: token_embd lora_a size");
  return { r, nIn, scale, Am, Bm: Float64Array.from(a) };
}

/** W[rows] += scale · (B·A)[rows], for rows row0 .. row0 + nRows - 1 stored in w. */
function applyDelta(w: Float32Array, row0: number, nRows: number, d: Delta, acc: Float64Array): void {
  const { r, nIn, scale, Am, Bm } = d;
  for (let j = 0; j < nRows; j++) {
    const o = row0 + j;
    acc.fill(0);
    for (let k = 0; k < r; k++) {
      const bv = Bm[o * r + k]!;
      if (bv === 0) continue;
      const off = k * nIn;
      for (let i = 0; i < nIn; i++) acc[i] += bv * Am[off + i]!;
    }
    const base = j * nIn;
    for (let i = 0; i < nIn; i++) w[base + i] = w[base + i]! + scale * acc[i]!;
  }
}

/** Reads a byte range of the base file into `buf` (whole range, or throws). */
function readFully(fd: number, file: string, buf: Uint8Array, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new Error(`mergeAdapter: ${file}: unexpected end of file at offset ${position + done}`);
    done += n;
  }
}

interface StreamState {
  fd: number;
  model: GgufFile;
  overflows: Map<string, { count: number; max: number }>;
}

/**
 * The output chunks of one tensor, streamed in blocks of rows. Buffers are reused between
 * chunks: writeGguf writes each chunk before it asks for the next one.
 */
function* tensorChunks(st: StreamState, info: GgufTensorInfo, outType: number, delta: () => Delta | undefined): Generator<TensorData> {
  const { fd, model } = st;
  const rowElems = info.ne[0]!;
  let nRows = 1;
  for (let i = 1; i < info.ne.length; i++) nRows *= info.ne[i]!;
  const quant = quantLayout(info.type);
  const inBytes = info.type === GgmlType.F32 ? 4 : 2;
  const rowBytes = quant ? (rowElems / quant.blockElems) * quant.blockBytes : rowElems * inBytes;
  const rowsPerBlock = Math.max(1, Math.min(nRows, Math.floor(BLOCK_ELEMS / rowElems)));
  const blockElems = rowsPerBlock * rowElems;
  const start = model.dataOffset + info.offset;
  const d = delta();

  // Same type and no LoRA: copy the bytes.
  if (!d && outType === info.type) {
    const buf = new Uint8Array(new ArrayBuffer(Math.min(info.byteLength, blockElems * inBytes)));
    for (let pos = 0; pos < info.byteLength; pos += buf.length) {
      const n = Math.min(buf.length, info.byteLength - pos);
      readFully(fd, model.path, buf, n, start + pos);
      yield buf.subarray(0, n);
    }
    return;
  }

  const raw = new ArrayBuffer(rowsPerBlock * rowBytes);
  const rawBytes = new Uint8Array(raw);
  const f32 = info.type === GgmlType.F32 ? new Float32Array(raw) : new Float32Array(blockElems);
  const u16In = info.type === GgmlType.F32 || quant ? undefined : new Uint16Array(raw);
  const u16Out = outType === GgmlType.F32 ? undefined : new Uint16Array(blockElems);
  const acc = d ? new Float64Array(rowElems) : undefined;
  let overCount = 0;
  let overMax = 0;
  for (let row0 = 0; row0 < nRows; row0 += rowsPerBlock) {
    const rows = Math.min(rowsPerBlock, nRows - row0);
    const n = rows * rowElems;
    readFully(fd, model.path, rawBytes, rows * rowBytes, start + row0 * rowBytes);
    const w = f32.subarray(0, n);
    if (quant) w.set(dequantize(info.type, rawBytes, n));
    else if (info.type === GgmlType.F16) f16ToF32(u16In!.subarray(0, n), w);
    else if (info.type === GgmlType.BF16) bf16ToF32(u16In!.subarray(0, n), w);
    if (d) applyDelta(w, row0, rows, d, acc!);
    if (outType === GgmlType.F32) {
      yield w;
    } else if (outType === GgmlType.F16) {
      for (let i = 0; i < n; i++) {
        const x = Math.abs(w[i]!);
        if (x > F16_MAX) {
          overCount++;
          if (x > overMax) overMax = x;
        }
      }
      yield f32ToF16(w, u16Out!.subarray(0, n));
    } else {
      yield f32ToBf16(w, u16Out!.subarray(0, n));
    }
  }
  if (overCount > 0) st.overflows.set(info.name, { count: overCount, max: overMax });
}

/** The base's matrix type: the type holding most of its 2D (and higher) weight elements. */
function baseMatrixType(model: GgufFile): number {
  const elems = new Map<number, number>();
  for (const t of model.tensors) {
    if (t.ne.length < 2) continue;
    elems.set(t.type, (elems.get(t.type) ?? 0) + t.ne.reduce((x, y) => x * y, 1));
  }
  let best: number = GgmlType.F16;
  let bestN = -1;
  for (const [type, n] of elems) if (n > bestN) [best, bestN] = [type, n];
  return best;
}

/**
 * Merge a GGUF LoRA into its base model and write a stand-alone GGUF.
 * Everything is checked before any output is written.
 */
export async function mergeAdapter(opts: MergeOptions): Promise<MergeResult> {
  if (opts === null || typeof opts !== "object") throw new TypeError("mergeAdapter: expected an options object");
  for (const key of ["model", "adapter", "out"] as const) {
    if (typeof opts[key] !== "string" || opts[key] === "") {
      throw new TypeError(`mergeAdapter: ${key}: expected a file path, got ${JSON.stringify(opts[key])}`);
    }
  }
  if (opts.type !== undefined && !Object.hasOwn(TYPE_BY_NAME, opts.type)) {
    throw new TypeError(`mergeAdapter: type: expected one of f16, bf16, f32, got ${JSON.stringify(opts.type)}`);
  }
  if (opts.onProgress !== undefined && typeof opts.onProgress !== "function") {
    throw new TypeError("mergeAdapter: onProgress: expected a function");
  }
  const warnings: string[] = [];

  const model = readGgufNamed(opts.model, "model");
  const adapter = readGgufNamed(opts.adapter, "adapter");

  // the base
  const mtype = metaString(model, "general.type");
  if (mtype === "adapter") throw new Error(`mergeAdapter: ${model.path} is an adapter (general.type "adapter"), not a base model`);
  archSpec(metaString(model, "general.architecture"), `mergeAdapter: ${model.path}`);
  for (const t of model.tensors) {
    if (!NAME_BY_TYPE.has(t.type) && !quantLayout(t.type)) {
      throw new Error(
        `mergeAdapter: ${model.path}: tensor "${t.name}" has type ${ggmlTypeName(t.type)}; only F32, F16, BF16 and ${TRAINABLE_QUANT_NAMES} models can be merged ` +
          `(merge into the unquantized model, then quantize the result with llama-quantize)`,
      );
    }
  }

  const { pairs, scale } = checkAdapter(model, adapter, warnings);

  // the output path
  const outPath = path.resolve(opts.out);
  const real = (p: string): string => (fs.existsSync(p) ? fs.realpathSync(p) : path.resolve(p));
  if (real(outPath) === real(opts.model)) throw new Error(`mergeAdapter: out must differ from the model file (${opts.out})`);
  if (real(outPath) === real(opts.adapter)) throw new Error(`mergeAdapter: out must differ from the adapter file (${opts.out})`);
  if (fs.existsSync(outPath) && fs.statSync(outPath).isDirectory()) throw new Error(`mergeAdapter: out is a directory: ${opts.out}`);
  fs.mkdirSync(path.dirname(outPath), { recursive: true });

  // the output type
  const baseType = baseMatrixType(model);
  const outName: MergeType = opts.type ?? (baseType === GgmlType.F32 ? "f32" : baseType === GgmlType.BF16 ? "bf16" : "f16");
  const matrixType = TYPE_BY_NAME[outName];

  // metadata: the base's, in order, with general.file_type updated
  const metadata: [string, GgufValue][] = [];
  let sawFileType = false;
  for (const [key, value] of model.metadata) {
    if (key === "general.file_type") {
      sawFileType = true;
      const ft = FILE_TYPE[outName];
      const t = value.type;
      const numericInt =
        t === GgufValueType.UINT32 ||
        t === GgufValueType.INT32 ||
        t === GgufValueType.UINT16 ||
        t === GgufValueType.INT16 ||
        t === GgufValueType.UINT8 ||
        t === GgufValueType.INT8;
      metadata.push([key, numericInt ? ({ type: t, value: ft } as GgufValue) : gv.u32(ft)]);
    } else {
      metadata.push([key, value]);
    }
  }
  if (!sawFileType) metadata.push(["general.file_type", gv.u32(FILE_TYPE[outName])]);

  const fd = fs.openSync(model.path, "r");
  const st: StreamState = { fd, model, overflows: new Map() };
  const total = model.tensors.length;
  let done = 0;
  try {
    const tensors: GgufTensorSpec[] = model.tensors.map((info) => {
      const outType = info.ne.length < 2 ? GgmlType.F32 : matrixType;
      const pair = pairs.get(info.name);
      return {
        name: info.name,
        type: outType,
        ne: info.ne,
        data: function* () {
          yield* tensorChunks(st, info, outType, () => (pair ? loadDelta(adapter, pair, scale) : undefined));
          done++;
          opts.onProgress?.(done, total);
        },
      };
    });
    writeGguf(outPath, { metadata, tensors });
  } finally {
    fs.closeSync(fd);
  }

  let f16Overflows = 0;
  for (const [name, { count, max }] of st.overflows) {
    f16Overflows += count;
    warnings.push(
      `${name}: ${count} value(s) outside the F16 range (|x| > ${F16_MAX}, largest |x| = ${max}) were rounded to ±${F16_MAX} or ±Inf; ` +
        `merge with type "bf16" or "f32" to keep them`,
    );
  }
  return { out: outPath, type: outName, tensors: total, merged: pairs.size, f16Overflows, warnings };
}
