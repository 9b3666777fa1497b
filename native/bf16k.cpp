// The AVX512-BF16 products' graph ops (bf16k.h): the activations rounded to BF16 per call, and
// the GEMM node over them and the weight. The kernel itself is bf16k_hw.cpp, the only file
// compiled for AVX-512.
#include "bf16k.h"
#include "kernels.h"

#include <cstring>

namespace t2s {

namespace {

inline int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

// A's row stride: K to a multiple of 32, plus 32 elements (64 bytes) so that rows do not alias in L1
inline int64_t a_stride(int64_t K) { return (K + 31) / 32 * 32 + 32; }

// dst [lda, Tp] bf16 = x [K, T] f32 rounded to BF16, zero padded (A of both products)
void round_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * x = dst->src[0];
    bf16k_round_rows((const float *) x->data, (int64_t) (x->nb[1] / sizeof(float)), x->ne[0], x->ne[1], (uint16_t *) dst->data, dst->ne[0],
                     dst->ne[1], ith, nth);
}

// dst [n_out, T] = W·x: A = x rounded (src[1]), B(k, n) = W's row n (src[0]), packed per K-block
void fwd_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * w = dst->src[0];
    const ggml_tensor * a = dst->src[1];
    bf16k_args          g{};
    g.a      = (const uint16_t *) a->data;
    g.lda    = a->ne[0];
    g.M      = dst->ne[1];
    g.K      = w->ne[0];
    g.N      = w->ne[1];
    g.w      = (const uint16_t *) w->data;
    g.ldw    = (int64_t) (w->nb[1] / 2);
    g.w_cols = true;
    g.c      = (float *) dst->data;
    g.ldc    = (int64_t) (dst->nb[1] / sizeof(float));
    bf16k_run(g, ith, nth);
}

// dst [n_in, T] = Wᵀ·dy: A = dy rounded (src[0]), B = W's panels from pair k0/2 (src[1], fast
// mode) or W's rows k, k + 1 interleaved per K-block (src[1] = W, lean mode)
void bwd_op(ggml_tensor * dst, int ith, int nth, void * ud) {
    const ggml_tensor * a  = dst->src[0];
    const ggml_tensor * b  = dst->src[1];
    const int64_t       k0 = (int64_t) ((intptr_t) ud >> 1);  // userdata: k0·2 + (b holds panels)
    bf16k_args          g{};
    g.a   = (const uint16_t *) a->data;
    g.lda = a->ne[0];
    g.M   = dst->ne[1];
    g.N   = dst->ne[0];
    g.c   = (float *) dst->data;
    g.ldc = (int64_t) (dst->nb[1] / sizeof(float));
    if (!((intptr_t) ud & 1)) {  // W itself [n_in, rows]
        g.K   = b->ne[1];
        g.w   = (const uint16_t *) b->data;
        g.ldw = (int64_t) (b->nb[1] / 2);
    } else {  // panels [Kp·16, Np/16]
        g.K       = dst->src[2]->ne[1];
        g.b       = (const uint16_t *) b->data + k0 * 16;
        g.b_panel = b->ne[0];
    }
    bf16k_run(g, ith, nth);
}

ggml_tensor * round_rows(ggml_context * ctx, ggml_tensor * x) {
    ggml_tensor * xs[1] = {x};
    ggml_tensor * a     = ggml_custom_4d(ctx, GGML_TYPE_BF16, a_stride(x->ne[0]), pad16(x->ne[1]), 1, 1, xs, 1, round_op, GGML_N_TASKS_MAX,
                                         nullptr);  // [lda, Tp]  x rounded to BF16, zero padded
    ggml_set_name(a, "bf16k.round");
    return a;
}

}  // namespace

bool cpu_has_avx512_bf16() { return cpu_features_get().avx512_bf16; }

ggml_tensor * bf16k_round(ggml_context * ctx, ggml_tensor * x) { return round_rows(ctx, x); }

ggml_tensor * bf16k_mul_mat(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x, ggml_tensor * xr) {
    GGML_ASSERT(w->type == GGML_TYPE_BF16 && x->type == GGML_TYPE_F32 && x->ne[0] == w->ne[0] && w->nb[0] == 2 && x->nb[0] == 4);
    GGML_ASSERT(!xr || (xr->src[0] == x && bf16k_is_op(xr)));
    return bf16k_mul_mat_r(ctx, w, xr ? xr : round_rows(ctx, x), x->ne[1]);  // [n_out, T]
}

ggml_tensor * bf16k_mul_mat_r(ggml_context * ctx, ggml_tensor * w, ggml_tensor * xr, int64_t T) {
    GGML_ASSERT(w->type == GGML_TYPE_BF16 && w->nb[0] == 2 && xr->type == GGML_TYPE_BF16);
    GGML_ASSERT(xr->ne[0] == a_stride(w->ne[0]) && xr->ne[1] == pad16(T) && xr->nb[1] == xr->ne[0] * 2);
    ggml_tensor * src[2] = {w, xr};
    ggml_tensor * y      = ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], T, 1, 1, src, 2, fwd_op, GGML_N_TASKS_MAX, nullptr);  // [n_out, T]
    ggml_set_name(y, "bf16k.mul_mat");
    return y;
}

ggml_tensor * bf16k_mul_mat_t(ggml_context * ctx, ggml_tensor * w, ggml_tensor * w_packed, int64_t k0, ggml_tensor * dy) {
    GGML_ASSERT(w->type == GGML_TYPE_BF16 && dy->type == GGML_TYPE_F32 && dy->ne[0] == w->ne[1] && w->nb[0] == 2 && dy->nb[0] == 4);
    return bf16k_mul_mat_t_r(ctx, w, w_packed, k0, round_rows(ctx, dy), dy->ne[1]);  // [n_in, T]
}

ggml_tensor * bf16k_mul_mat_t_r(ggml_context * ctx, ggml_tensor * w, ggml_tensor * w_packed, int64_t k0, ggml_tensor * dyr, int64_t T) {
    const int64_t n_in = w->ne[0];
    GGML_ASSERT(w->type == GGML_TYPE_BF16 && w->nb[0] == 2 && dyr->type == GGML_TYPE_BF16);
    GGML_ASSERT(dyr->ne[0] == a_stride(w->ne[1]) && dyr->ne[1] == pad16(T) && dyr->nb[1] == dyr->ne[0] * 2);
    GGML_ASSERT(k0 % 32 == 0);
    ggml_tensor * src[3] = {dyr, w_packed ? w_packed : w, w};
    ggml_tensor * dx     = ggml_custom_4d(ctx, GGML_TYPE_F32, n_in, T, 1, 1, src, 3, bwd_op, GGML_N_TASKS_MAX,
                                          (void *) (intptr_t) (k0 * 2 + (w_packed ? 1 : 0)));  // [n_in, T]
    ggml_set_name(dx, "bf16k.mul_mat_t");
    return dx;
}

int64_t bf16k_lda(int64_t K) { return a_stride(K); }

int64_t bf16k_rows(int64_t T) { return pad16(T); }

bool bf16k_is_op(const ggml_tensor * t) { return t->op == GGML_OP_CUSTOM && strncmp(t->name, "bf16k.", 6) == 0; }

}  // namespace t2s
