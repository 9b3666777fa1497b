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
bool transpose_copy(const char * src, size_t nb0, size_t nb1, void * out, int64_t n0, int64_t n1, size_t esz, int ith, int nth);

// The same as a ggml_map_custom1 op: dst = contiguous copy of the transposed view a.
void transpose_op(ggml_tensor * dst, const ggml_tensor * a, int ith, int nth, void * userdata);

// AMX tile state for this process. On Linux a process must ask for it once
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) before any thread runs a tile instruction,
// else the first one (tilezero in ggml's quantized AMX kernels, ours or node-llama-cpp's) faults
// with SIGILL. cpu_request_amx_tiles() asks when CPUID reports AMX-TILE; call it before any compute.
enum class amx_tiles { absent, granted, denied };
amx_tiles    cpu_request_amx_tiles();
const char * amx_tiles_name(amx_tiles s);

// The CPU features that decide the matrix kernels, as CPUID reports them (all false off x86-64).
struct cpu_features {
    bool avx2 = false, avx512f = false, avx512_bf16 = false, avx512_fp16 = false;
    bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
};
cpu_features cpu_features_get();

}  // namespace t2s
