// The Q8_0 forward product on AVX512-VNNI (q8_gemm.h).
//
// VPDPBUSD multiplies unsigned by signed bytes, four per int32 lane, so the weight is repacked
// per call, one panel of 16 rows at a time, with its bytes offset to unsigned (w + 128) and laid
// out [block][4-byte group g][row r][4 bytes]: one zmm holds group g of 16 rows, and the activation's
// 4 bytes of that group are broadcast to every lane. Per block and token the int32 lanes start at
// -128·Σx (which cancels the offset exactly: Σ(w + 128)·x = Σw·x + 128·Σx), take 8 VPDPBUSD, and
// the exact block dots are scaled by d_w·d_x into float accumulators (as ggml does per block).
// Only the kernel functions are compiled for AVX-512 (target pragma); they run only where CPUID
// (and the OS's zmm state) has AVX512-F/BW/VNNI.
#include "q8_gemm.h"

#include "ggml-cpu.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9))
#    define T2S_Q8_VNNI 1
#    include <immintrin.h>
#endif

namespace t2s {

namespace {

constexpr int64_t QK        = 32;            // values per Q8_0 block
constexpr int64_t Q8_BYTES  = 34;            // ggml's block_q8_0: fp16 d, 32 int8
constexpr int64_t PANEL     = 16;            // weight rows per panel (one zmm of int32 lanes)
constexpr int64_t PBLOCK    = 8 * 64 + 64;   // packed bytes of one block of a panel: 8 groups x 16 rows x 4, then 16 float d_w
constexpr int64_t GROUP     = 4;             // panels packed together (about 100-400 KB: in L2), each against one token tile
constexpr int     TOKENS    = 8;             // tokens per tile (8 int32 + 8 float accumulators)
const char *      PACK_NAME = "q8.pack_x";   // the activations' quantization
const char *      MM_NAME   = "q8.mul_mat";  // the product

// One row of the quantized activations (dst of q8.pack_x, row stride rb): K int8, then nb float
// d_x, then nb int32 -128·Σ(block's int8)
struct xrow {
    const int8_t *  q;
    const float *   d;
    const int32_t * c;
};

inline xrow xrow_at(const uint8_t * base, int64_t K) {
    const int64_t nb = K / QK;
    return {(const int8_t *) base, (const float *) (base + K), (const int32_t *) (base + K + nb * 4)};
}

// The work counter of q8.mul_mat: an int32 in the row after the T token rows of q8.pack_x's
// output, set to 0 there (ggml runs the ops one after the other) and taken from by the product's
// threads, as ggml's own mul_mat hands out chunks: a thread that another process slows down
// takes fewer of them.
inline int32_t * work_counter(const ggml_tensor * xq, int64_t T) { return (int32_t *) ((char *) xq->data + T * xq->nb[1]); }

// x [K, T] f32 -> per token: ggml's quantize_row_q8_0 (the function ggml's mul_mat runs on its
// activations), unpacked to the xrow layout. Thread ith of nth takes every nth token.
void pack_x_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor *               x = dst->src[0];
    const int64_t                     K = x->ne[0], T = x->ne[1], nb = K / QK;
    const auto                        qf = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0)->from_float;
    thread_local std::vector<uint8_t> blocks;
    blocks.resize((size_t) (nb * Q8_BYTES));
    if (ith == 0) *work_counter(dst, T) = 0;
    for (int64_t t = ith; t < T; t += nth) {
        qf((const float *) ((const char *) x->data + t * x->nb[1]), blocks.data(), K);
        uint8_t * row = (uint8_t *) dst->data + t * dst->nb[1];
        int8_t *  q   = (int8_t *) row;
        float *   d   = (float *) (row + K);
        int32_t * c   = (int32_t *) (row + K + nb * 4);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t * blk = blocks.data() + b * Q8_BYTES;
            ggml_fp16_t     h;
            std::memcpy(&h, blk, 2);
            d[b] = ggml_fp16_to_fp32(h);
            std::memcpy(q + b * QK, blk + 2, QK);
            int32_t s = 0;
            for (int64_t i = 0; i < QK; i++) s += q[b * QK + i];
            c[b] = -128 * s;
        }
    }
}

// Rows [r0, r0 + 16) of the Q8_0 weight w into out (nb · PBLOCK bytes).
[[maybe_unused]] void pack_panel(const ggml_tensor * w, int64_t r0, uint8_t * out) {
    const int64_t nb = w->ne[0] / QK;
    for (int64_t r = 0; r < PANEL; r++) {
        const uint8_t * row = (const uint8_t *) w->data + (r0 + r) * w->nb[1];
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t * blk = row + b * Q8_BYTES;
            uint8_t *       o   = out + b * PBLOCK;
            ggml_fp16_t     h;
            std::memcpy(&h, blk, 2);
            const float d = ggml_fp16_to_fp32(h);
            std::memcpy(o + 8 * 64 + r * 4, &d, 4);
            for (int64_t g = 0; g < 8; g++) {
                uint32_t v;
                std::memcpy(&v, blk + 2 + g * 4, 4);
                v ^= 0x80808080u;  // int8 -> uint8 + 128
                std::memcpy(o + g * 64 + r * 4, &v, 4);
            }
        }
    }
}

}  // namespace

#if defined(T2S_Q8_VNNI)

#    define T2S_TARGET "avx512f,avx512bw,avx512vnni"
#    include "target_push.h"

namespace {

// y(r, t) for the 16 rows of one packed panel and NT tokens starting at xrow base x0 (row
// stride rb): y + t·ldy holds token t's 16 outputs.
template <int NT> void q8_tile(const uint8_t * wp, int64_t nb, const uint8_t * x0, size_t rb, int64_t K, float * y, int64_t ldy) {
    xrow        xr[NT];
    __m512      acc[NT];
#    pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        xr[t]  = xrow_at(x0 + t * rb, K);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t * blk = wp + b * PBLOCK;
        __m512i         s[NT];
#    pragma GCC unroll 8
        for (int t = 0; t < NT; t++) s[t] = _mm512_set1_epi32(xr[t].c[b]);
#    pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i w = _mm512_loadu_si512((const void *) (blk + g * 64));
#    pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                int32_t v;
                std::memcpy(&v, xr[t].q + b * QK + g * 4, 4);
                s[t] = _mm512_dpbusd_epi32(s[t], w, _mm512_set1_epi32(v));
            }
        }
        const __m512 dw = _mm512_loadu_ps((const float *) (blk + 8 * 64));
#    pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dw, _mm512_set1_ps(xr[t].d[b])), acc[t]);
        }
    }
#    pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

void q8_tile_n(int nt, const uint8_t * wp, int64_t nb, const uint8_t * x0, size_t rb, int64_t K, float * y, int64_t ldy) {
    switch (nt) {
        case 8: return q8_tile<8>(wp, nb, x0, rb, K, y, ldy);
        case 7: return q8_tile<7>(wp, nb, x0, rb, K, y, ldy);
        case 6: return q8_tile<6>(wp, nb, x0, rb, K, y, ldy);
        case 5: return q8_tile<5>(wp, nb, x0, rb, K, y, ldy);
        case 4: return q8_tile<4>(wp, nb, x0, rb, K, y, ldy);
        case 3: return q8_tile<3>(wp, nb, x0, rb, K, y, ldy);
        case 2: return q8_tile<2>(wp, nb, x0, rb, K, y, ldy);
        default: return q8_tile<1>(wp, nb, x0, rb, K, y, ldy);
    }
}

}  // namespace

#    include "target_pop.h"

namespace {

// dst [N, T] = W·x: src[0] the weight [K, N] (Q8_0), src[1] q8.pack_x's rows. The threads take
// chunks of up to GROUP panels from the work counter (at least 8 chunks per thread where N
// allows), each chunk against every token tile.
void mul_mat_op(ggml_tensor * dst, int, int nth, void *) {
    const ggml_tensor *               w  = dst->src[0];
    const ggml_tensor *               xq = dst->src[1];
    const int64_t                     K = w->ne[0], N = w->ne[1], T = dst->ne[1], nb = K / QK, np = N / PANEL;
    const int64_t                     chunk = std::max<int64_t>(1, std::min<int64_t>(GROUP, np / (8 * (int64_t) nth)));
    int32_t *                         next  = work_counter(xq, T);
    thread_local std::vector<uint8_t> packed;
    packed.resize((size_t) (GROUP * nb * PBLOCK));
    for (;;) {
        const int64_t g0 = (int64_t) __atomic_fetch_add(next, 1, __ATOMIC_RELAXED) * chunk;
        if (g0 >= np) break;
        const int64_t ng = std::min(chunk, np - g0);
        for (int64_t i = 0; i < ng; i++) pack_panel(w, (g0 + i) * PANEL, packed.data() + i * nb * PBLOCK);
        for (int64_t t0 = 0; t0 < T; t0 += TOKENS) {
            const int       nt = (int) std::min<int64_t>(TOKENS, T - t0);
            const uint8_t * x0 = (const uint8_t *) xq->data + t0 * xq->nb[1];
            for (int64_t i = 0; i < ng; i++) {
                float * y = (float *) dst->data + t0 * N + (g0 + i) * PANEL;  // [N, T]: token t0's row, panel's first output
                q8_tile_n(nt, packed.data() + i * nb * PBLOCK, nb, x0, xq->nb[1], K, y, N);
            }
        }
    }
}

}  // namespace

bool q8_gemm_available(std::string & note) {
    note.clear();
    const char * env = std::getenv("TEXT2SQL_Q8_GEMM");
    if (env && std::strcmp(env, "0") == 0) {
        note = "TEXT2SQL_Q8_GEMM=0";
        return false;
    }
    // libgcc's / compiler-rt's CPU model checks the OS's AVX-512 state (XCR0) with the CPUID bits
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vnni")) {
        note = "this CPU lacks AVX512-F/BW/VNNI";
        return false;
    }
    return true;
}

#else

namespace {
void mul_mat_op(ggml_tensor *, int, int, void *) { GGML_ABORT("q8.mul_mat: not built for this CPU"); }
}  // namespace

bool q8_gemm_available(std::string & note) {
    note = "this build is not for x86-64";
    return false;
}

#endif

bool q8_gemm_fits(const ggml_tensor * w, const ggml_tensor * x) {
    return w->type == GGML_TYPE_Q8_0 && x->type == GGML_TYPE_F32 && ggml_n_dims(w) == 2 && w->ne[0] % QK == 0 && w->ne[1] % PANEL == 0 &&
           w->nb[0] == (size_t) Q8_BYTES && x->ne[0] == w->ne[0] && x->ne[2] == 1 && x->ne[3] == 1 && x->nb[0] == sizeof(float);
}

ggml_tensor * q8_mul_mat(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x) {
    GGML_ASSERT(q8_gemm_fits(w, x));
    const int64_t K = w->ne[0], nb = K / QK;
    ggml_tensor * xs[1] = {x};
    ggml_tensor * xq    = ggml_custom_4d(ctx, GGML_TYPE_I8, K + nb * 8, x->ne[1] + 1, 1, 1, xs, 1, pack_x_op, GGML_N_TASKS_MAX,
                                         nullptr);  // [K + 8·nb bytes, T + 1]  x quantized per token, then the work counter
    ggml_set_name(xq, PACK_NAME);
    ggml_tensor * args[2] = {w, xq};
    ggml_tensor * y =
        ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], x->ne[1], 1, 1, args, 2, mul_mat_op, GGML_N_TASKS_MAX, nullptr);  // [n_out, T]
    ggml_set_name(y, MM_NAME);
    return y;
}

bool q8_is_op(const ggml_tensor * t) {
    return t->op == GGML_OP_CUSTOM && (std::strcmp(t->name, PACK_NAME) == 0 || std::strcmp(t->name, MM_NAME) == 0);
}

const char * q8_gemm_name() { return "text2sql Q8_0 GEMM (AVX512-VNNI), activations to q8_0"; }

}  // namespace t2s
