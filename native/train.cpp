// The Llama forward pass with LoRA, and its hand-written backward pass, as one ggml graph.
//
// Each forward piece has a backward twin (`*_back`). The backward never uses autodiff's OUT_PROD
// on a frozen weight: dX = Wᵀ·dY is a mul_mat against a transposed copy of W. Norm, softmax and
// cross-entropy gradients are composed from basic ops that every ggml backend (CPU, CUDA, Metal)
// implements, so nothing silently falls back to the CPU.
#include "engine.h"

#include "ggml-cpu.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

namespace t2s {

namespace {

enum class graph_mode { logits, eval, train };

struct graph_inputs {
    ggml_tensor * tokens  = nullptr; // [T] i32
    ggml_tensor * pos     = nullptr; // [T] i32
    ggml_tensor * kq_mask = nullptr; // [T, T] f32, 0 or -inf
    ggml_tensor * tgt     = nullptr; // [n_t] i32, the positions that have a target (loss)
    ggml_tensor * tgt_flat = nullptr; // [n_t] i32, i·n_vocab + target of position tgt[i]
    ggml_tensor * scatter = nullptr; // [n_t, T] f32, scatter[i, j] = 1 where tgt[i] == j
    ggml_tensor * onehot  = nullptr; // [n_vocab, n_t] f32, 1 at each target position's target
    std::vector<std::pair<ggml_tensor *, int>> drop; // dropout masks [n_in, T] and the lora pair index
};

struct graph_outputs {
    int n_forward = 0;                // graph nodes of the forward pass (the rest is backward)
    ggml_tensor * logits   = nullptr; // [n_vocab, T] (logits mode) or [n_vocab, n_t]
    ggml_tensor * p_target = nullptr; // [1, n_t]  softmax probability of the target
    ggml_tensor * argmax   = nullptr; // [n_t] i32
};

struct graph_ctx {
    engine & e;
    ggml_context * ctx;
    int64_t T;
    int64_t n_t; // positions with a target (eval, train); the output head runs on these only
    float grad_scale; // gradient weight of every target (train)
    op_caps caps;
    graph_mode mode;
    bool dropout;
    graph_inputs in;
    // lora pair index per [layer][target], -1 when the target has no adapter
    std::vector<std::array<int, TARGET_COUNT>> lora_idx;
    // gradient accumulation nodes (ggml_cpy into the persistent gradient tensors)
    std::vector<ggml_tensor *> grad_updates;
};

// Saved forward state of one adapted linear layer, for its backward twin.
struct linear_saved {
    ggml_tensor * y  = nullptr; // [n_out, T]  output (null when the recompute does not need it)
    ggml_tensor * x  = nullptr; // [n_in, T]
    ggml_tensor * xd = nullptr; // [n_in, T]   dropout(x) (== x without dropout)
    ggml_tensor * t  = nullptr; // [r, T]      A·xd
    ggml_tensor * mask = nullptr; // [n_in, T] dropout mask (scaled by 1/(1-p)), or null
    int lora = -1;
};

ggml_tensor * transpose_cont(ggml_context * ctx, ggml_tensor * x) {
    return ggml_cont(ctx, ggml_transpose(ctx, x));
}

// dst = contiguous copy of the transposed view a, in 64 x 64 tiles (ggml's generic copy moves one
// element at a time through strided loops). a(i0, i1) sits at i0·nb0 + i1·nb1; for the transposed
// view of a weight, nb1 is the element size (a weight row) and nb0 the weight's row stride.
template <typename T>
void transpose_block_scalar(T * out, const char * src, size_t nb0, size_t nb1, int64_t n0,
                            int64_t i0b, int64_t i0e, int64_t i1b, int64_t i1e) {
    for (int64_t i1 = i1b; i1 < i1e; i1++) {
        T * row = out + i1 * n0;
        const char * s1 = src + i1 * nb1;
        for (int64_t i0 = i0b; i0 < i0e; i0++) row[i0] = *(const T *) (s1 + i0 * nb0);
    }
}

#if defined(__SSE2__)
// 8 x 8 block of 16-bit values: 8 rows of the weight in, 8 rows of the transpose out.
inline void transpose_8x8_u16(const char * src, size_t row_stride, uint16_t * dst, int64_t dst_stride) {
    __m128i a0 = _mm_loadu_si128((const __m128i *) (src + 0 * row_stride));
    __m128i a1 = _mm_loadu_si128((const __m128i *) (src + 1 * row_stride));
    __m128i a2 = _mm_loadu_si128((const __m128i *) (src + 2 * row_stride));
    __m128i a3 = _mm_loadu_si128((const __m128i *) (src + 3 * row_stride));
    __m128i a4 = _mm_loadu_si128((const __m128i *) (src + 4 * row_stride));
    __m128i a5 = _mm_loadu_si128((const __m128i *) (src + 5 * row_stride));
    __m128i a6 = _mm_loadu_si128((const __m128i *) (src + 6 * row_stride));
    __m128i a7 = _mm_loadu_si128((const __m128i *) (src + 7 * row_stride));
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

template <typename T>
void transpose_tiles(ggml_tensor * dst, const ggml_tensor * a, int ith, int nth) {
    const int64_t n0 = dst->ne[0], n1 = dst->ne[1]; // dst [n0, n1]
    const size_t nb0 = a->nb[0], nb1 = a->nb[1];
    const char * src = (const char *) a->data;
    T * out = (T *) dst->data;
    const int64_t B = 64;
    const int64_t n_tiles1 = (n1 + B - 1) / B;
    for (int64_t t1 = ith; t1 < n_tiles1; t1 += nth) {
        const int64_t i1b = t1 * B, i1e = std::min(n1, i1b + B);
        for (int64_t i0b = 0; i0b < n0; i0b += B) {
            const int64_t i0e = std::min(n0, i0b + B);
#if defined(__SSE2__)
            if (sizeof(T) == 2 && nb1 == 2 && i0e - i0b == B && i1e - i1b == B) {
                for (int64_t i0 = i0b; i0 < i0e; i0 += 8) {
                    for (int64_t i1 = i1b; i1 < i1e; i1 += 8) {
                        transpose_8x8_u16(src + i0 * nb0 + i1 * nb1, nb0, (uint16_t *) out + i1 * n0 + i0, n0);
                    }
                }
                continue;
            }
#endif
            transpose_block_scalar<T>(out, src, nb0, nb1, n0, i0b, i0e, i1b, i1e);
        }
    }
}

void transpose_op(ggml_tensor * dst, const ggml_tensor * a, int ith, int nth, void *) {
    switch (ggml_type_size(a->type)) {
        case 2: transpose_tiles<uint16_t>(dst, a, ith, nth); break;
        case 4: transpose_tiles<uint32_t>(dst, a, ith, nth); break;
        default: GGML_ABORT("transpose_op: unsupported type %s", ggml_type_name(a->type));
    }
}

// Wᵀ for dX = Wᵀ·dY: the copy made at load (fast mode) or a copy made in the graph (lean mode),
// which the allocator frees right after its product. On the CPU a tiled custom op makes it;
// GPU backends use their own copy kernel.
ggml_tensor * weight_t(graph_ctx & g, ggml_tensor * w, ggml_tensor * w_t) {
    if (w_t) return w_t;                                                       // [n_out, n_in]
    ggml_tensor * wv = ggml_transpose(g.ctx, w);                               // [n_out, n_in] view
    if (g.caps.custom_transpose) return ggml_map_custom1(g.ctx, wv, transpose_op, GGML_N_TASKS_MAX, nullptr); // [n_out, n_in]
    return ggml_cont(g.ctx, wv);                                               // [n_out, n_in]
}

// y = W·x + s·B·(A·dropout(x))
// With `kept` (the first forward pass's state, when recomputing a checkpointed layer) the dropout
// mask is the one drawn then, and the output is taken from it when reuse_y is set; need_y = false
// recomputes only what linear_back needs.
ggml_tensor * linear(graph_ctx & g, int il, int target, ggml_tensor * x, linear_saved & sv,
                     const linear_saved * kept = nullptr, bool reuse_y = false, bool need_y = true) {
    engine & e = g.e;
    ggml_context * ctx = g.ctx;
    sv.x = x;
    sv.lora = g.lora_idx[il][target];
    const bool compute_y = need_y && !(kept && reuse_y);
    ggml_tensor * y = compute_y ? ggml_mul_mat(ctx, e.layers[il].w[target], x) : nullptr; // [n_out, T]
    if (sv.lora >= 0) {
        lora_pair & p = e.lora[sv.lora];
        ggml_tensor * xd = x;
        if (kept) {
            sv.mask = kept->mask;
        } else if (g.dropout) {
            sv.mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, x->ne[0], x->ne[1]); // [n_in, T]
            ggml_set_input(sv.mask);
            g.in.drop.emplace_back(sv.mask, sv.lora);
        }
        if (sv.mask) xd = ggml_mul(ctx, x, sv.mask);                          // [n_in, T]
        sv.xd = xd;
        sv.t = ggml_mul_mat(ctx, p.a, xd);                                    // [r, T]
        if (compute_y) {
            ggml_tensor * u = ggml_mul_mat(ctx, p.b, sv.t);                   // [n_out, T]
            y = ggml_add(ctx, y, ggml_scale(ctx, u, e.opts.lora.scale()));     // [n_out, T]
        }
    }
    sv.y = compute_y ? y : (kept && reuse_y ? kept->y : nullptr);
    return sv.y;
}

// Backward twin of linear(): accumulates dA, dB and returns dx = Wᵀ·dy + Aᵀ·(s·Bᵀ·dy) ⊙ mask
// (null when need_dx is false: the first layer's input gradient is not needed).
ggml_tensor * linear_back(graph_ctx & g, int il, int target, const linear_saved & sv, ggml_tensor * dy, bool need_dx = true) {
    engine & e = g.e;
    ggml_context * ctx = g.ctx;
    ggml_tensor * dx = need_dx ? ggml_mul_mat(ctx, weight_t(g, e.layers[il].w[target], e.layers[il].wt[target]), dy) : nullptr; // [n_in, T]
    if (sv.lora < 0) return dx;
    lora_pair & p = e.lora[sv.lora];
    const float s = e.opts.lora.scale();
    ggml_tensor * dt = ggml_scale(ctx, ggml_mul_mat(ctx, transpose_cont(ctx, p.b), dy), s); // [r, T]  s·Bᵀ·dy
    ggml_tensor * dA, * dB;
    if (g.caps.out_prod) {
        // sums over tokens as outer products: no transposed copies of the [·, T] activations
        dB = ggml_scale(ctx, ggml_out_prod(ctx, sv.t, dy), s);                 // [r, n_out]  s·t·dyᵀ
        dA = ggml_out_prod(ctx, sv.xd, dt);                                    // [n_in, r]   xd·dtᵀ
    } else {
        dB = ggml_scale(ctx, ggml_mul_mat(ctx, transpose_cont(ctx, sv.t), transpose_cont(ctx, dy)), s); // [r, n_out]
        dA = ggml_mul_mat(ctx, transpose_cont(ctx, sv.xd), transpose_cont(ctx, dt)); // [n_in, r]
    }
    g.grad_updates.push_back(ggml_cpy(ctx, ggml_add(ctx, p.ga, dA), p.ga));
    g.grad_updates.push_back(ggml_cpy(ctx, ggml_add(ctx, p.gb, dB), p.gb));
    if (!need_dx) return nullptr;
    ggml_tensor * dxd = ggml_mul_mat(ctx, transpose_cont(ctx, p.a), dt);      // [n_in, T]
    if (sv.mask) dxd = ggml_mul(ctx, dxd, sv.mask);
    return ggml_add(ctx, dx, dxd);                                             // [n_in, T]
}

// RMS norm without the weight: n = x / sqrt(mean(x²) + eps).
// Backward twin: ggml's RMS_NORM_BACK where the backend has it, else composed from basic ops
// (Metal): dx = (dn - n · mean(dn ⊙ n)) / sqrt(mean(x²) + eps)
ggml_tensor * rms_norm_back(graph_ctx & g, ggml_tensor * x, ggml_tensor * n, ggml_tensor * dn) {
    ggml_context * ctx = g.ctx;
    if (g.caps.rms_norm_back) return ggml_rms_norm_back(ctx, dn, x, g.e.hp.rms_eps); // [n_embd, T]
    const float inv_n = 1.0f / (float) x->ne[0];
    ggml_tensor * rms = ggml_sqrt(ctx, ggml_scale_bias(ctx, ggml_sum_rows(ctx, ggml_sqr(ctx, x)), inv_n, g.e.hp.rms_eps)); // [1, T]
    ggml_tensor * c = ggml_scale(ctx, ggml_sum_rows(ctx, ggml_mul(ctx, dn, n)), inv_n);  // [1, T]
    return ggml_div(ctx, ggml_sub(ctx, dn, ggml_mul(ctx, n, c)), rms);                   // [n_embd, T]
}

// Backward twin of P = softmax(scale·S + mask): dS = scale · P ⊙ (dP - Σ_k dP ⊙ P). ggml's
// SOFT_MAX_BACK where the backend has it, else composed from basic ops (Metal).
ggml_tensor * soft_max_back(graph_ctx & g, ggml_tensor * p, ggml_tensor * dp, float scale) {
    ggml_context * ctx = g.ctx;
    if (g.caps.soft_max_back) return ggml_soft_max_ext_back(ctx, dp, p, scale, 0.0f); // [T_k, T_q, n_head]
    ggml_tensor * dot = ggml_sum_rows(ctx, ggml_mul(ctx, dp, p));              // [1, T_q, n_head]
    return ggml_scale(ctx, ggml_mul(ctx, p, ggml_sub(ctx, dp, dot)), scale);   // [T_k, T_q, n_head]
}

ggml_tensor * rope(graph_ctx & g, ggml_tensor * x) {
    const llama_hparams & hp = g.e.hp;
    return ggml_rope_ext(g.ctx, x, g.in.pos, g.e.rope_freqs, (int) hp.n_rot, 0, (int) hp.n_ctx,
                         hp.rope_freq_base, hp.rope_freq_scale, 0.0f, 1.0f, 0.0f, 0.0f);
}

ggml_tensor * rope_back(graph_ctx & g, ggml_tensor * dy) {
    const llama_hparams & hp = g.e.hp;
    return ggml_rope_ext_back(g.ctx, dy, g.in.pos, g.e.rope_freqs, (int) hp.n_rot, 0, (int) hp.n_ctx,
                              hp.rope_freq_base, hp.rope_freq_scale, 0.0f, 1.0f, 0.0f, 0.0f);
}

// [X, T, n_head] (contiguous) -> [T·g, X, n_head_kv]: the heads sharing one K/V head are folded
// into the contracted dimension, so one mul_mat sums their contributions to dK or dV.
ggml_tensor * fold_heads(graph_ctx & g, ggml_tensor * t) {
    const llama_hparams & hp = g.e.hp;
    const int64_t grp = hp.n_head / hp.n_head_kv;
    const int64_t X = t->ne[0], T = t->ne[1];
    ggml_tensor * t4 = ggml_reshape_4d(g.ctx, t, X, T, grp, hp.n_head_kv);       // [X, T, g, n_kv]
    ggml_tensor * p = ggml_cont(g.ctx, ggml_permute(g.ctx, t4, 2, 0, 1, 3));    // [T, g, X, n_kv]
    return ggml_reshape_3d(g.ctx, p, T * grp, X, hp.n_head_kv);                  // [T·g, X, n_kv]
}

struct layer_saved {
    ggml_tensor * x = nullptr, * n1 = nullptr, * x1 = nullptr, * n2 = nullptr; // [n_embd, T]
    ggml_tensor * qr = nullptr;  // [hd, n_head, T]     roped q
    ggml_tensor * kr = nullptr;  // [hd, n_head_kv, T]  roped k
    ggml_tensor * v3 = nullptr;  // [hd, n_head_kv, T]
    ggml_tensor * p = nullptr;   // [T_k, T_q, n_head]  attention probabilities
    ggml_tensor * g = nullptr, * sg = nullptr, * u = nullptr; // [n_ff, T]
    linear_saved lin[TARGET_COUNT];
};

// One Llama block. Returns x2 = x1 + FFN(norm(x1)), x1 = x + Attn(norm(x)).
// Recompute for a checkpointed layer: `kept` is the first pass's state. The outputs of the q, k, v
// and o projections are taken from it; the rest is computed again, except the block's output (the
// next layer's kept input): it returns null then.
ggml_tensor * layer_forward(graph_ctx & g, int il, ggml_tensor * x, layer_saved & s, const layer_saved * kept = nullptr) {
    engine & e = g.e;
    ggml_context * ctx = g.ctx;
    const llama_hparams & hp = e.hp;
    const llama_layer & L = e.layers[il];
    const int64_t T = g.T, hd = hp.head_dim();

    s.x = x;                                                                     // [n_embd, T]
    s.n1 = ggml_rms_norm(ctx, x, hp.rms_eps);                                    // [n_embd, T]
    ggml_tensor * h = ggml_mul(ctx, s.n1, L.attn_norm);                          // [n_embd, T]
    auto kl = [&](int t) { return kept ? &kept->lin[t] : nullptr; };
    ggml_tensor * q = linear(g, il, TARGET_Q, h, s.lin[TARGET_Q], kl(TARGET_Q), true); // [n_embd, T]
    ggml_tensor * k = linear(g, il, TARGET_K, h, s.lin[TARGET_K], kl(TARGET_K), true); // [n_embd_kv, T]
    ggml_tensor * v = linear(g, il, TARGET_V, h, s.lin[TARGET_V], kl(TARGET_V), true); // [n_embd_kv, T]
    s.qr = rope(g, ggml_reshape_3d(ctx, q, hd, hp.n_head, T));                  // [hd, n_head, T]
    s.kr = rope(g, ggml_reshape_3d(ctx, k, hd, hp.n_head_kv, T));               // [hd, n_head_kv, T]
    s.v3 = ggml_reshape_3d(ctx, v, hd, hp.n_head_kv, T);                        // [hd, n_head_kv, T]

    ggml_tensor * Q = ggml_permute(ctx, s.qr, 0, 2, 1, 3);                      // [hd, T, n_head]
    ggml_tensor * K = ggml_permute(ctx, s.kr, 0, 2, 1, 3);                      // [hd, T, n_head_kv]
    ggml_tensor * kq = ggml_mul_mat(ctx, K, Q);                                 // [T_k, T_q, n_head]
    s.p = ggml_soft_max_ext(ctx, kq, g.in.kq_mask, 1.0f / std::sqrt((float) hd), 0.0f); // [T_k, T_q, n_head]
    ggml_tensor * Vt = ggml_cont(ctx, ggml_permute(ctx, s.v3, 1, 2, 0, 3));      // [T_k, hd, n_head_kv]
    ggml_tensor * o = ggml_mul_mat(ctx, Vt, s.p);                               // [hd, T_q, n_head]
    o = ggml_cont(ctx, ggml_permute(ctx, o, 0, 2, 1, 3));                       // [hd, n_head, T]
    o = ggml_reshape_2d(ctx, o, hp.n_embd, T);                                  // [n_embd, T]
    o = linear(g, il, TARGET_O, o, s.lin[TARGET_O], kl(TARGET_O), true);       // [n_embd, T]
    s.x1 = ggml_add(ctx, x, o);                                                 // [n_embd, T]

    s.n2 = ggml_rms_norm(ctx, s.x1, hp.rms_eps);                                // [n_embd, T]
    ggml_tensor * h2 = ggml_mul(ctx, s.n2, L.ffn_norm);                         // [n_embd, T]
    // The gate/up outputs are recomputed: keeping them would hold 2·n_ff floats per token per
    // layer (2.6x less activation memory at 1,024 tokens instead of 4.9x) for ~10% less time.
    s.g = linear(g, il, TARGET_GATE, h2, s.lin[TARGET_GATE], kl(TARGET_GATE), false); // [n_ff, T]
    s.u = linear(g, il, TARGET_UP, h2, s.lin[TARGET_UP], kl(TARGET_UP), false);       // [n_ff, T]
    s.sg = ggml_silu(ctx, s.g);                                                 // [n_ff, T]
    ggml_tensor * a = ggml_mul(ctx, s.sg, s.u);                                 // [n_ff, T]
    ggml_tensor * d = linear(g, il, TARGET_DOWN, a, s.lin[TARGET_DOWN], kl(TARGET_DOWN), false, !kept); // [n_embd, T]
    return kept ? nullptr : ggml_add(ctx, s.x1, d);                             // [n_embd, T]
}

// Backward twin of layer_forward(): dx2 -> dx.
ggml_tensor * layer_backward(graph_ctx & g, int il, const layer_saved & s, ggml_tensor * dx2) {
    engine & e = g.e;
    ggml_context * ctx = g.ctx;
    const llama_hparams & hp = e.hp;
    const llama_layer & L = e.layers[il];
    const int64_t T = g.T, hd = hp.head_dim();

    // FFN
    ggml_tensor * da = linear_back(g, il, TARGET_DOWN, s.lin[TARGET_DOWN], dx2); // [n_ff, T]
    ggml_tensor * du = ggml_mul(ctx, da, s.sg);                                 // [n_ff, T]
    ggml_tensor * dg = ggml_silu_back(ctx, ggml_mul(ctx, da, s.u), s.g);        // [n_ff, T]
    ggml_tensor * dh2 = ggml_add(ctx,
        linear_back(g, il, TARGET_GATE, s.lin[TARGET_GATE], dg),
        linear_back(g, il, TARGET_UP, s.lin[TARGET_UP], du));                   // [n_embd, T]
    ggml_tensor * dx1 = ggml_add(ctx, dx2,
        rms_norm_back(g, s.x1, s.n2, ggml_mul(ctx, dh2, L.ffn_norm)));          // [n_embd, T]

    // attention output projection
    ggml_tensor * dattn = linear_back(g, il, TARGET_O, s.lin[TARGET_O], dx1);   // [n_embd, T]
    ggml_tensor * dO = ggml_reshape_3d(ctx, dattn, hd, hp.n_head, T);           // [hd, n_head, T]
    dO = ggml_cont(ctx, ggml_permute(ctx, dO, 0, 2, 1, 3));                     // [hd, T_q, n_head]

    // O = V·P: dP = Vᵀ·dO, dV = Σ_(q, heads of the group) dO·Pᵀ
    ggml_tensor * V = ggml_permute(ctx, s.v3, 0, 2, 1, 3);                      // [hd, T_k, n_head_kv]
    ggml_tensor * dP = ggml_mul_mat(ctx, V, dO);                                // [T_k, T_q, n_head]
    ggml_tensor * dV = ggml_mul_mat(ctx, fold_heads(g, dO), fold_heads(g, s.p)); // [hd, T_k, n_head_kv]

    // S = scale·K·Q + mask, P = softmax(S)
    ggml_tensor * dS = soft_max_back(g, s.p, dP, 1.0f / std::sqrt((float) hd)); // [T_k, T_q, n_head]
    ggml_tensor * Kt = ggml_cont(ctx, ggml_permute(ctx, s.kr, 1, 2, 0, 3));      // [T_k, hd, n_head_kv]
    ggml_tensor * dQ = ggml_mul_mat(ctx, Kt, dS);                               // [hd, T_q, n_head]
    ggml_tensor * Q = ggml_cont(ctx, ggml_permute(ctx, s.qr, 0, 2, 1, 3));      // [hd, T_q, n_head]
    // dK[d, k, j] = Σ_(q, heads i of group j) dS[k, q, h] · Q[d, q, h]
    ggml_tensor * dK = ggml_mul_mat(ctx, fold_heads(g, Q), fold_heads(g, dS)); // [hd, T_k, n_head_kv]

    ggml_tensor * dq = rope_back(g, ggml_cont(ctx, ggml_permute(ctx, dQ, 0, 2, 1, 3))); // [hd, n_head, T]
    ggml_tensor * dk = rope_back(g, ggml_cont(ctx, ggml_permute(ctx, dK, 0, 2, 1, 3))); // [hd, n_head_kv, T]
    ggml_tensor * dv = ggml_cont(ctx, ggml_permute(ctx, dV, 0, 2, 1, 3));               // [hd, n_head_kv, T]

    // The first layer's input gradient (into the frozen embeddings) is not needed: only the
    // adapters' gradients are computed there.
    const bool need_dx = il > 0;
    ggml_tensor * dhq = linear_back(g, il, TARGET_Q, s.lin[TARGET_Q], ggml_reshape_2d(ctx, dq, hp.n_embd, T), need_dx);     // [n_embd, T]
    ggml_tensor * dhk = linear_back(g, il, TARGET_K, s.lin[TARGET_K], ggml_reshape_2d(ctx, dk, hp.n_embd_kv(), T), need_dx); // [n_embd, T]
    ggml_tensor * dhv = linear_back(g, il, TARGET_V, s.lin[TARGET_V], ggml_reshape_2d(ctx, dv, hp.n_embd_kv(), T), need_dx); // [n_embd, T]
    if (!need_dx) return nullptr;
    ggml_tensor * dh = ggml_add(ctx, ggml_add(ctx, dhq, dhk), dhv);            // [n_embd, T]
    return ggml_add(ctx, dx1, rms_norm_back(g, s.x, s.n1, ggml_mul(ctx, dh, L.attn_norm))); // [n_embd, T]
}

ggml_cgraph * build_graph(graph_ctx & g, graph_outputs & out) {
    engine & e = g.e;
    ggml_context * ctx = g.ctx;
    const llama_hparams & hp = e.hp;
    const int64_t T = g.T;

    g.in.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);                    // [T]
    g.in.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);                       // [T]
    g.in.kq_mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, T, T);                // [T_k, T_q]
    ggml_set_input(g.in.tokens);
    ggml_set_input(g.in.pos);
    ggml_set_input(g.in.kq_mask);

    const size_t graph_size = 1024 + (size_t) hp.n_layer * 640;
    ggml_cgraph * gf = ggml_new_graph_custom(ctx, graph_size, false);

    ggml_tensor * x = ggml_get_rows(ctx, e.tok_embd, g.in.tokens);              // [n_embd, T]
    std::vector<layer_saved> saved(hp.n_layer);
    for (int il = 0; il < hp.n_layer; il++) x = layer_forward(g, il, x, saved[il]);
    ggml_tensor * nf = ggml_rms_norm(ctx, x, hp.rms_eps);                       // [n_embd, T]
    ggml_tensor * hf = ggml_mul(ctx, nf, e.output_norm);                        // [n_embd, T]
    if (g.mode == graph_mode::logits) {
        out.logits = ggml_mul_mat(ctx, e.output, hf);                           // [n_vocab, T]
        ggml_set_output(out.logits);
        ggml_build_forward_expand(gf, out.logits);
        return gf;
    }

    // Only positions with a target go through the output head: prompt positions carry no loss,
    // and the [n_vocab, ·] products and element-wise ops are a tenth of a step.
    const int64_t n_t = g.n_t;
    g.in.tgt = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_t);                    // [n_t]
    ggml_set_input(g.in.tgt);
    ggml_tensor * hf_t = ggml_get_rows(ctx, hf, g.in.tgt);                      // [n_embd, n_t]
    out.logits = ggml_mul_mat(ctx, e.output, hf_t);                             // [n_vocab, n_t]
    ggml_set_output(out.logits);
    ggml_tensor * P = ggml_soft_max(ctx, out.logits);                           // [n_vocab, n_t]
    g.in.tgt_flat = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_t);               // [n_t]
    ggml_set_input(g.in.tgt_flat);
    out.p_target = ggml_get_rows(ctx, ggml_reshape_2d(ctx, P, 1, hp.n_vocab * n_t), g.in.tgt_flat); // [1, n_t]
    out.argmax = ggml_argmax(ctx, out.logits);                                  // [n_t]
    ggml_set_output(out.p_target);
    ggml_set_output(out.argmax);
    ggml_build_forward_expand(gf, out.p_target);
    ggml_build_forward_expand(gf, out.argmax);
    out.n_forward = ggml_graph_n_nodes(gf);
    if (g.mode == graph_mode::eval) return gf;

    // d(grad_scale · Σ NLL)/d logits = grad_scale · (P - onehot)
    g.in.onehot = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.n_vocab, n_t);     // [n_vocab, n_t]
    ggml_set_input(g.in.onehot);
    ggml_tensor * dlogits = ggml_scale(ctx, ggml_sub(ctx, P, g.in.onehot), g.grad_scale); // [n_vocab, n_t]
    // dhf = outputᵀ·dlogits in vocabulary chunks, so that lean mode's transposed copy of the
    // output matrix is a chunk at a time (16 MB instead of 131 MB at TinyLlama shape). Fast mode
    // reads the same chunks from its full copy, so both sum in the same order.
    ggml_tensor * dhf_t = nullptr;                                              // [n_embd, n_t]
    const int64_t V = hp.n_vocab, C = 4096;
    for (int64_t v0 = 0; v0 < V; v0 += C) {
        const int64_t c = std::min(C, V - v0);
        ggml_tensor * wt_c;                                                     // [c, n_embd]
        if (e.output_t) {
            wt_c = ggml_view_2d(ctx, e.output_t, c, hp.n_embd, e.output_t->nb[1], v0 * ggml_element_size(e.output_t));
        } else {
            ggml_tensor * w_c = ggml_view_2d(ctx, e.output, hp.n_embd, c, e.output->nb[1], v0 * e.output->nb[1]); // [n_embd, c]
            wt_c = weight_t(g, w_c, nullptr);
        }
        ggml_tensor * dl_c = ggml_view_2d(ctx, dlogits, c, n_t, dlogits->nb[1], v0 * ggml_element_size(dlogits)); // [c, n_t]
        ggml_tensor * part = ggml_mul_mat(ctx, wt_c, dl_c);                     // [n_embd, n_t]
        dhf_t = dhf_t ? ggml_add(ctx, dhf_t, part) : part;
    }
    // Backward twin of get_rows: scatter back with a 0/1 matrix (exact; GET_ROWS_BACK is missing
    // on Metal).
    g.in.scatter = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_t, T);              // [n_t, T]
    ggml_set_input(g.in.scatter);
    ggml_tensor * dhf = ggml_mul_mat(ctx, transpose_cont(ctx, dhf_t), g.in.scatter); // [n_embd, T]
    ggml_tensor * dx = rms_norm_back(g, x, nf, ggml_mul(ctx, dhf, e.output_norm)); // [n_embd, T]
    ggml_build_forward_expand(gf, dx);
    // Layer by layer, each expanded before the next is built, so that the node order (which the
    // allocator follows) is: recompute layer il (checkpointing), its backward, its adapter
    // gradient updates; then layer il-1. Whatever no later node reads is freed on the way.
    for (int il = (int) hp.n_layer - 1; il >= 0; il--) {
        layer_saved recomputed;
        const layer_saved * s = &saved[il];
        if (e.opts.checkpoint) {
            layer_forward(g, il, saved[il].x, recomputed, &saved[il]);
            s = &recomputed;
        }
        dx = layer_backward(g, il, *s, dx);
        if (dx) ggml_build_forward_expand(gf, dx);
        for (ggml_tensor * t : g.grad_updates) ggml_build_forward_expand(gf, t);
        g.grad_updates.clear();
    }
    return gf;
}

// Runs one sequence of T input tokens; targets[j] (token j+1) weighted by w[j].
struct seq_result { double loss = 0; int64_t n = 0; int64_t correct = 0; };

struct graph_run {
    std::vector<uint8_t> meta;
    ggml_context * ctx = nullptr;
    ~graph_run() { if (ctx) ggml_free(ctx); }
};

void make_graph_ctx(graph_run & run, const engine & e) {
    const size_t graph_size = 1024 + (size_t) e.hp.n_layer * 640;
    const size_t mem = ggml_tensor_overhead() * graph_size * 2 + ggml_graph_overhead_custom(graph_size, false);
    run.meta.resize(mem);
    ggml_init_params ip = { mem, run.meta.data(), true };
    run.ctx = ggml_init(ip);
}

void fill_common_inputs(graph_ctx & g, const int32_t * tokens) {
    const int64_t T = g.T;
    ggml_backend_tensor_set(g.in.tokens, tokens, 0, T * sizeof(int32_t));
    std::vector<int32_t> pos(T);
    for (int64_t i = 0; i < T; i++) pos[i] = (int32_t) i;
    ggml_backend_tensor_set(g.in.pos, pos.data(), 0, T * sizeof(int32_t));
    std::vector<float> mask(T * T);
    for (int64_t q = 0; q < T; q++) {
        for (int64_t k = 0; k < T; k++) mask[q * T + k] = k <= q ? 0.0f : -INFINITY;
    }
    ggml_backend_tensor_set(g.in.kq_mask, mask.data(), 0, mask.size() * sizeof(float));
}

std::vector<std::array<int, TARGET_COUNT>> lora_index(const engine & e) {
    std::vector<std::array<int, TARGET_COUNT>> idx(e.hp.n_layer);
    for (auto & a : idx) a.fill(-1);
    for (size_t i = 0; i < e.lora.size(); i++) idx[e.lora[i].layer][e.lora[i].target] = (int) i;
    return idx;
}

void compute(engine & e, ggml_cgraph * gf) {
    if (!ggml_gallocr_alloc_graph(e.galloc, gf)) {
        throw std::runtime_error("out of memory allocating the compute graph on " + e.device_name);
    }
}

bool is_weight(const engine & e, const ggml_tensor * t) {
    if (!t) return false;
    if (t->buffer == e.buf_w) return true;
    if (t->view_src) return is_weight(e, t->view_src);
    return (t->op == GGML_OP_MAP_CUSTOM1 || t->op == GGML_OP_CONT || t->op == GGML_OP_TRANSPOSE) && is_weight(e, t->src[0]);
}

bool op_is_view(ggml_op op) {
    return op == GGML_OP_NONE || op == GGML_OP_RESHAPE || op == GGML_OP_TRANSPOSE || op == GGML_OP_VIEW || op == GGML_OP_PERMUTE;
}

// "MUL_MAT bf16 x f32 (frozen weight)", "SOFT_MAX f32 x f32", "CUSTOM bf16 (weight transpose)" ...
std::string profile_key(const engine & e, const ggml_tensor * t) {
    std::string k = t->op == GGML_OP_UNARY ? std::string("UNARY ") + ggml_unary_op_name(ggml_get_unary_op(t)) : ggml_op_name(t->op);
    for (int j = 0; j < 2 && t->src[j]; j++) k += std::string(j ? " x " : " ") + ggml_type_name(t->src[j]->type);
    if (t->op == GGML_OP_MUL_MAT) {
        const int64_t r = e.opts.lora.r, V = e.hp.n_vocab;
        if (is_weight(e, t->src[0])) k += t->src[0]->ne[0] == V || t->src[0]->ne[1] == V ? " (output head)" : " (frozen weight)";
        else if (t->src[0]->ne[0] == r || t->src[0]->ne[1] == r || t->ne[0] == r || t->ne[1] == r) k += " (LoRA)";
        else k += " (attention)";
    } else if ((t->op == GGML_OP_MAP_CUSTOM1 || t->op == GGML_OP_CONT) && is_weight(e, t->src[0])) {
        k += " (weight transpose)";
    }
    return k;
}

void run_graph(engine & e, ggml_cgraph * gf, int n_forward) {
    if (!e.opts.profile) {
        const ggml_status st = ggml_backend_graph_compute(e.backend, gf);
        if (st != GGML_STATUS_SUCCESS) throw std::runtime_error(std::string("graph compute failed on ") + e.device_name + " (status " + std::to_string((int) st) + ")");
        return;
    }
    // One node at a time, timed. Adds a thread start-up per node: small next to the big products.
    std::map<std::pair<std::string, std::string>, profile_entry> acc;
    for (const profile_entry & p : e.profile) acc[{p.phase, p.op}] = p;
    std::vector<uint8_t> meta(ggml_graph_overhead_custom(1, false) + ggml_tensor_overhead());
    ggml_init_params ip = { meta.size(), meta.data(), true };
    ggml_context * ctx1 = ggml_init(ip);
    ggml_cgraph * one = ggml_new_graph_custom(ctx1, 1, false);
    const int n = ggml_graph_n_nodes(gf);
    for (int i = 0; i < n; i++) {
        ggml_tensor * t = ggml_graph_node(gf, i);
        if (op_is_view(t->op)) continue;
        ggml_graph_clear(one);
        ggml_graph_add_node(one, t);
        const auto t0 = std::chrono::steady_clock::now();
        const ggml_status st = ggml_backend_graph_compute(e.backend, one);
        ggml_backend_synchronize(e.backend);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (st != GGML_STATUS_SUCCESS) throw std::runtime_error(std::string("graph compute failed on ") + e.device_name + " (status " + std::to_string((int) st) + ")");
        const std::string phase = n_forward == 0 || i < n_forward ? "forward" : "backward";
        const std::string key = profile_key(e, t);
        profile_entry & p = acc[{phase, key}];
        p.phase = phase;
        p.op = key;
        p.count += 1;
        p.ms += ms;
        if (t->op == GGML_OP_MUL_MAT) p.flop += 2.0 * (double) t->src[0]->ne[0] * (double) ggml_nelements(t);
    }
    ggml_free(ctx1);
    e.profile.clear();
    for (auto & kv : acc) e.profile.push_back(kv.second);
}

// One sequence: tokens[0..n_in) are inputs; position j predicts tokens[j+1] with weight w[j].
seq_result run_sequence(engine & e, graph_mode mode, const int32_t * tokens, const float * mask_next,
                        int64_t T, float grad_scale) {
    graph_run run;
    make_graph_ctx(run, e);
    const bool dropout = mode == graph_mode::train && e.opts.lora.dropout > 0.0f;
    std::vector<int32_t> tgt; // positions with a target
    for (int64_t j = 0; j < T; j++) if (mask_next[j] != 0.0f) tgt.push_back((int32_t) j);
    const int64_t n_t = (int64_t) tgt.size();
    if (n_t == 0) return {};
    graph_ctx g{e, run.ctx, T, n_t, grad_scale, e.caps, mode, dropout, {}, lora_index(e), {}};
    graph_outputs out;
    ggml_cgraph * gf = build_graph(g, out);
    compute(e, gf);
    fill_common_inputs(g, tokens);

    const int64_t V = e.hp.n_vocab;
    ggml_backend_tensor_set(g.in.tgt, tgt.data(), 0, n_t * sizeof(int32_t));
    std::vector<int32_t> flat(n_t);
    for (int64_t i = 0; i < n_t; i++) flat[i] = (int32_t) (i * V + tokens[tgt[i] + 1]);
    ggml_backend_tensor_set(g.in.tgt_flat, flat.data(), 0, n_t * sizeof(int32_t));
    if (g.in.onehot) {
        std::vector<float> onehot((size_t) V * n_t, 0.0f);
        for (int64_t i = 0; i < n_t; i++) onehot[(size_t) flat[i]] = 1.0f;
        ggml_backend_tensor_set(g.in.onehot, onehot.data(), 0, onehot.size() * sizeof(float));
        std::vector<float> sc((size_t) n_t * T, 0.0f);
        for (int64_t i = 0; i < n_t; i++) sc[(size_t) tgt[i] * n_t + i] = 1.0f; // scatter[i, tgt[i]]
        ggml_backend_tensor_set(g.in.scatter, sc.data(), 0, sc.size() * sizeof(float));
    }
    if (dropout) {
        // Each adapted layer draws its own mask, as each PEFT module has its own nn.Dropout.
        // The stream is seeded by (seed, call number) so runs are reproducible.
        const float p = e.opts.lora.dropout, keep_scale = 1.0f / (1.0f - p);
        uint64_t s = e.opts.lora.seed * 0x9E3779B97F4A7C15ull + (++e.dropout_calls) * 0xD1B54A32D192ED03ull;
        std::vector<float> m;
        for (auto & dm : g.in.drop) {
            m.resize(ggml_nelements(dm.first));
            for (float & x : m) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17; // xorshift64
                x = ((double) (s >> 11) * (1.0 / 9007199254740992.0)) < p ? 0.0f : keep_scale;
            }
            ggml_backend_tensor_set(dm.first, m.data(), 0, m.size() * sizeof(float));
        }
    }
    run_graph(e, gf, out.n_forward);

    std::vector<float> pt(n_t);
    std::vector<int32_t> am(n_t);
    ggml_backend_tensor_get(out.p_target, pt.data(), 0, n_t * sizeof(float));
    ggml_backend_tensor_get(out.argmax, am.data(), 0, n_t * sizeof(int32_t));
    seq_result r;
    std::vector<float> row;
    for (int64_t i = 0; i < n_t; i++) {
        const int64_t j = tgt[i];
        double nll;
        if (pt[i] > 1e-30f) {
            nll = -std::log((double) pt[i]);
        } else {
            // the target's probability underflowed: take the exact log-softmax from the logits row
            row.resize(V);
            ggml_backend_tensor_get(out.logits, row.data(), (size_t) i * V * sizeof(float), V * sizeof(float));
            double mx = -INFINITY, sum = 0;
            for (float l : row) mx = std::max(mx, (double) l);
            for (float l : row) sum += std::exp((double) l - mx);
            nll = mx + std::log(sum) - row[tokens[j + 1]];
        }
        r.loss += nll;
        r.n += 1;
        r.correct += am[i] == tokens[j + 1];
    }
    return r;
}

batch_stats run_batch(engine & e, graph_mode mode, const int32_t * tokens, const uint8_t * mask,
                      int64_t n_seq, int64_t seq_len, float grad_scale) {
    if (n_seq <= 0 || seq_len <= 0) throw std::runtime_error("batch is empty");
    for (int64_t i = 0; i < n_seq * seq_len; i++) {
        if (tokens[i] < 0 || tokens[i] >= e.hp.n_vocab) {
            throw std::runtime_error("token id " + std::to_string(tokens[i]) + " at sequence " + std::to_string(i / seq_len) +
                ", position " + std::to_string(i % seq_len) + " is outside the vocabulary [0, " + std::to_string(e.hp.n_vocab) + ")");
        }
    }
    batch_stats st;
    std::vector<float> w;
    for (int64_t s = 0; s < n_seq; s++) {
        const int32_t * tk = tokens + s * seq_len;
        const uint8_t * mk = mask + s * seq_len;
        if (mk[0]) throw std::runtime_error("mask of sequence " + std::to_string(s) + " marks position 0, which has no preceding token to predict it from");
        int64_t last = -1;
        for (int64_t j = seq_len - 1; j >= 1; j--) if (mk[j]) { last = j; break; }
        if (last < 0) continue; // nothing to learn from this sequence
        const int64_t T = last; // inputs tokens[0..last), targets tokens[1..last]
        if (T > e.hp.n_ctx) {
            throw std::runtime_error("sequence " + std::to_string(s) + " needs " + std::to_string(T + 1) +
                " tokens but the model's context length is " + std::to_string(e.hp.n_ctx));
        }
        w.assign(T, 0.0f);
        for (int64_t j = 0; j < T; j++) w[j] = mk[j + 1] ? 1.0f : 0.0f;
        seq_result r = run_sequence(e, mode, tk, w.data(), T, grad_scale);
        st.loss_sum += r.loss;
        st.n_tokens += r.n;
        st.n_correct += r.correct;
    }
    return st;
}

} // namespace

batch_stats engine_accumulate(engine & e, const int32_t * tokens, const uint8_t * mask,
                              int64_t n_seq, int64_t seq_len, float grad_scale) {
    return run_batch(e, graph_mode::train, tokens, mask, n_seq, seq_len, grad_scale);
}

batch_stats engine_evaluate(engine & e, const int32_t * tokens, const uint8_t * mask,
                            int64_t n_seq, int64_t seq_len) {
    return run_batch(e, graph_mode::eval, tokens, mask, n_seq, seq_len, 0.0f);
}

std::vector<float> engine_logits(engine & e, const int32_t * tokens, int64_t T) {
    if (T <= 0) throw std::runtime_error("logits: no tokens");
    if (T > e.hp.n_ctx) throw std::runtime_error("logits: " + std::to_string(T) + " tokens exceed the model's context length " + std::to_string(e.hp.n_ctx));
    for (int64_t i = 0; i < T; i++) {
        if (tokens[i] < 0 || tokens[i] >= e.hp.n_vocab) {
            throw std::runtime_error("token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(e.hp.n_vocab) + ")");
        }
    }
    graph_run run;
    make_graph_ctx(run, e);
    graph_ctx g{e, run.ctx, T, T, 0.0f, e.caps, graph_mode::logits, false, {}, lora_index(e), {}};
    graph_outputs out;
    ggml_cgraph * gf = build_graph(g, out);
    compute(e, gf);
    fill_common_inputs(g, tokens);
    run_graph(e, gf, 0);
    std::vector<float> logits((size_t) T * e.hp.n_vocab);
    ggml_backend_tensor_get(out.logits, logits.data(), 0, logits.size() * sizeof(float));
    return logits;
}

std::vector<profile_entry> engine_profile_take(engine & e) {
    std::vector<profile_entry> p = std::move(e.profile);
    e.profile.clear();
    std::sort(p.begin(), p.end(), [](const profile_entry & a, const profile_entry & b) { return a.ms > b.ms; });
    return p;
}

size_t engine_compute_bytes(const engine & e) {
    return e.galloc ? ggml_gallocr_get_buffer_size(e.galloc, 0) : 0;
}

void engine_check_backend_ops(engine & e) {
    graph_run run;
    make_graph_ctx(run, e);
    graph_ctx g{e, run.ctx, 8, 4, 1.0f, e.caps, graph_mode::train, e.opts.lora.dropout > 0.0f, {}, lora_index(e), {}};
    graph_outputs out;
    ggml_cgraph * gf = build_graph(g, out);
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
        ggml_tensor * t = ggml_graph_node(gf, i);
        if (op_is_view(t->op)) continue; // views compute nothing
        if (!ggml_backend_supports_op(e.backend, t)) {
            std::string types;
            for (int j = 0; j < GGML_MAX_SRC && t->src[j]; j++) types += std::string(j ? ", " : "") + ggml_type_name(t->src[j]->type);
            throw std::runtime_error("the training graph needs " + std::string(ggml_op_desc(t)) + " (" + types + ") which the " +
                e.device_name + " backend does not support; nothing falls back to the CPU silently, so choose device 'cpu' or report this");
        }
    }
}

op_caps engine_probe_caps(engine & e) {
    std::vector<uint8_t> meta(ggml_tensor_overhead() * 16);
    ggml_init_params ip = { meta.size(), meta.data(), true };
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * a = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 8, 8, 2);  // [8, 8, 2]
    ggml_tensor * b = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 8, 8, 2);  // [8, 8, 2]
    ggml_tensor * c = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 4, 8);     // [4, 8]
    op_caps caps;
    caps.soft_max_back = ggml_backend_supports_op(e.backend, ggml_soft_max_ext_back(ctx, a, b, 0.5f, 0.0f));
    caps.rms_norm_back = ggml_backend_supports_op(e.backend, ggml_rms_norm_back(ctx, a, b, 1e-5f));
    caps.out_prod = ggml_backend_supports_op(e.backend, ggml_out_prod(ctx, ggml_view_2d(ctx, a, 8, 8, a->nb[1], 0), c));
    caps.custom_transpose = e.backend_cpu != nullptr; // custom ops run on the CPU backend only
    ggml_free(ctx);
    return caps;
}

std::vector<std::string> engine_graph_ops(engine & e, int64_t T, const op_caps * caps) {
    graph_run run;
    make_graph_ctx(run, e);
    graph_ctx g{e, run.ctx, T, T, 1.0f, caps ? *caps : e.caps, graph_mode::train, e.opts.lora.dropout > 0.0f, {}, lora_index(e), {}};
    graph_outputs out;
    ggml_cgraph * gf = build_graph(g, out);
    std::vector<std::string> ops;
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
        ggml_tensor * t = ggml_graph_node(gf, i);
        std::string s = t->op == GGML_OP_UNARY ? std::string("UNARY:") + ggml_unary_op_name(ggml_get_unary_op(t)) : ggml_op_name(t->op);
        for (int j = 0; j < GGML_MAX_SRC && t->src[j]; j++) {
            const ggml_tensor * src = t->src[j];
            const char * layout = ggml_is_contiguous(src) ? "" : src->nb[0] == ggml_type_size(src->type) ? "~" : "^";
            s += std::string(j ? "," : " ") + ggml_type_name(src->type) + layout;
        }
        if (t->op == GGML_OP_MUL_MAT && (t->src[0]->ne[2] < t->src[1]->ne[2] || t->src[0]->ne[3] < t->src[1]->ne[3])) s += " broadcast";
        ops.push_back(s);
    }
    return ops;
}

} // namespace t2s
