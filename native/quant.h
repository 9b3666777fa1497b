// Quantized frozen weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): which types the
// engine trains on, and the backward pass's Wᵀ made per layer from the quantized weight
// (dequantized and transposed in the graph, freed by the allocator right after its product).
#pragma once

#include "graph.h"

#include <string>

namespace t2s {

// True for the quantized types a frozen matrix may have.
bool quant_type_supported(ggml_type type);

// "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K": for error messages.
const char * quant_supported_list();

// Wᵀ [n_out, n_in] of a quantized weight w [n_in, n_out] (or a view of whole rows of one), of
// type e.quant_wt_type. On the CPU one custom op dequantizes and transposes in 32 x 256 tiles;
// elsewhere a CPY to F32 and a transposed CONT, which the backend check vets.
ggml_tensor * quant_weight_t(graph_ctx & g, ggml_tensor * w);

// The weight a forward product multiplies by: w itself, or (exact mode) w dequantized to F32 in
// the graph, freed after its product.
ggml_tensor * quant_weight_fwd(graph_ctx & g, ggml_tensor * w);

// The custom op itself: dst [n_out, n_in] (F32 or BF16) = dequantize(src[0])ᵀ.
void dequant_transpose_op(ggml_tensor * dst, int ith, int nth, void * userdata);

}  // namespace t2s
