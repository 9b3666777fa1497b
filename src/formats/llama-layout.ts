// The one place where a Llama checkpoint's Hugging Face layout and its GGUF layout differ: the
// rows of q_proj and k_proj. llama.cpp's converter permutes them for ggml's RoPE (pairs of
// rotated values adjacent instead of half a head apart; ../shared/docs/engine-notes.md §3), so a
// GGUF's attn_q/attn_k rows, and the rows of a LoRA's q/k lora_B trained on it, are in GGUF order.
// The converter applies the forward permutation, PEFT export the inverse, PEFT import the forward.

/** Heads whose rows are permuted for a layer given by its short name: nHead for q, nHeadKv for k, else 0. */
export function permutedHeads(short: string, nHead: number, nHeadKv: number): number {
  return short === "q" ? nHead : short === "k" ? nHeadKv : 0;
}

function checkPermutable(rows: number, nHead: number, what: string): number {
  if (!Number.isInteger(nHead) || nHead < 1 || rows % (2 * nHead) !== 0) {
    throw new RangeError(`${what}: ${rows} rows cannot be split into ${nHead} heads of an even size`);
  }
  return rows / nHead / 2;
}

/**
 * llama.cpp's converter permutation of the rows of a row-major [rows, cols] matrix of any element
 * size, HF order -> GGUF order: `w.reshape(nHead, 2, rows/nHead/2, cols).swapaxes(1, 2).reshape(rows, cols)`.
 * `src` may hold any whole number of heads (rows a multiple of rows-per-head).
 */
export function permuteRowsBytes(src: Uint8Array, rowBytes: number, rowsPerHead: number, inverse = false): Uint8Array {
  if (rowsPerHead % 2 !== 0) throw new RangeError(`permuteRowsBytes: ${rowsPerHead} rows per head is odd`);
  const rows = src.length / rowBytes;
  if (!Number.isInteger(rows) || rows % rowsPerHead !== 0) {
    throw new RangeError(`permuteRowsBytes: ${src.length} bytes are not whole heads of ${rowsPerHead} rows of ${rowBytes} bytes`);
  }
  const half = rowsPerHead / 2;
  const out = new Uint8Array(src.length);
  for (let h0 = 0; h0 < rows; h0 += rowsPerHead) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const gguf = h0 + i * 2 + j; // GGUF row
        const hf = h0 + j * half + i; // HF row
        const [from, to] = inverse ? [gguf, hf] : [hf, gguf];
        out.set(src.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
    }
  }
  return out;
}

/** Float32Array rows as bytes (no copy). */
const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * llama.cpp's converter permutation, HF row order -> GGUF row order, of a row-major [rows, cols]
 * matrix: `w.reshape(nHead, 2, rows/nHead/2, cols).swapaxes(1, 2).reshape(rows, cols)`.
 */
export function permuteRows(data: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  checkPermutable(rows, nHead, "permuteRows");
  return new Float32Array(permuteRowsBytes(bytesOf(data), cols * 4, rows / nHead).buffer);
}

/** The inverse of {@link permuteRows}: GGUF row order -> HF row order. */
export function unpermuteRows(data: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  checkPermutable(rows, nHead, "unpermuteRows");
  return new Float32Array(permuteRowsBytes(bytesOf(data), cols * 4, rows / nHead, true).buffer);
}
