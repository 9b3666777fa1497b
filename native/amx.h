// AMX-BF16 tiles for the frozen-weight products of a BF16 model on the CPU: W·x, Wᵀ·dy and the
// output head, as ggml custom ops (graph.cpp builds them through amx_mul_mat / amx_mul_mat_t).
//
// TDPBF16PS: C[16 x 16 f32] += A[16 rows x 32 bf16] · B[16 K-pairs x 16 cols, each a bf16 pair].
// One GEMM shape serves every product: C[M, N] = A[M, K] · B[K, N], A row-major BF16, B packed in
// "VNNI" panels (below), C stored through two strides so that it can land transposed.
//   W·x   (forward, head): A = W itself ([n_out rows, n_in]: its rows are A-tile rows, no copy),
//                          B = x rounded to BF16 per call and packed; C = yᵀ, stored transposed.
//   Wᵀ·dy (backward):      A = dy rounded to BF16 per call ([T rows, n_out]), B = W packed once
//                          at engine creation (fast mode, in place of the transposed copy) or per
//                          call (lean mode, in place of the per-call transpose); C = dx.
// The packing, blocking and edge handling are one template (amx_gemm.h) run on the real tile
// unit (amx_hw.cpp, compiled for AMX by target pragma, used only when CPUID and Linux grant it)
// or on a scalar emulation of it with the same semantics (amx.cpp): the tests check every shape
// and edge on any CPU.
#pragma once

#include "ggml.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace t2s {

// Which kernel runs the BF16 products: ggml's mul_mat (off), the AMX tile unit, its scalar
// emulation, or text2sql's AVX512-BF16 GEMM (bf16k.h: CPUs with AVX512_BF16 and no AMX in use).
enum class amx_mode : int { off = 0, hw = 1, emulate = 2, avx512 = 3 };
const char * amx_mode_name(amx_mode m);  // "ggml" | "amx-bf16" | "amx-bf16-emulated" | "avx512-bf16"

// The mode for a new engine: TEXT2SQL_AMX=0 turns AMX off, =emulate forces the emulation (tests),
// unset / 1 / auto use the tile unit where the CPU has AMX-BF16 and Linux granted the tile state.
// Where the CPU has no usable AMX, the AVX512-BF16 GEMM runs where CPUID reports AVX512_BF16,
// unless TEXT2SQL_AVX512BF16=0 (then ggml's mul_mat, tinyBLAS, as before). TEXT2SQL_AMX=0 still
// means ggml's mul_mat for every BF16 product.
// `note` explains a fallback (a CPU with AMX whose tiles were denied, or a build without AMX code).
amx_mode amx_mode_from_env(std::string & note);

// Whether this build has the tile-unit code, and whether the CPU reports AMX-BF16 (CPUID).
bool amx_hw_compiled();
bool cpu_has_amx_bf16();

// VNNI panels of a K x N matrix B (element (k, n)): panel nb holds columns [16·nb, 16·nb + 16), as
// ceil(K/32) blocks of [16 K-pairs][16 cols][2] bf16 = 1 KiB; zeros past K and N.
// B(k, n) = src[k·sk + n·sn] (bf16 bits), e.g. Wᵀ·dy's B = W [n_out rows k, n_in cols n]: sk = n_in, sn = 1.
void amx_pack_b_bf16(const uint16_t * src, int64_t sk, int64_t sn, int64_t K, int64_t N, uint16_t * dst, int ith, int nth);

// C[M, N] = A[M, K] · B[K, N], as amx_gemm.h runs it (a plain struct: no code of its own, so the
// AMX-compiled file and the rest share it safely).
struct amx_gemm_args {
    const uint16_t * a;         // A(m, k) = a[m·lda + k] (bf16 bits); read as 0 for m >= M or k >= K
    int64_t          lda;       // elements
    bool             a_padded;  // a holds zeros up to 16-row and 32-column multiples: no edge copies
    int64_t          M, K, N;
    const uint16_t * b;         // VNNI panels (amx_pack_b_bf16), at the first K block used, panel 0
    int64_t          b_panel;   // elements from one panel to the next
    float *          c;         // C(m, n) at c[m·ldcm + n·ldcn]
    int64_t          ldcm, ldcn;
    bool             split_n;   // threads share out N blocks (B holds the weights), else M blocks
};

// The GEMM on the real tiles (amx_hw.cpp; only where amx_hw_compiled() and the tiles are granted).
void amx_hw_run(const amx_gemm_args & g, int ith, int nth);

// The graph's products (graph.cpp). w: a BF16 weight [n_in, n_out] (or a view of its rows);
// w_packed: the engine's packed copy for Wᵀ·dy (null: pack per call); k0: the first row of w
// that w_packed's view starts at (output head chunks).
// xp: x as amx_prepare_x made it for mode m (the products of one x share it), or null.
ggml_tensor * amx_mul_mat(ggml_context * ctx,
                          amx_mode       m,
                          ggml_tensor *  w,
                          ggml_tensor *  x,
                          ggml_tensor *  xp = nullptr);  // [n_out, T] = W·x
// x [K, T] f32 in the form the mode's W·x reads: rounded to BF16 (AVX512-BF16) or packed as B panels (AMX)
ggml_tensor * amx_prepare_x(ggml_context * ctx, amx_mode m, ggml_tensor * x);
ggml_tensor * amx_mul_mat_t(ggml_context * ctx,
                            amx_mode       m,
                            ggml_tensor *  w,
                            ggml_tensor *  w_packed,
                            int64_t        k0,
                            ggml_tensor *  dy);  // [n_in, T] = Wᵀ·dy, dy [rows of w, T]

// The kernel ggml's CPU mul_mat runs for a weight of this type times F32 activations in this
// build (ggml's compile-time CPU features): e.g. "tinyBLAS bf16 (AVX512-BF16), activations to BF16".
std::string ggml_cpu_mul_mat_kernel(ggml_type t);

// Whether a graph node is one of ours (the profiler names the kernel).
bool amx_is_op(const ggml_tensor * t);

// The test hook (addon.cpp): y = W·x (transpose = false: W [K, N] bf16 bits, x [K, T] f32, y [N, T])
// or y = Wᵀ·x (transpose = true: W [N, K] bf16, x [K, T], y [N, T]) on `mode`'s unit, or with ggml's
// mul_mat (mode off), with n_threads threads. Throws when the mode is not available here.
// packed (Wᵀ·x, not mode off): W is packed into panels on the host first, as fast mode does at load.
void amx_matmul_test(amx_mode         mode,
                     bool             transpose,
                     const uint16_t * w,
                     const float *    x,
                     int64_t          K,
                     int64_t          N,
                     int64_t          T,
                     int              n_threads,
                     float *          y,
                     bool             packed = false);

// The roofline microbenchmark (addon.cpp matmulBench): the frozen-weight product W·x as a training
// step runs it, W [K, N] of `type` (f32, f16 or bf16; bf16 only for the AMX modes) filled with
// seeded values, x [K, T] f32, with n_threads threads: one untimed run, then `reps` timed runs of
// the one-node graph; ms[i] is run i's wall time in milliseconds.
void matmul_bench(amx_mode mode, ggml_type type, int64_t K, int64_t N, int64_t T, int n_threads, int reps, double * ms);

}  // namespace t2s
