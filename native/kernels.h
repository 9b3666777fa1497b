// CPU kernels of the text2sql engine: the tiled weight transpose, used at load time for the
// transposed weight copies (model.cpp) and in lean mode's graph as a ggml custom op (graph.cpp).
#pragma once

#include "ggml.h"

#include <cstddef>
#include <cstdint>

#if defined(__SSE2__)
#    include <emmintrin.h>
#endif

namespace t2s {

#if defined(__SSE2__)
// 8 x 8 block of 16-bit values: 8 rows of src (row_stride bytes apart) in, 8 rows of dst
// (dst_stride elements apart) out, transposed. Used by the weight transpose and quant.cpp.
inline void transpose_8x8_u16(const char * src, size_t row_stride, uint16_t * dst, int64_t dst_stride) {
    __m128i       a0 = _mm_loadu_si128((const __m128i *) (src + 0 * row_stride));
    __m128i       a1 = _mm_loadu_si128((const __m128i *) (src + 1 * row_stride));
    __m128i       a2 = _mm_loadu_si128((const __m128i *) (src + 2 * row_stride));
    __m128i       a3 = _mm_loadu_si128((const __m128i *) (src + 3 * row_stride));
    __m128i       a4 = _mm_loadu_si128((const __m128i *) (src + 4 * row_stride));
    __m128i       a5 = _mm_loadu_si128((const __m128i *) (src + 5 * row_stride));
    __m128i       a6 = _mm_loadu_si128((const __m128i *) (src + 6 * row_stride));
    __m128i       a7 = _mm_loadu_si128((const __m128i *) (src + 7 * row_stride));
    const __m128i t0 = _mm_unpacklo_epi16(a0, a1), t1 = _mm_unpackhi_epi16(a0, a1);
    const __m128i t2 = _mm_unpacklo_epi16(a2, a3), t3 = _mm_unpackhi_epi16(a2, a3);
    const __m128i t4 = _mm_unpacklo_epi16(a4, a5), t5 = _mm_unpackhi_epi16(a4, a5);
    const __m128i t6 = _mm_unpacklo_epi16(a6, a7), t7 = _mm_unpackhi_epi16(a6, a7);
    const __m128i u0 = _mm_unpacklo_epi32(t0, t2), u1 = _mm_unpackhi_epi32(t0, t2);
    const __m128i u2 = _mm_unpacklo_epi32(t1, t3), u3 = _mm_unpackhi_epi32(t1, t3);
    const __m128i u4 = _mm_unpacklo_epi32(t4, t6), u5 = _mm_unpackhi_epi32(t4, t6);
    const __m128i u6 = _mm_unpacklo_epi32(t5, t7), u7 = _mm_unpackhi_epi32(t5, t7);
    _mm_storeu_si128((__m128i *) (dst + 0 * dst_stride), _mm_unpacklo_epi64(u0, u4));
    _mm_storeu_si128((__m128i *) (dst + 1 * dst_stride), _mm_unpackhi_epi64(u0, u4));
    _mm_storeu_si128((__m128i *) (dst + 2 * dst_stride), _mm_unpacklo_epi64(u1, u5));
    _mm_storeu_si128((__m128i *) (dst + 3 * dst_stride), _mm_unpackhi_epi64(u1, u5));
    _mm_storeu_si128((__m128i *) (dst + 4 * dst_stride), _mm_unpacklo_epi64(u2, u6));
    _mm_storeu_si128((__m128i *) (dst + 5 * dst_stride), _mm_unpackhi_epi64(u2, u6));
    _mm_storeu_si128((__m128i *) (dst + 6 * dst_stride), _mm_unpacklo_epi64(u3, u7));
    _mm_storeu_si128((__m128i *) (dst + 7 * dst_stride), _mm_unpackhi_epi64(u3, u7));
}
#endif

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
    bool fma = false, avx2 = false, avx512f = false, avx512_bf16 = false, avx512_fp16 = false;
    bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
};
cpu_features cpu_features_get();

}  // namespace t2s
