// Hand-checked, static table of which ggml ops (with which operand types / layouts) the CPU, CUDA
// and Metal backends of the ggml pinned by node-llama-cpp 3.21.1 can run.
//
// Read from (paths relative to node_modules/.cache/text2sql/llama.cpp/ggml/src):
//   CPU   ggml-cpu/ggml-cpu.cpp    ggml_backend_cpu_device_supports_op        (~424-486)
//         ggml-cpu/ggml-cpu.c      ggml_compute_forward dispatch              (~1736-2160)
//         ggml-cpu/ops.cpp, binary-ops.cpp, unary-ops.cpp (the per-type switches that GGML_ABORT)
//   CUDA  ggml-cuda/ggml-cuda.cu   ggml_backend_cuda_device_supports_op       (~5059-5520)
//         plus the kernels' own GGML_ASSERTs where supports_op says "true" but the kernel is narrower
//   Metal ggml-metal/ggml-metal-device.m ggml_metal_device_supports_op        (~1508-1925)
//         plus ggml-metal-device.cpp / ggml-metal-ops.cpp / kernels/*.metal for kernel-level limits
//
// Conservative by design: where supports_op returns true but the kernel asserts (or silently
// assumes) something narrower, the narrower condition is encoded. An op that is not in the table
// is reported unsupported ("not in the table"), so a new op in the graph fails the test until
// somebody reads the sources and adds it here.
//
// Operand conventions for OpUse:
//   types[i]       ggml_type_name of src[i] ("F32", "F16", "BF16", "I32", "Q8_0", ...).
//                  CPY: types = [src, dst]. CONT: types = [src] (the result has the same type).
//                  SILU_BACK: types = [dy, x] (ggml.h: a = dy, b = x).
//                  SOFT_MAX: types = [x] or [x, mask]. ROPE/ROPE_BACK: [x, pos, freq_factors?].
//   contiguous[i]  ggml_is_contiguous(src[i]). Missing = true (a freshly computed tensor).
//                  false means "a non-contiguous view whose rows are still contiguous"
//                  (nb[0] == type size, e.g. a ggml_permute that keeps dim 0 in place), unless
//   rowsContiguous[i] === false, which means even nb[0] != type size (ggml_transpose, or a
//                  permute that moves dim 0).
//   broadcast      src0's ne2/ne3 are smaller than src1's (3D broadcast, e.g. GQA in MUL_MAT).

export type Backend = "cpu" | "cuda" | "metal";

export interface OpUse {
  op: string;
  types: string[] /* ggml type names of src0, src1... e.g. ['BF16','F32'] */;
  contiguous?: boolean[];
  rowsContiguous?: boolean[];
  broadcast?: boolean;
}

export interface Support {
  ok: boolean;
  /** why it is not supported (ok: false) */
  why?: string;
  /** a device-feature caveat on an op that is otherwise supported (ok: true) */
  note?: string;
}

export const BACKENDS: readonly Backend[] = ["cpu", "cuda", "metal"];

const FLOAT = ["F32", "F16", "BF16"];
const F32_F16 = ["F32", "F16"];
// quantized types that both CPU (type traits) and CUDA (ggml-cuda.cu ~5137-5163) list for MUL_MAT
const QUANT = [
  "Q1_0",
  "Q2_0",
  "Q4_0",
  "Q4_1",
  "Q5_0",
  "Q5_1",
  "Q8_0",
  "MXFP4",
  "NVFP4",
  "Q2_K",
  "Q3_K",
  "Q4_K",
  "Q5_K",
  "Q6_K",
  "Q8_K",
  "IQ1_M",
  "IQ1_S",
  "IQ2_S",
  "IQ2_XS",
  "IQ2_XXS",
  "IQ3_S",
  "IQ3_XXS",
  "IQ4_NL",
  "IQ4_XS",
];

// ---------------------------------------------------------------------------------------------
// condition helpers: each returns the reason it fails, or undefined when it holds

type Check = (u: OpUse) => string | undefined;

function typeOf(u: OpUse, i: number): string | undefined {
  return u.types[i];
}
function isContig(u: OpUse, i: number): boolean {
  return u.contiguous?.[i] ?? true;
}
function rowsContig(u: OpUse, i: number): boolean {
  return isContig(u, i) || u.rowsContiguous?.[i] !== false;
}

/** src[i] must be one of `allowed` (a missing type fails too: the caller must say what it uses) */
function type(i: number, allowed: readonly string[], where: string): Check {
  return (u) => {
    const t = typeOf(u, i);
    if (t === undefined) return `src${i} type not given (needs one of ${allowed.join("/")}; ${where})`;
    return allowed.includes(t) ? undefined : `src${i} type ${t} not supported, needs ${allowed.join("/")} (${where})`;
  };
}
/** like type(), but only when src[i] is present */
function optType(i: number, allowed: readonly string[], where: string): Check {
  return (u) => (typeOf(u, i) === undefined ? undefined : type(i, allowed, where)(u));
}
function contig(i: number, where: string): Check {
  return (u) => (isContig(u, i) ? undefined : `src${i} must be contiguous (${where})`);
}
function optContig(i: number, where: string): Check {
  return (u) => (typeOf(u, i) === undefined ? undefined : contig(i, where)(u));
}
function rows(i: number, where: string): Check {
  return (u) => (rowsContig(u, i) ? undefined : `src${i} rows must be contiguous, nb[0] == type size (${where})`);
}
function sameType(i: number, j: number, where: string): Check {
  return (u) => (typeOf(u, i) === typeOf(u, j) ? undefined : `src${i} (${typeOf(u, i)}) and src${j} (${typeOf(u, j)}) must have the same type (${where})`);
}
function pairs(allowed: ReadonlyArray<readonly [string, string]>, where: string): Check {
  return (u) => {
    const a = typeOf(u, 0),
      b = typeOf(u, 1);
    return allowed.some(([x, y]) => x === a && y === b) ? undefined : `type pair ${a} -> ${b} not supported (${where})`;
  };
}
function never(why: string): Check {
  return () => why;
}

interface Rule {
  /** source file:line the rule was read from */
  src: string;
  checks: Check[];
  /** ok, but only on devices with some feature: returned as `note` */
  note?: (u: OpUse) => string | undefined;
}

const rule = (src: string, checks: Check[], note?: Rule["note"]): Rule => ({ src, checks, note });

// ---------------------------------------------------------------------------------------------
// CPU

const CPU_SO = "ggml-cpu/ggml-cpu.cpp";
const CPU_OPS = "ggml-cpu/ops.cpp";

const cpuBinary = (op: string): Rule =>
  // ggml-cpu.cpp ~475 default: true; ggml-cpu.c dispatch ~1753-1780; ADD: ops.cpp ~654 (float types ->
  // binary-ops.cpp add_non_quantized); SUB/MUL/DIV: binary-ops.cpp ~144-155. binary_op (binary-ops.cpp
  // ~116-136) only has these (src0, src1) combos (dst = src0's type) and GGML_ABORTs otherwise;
  // apply_binary_op asserts nb00 == sizeof(src0_t) (~59). src1 may be strided / broadcast.
  rule(`binary-ops.cpp ~50-136 (${op})`, [
    pairs(
      [
        ["F32", "F32"],
        ["F16", "F16"],
        ["BF16", "BF16"],
        ["BF16", "F32"],
        ["F16", "F32"],
      ],
      "binary-ops.cpp ~120-135",
    ),
    rows(0, "binary-ops.cpp ~59 GGML_ASSERT(nb00 == sizeof(src0_t))"),
  ]);

const CPU: Record<string, Rule> = {
  // ggml-cpu.cpp ~428: NONE/RESHAPE/VIEW/PERMUTE/TRANSPOSE return true before anything else;
  // ggml-cpu.c ~2144-2160 they are no-ops
  NONE: rule(`${CPU_SO} ~428`, []),
  RESHAPE: rule(`${CPU_SO} ~428`, []),
  VIEW: rule(`${CPU_SO} ~428`, []),
  PERMUTE: rule(`${CPU_SO} ~428`, []),
  TRANSPOSE: rule(`${CPU_SO} ~428`, []),

  // ops.cpp ~5146 get_rows: quantized, F16, BF16, F32, I32; index must be I32 (ggml.c ggml_get_rows);
  // get_rows_f32 asserts nb00 == sizeof(float) (~5119)
  GET_ROWS: rule(`${CPU_OPS} ~5146`, [
    type(0, [...FLOAT, "I32", ...QUANT], `${CPU_OPS} ~5146`),
    type(1, ["I32"], "ggml.c ggml_get_rows"),
    rows(0, `${CPU_OPS} ~5119`),
  ]),

  // ops.cpp ~3989 rms_norm: F32 only, else GGML_ABORT; rms_norm_f32 asserts src0->nb[0] == sizeof(float) (~3940)
  RMS_NORM: rule(`${CPU_OPS} ~3989`, [type(0, ["F32"], `${CPU_OPS} ~3989`), rows(0, `${CPU_OPS} ~3940`)]),

  ADD: cpuBinary("ADD"),
  SUB: cpuBinary("SUB"),
  MUL: cpuBinary("MUL"),
  DIV: cpuBinary("DIV"),

  // ops.cpp ~4749 scale: F32 only; scale_f32 GGML_ASSERT(ggml_is_contiguous(src0)) (~4703) -- fully contiguous
  SCALE: rule(`${CPU_OPS} ~4749`, [type(0, ["F32"], `${CPU_OPS} ~4749`), contig(0, `${CPU_OPS} ~4703`)]),

  // unary-ops.cpp ~281/285 -> unary_op (~137): F32, F16, BF16 (~140-153); apply_unary_op asserts
  // contiguous rows of src0 and dst (~114-119)
  SQR: rule("ggml-cpu/unary-ops.cpp ~281", [type(0, FLOAT, "unary-ops.cpp ~140"), rows(0, "unary-ops.cpp ~114")]),
  SQRT: rule("ggml-cpu/unary-ops.cpp ~285", [type(0, FLOAT, "unary-ops.cpp ~140"), rows(0, "unary-ops.cpp ~114")]),

  // ops.cpp ~1493 sum_rows: F32 only; sum_rows_f32 asserts nb[0] == sizeof(float) (~1470)
  SUM_ROWS: rule(`${CPU_OPS} ~1493`, [type(0, ["F32"], `${CPU_OPS} ~1493`), rows(0, `${CPU_OPS} ~1470`)]),

  // ggml-cpu.cpp ~453: src1 must be F32 or src0's vec_dot_type (F32->F32, F16->F16, BF16->BF16, quant->Q8_x);
  // ggml-cpu.c ~1283-1284 GGML_ASSERT(nb00 == type size) and (nb10 == type size). Strided batch dims
  // (permuted views) and ne12 % ne02 == 0 broadcast are handled (r2/r3).
  MUL_MAT: rule(`${CPU_SO} ~453, ggml-cpu.c ~1255-1290`, [
    type(0, [...FLOAT, ...QUANT], "ggml-cpu.c type_traits_cpu"),
    (u) =>
      typeOf(u, 1) === "F32" || (FLOAT.includes(typeOf(u, 0) ?? "") && typeOf(u, 1) === typeOf(u, 0))
        ? undefined
        : `src1 must be F32 or src0's vec_dot_type (${CPU_SO} ~453)`,
    rows(0, "ggml-cpu.c ~1283 GGML_ASSERT(nb00 == ggml_type_size(src0->type))"),
    rows(1, "ggml-cpu.c ~1284 GGML_ASSERT(nb10 == ggml_type_size(src1->type))"),
  ]),

  // ops.cpp ~6240 / ~6264: F16, F32 else abort; rope_flt asserts src1 I32 (~6092) and nb0 == nb00 == sizeof(T) (~6118).
  // Modes NORMAL (llama) and NEOX (qwen2, qwen3) both handled, forward and back (~6209 switch on mode)
  ROPE: rule(`${CPU_OPS} ~6240`, [
    type(0, F32_F16, `${CPU_OPS} ~6240`),
    type(1, ["I32"], `${CPU_OPS} ~6092`),
    optType(2, ["F32"], "ggml.c ggml_rope_impl freq_factors"),
    rows(0, `${CPU_OPS} ~6118`),
  ]),
  ROPE_BACK: rule(`${CPU_OPS} ~6264`, [
    type(0, F32_F16, `${CPU_OPS} ~6264`),
    type(1, ["I32"], `${CPU_OPS} ~6092`),
    optType(2, ["F32"], "ggml.c ggml_rope_impl freq_factors"),
    rows(0, `${CPU_OPS} ~6118`),
  ]),

  // ops.cpp ~5696 soft_max: F32 only; mask F16 or F32 (~5623 use_f16). ggml.c ~4101-4105 (ggml_soft_max_impl)
  // asserts a and mask contiguous at graph-build time, on every backend.
  SOFT_MAX: rule(`${CPU_OPS} ~5696`, [
    type(0, ["F32"], `${CPU_OPS} ~5696`),
    optType(1, F32_F16, `${CPU_OPS} ~5623`),
    contig(0, "ggml.c ~4101"),
    optContig(1, "ggml.c ~4105"),
  ]),

  // ops.cpp ~526 dup (CPY ~4963, CONT ~4971): same type -> dup_bytes (any strides); F32/F16/BF16 <-> each
  // other; F32 -> I32; I32 -> F32; float -> quant; quant -> F32; anything else aborts.
  // ggml-cpu.cpp ~443: CPY to IQ2/IQ3/IQ1 types is unsupported (no from_float).
  CPY: rule(`${CPU_OPS} ~526, ${CPU_SO} ~443`, [
    pairs(
      [
        ...FLOAT.flatMap((a) => FLOAT.map((b) => [a, b] as const)),
        ["F32", "I32"],
        ["I32", "F32"],
        ["I32", "I32"],
        ...QUANT.filter((q) => !q.startsWith("IQ") || q === "IQ4_NL" || q === "IQ4_XS").flatMap((q) => [["F32", q] as const]),
        ...QUANT.map((q) => [q, "F32"] as const),
      ],
      `${CPU_OPS} ~526-575`,
    ),
  ]),
  CONT: rule(`${CPU_OPS} ~4971 -> ~526 (same type: dup_bytes)`, [type(0, [...FLOAT, "I32", ...QUANT], `${CPU_OPS} ~530`)]),

  // ops.cpp ~10188 -> ggml_compute_forward_silu (~2674): F32, F16 else abort; silu_f32 asserts contiguous rows (~2585)
  "UNARY:SILU": rule(`${CPU_OPS} ~2674`, [type(0, F32_F16, `${CPU_OPS} ~2674`), rows(0, `${CPU_OPS} ~2585`)]),

  // ops.cpp ~2868 silu_back: F32, F16 else abort; silu_back_f32 asserts ggml_is_contiguous_1(dy, x, dst)
  // and same shapes (~2788-2792) -- required fully contiguous here to stay conservative
  SILU_BACK: rule(`${CPU_OPS} ~2868`, [
    type(0, F32_F16, `${CPU_OPS} ~2868`),
    sameType(0, 1, `${CPU_OPS} ~2781`),
    contig(0, `${CPU_OPS} ~2788 ggml_is_contiguous_1(grad)`),
    contig(1, `${CPU_OPS} ~2789 ggml_is_contiguous_1(src1)`),
  ]),

  // ops.cpp ~1598 argmax: F32 only; argmax_f32 asserts nb[0] == sizeof(float) (~1580); ggml.c ~2540 needs a matrix
  ARGMAX: rule(`${CPU_OPS} ~1598`, [type(0, ["F32"], `${CPU_OPS} ~1598`), rows(0, `${CPU_OPS} ~1580`)]),

  // lean mode's weight transpose (a ggml_map_custom1 op): ggml-cpu.cpp supports_op default true,
  // ggml-cpu.c dispatch -> ggml_compute_forward_map_custom1 (any type; the op is ours)
  MAP_CUSTOM1: rule(`${CPU_SO} (default: true)`, []),
  // a quantized weight's Wᵀ (native/quant.cpp dequant_transpose_op, a ggml_custom_4d op): the same
  // default; with the weight in ggml's CPU_REPACK buffer the repack buffer type answers instead
  // (ggml-cpu.cpp ~434-439: MUL_MAT only), so native/backend_ops.cpp vouches for our op itself
  CUSTOM: rule(`${CPU_SO} (default: true), ggml-cpu.c dispatch -> ggml_compute_forward_custom`, []),

  // ---- fused backward ops, used where the backend has them (engine op_caps) ----

  // ggml-cpu.cpp ~469-472: src0 F32, or (F16 / quantized with src0.ne2 == src1.ne2 && ne3 equal); src1 F32.
  // BF16 src0 hits the default GGML_ABORT in ops.cpp ~4645.
  OUT_PROD: rule(`${CPU_SO} ~469`, [
    type(0, ["F32", "F16", ...QUANT], `${CPU_SO} ~469, ${CPU_OPS} ~4645`),
    type(1, ["F32"], `${CPU_SO} ~471`),
    (u) => (typeOf(u, 0) !== "F32" && u.broadcast ? `non-F32 src0 needs equal ne2/ne3 (no broadcast) (${CPU_SO} ~470)` : undefined),
  ]),
  // ops.cpp ~4188: F32 only
  RMS_NORM_BACK: rule(`${CPU_OPS} ~4188`, [type(0, ["F32"], `${CPU_OPS} ~4188`), type(1, ["F32"], `${CPU_OPS} ~4188`)]),
  // ggml-cpu.cpp ~455-463: src0 and src1 F32, max_bias == 0 (no ALiBi; not modelled, assumed 0)
  SOFT_MAX_BACK: rule(`${CPU_SO} ~455`, [type(0, ["F32"], `${CPU_SO} ~456`), type(1, ["F32"], `${CPU_SO} ~456`)]),
  // ops.cpp ~11744 / ~11827: F32 only
  CROSS_ENTROPY_LOSS: rule(`${CPU_OPS} ~11744`, [type(0, ["F32"], `${CPU_OPS} ~11744`)]),
  CROSS_ENTROPY_LOSS_BACK: rule(`${CPU_OPS} ~11827`, [type(0, ["F32"], `${CPU_OPS} ~11827`)]),
  // ggml-cpu.cpp ~467: src0 F32 or F16
  GET_ROWS_BACK: rule(`${CPU_SO} ~467`, [type(0, F32_F16, `${CPU_SO} ~468`)]),
  // ops.cpp ~1880: F32 only
  REPEAT_BACK: rule(`${CPU_OPS} ~1880`, [type(0, ["F32"], `${CPU_OPS} ~1880`)]),
  // ggml-cpu.cpp default true; ops.cpp ~9348 (forward only: ggml.c has no backward for it, ~7148 aborts)
  FLASH_ATTN_EXT: rule(`${CPU_OPS} ~9348`, [type(0, ["F32"], `${CPU_OPS} ~9348`)]),
  // ops.cpp ~11912: F32 only
  OPT_STEP_ADAMW: rule(`${CPU_OPS} ~11912`, [type(0, ["F32"], `${CPU_OPS} ~11912`)]),
};

// ---------------------------------------------------------------------------------------------
// CUDA

const CU = "ggml-cuda/ggml-cuda.cu";

const cudaBinary = (op: string): Rule =>
  // ggml-cuda.cu ~5390-5395: src0, src1 and dst each F32 or F16 (BF16 is NOT accepted). binbcast.cu
  // handles arbitrary strides and broadcast of src1.
  rule(`${CU} ~5390 (${op})`, [type(0, F32_F16, `${CU} ~5394`), type(1, F32_F16, `${CU} ~5395`)]);

// ggml-cuda.cu ~5137-5165: the src0 types MUL_MAT accepts
const CUDA_MUL_MAT_SRC0 = [...FLOAT, ...QUANT];

const CUDA: Record<string, Rule> = {
  // ggml-cuda.cu ~5375-5381: return true
  NONE: rule(`${CU} ~5375`, []),
  RESHAPE: rule(`${CU} ~5376`, []),
  VIEW: rule(`${CU} ~5377`, []),
  PERMUTE: rule(`${CU} ~5378`, []),
  TRANSPOSE: rule(`${CU} ~5379`, []),

  // ggml-cuda.cu ~5177-5212: F16, F32, BF16, I32 and most quants (IQ4_NL/MXFP4 only if ne0 % 256 == 0);
  // getrows.cu ~450-455: src1 I32, ne13 == 1, nb[0] == type size for src0/src1/dst
  GET_ROWS: rule(`${CU} ~5177`, [
    type(0, [...FLOAT, "I32", ...QUANT.filter((q) => !["IQ4_NL", "MXFP4", "NVFP4", "Q8_K"].includes(q))], `${CU} ~5179`),
    type(1, ["I32"], "ggml-cuda/getrows.cu ~450"),
    rows(0, "ggml-cuda/getrows.cu ~453"),
    rows(1, "ggml-cuda/getrows.cu ~454"),
  ]),

  // ggml-cuda.cu ~5369-5371: ggml_is_contiguous_rows(src0); norm.cu ~478-490 (ggml_cuda_op_rms_norm): F32 only
  RMS_NORM: rule(`${CU} ~5369`, [type(0, ["F32"], "ggml-cuda/norm.cu ~484"), rows(0, `${CU} ~5371`)]),

  ADD: cudaBinary("ADD"),
  SUB: cudaBinary("SUB"),
  MUL: cudaBinary("MUL"),
  DIV: cudaBinary("DIV"),

  // ggml-cuda.cu ~5382 returns true, but scale.cu ~28-29 GGML_ASSERTs F32 and the kernel walks
  // ggml_nelements(src0) as a flat array (~37) -- a non-contiguous src0 would be silently wrong.
  SCALE: rule(`${CU} ~5382 + ggml-cuda/scale.cu ~28`, [type(0, ["F32"], "ggml-cuda/scale.cu ~28"), contig(0, "ggml-cuda/scale.cu ~37 flat kernel")]),

  // ggml-cuda.cu ~5383-5384 return true, but ggml_cuda_op_unary (unary.cu ~144-148) asserts
  // ggml_is_contiguous(src0) and F32/F16
  SQR: rule(`${CU} ~5383 + ggml-cuda/unary.cu ~144`, [type(0, F32_F16, "ggml-cuda/unary.cu ~146"), contig(0, "ggml-cuda/unary.cu ~144")]),
  SQRT: rule(`${CU} ~5384 + ggml-cuda/unary.cu ~144`, [type(0, F32_F16, "ggml-cuda/unary.cu ~146"), contig(0, "ggml-cuda/unary.cu ~144")]),

  // ggml-cuda.cu ~5466-5469: ggml_is_contiguous(src0); sumrows.cu ~25-27: F32
  SUM_ROWS: rule(`${CU} ~5466`, [type(0, ["F32"], "ggml-cuda/sumrows.cu ~25"), contig(0, `${CU} ~5469`)]),

  // ggml-cuda.cu ~5118-5173: a->nb[0] and b->nb[0] == element size; if src1 is F16, src0 must be F16;
  // src0 F32/F16/BF16/quants. Non-contiguous (permuted) src0/src1 go through cuBLAS with convert_nc
  // (ggml-cuda.cu ~1412-1500, GGML_ASSERT(nb00 == ts) ~1428); broadcast ne12 % ne02 == 0 (~1537).
  MUL_MAT: rule(`${CU} ~5118`, [
    type(0, CUDA_MUL_MAT_SRC0, `${CU} ~5137`),
    type(1, F32_F16, `${CU} ~5124`),
    (u) => (typeOf(u, 1) === "F16" && typeOf(u, 0) !== "F16" ? `src1 F16 needs src0 F16 (${CU} ~5124)` : undefined),
    rows(0, `${CU} ~5121 a->nb[0] != ggml_element_size(a)`),
    rows(1, `${CU} ~5121 b->nb[0] != ggml_element_size(b)`),
  ]),

  // ggml-cuda.cu ~5434-5437: src0->nb[0] == type size && ggml_is_contiguous_2(src0); rope.cu ~560: F32/F16;
  // NEOX mode (qwen2, qwen3) forward and back: rope.cu ~606 is_neox, ~631 rope_neox_cuda<forward>.
  // contiguous_2 (dims 0 and 3 dense, dims 1-2 free) is not expressible with the flags, so the table
  // asks for a contiguous src0.
  ROPE: rule(`${CU} ~5434`, [
    type(0, F32_F16, "ggml-cuda/rope.cu ~560"),
    type(1, ["I32"], "ggml.c ggml_rope_impl"),
    optType(2, ["F32"], "ggml.c ggml_rope_impl freq_factors"),
    contig(0, `${CU} ~5436 (ggml_is_contiguous_2, conservatively: contiguous)`),
  ]),
  ROPE_BACK: rule(`${CU} ~5435`, [
    type(0, F32_F16, "ggml-cuda/rope.cu ~560"),
    type(1, ["I32"], "ggml.c ggml_rope_impl"),
    optType(2, ["F32"], "ggml.c ggml_rope_impl freq_factors"),
    contig(0, `${CU} ~5436 (ggml_is_contiguous_2, conservatively: contiguous)`),
  ]),

  // ggml-cuda.cu ~5422-5423: true; softmax.cu ~395-398: src0 F32, mask F16/F32; the kernel indexes src0
  // as dense rows (no nb0x), and ggml.c ~4101 asserts contiguity at graph build anyway.
  SOFT_MAX: rule(`${CU} ~5422`, [
    type(0, ["F32"], "ggml-cuda/softmax.cu ~395"),
    optType(1, F32_F16, "ggml-cuda/softmax.cu ~398"),
    contig(0, "ggml.c ~4101"),
    optContig(1, "ggml.c ~4105"),
  ]),

  // ggml-cuda.cu ~5239-5293: any pair of F32/BF16/F16 (arbitrary strides, cpy.cu ~480 scalar kernels);
  // F32 <-> Q8_0/Q4_0/Q4_1/Q5_0/Q5_1, F32 -> IQ4_NL; F32/I32 <-> I32; other same-type copies only when
  // both are contiguous.
  CPY: rule(`${CU} ~5239`, [
    (u) => {
      const a = typeOf(u, 0) ?? "?",
        b = typeOf(u, 1) ?? "?";
      if (FLOAT.includes(a) && FLOAT.includes(b)) return undefined;
      const q = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"];
      if (a === "F32" && (q.includes(b) || b === "IQ4_NL" || b === "I32")) return undefined;
      if (b === "F32" && (q.includes(a) || a === "I32")) return undefined;
      if (a === "I32" && b === "I32") return undefined;
      if (a === b && isContig(u, 0) && isContig(u, 1)) return undefined;
      return `type pair ${a} -> ${b} not supported (${CU} ~5239-5293)`;
    },
  ]),
  // ggml-cuda.cu ~5418-5419: true (ggml_cuda_dup -> ggml_cuda_cpy, same type); DUP (~5295) excludes I32/I16
  CONT: rule(`${CU} ~5418`, [type(0, FLOAT, `${CU} ~5239 (cpy of float types, any strides)`)]),

  // ggml-cuda.cu ~5080 / ~5099: ggml_is_contiguous(src0); unary.cu ~146: F32/F16
  "UNARY:SILU": rule(`${CU} ~5080`, [type(0, F32_F16, "ggml-cuda/unary.cu ~146"), contig(0, `${CU} ~5099`)]),

  // ggml-cuda.cu ~5365-5366: contiguous src0 and F32. unary.cu ~582-603: silu_back_cuda(src0 = dy,
  // src1 = x) walks both as flat arrays, so src1 must be contiguous too (not checked by supports_op).
  SILU_BACK: rule(`${CU} ~5365`, [
    type(0, ["F32"], `${CU} ~5366`),
    type(1, ["F32"], "ggml-cuda/unary.cu ~600 (same kernel type as src0)"),
    contig(0, `${CU} ~5366`),
    contig(1, "ggml-cuda/unary.cu ~600 flat kernel"),
  ]),

  // ggml-cuda.cu ~5300-5304: true, but argmax.cu ~72-75 GGML_ASSERTs F32 and ggml_is_contiguous(src0)
  ARGMAX: rule(`${CU} ~5300 + ggml-cuda/argmax.cu ~72`, [type(0, ["F32"], "ggml-cuda/argmax.cu ~72"), contig(0, "ggml-cuda/argmax.cu ~75")]),

  // ---- ops the graph avoids ----

  // ggml-cuda.cu ~5175-5176: op, src0 and src1 all F32 -- an F16/BF16 frozen weight is NOT supported
  OUT_PROD: rule(`${CU} ~5175`, [type(0, ["F32"], `${CU} ~5176`), type(1, ["F32"], `${CU} ~5176`)]),
  // ggml-cuda.cu ~5372-5373: ggml_is_contiguous(src0)
  RMS_NORM_BACK: rule(`${CU} ~5372`, [type(0, ["F32"], "ggml-cuda/norm.cu ~650"), contig(0, `${CU} ~5373`)]),
  // ggml-cuda.cu ~5424-5428: max_bias == 0 (not modelled, assumed 0); softmax.cu ~464-466: F32
  SOFT_MAX_BACK: rule(`${CU} ~5424`, [type(0, ["F32"], "ggml-cuda/softmax.cu ~464"), type(1, ["F32"], "ggml-cuda/softmax.cu ~465")]),
  // ggml-cuda.cu ~5500-5501: true
  CROSS_ENTROPY_LOSS: rule(`${CU} ~5500`, [type(0, ["F32"], "ggml-cuda/cross-entropy-loss.cu")]),
  CROSS_ENTROPY_LOSS_BACK: rule(`${CU} ~5501`, [type(0, ["F32"], "ggml-cuda/cross-entropy-loss.cu")]),
  // custom ops run on the CPU backend only: no case in ggml_backend_cuda_device_supports_op
  MAP_CUSTOM1: rule(`${CU} (default: false)`, [never("custom ops run on the CPU only")]),
  CUSTOM: rule(`${CU} (default: false)`, [never("custom ops run on the CPU only")]),
  // ggml-cuda.cu ~5214-5216: F32 and ne2 == ne3 == 1 (shape not modelled)
  GET_ROWS_BACK: rule(`${CU} ~5214`, [type(0, ["F32"], `${CU} ~5216`)]),
  // ggml-cuda.cu ~5311-5312: F32 and src0 ne2*ne3 <= 32768 (shape not modelled)
  REPEAT_BACK: rule(`${CU} ~5311`, [type(0, ["F32"], `${CU} ~5312`)]),
  // ggml-cuda.cu ~5498-5499 -> ggml_cuda_flash_attn_ext_supported (fattn.cu ~720): head size, K/V types
  // and GPU architecture dependent -- not modelled, so reported unsupported.
  FLASH_ATTN_EXT: rule(`${CU} ~5498`, [
    never(`depends on ggml_cuda_flash_attn_ext_supported (fattn.cu ~720: head size, K/V type, GPU arch); not modelled (${CU} ~5499)`),
  ]),
  // ggml-cuda.cu ~5502: true
  OPT_STEP_ADAMW: rule(`${CU} ~5502`, [type(0, ["F32"], "ggml-cuda/opt-step-adamw.cu")]),
};

// ---------------------------------------------------------------------------------------------
// Metal

const MD = "ggml-metal/ggml-metal-device.m";

// ggml-metal-device.m ~1513-1523: if !has_bfloat, any op with a BF16 dst or src[0..2] is unsupported.
// has_bfloat (~1121-1125) = MTLGPUFamilyMetal3 || MTLGPUFamilyApple6, unless GGML_METAL_BF16_DISABLE is
// set or the tensor API probe fails (~1230-1240). Treated as supported, with a note.
const METAL_BF16_NOTE = `BF16 needs a Metal device with bfloat support (has_bfloat: MTLGPUFamilyMetal3 or Apple6, GGML_METAL_BF16_DISABLE unset; ${MD} ~1513-1523, ~1121)`;
// has_simdgroup_reduction (~1115-1116) = MTLGPUFamilyApple7 || Metal3: every Apple-silicon Mac; not old Intel/AMD Macs
const SIMD_RED = `needs has_simdgroup_reduction (Apple7 / Metal3 GPU; ${MD} ~1115)`;

const metalBinary = (op: string): Rule =>
  // ggml-metal-device.m ~1617-1622: contiguous rows of src0 and src1, src0 F32/F16, and src1 of the SAME type
  rule(`${MD} ~1617 (${op})`, [type(0, F32_F16, `${MD} ~1622`), sameType(0, 1, `${MD} ~1622`), rows(0, `${MD} ~1622`), rows(1, `${MD} ~1622`)]);

const metalCpy = (src: string, dst: string): string | undefined => {
  // ggml-metal-device.m ~1828-1886 (CPY/DUP/CONT/SET share one switch on src0 type x dst type)
  const q = ["Q8_0", "Q1_0", "Q2_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "TQ2_0"];
  switch (src) {
    case "F32":
      return ["F32", "F16", "BF16", "I32", ...q].includes(dst) ? undefined : "F32 -> " + dst;
    case "F16":
      return F32_F16.includes(dst) ? undefined : "F16 -> " + dst;
    case "BF16":
      return ["F32", "BF16"].includes(dst) ? undefined : "BF16 -> " + dst;
    case "I32":
      return ["F32", "I32"].includes(dst) ? undefined : "I32 -> " + dst;
    default:
      return q.includes(src) && F32_F16.includes(dst) ? undefined : `${src} -> ${dst}`;
  }
};

const METAL: Record<string, Rule> = {
  // ggml-metal-device.m ~1584-1589: return true (ggml-metal-ops.cpp ~185-196: no-ops)
  NONE: rule(`${MD} ~1584`, []),
  RESHAPE: rule(`${MD} ~1585`, []),
  VIEW: rule(`${MD} ~1586`, []),
  TRANSPOSE: rule(`${MD} ~1587`, []),
  PERMUTE: rule(`${MD} ~1588`, []),

  // ggml-metal-device.m ~1889-1890: anything but NVFP4 (BF16 needs has_bfloat); index I32 (ggml.c)
  GET_ROWS: rule(`${MD} ~1889`, [
    (u) => (typeOf(u, 0) === "NVFP4" ? `NVFP4 not supported (${MD} ~1890)` : undefined),
    type(0, [...FLOAT, "I32", ...QUANT.filter((q) => q !== "NVFP4")], `${MD} ~1890`),
    type(1, ["I32"], "ggml.c ggml_get_rows"),
  ]),

  // ggml-metal-device.m ~1662-1664: has_simdgroup_reduction && contiguous rows; kernels/norm.metal ~168: F32 only
  RMS_NORM: rule(`${MD} ~1663`, [type(0, ["F32"], "kernels/norm.metal ~168"), rows(0, `${MD} ~1664`)], () => SIMD_RED),

  ADD: metalBinary("ADD"),
  SUB: metalBinary("SUB"),
  MUL: metalBinary("MUL"),
  DIV: metalBinary("DIV"),

  // ggml-metal-device.m ~1526-1534: contiguous rows and F32/F16
  SCALE: rule(`${MD} ~1526`, [type(0, F32_F16, `${MD} ~1534`), rows(0, `${MD} ~1534`)]),
  SQR: rule(`${MD} ~1529`, [type(0, F32_F16, `${MD} ~1534`), rows(0, `${MD} ~1534`)]),
  SQRT: rule(`${MD} ~1530`, [type(0, F32_F16, `${MD} ~1534`), rows(0, `${MD} ~1534`)]),

  // ggml-metal-device.m ~1647-1653: has_simdgroup_reduction && contiguous rows; kernels/reduce.metal ~116: F32 only
  SUM_ROWS: rule(`${MD} ~1647`, [type(0, ["F32"], "kernels/reduce.metal ~116"), rows(0, `${MD} ~1653`)], () => SIMD_RED),

  // ggml-metal-device.m ~1819-1822 -> ggml_metal_supports_mul_mat_op (~1484-1506): has_simdgroup_reduction,
  // src0 != NVFP4; src1 != F16 -> true; src1 F16 with BF16 src0 -> false. ggml-metal-ops.cpp ~2373-2376
  // asserts ne12 % ne02 == 0 (broadcast). Kernels take nb01..nb03 / nb10..nb13 strides, so permuted views
  // with contiguous rows work; BF16 src0 needs has_bfloat (kernels/mul_mv.metal ~1043, mul_mm.metal ~742).
  MUL_MAT: rule(
    `${MD} ~1819, ~1484`,
    [
      type(0, [...FLOAT, ...QUANT.filter((q) => q !== "NVFP4")], `${MD} ~1489`),
      type(1, F32_F16, `${MD} ~1493`),
      (u) => (typeOf(u, 1) === "F16" && typeOf(u, 0) === "BF16" ? `src1 F16 with BF16 src0 (${MD} ~1497)` : undefined),
      rows(0, "ggml-metal-ops.cpp ~2450 (kernels index src0 rows by nb01, elements densely)"),
      rows(1, "conservative: CUDA/CPU need it too"),
    ],
    () => SIMD_RED,
  ),

  // ggml-metal-device.m ~1664-1666: return true; kernels/rope.metal ~323-324: f32/f16; NEOX mode (qwen2, qwen3):
  // ggml-metal-device.cpp ~1882-1888 picks kernel_rope_neox (rope.metal ~106), back via is_back (~1899);
  // ggml-metal-ops.cpp ~4229-4230: ne10 % ne02 == 0 (one position per token)
  ROPE: rule(`${MD} ~1664`, [
    type(0, F32_F16, "kernels/rope.metal ~323"),
    type(1, ["I32"], "ggml.c ggml_rope_impl"),
    optType(2, ["F32"], "ggml.c ggml_rope_impl freq_factors"),
  ]),
  ROPE_BACK: rule(`${MD} ~1665`, [
    type(0, F32_F16, "kernels/rope.metal ~323"),
    type(1, ["I32"], "ggml.c ggml_rope_impl"),
    optType(2, ["F32"], "ggml.c ggml_rope_impl freq_factors"),
  ]),

  // ggml-metal-device.m ~1650-1653: has_simdgroup_reduction && contiguous rows; ggml-metal-device.cpp ~456:
  // mask F16/F32; kernels/softmax.metal ~221: F32 src0. ggml.c ~4101 asserts contiguity at graph build.
  SOFT_MAX: rule(
    `${MD} ~1650`,
    [
      type(0, ["F32"], "kernels/softmax.metal ~221"),
      optType(1, F32_F16, "ggml-metal-device.cpp ~456"),
      contig(0, "ggml.c ~4101"),
      optContig(1, "ggml.c ~4105"),
    ],
    () => SIMD_RED,
  ),

  // ggml-metal-device.m ~1828-1886: see metalCpy; kernels/quantize.metal ~15-32 cpy kernels use full
  // src/dst strides (nb00..nb03, nb0..nb3), so non-contiguous/transposed 4D views are fine.
  CPY: rule(`${MD} ~1828`, [
    (u) => {
      const bad = metalCpy(typeOf(u, 0) ?? "?", typeOf(u, 1) ?? "?");
      return bad ? `type pair ${bad} not supported (${MD} ~1828-1886)` : undefined;
    },
  ]),
  CONT: rule(`${MD} ~1830`, [
    (u) => {
      const t = typeOf(u, 0) ?? "?";
      const bad = metalCpy(t, t);
      return bad ? `type ${t} not supported (${MD} ~1828-1886)` : undefined;
    },
  ]),

  // ggml-metal-device.m ~1543 / ~1557: contiguous rows and F32/F16
  "UNARY:SILU": rule(`${MD} ~1543`, [type(0, F32_F16, `${MD} ~1557`), rows(0, `${MD} ~1557`)]),

  // ggml-metal-device.m ~1563-1570: src0, src1, dst all F32, all ggml_is_contiguous, same shape
  // (kernels/unary.metal ~192: kernel_silu_back_f32(dy, x))
  SILU_BACK: rule(`${MD} ~1563`, [type(0, ["F32"], `${MD} ~1564`), type(1, ["F32"], `${MD} ~1565`), contig(0, `${MD} ~1567`), contig(1, `${MD} ~1568`)]),

  // ggml-metal-device.m ~1659-1660: has_simdgroup_reduction; ggml-metal-device.cpp ~1252-1254:
  // GGML_ASSERT F32, ggml_is_contiguous_1, nb[0] == type size (required contiguous here)
  ARGMAX: rule(
    `${MD} ~1659 + ggml-metal-device.cpp ~1252`,
    [type(0, ["F32"], "ggml-metal-device.cpp ~1252"), contig(0, "ggml-metal-device.cpp ~1253")],
    () => SIMD_RED,
  ),

  // ---- ops the graph avoids ----
  // None of these has a case in ggml_metal_device_supports_op: they fall to `default: return false` (~1922),
  // and ggml_metal_op_encode aborts "unsupported op" (ggml-metal-ops.cpp ~202-204).
  OUT_PROD: rule(`${MD} ~1922`, [never(`no OUT_PROD on Metal (${MD} ~1922 default: false)`)]),
  MAP_CUSTOM1: rule(`${MD} ~1922`, [never("custom ops run on the CPU only")]),
  CUSTOM: rule(`${MD} ~1922`, [never("custom ops run on the CPU only")]),
  RMS_NORM_BACK: rule(`${MD} ~1922`, [never(`no RMS_NORM_BACK on Metal (${MD} ~1922 default: false)`)]),
  SOFT_MAX_BACK: rule(`${MD} ~1922`, [never(`no SOFT_MAX_BACK on Metal (${MD} ~1922 default: false)`)]),
  CROSS_ENTROPY_LOSS: rule(`${MD} ~1922`, [never(`no CROSS_ENTROPY_LOSS on Metal (${MD} ~1922 default: false)`)]),
  CROSS_ENTROPY_LOSS_BACK: rule(`${MD} ~1922`, [never(`no CROSS_ENTROPY_LOSS_BACK on Metal (${MD} ~1922 default: false)`)]),
  GET_ROWS_BACK: rule(`${MD} ~1922`, [never(`no GET_ROWS_BACK on Metal (${MD} ~1922 default: false)`)]),
  REPEAT_BACK: rule(`${MD} ~1922`, [never(`no REPEAT_BACK on Metal (${MD} ~1922 default: false)`)]),
  // ~1703-1745: head size in {32..576 list}, K/V same type in F32/F16/BF16/Q8_0/Q4_x/Q5_x,
  // has_simdgroup_mm -- not modelled, reported unsupported
  FLASH_ATTN_EXT: rule(`${MD} ~1703`, [never(`head-size / K,V-type / has_simdgroup_mm dependent (${MD} ~1703-1745); not modelled`)]),
  // ~1919-1921: has_simdgroup_reduction
  OPT_STEP_ADAMW: rule(`${MD} ~1919`, [type(0, ["F32"], "kernels (F32 only)")], () => SIMD_RED),
};

const TABLE: Record<Backend, Record<string, Rule>> = { cpu: CPU, cuda: CUDA, metal: METAL };

/** Can `backend` run `use`? ok:false carries the reason (and the source line it comes from). */
export function backendSupports(backend: Backend, use: OpUse): Support {
  const table = TABLE[backend];
  if (!table) return { ok: false, why: `unknown backend '${String(backend)}'` };
  const r = Object.prototype.hasOwnProperty.call(table, use.op) ? table[use.op] : undefined;
  if (!r) return { ok: false, why: `${use.op} is not in the table for ${backend}: read the sources and add it (test/helpers/backend-support.ts)` };
  for (const check of r.checks) {
    const why = check(use);
    if (why) return { ok: false, why: `${backend} ${use.op}: ${why}` };
  }
  const notes: string[] = [];
  if (backend === "metal" && use.types.slice(0, 3).includes("BF16")) notes.push(METAL_BF16_NOTE);
  const n = r.note?.(use);
  if (n) notes.push(n);
  return notes.length ? { ok: true, note: `${backend} ${use.op}: ${notes.join("; ")}` } : { ok: true };
}

/** The source location each backend's entry for `op` was read from (undefined when not in the table). */
export function supportSource(backend: Backend, op: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(TABLE[backend], op) ? TABLE[backend][op].src : undefined;
}

/**
 * Ops the training graph deliberately does not use, and which backends lack them (in this ggml).
 * The table above still answers for them, so the claims here are checked by the tests.
 */
export const AVOIDED_OPS: Record<string, string> = {
  OUT_PROD:
    "metal: missing (ggml-metal-device.m ~1922 default false). cuda: only F32 x F32 -> F32 (ggml-cuda.cu ~5175), so F16/BF16 " +
    "frozen weights are unsupported. cpu: F32, or F16/quantized without ne2/ne3 broadcast; BF16 src0 aborts (ggml-cpu.cpp ~469, " +
    "ops.cpp ~4645). ggml autodiff of MUL_MAT emits it (ggml.c ~6836), hence the hand-written backward uses mul_mat with Wᵀ.",
  RMS_NORM_BACK: "metal: missing (default false, ggml-metal-device.m ~1922). cpu: F32 only; cuda: contiguous src0.",
  SOFT_MAX_BACK: "metal: missing (default false). cpu: F32 and max_bias == 0 (ggml-cpu.cpp ~455); cuda: max_bias == 0 (ggml-cuda.cu ~5424).",
  CROSS_ENTROPY_LOSS: "metal: missing (default false). cpu: F32; cuda: yes (ggml-cuda.cu ~5500).",
  CROSS_ENTROPY_LOSS_BACK: "metal: missing (default false). cpu: F32; cuda: yes (ggml-cuda.cu ~5501).",
  GET_ROWS_BACK: "metal: missing (default false). cpu: F32/F16 src0; cuda: F32 with ne2 == ne3 == 1 only (ggml-cuda.cu ~5214).",
  REPEAT_BACK: "metal: missing (default false). cpu: F32; cuda: F32 with ne2*ne3 <= 32768 (ggml-cuda.cu ~5311).",
  FLASH_ATTN_EXT:
    "conditional everywhere but cpu: cuda via ggml_cuda_flash_attn_ext_supported (head size/K,V type/arch, fattn.cu ~720), " +
    "metal only for listed head sizes and has_simdgroup_mm (ggml-metal-device.m ~1703); and ggml has no backward for it " +
    "(ggml.c ~7148 aborts), so a training graph cannot use it.",
  OPT_STEP_ADAMW:
    "no backend lacks it (cpu F32, cuda yes ggml-cuda.cu ~5502, metal with has_simdgroup_reduction ~1919); avoided because the " +
    "optimizer step runs on the host (native/optimizer.cpp: torch.optim.AdamW semantics with global-norm clipping).",
};

/**
 * The op uses of native/graph.cpp's graph, as hand-described operand types/layouts. The weights
 * (tok_embd, output, Wᵀ copies) may be F32, F16 or BF16 (native/model.cpp ~163); norms/LoRA are F32.
 */
const W = ["F32", "F16", "BF16"];
export const GRAPH_OP_USES: OpUse[] = [
  { op: "NONE", types: [] },
  { op: "RESHAPE", types: ["F32"] },
  { op: "VIEW", types: ["F32"] },
  { op: "PERMUTE", types: ["F32"] },
  { op: "TRANSPOSE", types: ["F32"] },
  ...W.map((w) => ({ op: "GET_ROWS", types: [w, "I32"] })),
  { op: "RMS_NORM", types: ["F32"] },
  // qwen3's per-head q/k norm: RMS_NORM over the rows of a contiguous [hd, n_heads, T], ⊙ weight [hd] (MUL
  // below), and its backward (composed from the basic ops below, or RMS_NORM_BACK where the backend has it).
  // qwen2's q/k/v bias: ADD of [n_out] broadcast over [n_out, T] (ADD below)
  // x ⊙ norm weight [n_embd] broadcast; n ⊙ c [1,T]; dropout masks; (P - onehot) ⊙ weight [1,T]
  { op: "MUL", types: ["F32", "F32"] },
  { op: "ADD", types: ["F32", "F32"] },
  { op: "SUB", types: ["F32", "F32"] },
  { op: "DIV", types: ["F32", "F32"] },
  { op: "SCALE", types: ["F32"] },
  { op: "SQR", types: ["F32"] },
  { op: "SQRT", types: ["F32"] },
  { op: "SUM_ROWS", types: ["F32"] },
  // W·x, Wᵀ·dy, logits, LoRA A/B, dA/dB
  ...W.map((w) => ({ op: "MUL_MAT", types: [w, "F32"] })),
  // K·Q with K, Q permuted views (rows contiguous), GQA broadcast; V·P, Vᵀ·dO, fold_heads products
  { op: "MUL_MAT", types: ["F32", "F32"], contiguous: [false, false], broadcast: true },
  // with llama3's frequency factors (rope_freqs.weight), and without (qwen2, qwen3; NEOX mode)
  { op: "ROPE", types: ["F32", "I32", "F32"] },
  { op: "ROPE_BACK", types: ["F32", "I32", "F32"] },
  { op: "ROPE", types: ["F32", "I32"] },
  { op: "ROPE_BACK", types: ["F32", "I32"] },
  { op: "SOFT_MAX", types: ["F32", "F32"] },
  { op: "SOFT_MAX", types: ["F32"] },
  // ggml_cont of permuted/transposed views, and the gradient accumulation ggml_cpy
  { op: "CONT", types: ["F32"], contiguous: [false], rowsContiguous: [false] },
  { op: "CPY", types: ["F32", "F32"] },
  { op: "UNARY:SILU", types: ["F32"] },
  { op: "SILU_BACK", types: ["F32", "F32"] },
  { op: "ARGMAX", types: ["F32"] },
];
