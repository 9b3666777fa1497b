// The forward product W·x of a Q8_0 weight on x86-64 CPUs with AVX512-VNNI: text2sql's own GEMM,
// in place of ggml's (llamafile's tinyBLAS Q0 kernel, 256-bit, one horizontal scale step per
// block pair). Same numerics as ggml's: the activations are quantized to Q8_0 per 32-block by
// ggml's own quantize_row_q8_0, each block's int8 dot product is exact in int32, and it is scaled
// by d_w·d_x in float; only the order of the float sums over blocks differs (rounding level).
//
// Two ggml custom ops: q8.pack_x quantizes x per token, q8.mul_mat multiplies. The weight stays
// in ggml's plain Q8_0 layout (the backward's Wᵀ and everything else read it as before); each
// thread repacks 16-row panels of it per call into VPDPBUSD's layout (a few % of the product).
#pragma once

#include "ggml.h"

#include <string>

namespace t2s {

// Whether this build has the kernel and the CPU runs it (AVX512-F/BW/VNNI in CPUID, zmm state
// enabled by the OS), and TEXT2SQL_Q8_GEMM is not 0. `note` says why not, when not.
bool q8_gemm_available(std::string & note);

// Whether the kernel takes w [n_in, n_out] (Q8_0, plain layout, whole rows) times x [n_in, T]
// (F32, contiguous rows): n_out a multiple of 16.
bool q8_gemm_fits(const ggml_tensor * w, const ggml_tensor * x);

// y [n_out, T] = W·x through the two custom ops (q8_gemm_fits must hold).
ggml_tensor * q8_mul_mat(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x);

// Whether a graph node is one of the two ops (the profiler names them).
bool q8_is_op(const ggml_tensor * t);

// The kernel's name for the profile and the logs.
const char * q8_gemm_name();

}  // namespace t2s
