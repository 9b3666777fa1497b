// The fused attention ops (fused.h): the mode, the graph nodes and their profile names. The kernels
// are fused_hw.cpp's.
#include "fused.h"

#include "bf16k.h"
#include "kernels.h"

#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

namespace t2s {

namespace {

const fused_kernels & kernels_of(void * ud) { return *(const fused_kernels *) ud; }

void pack_t_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).pack_t(dst, dst->src[0], ith, nth); }
void forward_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).forward(dst, ith, nth); }
void backward_q_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).backward_q(dst, ith, nth); }
void backward_kv_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).backward_kv(dst, ith, nth); }
void swiglu_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).swiglu(dst, ith, nth); }
void ce_stats_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).ce_stats(dst, ith, nth); }
void ce_back_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).ce_back(dst, ith, nth); }
void swiglu_back_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).swiglu_back(dst, ith, nth); }
void swiglu_bf16_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).swiglu_bf16(dst, ith, nth); }
void swiglu_back_bf16_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).swiglu_back_bf16(dst, ith, nth); }

void * userdata(fused_mode m) {
    const fused_kernels * k = fused_kernels_for(m);
    if (!k) GGML_ABORT("fused attention: this build has no %s kernel", fused_mode_name(m));
    return (void *) k;
}

// The norms' userdata: the variant, eps and whether ggml's RMS_NORM_BACK fuses its multiply-add
// (the CPU has FMA: ggml is built with -march=native), one entry per (variant, eps), kept for the
// process (graphs hold the pointer).
struct norm_params {
    const fused_kernels * k;
    float                 eps;
    bool                  fma;
};

void * norm_userdata(fused_mode m, float eps) {
    static std::mutex              mu;
    static std::deque<norm_params> all;
    const fused_kernels *          k = (const fused_kernels *) userdata(m);
    std::lock_guard<std::mutex>    lock(mu);
    for (norm_params & p : all) {
        if (p.k == k && p.eps == eps) return &p;
    }
    all.push_back({k, eps, cpu_features_get().fma});
    return &all.back();
}

void rms_norm_op(ggml_tensor * dst, int ith, int nth, void * ud) {
    const norm_params & p = *(const norm_params *) ud;
    p.k->rms_norm(dst, ith, nth, p.eps);
}

void rms_norm_back_op(ggml_tensor * dst, int ith, int nth, void * ud) {
    const norm_params & p = *(const norm_params *) ud;
    p.k->rms_norm_back(dst, ith, nth, p.eps, p.fma);
}

int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

bool cpu_has(fused_mode m) {
    const cpu_features f = cpu_features_get();
    switch (m) {
        case fused_mode::avx512: return f.avx512f && fused_kernels_for(m);
        case fused_mode::avx2: return f.avx2 && fused_kernels_for(m);
        case fused_mode::base: return true;
        default: return false;
    }
}

}  // namespace

const char * fused_mode_name(fused_mode m) {
    switch (m) {
        case fused_mode::base: return "fused-base";
        case fused_mode::avx2: return "fused-avx2";
        case fused_mode::avx512: return "fused-avx512";
        default: return "ggml";
    }
}

fused_mode fused_mode_from_env(std::string & note, const char * var) {
    const char *      v    = getenv(var);
    const std::string s    = v ? v : "";
    const fused_mode  best = cpu_has(fused_mode::avx512) ? fused_mode::avx512 :
                             cpu_has(fused_mode::avx2)   ? fused_mode::avx2 :
                                                           fused_mode::base;
    if (s == "0" || s == "off") return fused_mode::off;
    if (s.empty() || s == "1" || s == "auto") return best;
    if (s == "avx512" || s == "avx2" || s == "base") {
        const fused_mode m = s == "avx512" ? fused_mode::avx512 : s == "avx2" ? fused_mode::avx2 : fused_mode::base;
        if (cpu_has(m)) return m;
        note = std::string(var) + "=" + s + ": this CPU or build has no " + s + " kernel; using " + fused_mode_name(best);
        return best;
    }
    note = std::string(var) + "='" + s + "' is not one of 0, 1, auto, avx512, avx2, base; using auto";
    return best;
}

bool attn_fits(int64_t head_dim) { return head_dim > 0 && head_dim % 16 == 0; }

ggml_tensor * attn_pack_t(ggml_context * ctx, fused_mode m, ggml_tensor * x) {
    GGML_ASSERT(x->type == GGML_TYPE_F32 && ggml_is_contiguous(x));
    ggml_tensor * args[] = {x};
    ggml_tensor * t      = ggml_custom_4d(ctx, GGML_TYPE_F32, pad16(x->ne[2]), x->ne[0], x->ne[1], 1, args, 1, pack_t_op, GGML_N_TASKS_MAX,
                                          userdata(m));  // [T_pad, hd, n_kv]
    ggml_set_name(t, "fused.attn_pack_t");
    return t;
}

attn_fwd_out attn_forward(ggml_context * ctx, fused_mode m, ggml_tensor * q, ggml_tensor * kt, ggml_tensor * v) {
    const int64_t hd = q->ne[0], nh = q->ne[1], T = q->ne[2], Tp = pad16(T);
    GGML_ASSERT(q->type == GGML_TYPE_F32 && v->type == GGML_TYPE_F32 && ggml_is_contiguous(q) && ggml_is_contiguous(v));
    GGML_ASSERT(attn_fits(hd) && v->ne[0] == hd && v->ne[2] == T && nh % v->ne[1] == 0);
    GGML_ASSERT(kt->ne[0] == Tp && kt->ne[1] == hd && kt->ne[2] == v->ne[1]);
    ggml_tensor * args[] = {q, kt, v};
    const int64_t n_o    = hd * nh * T;
    ggml_tensor * r = ggml_custom_4d(ctx, GGML_TYPE_F32, n_o + Tp * T * nh, 1, 1, 1, args, 3, forward_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(r, "fused.attn_forward");
    attn_fwd_out out;
    out.o = ggml_view_2d(ctx, r, hd * nh, T, hd * nh * sizeof(float), 0);                                      // [hd·n_head, T]
    out.p = ggml_view_3d(ctx, r, Tp, T, nh, Tp * sizeof(float), Tp * T * sizeof(float), n_o * sizeof(float));  // [T_pad, T, n_head]
    return out;
}

attn_grads
attn_backward(ggml_context * ctx, fused_mode m, ggml_tensor * q, ggml_tensor * k, ggml_tensor * vt, ggml_tensor * p, ggml_tensor * d_o) {
    const int64_t hd = q->ne[0], nh = q->ne[1], T = q->ne[2], nkv = k->ne[1], Tp = pad16(T);
    GGML_ASSERT(ggml_are_same_shape(q, d_o) && ggml_is_contiguous(d_o) && ggml_is_contiguous(q) && ggml_is_contiguous(k));
    GGML_ASSERT(k->ne[0] == hd && k->ne[2] == T && vt->ne[0] == Tp && p->ne[0] == Tp && p->ne[1] == T && p->ne[2] == nh);
    const int64_t n_q  = hd * nh * T;
    ggml_tensor * a1[] = {d_o, p, vt, k};
    ggml_tensor * bq = ggml_custom_4d(ctx, GGML_TYPE_F32, n_q + Tp * T * nh, 1, 1, 1, a1, 4, backward_q_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(bq, "fused.attn_backward_q");
    ggml_tensor * a2[] = {d_o, p, bq, q};
    const int64_t n_kv = hd * nkv * T;
    ggml_tensor * bkv  = ggml_custom_4d(ctx, GGML_TYPE_F32, 2 * n_kv, 1, 1, 1, a2, 4, backward_kv_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(bkv, "fused.attn_backward_kv");
    attn_grads g;
    g.dq = ggml_view_3d(ctx, bq, hd, nh, T, hd * sizeof(float), hd * nh * sizeof(float), 0);                        // [hd, n_head, T]
    g.dk = ggml_view_3d(ctx, bkv, hd, nkv, T, hd * sizeof(float), hd * nkv * sizeof(float), 0);                     // [hd, n_kv, T]
    g.dv = ggml_view_3d(ctx, bkv, hd, nkv, T, hd * sizeof(float), hd * nkv * sizeof(float), n_kv * sizeof(float));  // [hd, n_kv, T]
    return g;
}

ggml_tensor * swiglu_forward(ggml_context * ctx, fused_mode m, ggml_tensor * g, ggml_tensor * u) {
    GGML_ASSERT(g->type == GGML_TYPE_F32 && u->type == GGML_TYPE_F32 && ggml_are_same_shape(g, u));
    GGML_ASSERT(ggml_is_contiguous(g) && ggml_is_contiguous(u) && ggml_n_dims(g) <= 2);
    ggml_tensor * args[] = {g, u};
    ggml_tensor * a =
        ggml_custom_4d(ctx, GGML_TYPE_F32, g->ne[0], g->ne[1], 1, 1, args, 2, swiglu_op, GGML_N_TASKS_MAX, userdata(m));  // [n_ff, T]
    ggml_set_name(a, "fused.swiglu");
    return a;
}

swiglu_grads swiglu_backward(ggml_context * ctx, fused_mode m, ggml_tensor * da, ggml_tensor * g, ggml_tensor * u) {
    GGML_ASSERT(da->type == GGML_TYPE_F32 && ggml_are_same_shape(da, g) && ggml_are_same_shape(da, u));
    GGML_ASSERT(ggml_is_contiguous(da) && ggml_is_contiguous(g) && ggml_is_contiguous(u) && ggml_n_dims(da) <= 2);
    ggml_tensor * args[] = {da, g, u};
    const int64_t n      = ggml_nelements(da);
    ggml_tensor * r      = ggml_custom_4d(ctx, GGML_TYPE_F32, 2 * n, 1, 1, 1, args, 3, swiglu_back_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(r, "fused.swiglu_back");
    swiglu_grads out;
    out.dg = ggml_view_2d(ctx, r, da->ne[0], da->ne[1], da->ne[0] * sizeof(float), 0);                  // [n_ff, T]
    out.du = ggml_view_2d(ctx, r, da->ne[0], da->ne[1], da->ne[0] * sizeof(float), n * sizeof(float));  // [n_ff, T]
    return out;
}

ggml_tensor * swiglu_forward_bf16(ggml_context * ctx, fused_mode m, ggml_tensor * g, ggml_tensor * u) {
    GGML_ASSERT(g->type == GGML_TYPE_F32 && u->type == GGML_TYPE_F32 && ggml_are_same_shape(g, u));
    GGML_ASSERT(ggml_is_contiguous(g) && ggml_is_contiguous(u) && ggml_n_dims(g) <= 2 && g->ne[0] % 16 == 0);
    ggml_tensor * args[] = {g, u};
    ggml_tensor * a      = ggml_custom_4d(ctx, GGML_TYPE_BF16, bf16k_lda(g->ne[0]), bf16k_rows(g->ne[1]), 1, 1, args, 2, swiglu_bf16_op,
                                          GGML_N_TASKS_MAX, userdata(m));  // [lda, T_pad]
    ggml_set_name(a, "fused.swiglu_bf16");
    return a;
}

swiglu_grads swiglu_backward_bf16(ggml_context * ctx, fused_mode m, ggml_tensor * da, ggml_tensor * g, ggml_tensor * u) {
    GGML_ASSERT(da->type == GGML_TYPE_F32 && ggml_are_same_shape(da, g) && ggml_are_same_shape(da, u));
    GGML_ASSERT(ggml_is_contiguous(da) && ggml_is_contiguous(g) && ggml_is_contiguous(u) && ggml_n_dims(da) <= 2 && da->ne[0] % 16 == 0);
    ggml_tensor * args[] = {da, g, u};
    const int64_t lda = bf16k_lda(da->ne[0]), Tp = bf16k_rows(da->ne[1]);
    ggml_tensor * r = ggml_custom_4d(ctx, GGML_TYPE_BF16, lda, 2 * Tp, 1, 1, args, 3, swiglu_back_bf16_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(r, "fused.swiglu_back_bf16");
    swiglu_grads out;
    out.dg = ggml_view_2d(ctx, r, lda, Tp, lda * 2, 0);             // [lda, T_pad]
    out.du = ggml_view_2d(ctx, r, lda, Tp, lda * 2, lda * Tp * 2);  // [lda, T_pad]
    return out;
}

ggml_tensor * rms_norm_mul(ggml_context * ctx, fused_mode m, ggml_tensor * x, ggml_tensor * w, float eps) {
    GGML_ASSERT(x->type == GGML_TYPE_F32 && w->type == GGML_TYPE_F32 && ggml_is_contiguous(x) && ggml_is_contiguous(w));
    GGML_ASSERT(ggml_nelements(w) == x->ne[0]);
    ggml_tensor * args[] = {x, w};
    ggml_tensor * h = ggml_custom_4d(ctx, GGML_TYPE_F32, x->ne[0], x->ne[1], x->ne[2], x->ne[3], args, 2, rms_norm_op, GGML_N_TASKS_MAX,
                                     norm_userdata(m, eps));  // [n, rows...]
    ggml_set_name(h, "fused.rms_norm");
    return h;
}

ggml_tensor *
rms_norm_mul_back(ggml_context * ctx, fused_mode m, ggml_tensor * x, ggml_tensor * dh, ggml_tensor * w, ggml_tensor * dres, float eps) {
    GGML_ASSERT(x->type == GGML_TYPE_F32 && dh->type == GGML_TYPE_F32 && w->type == GGML_TYPE_F32);
    GGML_ASSERT(ggml_is_contiguous(x) && ggml_is_contiguous(dh) && ggml_is_contiguous(w) && ggml_are_same_shape(x, dh));
    GGML_ASSERT(ggml_nelements(w) == x->ne[0]);
    GGML_ASSERT(!dres || (dres->type == GGML_TYPE_F32 && ggml_is_contiguous(dres) && ggml_nelements(dres) == ggml_nelements(x)));
    ggml_tensor * args[] = {x, dh, w, dres};
    ggml_tensor * dx     = ggml_custom_4d(ctx, GGML_TYPE_F32, x->ne[0], x->ne[1], x->ne[2], x->ne[3], args, dres ? 4 : 3, rms_norm_back_op,
                                          GGML_N_TASKS_MAX, norm_userdata(m, eps));  // [n, rows...]
    ggml_set_name(dx, "fused.rms_norm_back");
    return dx;
}

ce_grads ce_backward(ggml_context * ctx, fused_mode m, ggml_tensor * z, ggml_tensor * tgt_flat, ggml_tensor * tw, ggml_tensor * after) {
    const int64_t V = z->ne[0], n_t = z->ne[1];
    GGML_ASSERT(z->type == GGML_TYPE_F32 && ggml_is_contiguous(z) && ggml_n_dims(z) <= 2);
    GGML_ASSERT(tgt_flat->type == GGML_TYPE_I32 && tgt_flat->ne[0] == n_t);
    GGML_ASSERT(!tw || (tw->type == GGML_TYPE_F32 && tw->ne[0] == 1 && tw->ne[1] == n_t));
    ggml_tensor * sa[] = {z, tgt_flat};
    ggml_tensor * st = ggml_custom_4d(ctx, GGML_TYPE_F32, 2 * n_t, 1, 1, 1, sa, 2, ce_stats_op, GGML_N_TASKS_MAX, userdata(m));  // [2·n_t]
    ggml_set_name(st, "fused.ce_stats");
    // in place on z, after the stats and `after` (sources for the order only)
    ggml_tensor * ba[] = {tgt_flat, st, after, tw};
    ggml_tensor * d    = ggml_custom_inplace(ctx, z, ba, 4, ce_back_op, GGML_N_TASKS_MAX, userdata(m));  // [n_vocab, n_t]
    ggml_set_name(d, "fused.ce_back");
    ce_grads out;
    out.d        = d;
    out.p_target = ggml_view_2d(ctx, st, 1, n_t, sizeof(float), 0);                    // [1, n_t]
    out.logp     = ggml_view_2d(ctx, st, 1, n_t, sizeof(float), n_t * sizeof(float));  // [1, n_t]
    return out;
}

bool fused_is_op(const ggml_tensor * t) { return t->op == GGML_OP_CUSTOM && std::strncmp(t->name, "fused.", 6) == 0; }

std::string fused_profile_key(const ggml_tensor * t, fused_mode m) {
    // "FUSED attn_forward f32 [fused-avx512]"; the ops that write BF16: "FUSED swiglu_bf16 f32 -> bf16 [...]"
    const bool bf16 = t->type == GGML_TYPE_BF16;
    return std::string("FUSED ") + (t->name + 6) + (bf16 ? " f32 -> bf16 [" : " f32 [") + fused_mode_name(m) + "]";
}

double fused_flop(const ggml_tensor * t) {
    const char * n = t->name + 6;
    if (std::strcmp(n, "attn_forward") && std::strcmp(n, "attn_backward_q") && std::strcmp(n, "attn_backward_kv")) return 0.0;
    // two products of hd-long sums over the causal (i, j <= i) pairs of every query head
    const ggml_tensor * q  = t->src[0];  // [hd, n_head, T]
    const double        hd = (double) q->ne[0], nh = (double) q->ne[1], T = (double) q->ne[2];
    return 2.0 * 2.0 * hd * nh * T * (T + 1) / 2;
}

}  // namespace t2s
