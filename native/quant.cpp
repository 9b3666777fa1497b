// Quantized frozen weights: the supported types and the in-graph Wᵀ for dX = Wᵀ·dY.
//
// Forward products use ggml's quantized mul_mat as they are (on the CPU it quantizes the
// activations to the type's vec_dot type, Q8_0 / Q8_1 / Q8_K, before the dot products; Q8_0
// weights on CPUs with AVX512-VNNI go through our own GEMM of the same numerics, q8_gemm.h). The
// backward never multiplies by the quantized weight: each Wᵀ is dequantized and transposed just
// before its product (BF16 by default, as lean mode's BF16 copies; F32 on request for exact
// gradient checks) and freed right after it, so peak memory holds the quantized weights plus one
// layer's temporaries.
#include "quant.h"

#include "kernels.h"

#include "ggml-cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__SSE2__)
#    include <emmintrin.h>
#    include <xmmintrin.h>
#endif
#if defined(__x86_64__)
#    include <immintrin.h>
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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#    define T2S_QUANT_AVX512 1
// The same with AVX-512F (16 at a time), compiled for it alone and called where CPUID has it
__attribute__((target("avx512f"))) void row_fp32_to_bf16_avx512(const float * x, uint16_t * y, int64_t n) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff), quiet = _mm512_set1_epi32(64);
    int64_t       i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512    v   = _mm512_loadu_ps(x + i);
        const __m512i   u   = _mm512_castps_si512(v);
        const __m512i   hi  = _mm512_srli_epi32(u, 16);
        const __m512i   rnd = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))), 16);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        _mm256_storeu_si256((__m256i *) (y + i), _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rnd, nan, _mm512_or_si512(hi, quiet))));
    }
    for (; i < n; i++) y[i] = fp32_to_bf16_bits(x[i]);
}
#endif

// n floats -> n bf16 (n a multiple of 8 on the SSE2 path)
void row_fp32_to_bf16(const float * x, uint16_t * y, int64_t n) {
#if defined(T2S_QUANT_AVX512)
    static const bool avx512 = cpu_features_get().avx512f;
    if (avx512) return row_fp32_to_bf16_avx512(x, y, n);
#endif
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

// ggml's CPU_REPACK layouts that this file reads back (ggml-cpu/repack.cpp, make_block_*x8):
// rows in groups of 8, each group's blocks stored column block by column block, block x of the 8
// rows interleaved into one block_*x8 (the quants 8 bytes at a time). Plain blocks as in
// ggml-common.h; the static_asserts in quant_repack_layout_of tie them to ggml's sizes.
struct blk_q4_0 {
    uint16_t d;
    uint8_t  qs[16];
};
struct blk_q4_0x8 {
    uint16_t d[8];
    uint8_t  qs[128];
};
struct blk_q4_K {
    uint16_t d, dmin;
    uint8_t  scales[12];
    uint8_t  qs[128];
};
struct blk_q4_Kx8 {
    uint16_t d[8], dmin[8];
    uint8_t  scales[96];
    uint8_t  qs[1024];
};

// inverse of make_block_q4_0x8(in, 8): 8 plain blocks, out[i] at out + i·stride bytes
void unpack_q4_0x8(const blk_q4_0x8 & b, char * out, size_t stride) {
    for (int i = 0; i < 8; i++) {
        blk_q4_0 * o = (blk_q4_0 *) (out + i * stride);
        o->d         = b.d[i];
        for (int k = 0; k < 2; k++) {
            uint64_t q;
            std::memcpy(&q, b.qs + (k * 8 + i) * 8, 8);
            q ^= 0x8888888888888888ULL;  // make_block_q4_0x8 flips each nibble's sign bit
            std::memcpy(o->qs + k * 8, &q, 8);
        }
    }
}

// inverse of make_block_q4_Kx8(in, 8): the quants 8 bytes at a time, and the 6-bit scales and
// mins of the 8 sub-blocks back into Q4_K's 12-byte packing (get_scale_min_k4's layout)
void unpack_q4_Kx8(const blk_q4_Kx8 & b, char * out, size_t stride) {
    for (int i = 0; i < 8; i++) {
        blk_q4_K * o = (blk_q4_K *) (out + i * stride);
        o->d         = b.d[i];
        o->dmin      = b.dmin[i];
        for (int k = 0; k < 16; k++) std::memcpy(o->qs + k * 8, b.qs + (k * 8 + i) * 8, 8);
        uint8_t sc[8], mn[8];  // row i's scale and min of sub-block sb
        for (int sb = 0; sb < 8; sb++) {
            const uint8_t * B = b.scales + sb * 12;
            if (i < 4) {
                sc[sb] = B[i] & 63;
                mn[sb] = B[4 + i] & 63;
            } else {
                sc[sb] = (uint8_t) ((B[8 + i - 4] & 15) | ((B[i - 4] >> 6) << 4));
                mn[sb] = (uint8_t) ((B[8 + i - 4] >> 4) | ((B[4 + i - 4] >> 6) << 4));
            }
        }
        for (int j = 0; j < 4; j++) {
            o->scales[j]     = (uint8_t) (sc[j] | ((sc[j + 4] >> 4) << 6));
            o->scales[j + 4] = (uint8_t) (mn[j] | ((mn[j + 4] >> 4) << 6));
            o->scales[j + 8] = (uint8_t) ((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
    }
}

// Plain blocks of rows [o0, o0 + nr) (o0 and nr multiples of 8) and column blocks [x0, x0 + nx)
// of a repacked weight whose first row is at data (row size row_bytes), into out (row stride
// nx·type size).
void unpack_rows(quant_repack layout, const char * data, size_t row_bytes, int64_t o0, int64_t nr, int64_t x0, int64_t nx, char * out) {
    const size_t tsize = layout == quant_repack::q4_0_8x8 ? sizeof(blk_q4_0) : sizeof(blk_q4_K);
    for (int64_t gr = o0 / 8; gr < (o0 + nr) / 8; gr++) {
        const char * group = data + gr * 8 * row_bytes;  // the group's nb blocks_x8, 8 · row_bytes in all
        char *       dst   = out + (gr * 8 - o0) * nx * tsize;
        for (int64_t x = x0; x < x0 + nx; x++) {
            char * o = dst + (x - x0) * tsize;
            if (layout == quant_repack::q4_0_8x8)
                unpack_q4_0x8(((const blk_q4_0x8 *) group)[x], o, nx * tsize);
            else
                unpack_q4_Kx8(((const blk_q4_Kx8 *) group)[x], o, nx * tsize);
        }
    }
}

}  // namespace

void dequant_transpose_op(ggml_tensor * dst, int ith, int nth, void * userdata) {
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
    const quant_repack    layout   = (quant_repack) (intptr_t) userdata;
    GGML_ASSERT(TILE_C % blck == 0 && n_in % blck == 0);
    GGML_ASSERT(layout == quant_repack::none || (n_out % 8 == 0 && quant_repack_layout_of(src->type) == layout));
    std::vector<float>    ftile((size_t) (TILE_R * TILE_C));             // [TILE_C, TILE_R] dequantized (32 KB)
    std::vector<uint16_t> btile(bf16 ? (size_t) (TILE_R * TILE_C) : 0);  // [TILE_C, TILE_R] rounded to bf16
    std::vector<char> plain(layout != quant_repack::none ? (size_t) TILE_R * (TILE_C / blck) * tsize : 0);  // [TILE_C/blck, TILE_R] blocks
    const int64_t     n_rb    = (n_out + TILE_R - 1) / TILE_R;
    const int64_t     n_cb    = (n_in + TILE_C - 1) / TILE_C;
    const int64_t     n_tiles = n_rb * n_cb;
    const int64_t     t_end   = n_tiles * (ith + 1) / nth;
    for (int64_t t = n_tiles * ith / nth; t < t_end; t++) {
        const int64_t o0 = (t / n_cb) * TILE_R, c0 = (t % n_cb) * TILE_C;
        const int64_t nr = std::min(TILE_R, n_out - o0), nc = std::min(TILE_C, n_in - c0);
        const char *  s  = (const char *) src->data + o0 * src->nb[1] + (c0 / blck) * tsize;
        size_t        ld = src->nb[1];
        if (layout != quant_repack::none) {  // the tile's rows back in plain blocks first
            unpack_rows(layout, (const char *) src->data, src->nb[1], o0, nr, c0 / blck, nc / blck, plain.data());
            s  = plain.data();
            ld = (size_t) (nc / blck) * tsize;
        }
        for (int64_t r = 0; r < nr; r++) to_float(s + r * ld, ftile.data() + r * TILE_C, nc);
        if (bf16) {
            for (int64_t r = 0; r < nr; r++) row_fp32_to_bf16(ftile.data() + r * TILE_C, btile.data() + r * TILE_C, nc);
            tile_transpose_u16(btile.data(), nr, nc, (uint16_t *) dst->data + c0 * n_out + o0, n_out);
        } else {
            tile_transpose_f32(ftile.data(), nr, nc, (float *) dst->data + c0 * n_out + o0, n_out);
        }
    }
}

quant_repack quant_repack_layout_of(ggml_type type) {
    static_assert(sizeof(blk_q4_0) == 18 && sizeof(blk_q4_0x8) == 8 * sizeof(blk_q4_0), "Q4_0 block layout");
    static_assert(sizeof(blk_q4_K) == 144 && sizeof(blk_q4_Kx8) == 8 * sizeof(blk_q4_K), "Q4_K block layout");
    // ggml_repack_get_optimal_repack_type's first choice for these types on x86 with AVX2
    if (!ggml_cpu_has_avx2()) return quant_repack::none;
    if (type == GGML_TYPE_Q4_0) return quant_repack::q4_0_8x8;
    if (type == GGML_TYPE_Q4_K) return quant_repack::q4_K_8x8;
    return quant_repack::none;
}

namespace {

ggml_backend_buffer_type_t repack_buft_of(ggml_backend_t cpu) {
    ggml_backend_dev_t dev = ggml_backend_get_device(cpu);
    auto               get = (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev),
                                                                                                    "ggml_backend_dev_get_extra_bufts");
    for (ggml_backend_buffer_type_t * b = get ? get(dev) : nullptr; b && *b; b++) {
        if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) return *b;
    }
    return nullptr;
}

}  // namespace

ggml_backend_buffer_type_t quant_repack_buft(const engine & e) { return e.backend_cpu ? repack_buft_of(e.backend_cpu) : nullptr; }

quant_repack quant_repack_for(const engine & e, const ggml_tensor * w) {
    const char * env = std::getenv("TEXT2SQL_QUANT_REPACK");
    if (e.opts.quant_exact || !e.backend_cpu || (env && std::strcmp(env, "0") == 0)) return quant_repack::none;
    if (ggml_n_dims(w) != 2 || w->ne[1] % 8 != 0 || w->ne[0] % 8 != 0) return quant_repack::none;
    return quant_repack_buft(e) ? quant_repack_layout_of(w->type) : quant_repack::none;
}

quant_repack quant_repack_of(const engine & e, const ggml_tensor * t) {
    while (t && t->view_src) t = t->view_src;
    return t && e.buf_wr && t->buffer == e.buf_wr ? quant_repack_layout_of(t->type) : quant_repack::none;
}

namespace {

// w [n_in, n_out] dequantized to F32 in the graph: GET_ROWS of every row, which every backend has
// for the supported types (CUDA and Metal CPY a quantized tensor to F32 only for Q8_0 and the
// Q4_0/Q4_1/Q5_0/Q5_1 family; test/helpers/backend-support.ts), to_float on the CPU
ggml_tensor * dequant_f32(graph_ctx & g, ggml_tensor * w) {
    GGML_ASSERT(g.e.quant_rows && g.e.quant_rows->ne[0] >= w->ne[1]);
    ggml_tensor * rows = ggml_view_1d(g.ctx, g.e.quant_rows, w->ne[1], 0);  // [n_out] i32
    return ggml_get_rows(g.ctx, w, rows);                                   // [n_in, n_out] f32
}

}  // namespace

std::string quant_mul_mat_kernel(const engine & e, const ggml_tensor * w) {
    const std::string act = std::string(", activations to ") + ggml_type_name(ggml_get_type_traits_cpu(w->type)->vec_dot_type);
    switch (quant_repack_of(e, w)) {
        case quant_repack::q4_0_8x8: return "ggml repacked GEMM q4_0 8x8 (AVX2)" + act;
        case quant_repack::q4_K_8x8: return "ggml repacked GEMM q4_K 8x8 (AVX2)" + act;
        default: break;
    }
    // llamafile_sgemm (sgemm.cpp ~4041-4135): tinyBLAS_Q0_AVX for these types, with AVX or AVX2
    const bool q0 = w->type == GGML_TYPE_Q8_0 || w->type == GGML_TYPE_Q4_0 || w->type == GGML_TYPE_Q5_0;
    if (q0 && (ggml_cpu_has_avx2() || ggml_cpu_has_avx())) {
        return std::string("tinyBLAS ") + ggml_type_name(w->type) + " (" + (ggml_cpu_has_avx512_vnni() ? "AVX512-VNNI 256-bit" : "AVX2") +
               ")" + act;
    }
    return std::string("ggml vec_dot ") + ggml_type_name(w->type) + act;
}

ggml_tensor * quant_weight_fwd(graph_ctx & g, ggml_tensor * w) {
    if (!ggml_is_quantized(w->type) || !g.e.opts.quant_exact) return w;  // [n_in, n_out]
    GGML_ASSERT(quant_repack_of(g.e, w) == quant_repack::none);          // exact mode loads plain weights
    return dequant_f32(g, w);                                            // [n_in, n_out] f32
}

ggml_tensor * quant_weight_t(graph_ctx & g, ggml_tensor * w) {
    const int64_t      n_in = w->ne[0], n_out = w->ne[1];
    const quant_repack layout = quant_repack_of(g.e, w);
    if (g.caps.custom_transpose) {
        ggml_tensor * args[1] = {w};
        return ggml_custom_4d(g.ctx, g.e.quant_wt_type, n_out, n_in, 1, 1, args, 1, dequant_transpose_op, GGML_N_TASKS_MAX,
                              (void *) (intptr_t) layout);  // [n_out, n_in]
    }
    // repacked weights exist on the CPU backend only, which takes the custom op: this branch meets
    // one only in engine_graph_ops's listing of another backend's graph, which is never computed
    ggml_tensor * wf = dequant_f32(g, w);          // [n_in, n_out] f32
    ggml_tensor * wt = ggml_transpose(g.ctx, wf);  // [n_out, n_in] view
    return g.e.quant_wt_type == GGML_TYPE_F32 ? ggml_cont(g.ctx, wt) :
                                                ggml_cpy(g.ctx, wt, ggml_new_tensor_2d(g.ctx, g.e.quant_wt_type, n_out, n_in));
}

bool quant_transpose_test(ggml_type              type,
                          const float *          x,
                          int64_t                n_in,
                          int64_t                n_out,
                          int64_t                row0,
                          bool                   repack,
                          bool                   bf16,
                          int                    threads,
                          std::vector<uint8_t> & wt,
                          std::vector<float> &   ref) {
    if (!quant_type_supported(type))
        throw std::runtime_error(std::string("quantTransposeTest: type must be one of ") + quant_supported_list());
    if (n_in <= 0 || n_out <= 0 || n_in % ggml_blck_size(type) != 0 || row0 < 0 || row0 % 8 != 0 || row0 >= n_out)
        throw std::runtime_error("quantTransposeTest: n_in must be a multiple of the block size, row0 a multiple of 8 below n_out");
    ggml_backend_t cpu = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(cpu, threads);
    ggml_backend_buffer_type_t buft   = repack && n_out % 8 == 0 ? repack_buft_of(cpu) : nullptr;
    const quant_repack         layout = buft ? quant_repack_layout_of(type) : quant_repack::none;
    if (layout == quant_repack::none) buft = ggml_backend_get_default_buffer_type(cpu);
    ggml_init_params      wp   = {ggml_tensor_overhead() * 2, nullptr, true};
    ggml_context *        wctx = ggml_init(wp);
    ggml_tensor *         w    = ggml_new_tensor_2d(wctx, type, n_in, n_out);  // [n_in, n_out]
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, buft);
    std::vector<uint8_t>  q(ggml_nbytes(w));
    ggml_quantize_chunk(type, x, q.data(), 0, n_out, n_in, nullptr);
    ggml_backend_tensor_set(w, q.data(), 0, q.size());
    ref.resize((size_t) (n_in * n_out));
    for (int64_t r = 0; r < n_out; r++) ggml_get_type_traits(type)->to_float(q.data() + r * w->nb[1], ref.data() + r * n_in, n_in);

    ggml_init_params gp      = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ggml_context *   gctx    = ggml_init(gp);
    ggml_tensor *    wv      = ggml_view_2d(gctx, w, n_in, n_out - row0, w->nb[1], row0 * w->nb[1]);  // [n_in, n_out - row0]
    ggml_tensor *    args[1] = {wv};
    ggml_tensor * dst = ggml_custom_4d(gctx, bf16 ? GGML_TYPE_BF16 : GGML_TYPE_F32, n_out - row0, n_in, 1, 1, args, 1, dequant_transpose_op,
                                       GGML_N_TASKS_MAX, (void *) (intptr_t) layout);  // [n_out - row0, n_in]
    ggml_cgraph * gf  = ggml_new_graph(gctx);
    ggml_build_forward_expand(gf, dst);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_get_default_buffer_type(cpu));
    const bool     ok = ggml_gallocr_alloc_graph(ga, gf) && ggml_backend_graph_compute(cpu, gf) == GGML_STATUS_SUCCESS;
    if (ok) {
        wt.resize(ggml_nbytes(dst));
        ggml_backend_tensor_get(dst, wt.data(), 0, wt.size());
    }
    ggml_gallocr_free(ga);
    ggml_free(gctx);
    ggml_backend_buffer_free(wbuf);
    ggml_free(wctx);
    ggml_backend_free(cpu);
    if (!ok) throw std::runtime_error("quantTransposeTest: the graph could not be computed");
    return layout != quant_repack::none;
}

}  // namespace t2s
