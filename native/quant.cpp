// Quantized frozen weights: the supported types and the in-graph Wᵀ for dX = Wᵀ·dY.
//
// Forward products use ggml's quantized mul_mat as they are (on the CPU it quantizes the
// activations to the type's vec_dot type, Q8_0 / Q8_1 / Q8_K, before the dot products). The
// backward never multiplies by the quantized weight: each Wᵀ is dequantized and transposed just
// before its product (BF16 by default, as lean mode's BF16 copies; F32 on request for exact
// gradient checks) and freed right after it, so peak memory holds the quantized weights plus one
// layer's temporaries.
#include "quant.h"

#include "kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#    include <emmintrin.h>
#    include <xmmintrin.h>
#endif

namespace t2s {

bool quant_type_supported(ggml_type type) {
    switch (type) {
        case GGML_TYPE_Q8_0:
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_0:
        case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
        case GGML_TYPE_Q6_K: return true;
        default: return false;
    }
}

const char * quant_supported_list() { return "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"; }

namespace {

// Tile of the dequantizing transpose: R rows of the weight (R contiguous values of each output
// row: 64 bytes in BF16) by C columns (one K-quant super-block, 8 blocks of the 32-wide types),
// small enough for the dequantized floats (32 KB) to stay in L1/L2.
constexpr int64_t TILE_R = 32;
constexpr int64_t TILE_C = 256;

// ggml's fp32 -> bf16 (ggml_compute_fp32_to_bf16: round to nearest even, NaN kept quiet).
inline uint16_t fp32_to_bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t) ((u >> 16) | 64);
    return (uint16_t) ((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

#if defined(__SSE2__)
// 4 floats -> 4 bf16 (as 4 int32 holding the signed 16-bit result), bit-identical to fp32_to_bf16_bits
inline __m128i fp32x4_to_bf16_epi32(__m128 x) {
    const __m128i u    = _mm_castps_si128(x);
    const __m128i lsb  = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
    const __m128i rnd  = _mm_srai_epi32(_mm_add_epi32(u, _mm_add_epi32(lsb, _mm_set1_epi32(0x7fff))), 16);
    const __m128i qnan = _mm_srai_epi32(_mm_or_si128(u, _mm_set1_epi32(64 << 16)), 16);
    const __m128i nan  = _mm_castps_si128(_mm_cmpunord_ps(x, x));
    return _mm_or_si128(_mm_and_si128(nan, qnan), _mm_andnot_si128(nan, rnd));
}
#endif

// n floats -> n bf16 (n a multiple of 8 on the SSE2 path)
void row_fp32_to_bf16(const float * x, uint16_t * y, int64_t n) {
    int64_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= n; i += 8) {
        const __m128i lo = fp32x4_to_bf16_epi32(_mm_loadu_ps(x + i));
        const __m128i hi = fp32x4_to_bf16_epi32(_mm_loadu_ps(x + i + 4));
        _mm_storeu_si128((__m128i *) (y + i), _mm_packs_epi32(lo, hi));
    }
#endif
    for (; i < n; i++) y[i] = fp32_to_bf16_bits(x[i]);
}

// tile [nr, nc] (row stride TILE_C) -> out(c, r) = tile(r, c), out row stride ld (elements)
template <typename T> void tile_transpose_scalar(const T * tile, int64_t nr, int64_t nc, T * out, int64_t ld) {
    for (int64_t c = 0; c < nc; c++) {
        for (int64_t r = 0; r < nr; r++) out[c * ld + r] = tile[r * TILE_C + c];
    }
}

void tile_transpose_u16(const uint16_t * tile, int64_t nr, int64_t nc, uint16_t * out, int64_t ld) {
#if defined(__SSE2__)
    if (nr % 8 == 0 && nc % 8 == 0) {
        for (int64_t c = 0; c < nc; c += 8) {
            for (int64_t r = 0; r < nr; r += 8) {
                transpose_8x8_u16((const char *) (tile + r * TILE_C + c), TILE_C * sizeof(uint16_t), out + c * ld + r, ld);
            }
        }
        return;
    }
#endif
    tile_transpose_scalar(tile, nr, nc, out, ld);
}

void tile_transpose_f32(const float * tile, int64_t nr, int64_t nc, float * out, int64_t ld) {
#if defined(__SSE2__)
    if (nr % 4 == 0 && nc % 4 == 0) {
        for (int64_t c = 0; c < nc; c += 4) {
            for (int64_t r = 0; r < nr; r += 4) {
                __m128 a0 = _mm_loadu_ps(tile + (r + 0) * TILE_C + c);
                __m128 a1 = _mm_loadu_ps(tile + (r + 1) * TILE_C + c);
                __m128 a2 = _mm_loadu_ps(tile + (r + 2) * TILE_C + c);
                __m128 a3 = _mm_loadu_ps(tile + (r + 3) * TILE_C + c);
                _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
                _mm_storeu_ps(out + (c + 0) * ld + r, a0);
                _mm_storeu_ps(out + (c + 1) * ld + r, a1);
                _mm_storeu_ps(out + (c + 2) * ld + r, a2);
                _mm_storeu_ps(out + (c + 3) * ld + r, a3);
            }
        }
        return;
    }
#endif
    tile_transpose_scalar(tile, nr, nc, out, ld);
}

}  // namespace

void dequant_transpose_op(ggml_tensor * dst, int ith, int nth, void *) {
    // src [n_in, n_out] quantized rows (row stride nb[1]); dst [n_out, n_in] contiguous.
    // Tiles of TILE_R rows x TILE_C columns, numbered row band by row band, split evenly over the
    // threads; each is dequantized into an L1-resident float tile, then transposed (and rounded).
    const ggml_tensor *   src      = dst->src[0];
    const int64_t         n_in     = src->ne[0];
    const int64_t         n_out    = src->ne[1];
    const ggml_to_float_t to_float = ggml_get_type_traits(src->type)->to_float;
    const int64_t         blck     = ggml_blck_size(src->type);
    const size_t          tsize    = ggml_type_size(src->type);
    const bool            bf16     = dst->type == GGML_TYPE_BF16;
    GGML_ASSERT(TILE_C % blck == 0 && n_in % blck == 0);
    std::vector<float>    ftile((size_t) (TILE_R * TILE_C));             // [TILE_C, TILE_R] dequantized (32 KB)
    std::vector<uint16_t> btile(bf16 ? (size_t) (TILE_R * TILE_C) : 0);  // [TILE_C, TILE_R] rounded to bf16
    const int64_t         n_rb    = (n_out + TILE_R - 1) / TILE_R;
    const int64_t         n_cb    = (n_in + TILE_C - 1) / TILE_C;
    const int64_t         n_tiles = n_rb * n_cb;
    const int64_t         t_end   = n_tiles * (ith + 1) / nth;
    for (int64_t t = n_tiles * ith / nth; t < t_end; t++) {
        const int64_t o0 = (t / n_cb) * TILE_R, c0 = (t % n_cb) * TILE_C;
        const int64_t nr = std::min(TILE_R, n_out - o0), nc = std::min(TILE_C, n_in - c0);
        const char *  s = (const char *) src->data + o0 * src->nb[1] + (c0 / blck) * tsize;
        for (int64_t r = 0; r < nr; r++) to_float(s + r * src->nb[1], ftile.data() + r * TILE_C, nc);
        if (bf16) {
            for (int64_t r = 0; r < nr; r++) row_fp32_to_bf16(ftile.data() + r * TILE_C, btile.data() + r * TILE_C, nc);
            tile_transpose_u16(btile.data(), nr, nc, (uint16_t *) dst->data + c0 * n_out + o0, n_out);
        } else {
            tile_transpose_f32(ftile.data(), nr, nc, (float *) dst->data + c0 * n_out + o0, n_out);
        }
    }
}

ggml_tensor * quant_weight_fwd(graph_ctx & g, ggml_tensor * w) {
    if (!ggml_is_quantized(w->type) || !g.e.opts.quant_exact) return w;                       // [n_in, n_out]
    return ggml_cpy(g.ctx, w, ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, w->ne[0], w->ne[1]));  // [n_in, n_out] f32
}

ggml_tensor * quant_weight_t(graph_ctx & g, ggml_tensor * w) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    if (g.caps.custom_transpose) {
        ggml_tensor * args[1] = {w};
        return ggml_custom_4d(g.ctx, g.e.quant_wt_type, n_out, n_in, 1, 1, args, 1, dequant_transpose_op, GGML_N_TASKS_MAX,
                              nullptr);                                                            // [n_out, n_in]
    }
    ggml_tensor * wf = ggml_cpy(g.ctx, w, ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, n_in, n_out));  // [n_in, n_out] f32
    ggml_tensor * wt = ggml_transpose(g.ctx, wf);                                                  // [n_out, n_in] view
    return g.e.quant_wt_type == GGML_TYPE_F32 ? ggml_cont(g.ctx, wt) :
                                                ggml_cpy(g.ctx, wt, ggml_new_tensor_2d(g.ctx, g.e.quant_wt_type, n_out, n_in));
}

}  // namespace t2s
