// Quantized frozen weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): which types the
// engine trains on, and the backward pass's Wᵀ made per layer from the quantized weight
// (dequantized and transposed in the graph, freed by the allocator right after its product).
#pragma once

#include "graph.h"

#include <string>
#include <vector>

namespace t2s {

// True for the quantized types a frozen matrix may have.
bool quant_type_supported(ggml_type type);

// "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K": for error messages.
const char * quant_supported_list();

// Wᵀ [n_out, n_in] of a quantized weight w [n_in, n_out] (or a view of whole rows of one), of
// type e.quant_wt_type. On the CPU one custom op dequantizes and transposes in 32 x 256 tiles;
// elsewhere a GET_ROWS of every row to F32 and a transposed CONT (or CPY to BF16), which the
// backend check vets.
ggml_tensor * quant_weight_t(graph_ctx & g, ggml_tensor * w);

// The weight a forward product multiplies by: w itself, or (exact mode) w dequantized to F32 in
// the graph, freed after its product.
ggml_tensor * quant_weight_fwd(graph_ctx & g, ggml_tensor * w);

// ggml's CPU_REPACK layouts of a weight (ggml-cpu/repack.cpp): the forward product then runs
// ggml's repacked GEMM (Q4_K, Q4_0 on x86 with AVX2: 8 rows interleaved), and the custom op
// below reads the layout back. Other layouts (ARM's, Q8_0's) are not used: those weights stay plain.
enum class quant_repack : intptr_t { none = 0, q4_0_8x8 = 1, q4_K_8x8 = 2 };

// The layout ggml's CPU backend picks for a weight of this type here (none: no repacked kernel
// that this file can read back).
quant_repack quant_repack_layout_of(ggml_type type);

// The CPU_REPACK buffer type of the engine's backend (null: not the CPU, or ggml has none).
ggml_backend_buffer_type_t quant_repack_buft(const engine & e);

// The layout w [n_in, n_out] gets at load: none in exact mode, off the CPU, with
// TEXT2SQL_QUANT_REPACK=0, or where the shape or type has no repacked kernel.
quant_repack quant_repack_for(const engine & e, const ggml_tensor * w);

// The layout of a weight tensor in the graph (or of the weight a view reads).
quant_repack quant_repack_of(const engine & e, const ggml_tensor * t);

// The CPU kernel that multiplies by the quantized weight w (or a view of one), for the profile:
// ggml's repacked GEMM, llamafile's tinyBLAS (Q8_0, Q4_0, Q5_0 on AVX/AVX2) or ggml's vec_dot.
std::string quant_mul_mat_kernel(const engine & e, const ggml_tensor * w);

// The custom op itself: dst [n_out, n_in] (F32 or BF16) = dequantize(src[0])ᵀ; userdata is the
// weight's quant_repack layout (src[0] a weight, or a view of whole 8-row groups of one).
void dequant_transpose_op(ggml_tensor * dst, int ith, int nth, void * userdata);

// Test hook (addon quantTransposeTest): quantizes x [n_in, n_out] to `type` with ggml, loads it
// as the engine would (repacked when repack and the layout exists), and returns the bytes of
// dequant_transpose_op's Wᵀ (BF16 or F32) of the view of rows [row0, n_out) (row0 a multiple of
// 8), and ggml's to_float of all the plain rows ([n_in, n_out]). Returns whether it was repacked.
bool quant_transpose_test(ggml_type              type,
                          const float *          x,
                          int64_t                n_in,
                          int64_t                n_out,
                          int64_t                row0,
                          bool                   repack,
                          bool                   bf16,
                          int                    threads,
                          std::vector<uint8_t> & wt,
                          std::vector<float> &   ref);

}  // namespace t2s
