// Step 4 of the conversion (./convert.ts): the tensors' data, produced lazily while writeGguf
// writes the file. Each tensor is read from its shard in blocks of whole rows (whole heads for
// permuted q/k), permuted, converted and handed over before the next block is read, so memory
// stays at a few tens of MB whatever the model size.
import { GgmlType, ggmlTensorByteLength } from "../../formats/gguf.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../formats/float16.js";
import type { GgufTensorSpec, TensorData } from "../../formats/gguf-write.js";
import type { StReader } from "../../formats/safetensors.js";
import { permuteRowsBytes } from "../../formats/llama-layout.js";
import { quantizeQ8_0 } from "../../formats/quant.js";
import type { HParams } from "./checkpoint.js";
import type { TensorPlan } from "./tensors.js";

/** Source bytes per block (whole rows / whole heads): bounds memory for any tensor size. */
const BLOCK_BYTES = 16 << 20;

/** Step 4: the tensors, produced lazily (read, permuted, converted) while writeGguf writes them. */
export function tensorSpecs(
  plans: TensorPlan[],
  hp: HParams,
  reader: StReader,
  opts: { onProgress?: (done: number, total: number) => void },
  warn: (m: string) => void,
): GgufTensorSpec[] {
  let done = 0;
  const total = plans.reduce((s, p) => s + ggmlTensorByteLength(p.type, p.ne), 0) + (hp.rope.type === "llama3" ? hp.rope.factors.byteLength : 0);
  const progress = (n: number): void => {
    done += n;
    opts.onProgress?.(done, total);
  };
  const specs: GgufTensorSpec[] = [];
  if (hp.rope.type === "llama3") {
    const factors = hp.rope.factors;
    specs.push({ name: "rope_freqs.weight", type: GgmlType.F32, ne: [factors.length], data: () => (progress(factors.byteLength), [factors]) });
  }
  for (const p of plans) {
    specs.push({
      name: p.ggufName,
      type: p.type,
      ne: p.ne,
      data: () =>
        tensorBlocks(p, reader, progress, (n) => warn(`${p.hfName}: ${n} value(s) exceed the F16 range (|x| > 65504) and become ±Inf in ${p.ggufName}`)),
    });
  }
  return specs;
}

/** One tensor's data in blocks of whole rows (whole heads when permuted), converted to its GGUF type. */
function* tensorBlocks(p: TensorPlan, reader: StReader, progress: (n: number) => void, onOverflow: (n: number) => void): Generator<TensorData> {
  const rows = p.src.shape[0]!;
  const rowBytes = p.src.byteLength / rows;
  const unit = p.rowsPerHead || 1; // rows that must stay together
  const unitsPerBlock = Math.max(1, Math.floor(BLOCK_BYTES / (unit * rowBytes)));
  let overflow = 0;
  for (let r = 0; r < rows; r += unit * unitsPerBlock) {
    const n = Math.min(rows - r, unit * unitsPerBlock);
    let bytes = reader.read(p.src, r * rowBytes, n * rowBytes);
    if (p.rowsPerHead) bytes = permuteRowsBytes(bytes, rowBytes, p.rowsPerHead);
    const out = convertBlock(bytes, p.src.dtype, p.type, (k) => (overflow += k));
    progress(out.byteLength);
    yield out;
  }
  if (overflow > 0) onOverflow(overflow);
}

/** Convert little-endian source bytes of one dtype to the data writeGguf stores for `dst`. */
function convertBlock(bytes: Uint8Array, srcDtype: string, dst: number, onOverflow: (n: number) => void): TensorData {
  const srcType = srcDtype === "F32" ? GgmlType.F32 : srcDtype === "F16" ? GgmlType.F16 : GgmlType.BF16;
  if (srcType === dst) return bytes;
  const f32 =
    srcType === GgmlType.F32
      ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
      : (srcType === GgmlType.F16 ? f16ToF32 : bf16ToF32)(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
  if (dst === GgmlType.F32) return f32;
  if (dst === GgmlType.Q8_0) return quantizeQ8_0(f32); // whole rows: planTensors checked they are whole blocks
  if (dst === GgmlType.BF16) return f32ToBf16(f32);
  const h = f32ToF16(f32);
  let overflow = 0;
  for (let i = 0; i < h.length; i++) if ((h[i]! & 0x7fff) === 0x7c00 && Number.isFinite(f32[i]!)) overflow++;
  if (overflow > 0) onOverflow(overflow);
  return h;
}
