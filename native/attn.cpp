// The fused attention ops (attn.h): the mode, the graph nodes and their profile names. The kernels
// are attn_hw.cpp's.
#include "attn.h"

#include "kernels.h"

#include <cstdlib>
#include <cstring>

namespace t2s {

namespace {

const attn_kernels & kernels_of(void * ud) { return *(const attn_kernels *) ud; }

void pack_t_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).pack_t(dst, dst->src[0], ith, nth); }
void forward_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).forward(dst, ith, nth); }
void backward_q_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).backward_q(dst, ith, nth); }
void backward_kv_op(ggml_tensor * dst, int ith, int nth, void * ud) { kernels_of(ud).backward_kv(dst, ith, nth); }

void * userdata(attn_mode m) {
    const attn_kernels * k = attn_kernels_for(m);
    if (!k) GGML_ABORT("fused attention: this build has no %s kernel", attn_mode_name(m));
    return (void *) k;
}

int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

bool cpu_has(attn_mode m) {
    const cpu_features f = cpu_features_get();
    switch (m) {
        case attn_mode::avx512: return f.avx512f && attn_kernels_for(m);
        case attn_mode::avx2: return f.avx2 && attn_kernels_for(m);
        case attn_mode::base: return true;
        default: return false;
    }
}

}  // namespace

const char * attn_mode_name(attn_mode m) {
    switch (m) {
        case attn_mode::base: return "fused-base";
        case attn_mode::avx2: return "fused-avx2";
        case attn_mode::avx512: return "fused-avx512";
        default: return "ggml";
    }
}

attn_mode attn_mode_from_env(std::string & note) {
    const char *      v    = getenv("TEXT2SQL_FUSED_ATTN");
    const std::string s    = v ? v : "";
    const attn_mode   best = cpu_has(attn_mode::avx512) ? attn_mode::avx512 : cpu_has(attn_mode::avx2) ? attn_mode::avx2 : attn_mode::base;
    if (s == "0" || s == "off") return attn_mode::off;
    if (s.empty() || s == "1" || s == "auto") return best;
    if (s == "avx512" || s == "avx2" || s == "base") {
        const attn_mode m = s == "avx512" ? attn_mode::avx512 : s == "avx2" ? attn_mode::avx2 : attn_mode::base;
        if (cpu_has(m)) return m;
        note = "TEXT2SQL_FUSED_ATTN=" + s + ": this CPU or build has no " + s + " kernel; using " + attn_mode_name(best);
        return best;
    }
    note = "TEXT2SQL_FUSED_ATTN='" + s + "' is not one of 0, 1, auto, avx512, avx2, base; using auto";
    return best;
}

bool attn_fits(int64_t head_dim) { return head_dim > 0 && head_dim % 16 == 0; }

ggml_tensor * attn_pack_t(ggml_context * ctx, attn_mode m, ggml_tensor * x) {
    GGML_ASSERT(x->type == GGML_TYPE_F32 && ggml_is_contiguous(x));
    ggml_tensor * args[] = {x};
    ggml_tensor * t      = ggml_custom_4d(ctx, GGML_TYPE_F32, pad16(x->ne[2]), x->ne[0], x->ne[1], 1, args, 1, pack_t_op, GGML_N_TASKS_MAX,
                                          userdata(m));  // [T_pad, hd, n_kv]
    ggml_set_name(t, "attn.pack_t");
    return t;
}

attn_fwd_out attn_forward(ggml_context * ctx, attn_mode m, ggml_tensor * q, ggml_tensor * kt, ggml_tensor * v) {
    const int64_t hd = q->ne[0], nh = q->ne[1], T = q->ne[2], Tp = pad16(T);
    GGML_ASSERT(q->type == GGML_TYPE_F32 && v->type == GGML_TYPE_F32 && ggml_is_contiguous(q) && ggml_is_contiguous(v));
    GGML_ASSERT(attn_fits(hd) && v->ne[0] == hd && v->ne[2] == T && nh % v->ne[1] == 0);
    GGML_ASSERT(kt->ne[0] == Tp && kt->ne[1] == hd && kt->ne[2] == v->ne[1]);
    ggml_tensor * args[] = {q, kt, v};
    const int64_t n_o    = hd * nh * T;
    ggml_tensor * r = ggml_custom_4d(ctx, GGML_TYPE_F32, n_o + Tp * T * nh, 1, 1, 1, args, 3, forward_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(r, "attn.forward");
    attn_fwd_out out;
    out.o = ggml_view_2d(ctx, r, hd * nh, T, hd * nh * sizeof(float), 0);                                      // [hd·n_head, T]
    out.p = ggml_view_3d(ctx, r, Tp, T, nh, Tp * sizeof(float), Tp * T * sizeof(float), n_o * sizeof(float));  // [T_pad, T, n_head]
    return out;
}

attn_grads
attn_backward(ggml_context * ctx, attn_mode m, ggml_tensor * q, ggml_tensor * k, ggml_tensor * vt, ggml_tensor * p, ggml_tensor * d_o) {
    const int64_t hd = q->ne[0], nh = q->ne[1], T = q->ne[2], nkv = k->ne[1], Tp = pad16(T);
    GGML_ASSERT(ggml_are_same_shape(q, d_o) && ggml_is_contiguous(d_o) && ggml_is_contiguous(q) && ggml_is_contiguous(k));
    GGML_ASSERT(k->ne[0] == hd && k->ne[2] == T && vt->ne[0] == Tp && p->ne[0] == Tp && p->ne[1] == T && p->ne[2] == nh);
    const int64_t n_q  = hd * nh * T;
    ggml_tensor * a1[] = {d_o, p, vt, k};
    ggml_tensor * bq = ggml_custom_4d(ctx, GGML_TYPE_F32, n_q + Tp * T * nh, 1, 1, 1, a1, 4, backward_q_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(bq, "attn.backward_q");
    ggml_tensor * a2[] = {d_o, p, bq, q};
    const int64_t n_kv = hd * nkv * T;
    ggml_tensor * bkv  = ggml_custom_4d(ctx, GGML_TYPE_F32, 2 * n_kv, 1, 1, 1, a2, 4, backward_kv_op, GGML_N_TASKS_MAX, userdata(m));
    ggml_set_name(bkv, "attn.backward_kv");
    attn_grads g;
    g.dq = ggml_view_3d(ctx, bq, hd, nh, T, hd * sizeof(float), hd * nh * sizeof(float), 0);                        // [hd, n_head, T]
    g.dk = ggml_view_3d(ctx, bkv, hd, nkv, T, hd * sizeof(float), hd * nkv * sizeof(float), 0);                     // [hd, n_kv, T]
    g.dv = ggml_view_3d(ctx, bkv, hd, nkv, T, hd * sizeof(float), hd * nkv * sizeof(float), n_kv * sizeof(float));  // [hd, n_kv, T]
    return g;
}

bool attn_is_op(const ggml_tensor * t) { return t->op == GGML_OP_CUSTOM && std::strncmp(t->name, "attn.", 5) == 0; }

std::string attn_profile_key(const ggml_tensor * t, attn_mode m) {
    return std::string("ATTN ") + (t->name + 5) + " f32 (attention) [" + attn_mode_name(m) + "]";  // "ATTN forward f32 ..."
}

}  // namespace t2s
