// text2sql's AVX512-BF16 GEMM (vdpbf16ps) for the frozen-weight products of a BF16 model on CPUs
// with AVX512_BF16 and no AMX in use (e.g. AMD Zen 4/5): W·x, Wᵀ·dy and the output head, as ggml
// custom ops that amx.cpp's amx_mul_mat / amx_mul_mat_t build for amx_mode::avx512.
//
// One GEMM serves every product: C[M, N] = A[M, K] · B[K, N] with
//   A = the activations rounded to BF16 per call (as ggml's own BF16 mul_mat rounds them), M = T
//       tokens, row-major with zero padding (rows to a multiple of 16, columns to 32, plus a
//       64-byte skew so that the rows do not alias in L1);
//   B = the weight, in VNNI panels of 16 columns x K-pairs (amx.h's amx_pack_b_bf16 layout, the
//       layout vdpbf16ps wants: one zmm = 16 columns x one bf16 pair): read in place when the
//       engine packed it once at load (fast mode's Wᵀ·dy), else packed per K-block into a
//       per-thread buffer from W's own rows (W·x, and lean mode's Wᵀ·dy: no extra memory);
//   C = the product in ggml's layout, row m = token: y [n_out, T] or dx [n_in, T], stored once.
// Threads share out the weight's dimension N (M = T is small), in contiguous ranges of panels.
// The micro-kernel holds 8 rows x 3 panels (24 zmm accumulators, F32) over a K-block of 256 pairs.
#pragma once

#include "ggml.h"

#include <cstdint>

namespace t2s {

struct bf16k_args {
    const uint16_t * a;        // A(m, k) = a[m·lda + k] (bf16 bits), zero for k >= K up to 32-multiples, rows to 16-multiples
    int64_t          lda;      // elements
    int64_t          M, K, N;
    const uint16_t * b;        // VNNI panels (amx_pack_b_bf16) at the first K block used, or null: pack from w
    int64_t          b_panel;  // elements from one panel to the next
    const uint16_t * w;        // the weight's rows when b is null
    int64_t          ldw;      // elements
    bool             w_cols;   // B(k, n) = w[n·ldw + k] (W·x: W's rows are B's columns), else w[k·ldw + n] (Wᵀ·dy)
    float *          c;        // C(m, n) = c[m·ldc + n]
    int64_t          ldc;
};

// Whether this build has the AVX512-BF16 code (bf16k_hw.cpp), and whether the CPU reports AVX512_BF16.
bool bf16k_compiled();
bool cpu_has_avx512_bf16();

// The GEMM, thread ith of nth (bf16k_hw.cpp; only where bf16k_compiled() and the CPU has it).
void bf16k_run(const bf16k_args & g, int ith, int nth);

// dst[t·lda + k] = x[t·ldx + k] rounded to BF16 (round to nearest even, as ggml), zeros for
// k in [K, lda) and for rows t in [T, Tp); thread ith of nth takes every nth row.
void bf16k_round_rows(const float * x, int64_t ldx, int64_t K, int64_t T, uint16_t * dst, int64_t lda, int64_t Tp, int ith, int nth);

// The graph's products (amx.cpp dispatches here for amx_mode::avx512); w, w_packed, k0 as amx.h's.
// xr: x as bf16k_round made it (shared by the products of one x), or null to round here.
ggml_tensor * bf16k_mul_mat(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x, ggml_tensor * xr = nullptr);  // [n_out, T] = W·x
ggml_tensor * bf16k_round(ggml_context * ctx, ggml_tensor * x);  // [lda, Tp] bf16: x rounded, zero padded
ggml_tensor * bf16k_mul_mat_t(ggml_context * ctx,
                              ggml_tensor *  w,
                              ggml_tensor *  w_packed,
                              int64_t        k0,
                              ggml_tensor *  dy);  // [n_in, T] = Wᵀ·dy, dy [rows of w, T]

// The same products over activations that their producer rounded itself (fused.h's *_bf16 ops):
// xr, dyr [bf16k_lda(K), bf16k_rows(T)] bf16 as bf16k_round gives them for K-long rows of T tokens.
ggml_tensor * bf16k_mul_mat_r(ggml_context * ctx, ggml_tensor * w, ggml_tensor * xr, int64_t T);  // [n_out, T] = W·x
ggml_tensor * bf16k_mul_mat_t_r(ggml_context * ctx,
                                ggml_tensor *  w,
                                ggml_tensor *  w_packed,
                                int64_t        k0,
                                ggml_tensor *  dyr,
                                int64_t        T);  // [n_in, T] = Wᵀ·dy
int64_t       bf16k_lda(int64_t K);                 // A's row stride: K to a multiple of 32, plus 64 bytes (rows do not alias in L1)
int64_t       bf16k_rows(int64_t T);                // A's rows: T to a multiple of 16, zero past T

// Whether a graph node is one of this kernel's ops (the profiler names the kernel).
bool bf16k_is_op(const ggml_tensor * t);

}  // namespace t2s
