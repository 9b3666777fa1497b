// CPU kernels of the text2sql engine: the tiled weight transpose, used at load time for the
// transposed weight copies (model.cpp) and in lean mode's graph as a ggml custom op (graph.cpp).
#pragma once

#include "ggml.h"

#include <cstddef>
#include <cstdint>

namespace t2s {

// out [n0, n1] (contiguous) = the strided view a, where a(i0, i1) sits at src + i0·nb0 + i1·nb1.
// For the transpose of a weight [n_in, n_out]: n0 = n_out, n1 = n_in, nb0 = the weight's row
// stride, nb1 = the element size. Thread ith of nth takes every nth band of 64 rows of out.
// Returns false when the element size is not 2 or 4 bytes.
bool transpose_copy(const char * src, size_t nb0, size_t nb1, void * out, int64_t n0, int64_t n1,
                    size_t esz, int ith, int nth);

// The same as a ggml_map_custom1 op: dst = contiguous copy of the transposed view a.
void transpose_op(ggml_tensor * dst, const ggml_tensor * a, int ith, int nth, void * userdata);

} // namespace t2s
