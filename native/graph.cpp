// The forward pass of a Llama-like block (llama, qwen2: q/k/v biases, qwen3: per-head q/k norm)
// with LoRA, and its hand-written backward pass, as one ggml graph. The order of ops follows
// llama.cpp's src/models/{llama,qwen2,qwen3}.cpp.
//
// Each forward piece has a backward twin (`*_back`). The backward never uses autodiff's OUT_PROD
// on a frozen weight: dX = Wᵀ·dY is a mul_mat against a transposed copy of W. Norm, softmax and
// cross-entropy gradients are composed from basic ops that every ggml backend (CPU, CUDA, Metal)
// implements, so nothing silently falls back to the CPU. The runner (runner.cpp) fills the
// inputs and computes the graph.
#include "graph.h"
#include "amx.h"
#include "bf16k.h"
#include "fused.h"
#include "kernels.h"
#include "lora.h"
#include "q8_gemm.h"
#include "quant.h"

#include <algorithm>
#include <cmath>

namespace t2s {

namespace {

// Node capacity of one graph: forward, backward and (checkpointing) recompute of every layer.
size_t graph_size(const llama_hparams & hp) { return 1024 + (size_t) hp.n_layer * 720; }

std::vector<std::array<int, TARGET_COUNT>> lora_index(const engine & e) {
    std::vector<std::array<int, TARGET_COUNT>> idx(e.hp.n_layer);
    for (auto & a : idx) a.fill(-1);
    for (size_t i = 0; i < e.lora.size(); i++) idx[e.lora[i].layer][e.lora[i].target] = (int) i;
    return idx;
}

// Saved forward state of one adapted linear layer, for its backward twin.
struct linear_saved {
    ggml_tensor * y    = nullptr;  // [n_out, T]  output (null when the recompute does not need it)
    ggml_tensor * x    = nullptr;  // [n_in, T]
    ggml_tensor * xd   = nullptr;  // [n_in, T]   dropout(x) (== x without dropout)
    ggml_tensor * t    = nullptr;  // [r, T]      A·xd
    ggml_tensor * mask = nullptr;  // [n_in, T] dropout mask (scaled by 1/(1-p)), or null
    int           lora = -1;
};

// x [a, b] -> contiguous [b, a]
ggml_tensor * transpose_cont(ggml_context * ctx, ggml_tensor * x) {
    return ggml_cont(ctx, ggml_transpose(ctx, x));  // [b, a]
}

// Wᵀ for dX = Wᵀ·dY: the copy made at load (fast mode) or a copy made in the graph (lean mode),
// which the allocator frees right after its product. On the CPU a tiled custom op makes it;
// GPU backends use their own copy kernel.
ggml_tensor * weight_t(graph_ctx & g, ggml_tensor * w, ggml_tensor * w_t) {
    if (w_t) return w_t;                                                                                       // [n_out, n_in]
    if (ggml_is_quantized(w->type)) return quant_weight_t(g, w);                                               // [n_out, n_in]
    ggml_tensor * wv = ggml_transpose(g.ctx, w);                                                               // [n_out, n_in] view
    if (g.caps.custom_transpose) return ggml_map_custom1(g.ctx, wv, transpose_op, GGML_N_TASKS_MAX, nullptr);  // [n_out, n_in]
    return ggml_cont(g.ctx, wv);                                                                               // [n_out, n_in]
}

// y + b with a frozen bias b [n_out] broadcast over the tokens (qwen2's q/k/v; llama.cpp adds it
// after the LoRA term, as here). Its backward twin is bias_add_back.
ggml_tensor * bias_add(graph_ctx & g, ggml_tensor * y, ggml_tensor * b) {
    return b ? ggml_add(g.ctx, y, b) : y;  // [n_out, T]
}

// Backward twin of bias_add(): dL/dy = dL/d(y + b); the frozen bias takes no gradient.
ggml_tensor * bias_add_back(ggml_tensor * dy) {
    return dy;  // [n_out, T]
}

// Whether a frozen BF16 weight's products run on the engine's CPU kernel (AMX tiles or AVX512-BF16,
// amx.h): where the engine runs one and the graph's backend runs custom ops (graphOps also builds
// the graph as for a GPU backend). The engine then holds that kernel's packed panels in w_t, not Wᵀ.
bool cpu_bf16_kernel(const graph_ctx & g, const ggml_tensor * w) { return g.e.amx && g.caps.custom_transpose && w->type == GGML_TYPE_BF16; }

// Whether text2sql's fused CPU ops (fused.h) build this graph: where the engine runs them and the
// graph's backend runs custom ops (as cpu_bf16_kernel); else ggml's composition of the same.
// Logits graphs (engine.logits: the llama.cpp agreement checks) keep ggml's composition: on a
// quantized model the 8-bit rounding of activations turns the fused sums' 1e-7 into 1e-3 there.
bool fused_ops(const graph_ctx & g) { return g.e.fused && g.caps.custom_transpose && g.mode != graph_mode::logits; }

// Whether layer il's product with a frozen weight (the down projection forward, gate and up
// backward) takes its input from a fused op that rounds it to BF16 itself (fused.h's *_bf16 ops)
// instead of an F32 tensor that bf16k_round then rounds: the AVX512-BF16 kernel on a BF16 weight
// with no adapter and no bias (nothing else reads that input), n_ff a multiple of 16, and
// TEXT2SQL_FUSED_BF16 not 0. The same values reach the product either way.
bool bf16_direct(const graph_ctx & g, int il, int target) {
    const llama_layer & L = g.e.layers[il];
    return g.e.fused_bf16 && fused_ops(g) && cpu_bf16_kernel(g, L.w[target]) && (amx_mode) g.e.amx == amx_mode::avx512 &&
           g.lora_idx[il][target] < 0 && !L.bias[target] && g.e.hp.n_ff % 16 == 0;
}

// Attention as the fused ops: where fused_ops() and the head size suits the kernel.
bool fused_attn(const graph_ctx & g) { return fused_ops(g) && attn_fits(g.e.hp.head_dim()); }

// Whether the adapters' rank-r products run as text2sql's fused CPU ops (lora.h): in training
// graphs, where the engine has them and the graph's backend runs custom ops (as fused_attn); else
// ggml's composition. The logits and eval graphs keep ggml's, which is llama.cpp's op for op: on a
// quantized model the activations' 8-bit rounding turns the fused sums' 1e-7 differences into
// 1e-3 in the logits, and engine-quant checks ours against llama.cpp's to 1e-5.
bool fused_lora(const graph_ctx & g) { return g.e.lora_k && g.caps.custom_transpose && g.mode == graph_mode::train; }

// w_t as a transposed copy: null where it holds the CPU kernel's packed panels instead
ggml_tensor * transposed_copy(const graph_ctx & g, const ggml_tensor * w, ggml_tensor * w_t) {
    return g.e.amx && w->type == GGML_TYPE_BF16 ? nullptr : w_t;  // [n_out, n_in]
}

// W·x for a frozen weight: ggml's mul_mat (quantized: quant.h), or the AMX-BF16 / AVX512-BF16
// kernel (amx.h) or the Q8_0 VNNI kernel (q8_gemm.h) when the engine runs it.
ggml_tensor * weight_mul(graph_ctx & g, ggml_tensor * w, ggml_tensor * x) {
    if (cpu_bf16_kernel(g, w)) {
        // one rounding (or packing) of x for all its products: q, k, v share theirs, gate and up theirs
        ggml_tensor *& xp = g.prepared_x[x];
        if (!xp) xp = amx_prepare_x(g.ctx, (amx_mode) g.e.amx, x);
        return amx_mul_mat(g.ctx, (amx_mode) g.e.amx, w, x, xp);                                       // [n_out, T]
    }
    if (g.e.q8_gemm && g.caps.custom_transpose && q8_gemm_fits(w, x)) return q8_mul_mat(g.ctx, w, x);  // [n_out, T]
    return ggml_mul_mat(g.ctx, quant_weight_fwd(g, w), x);                                             // [n_out, T]
}

// Wᵀ·dy for a frozen weight: through Wᵀ (weight_t), or the AMX kernel with w_t as W's packed
// panels (fast mode) or W packed per call (lean, w_t null). k0: w's first row in w_t (head chunks).
ggml_tensor * weight_mul_t(graph_ctx & g, ggml_tensor * w, ggml_tensor * w_t, ggml_tensor * dy, int64_t k0 = 0) {
    if (cpu_bf16_kernel(g, w)) return amx_mul_mat_t(g.ctx, (amx_mode) g.e.amx, w, w_t, k0, dy);  // [n_in, T]
    return ggml_mul_mat(g.ctx, weight_t(g, w, transposed_copy(g, w, w_t)), dy);                  // [n_in, T]
}

// y = W·x + s·B·(A·dropout(x)) (+ b)
// With `kept` (the first forward pass's state, when recomputing a checkpointed layer) the dropout
// mask is the one drawn then, and the output is taken from it when reuse_y is set; need_y = false
// recomputes only what linear_back needs.
ggml_tensor * linear(graph_ctx &          g,
                     int                  il,
                     int                  target,
                     ggml_tensor *        x,
                     linear_saved &       sv,
                     const linear_saved * kept    = nullptr,
                     bool                 reuse_y = false,
                     bool                 need_y  = true) {
    engine &       e        = g.e;
    ggml_context * ctx      = g.ctx;
    sv.x                    = x;
    sv.lora                 = g.lora_idx[il][target];
    const bool    compute_y = need_y && !(kept && reuse_y);
    ggml_tensor * y         = compute_y ? weight_mul(g, e.layers[il].w[target], x) : nullptr;  // [n_out, T]
    if (sv.lora >= 0) {
        lora_pair &   p  = e.lora[sv.lora];
        ggml_tensor * xd = x;
        if (kept) {
            sv.mask = kept->mask;
        } else if (g.dropout) {
            sv.mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, x->ne[0], x->ne[1]);  // [n_in, T]
            ggml_set_input(sv.mask);
            g.in.drop.emplace_back(sv.mask, sv.lora);
        }
        if (fused_lora(g)) {
            // t and y_base + s·B·t in one op, the mask applied as it reads x (no xd tensor: sv.xd stays null)
            const lora_fwd_out f = lora_forward(ctx, (fused_mode) e.lora_k, x, sv.mask, p.a, p.b, y, e.opts.lora.scale());
            sv.t                 = f.t;                                                       // [r, T]
            if (compute_y) y = f.y;                                                           // [n_out, T]
        } else {
            if (sv.mask) xd = ggml_mul(ctx, x, sv.mask);                                      // [n_in, T]
            sv.xd = xd;
            sv.t  = ggml_mul_mat(ctx, p.a, xd);                                               // [r, T]
            if (compute_y) {
                ggml_tensor * u = ggml_mul_mat(ctx, p.b, sv.t);                               // [n_out, T]
                y               = ggml_add(ctx, y, ggml_scale(ctx, u, e.opts.lora.scale()));  // [n_out, T]
            }
        }
    }
    if (compute_y) y = bias_add(g, y, e.layers[il].bias[target]);  // [n_out, T]
    sv.y = compute_y ? y : (kept && reuse_y ? kept->y : nullptr);
    return sv.y;
}

// Backward twin of linear(): accumulates dA, dB and returns dx = Wᵀ·dy + Aᵀ·(s·Bᵀ·dy) ⊙ mask
// (null when need_dx is false: the first layer's input gradient is not needed).
ggml_tensor * linear_back(graph_ctx & g, int il, int target, const linear_saved & sv, ggml_tensor * dy, bool need_dx = true) {
    engine &       e   = g.e;
    ggml_context * ctx = g.ctx;
    if (e.layers[il].bias[target]) dy = bias_add_back(dy);                                                        // [n_out, T]
    ggml_tensor * dx = need_dx ? weight_mul_t(g, e.layers[il].w[target], e.layers[il].wt[target], dy) : nullptr;  // [n_in, T]
    if (sv.lora < 0) return dx;
    lora_pair & p = e.lora[sv.lora];
    const float s = e.opts.lora.scale();
    if (fused_lora(g)) {
        // dt, then dx; the ops add dB into p.gb and dA into p.ga as they run
        const fused_mode m  = (fused_mode) e.lora_k;
        ggml_tensor *    dt = lora_backward_b(ctx, m, dy, sv.t, p.b, p.gb, s);               // [r, T]
        ggml_tensor *    da = lora_backward_a(ctx, m, dt, sv.x, sv.mask, p.a, p.ga, dx);     // [n_in, T] (dx), or [1] without need_dx
        g.grad_updates.push_back(da);
        return need_dx ? da : nullptr;                                                       // [n_in, T]
    }
    ggml_tensor * dt = ggml_scale(ctx, ggml_mul_mat(ctx, transpose_cont(ctx, p.b), dy), s);  // [r, T]  s·Bᵀ·dy
    ggml_tensor * dA, *dB;
    if (g.caps.out_prod) {
        // sums over tokens as outer products: no transposed copies of the [·, T] activations
        dB = ggml_scale(ctx, ggml_out_prod(ctx, sv.t, dy), s);                                           // [r, n_out]  s·t·dyᵀ
        dA = ggml_out_prod(ctx, sv.xd, dt);                                                              // [n_in, r]   xd·dtᵀ
    } else {
        dB = ggml_scale(ctx, ggml_mul_mat(ctx, transpose_cont(ctx, sv.t), transpose_cont(ctx, dy)), s);  // [r, n_out]
        dA = ggml_mul_mat(ctx, transpose_cont(ctx, sv.xd), transpose_cont(ctx, dt));                     // [n_in, r]
    }
    g.grad_updates.push_back(ggml_cpy(ctx, ggml_add(ctx, p.ga, dA), p.ga));                              // [n_in, r]
    g.grad_updates.push_back(ggml_cpy(ctx, ggml_add(ctx, p.gb, dB), p.gb));                              // [r, n_out]
    if (!need_dx) return nullptr;
    ggml_tensor * dxd = ggml_mul_mat(ctx, transpose_cont(ctx, p.a), dt);                                 // [n_in, T]
    if (sv.mask) dxd = ggml_mul(ctx, dxd, sv.mask);                                                      // [n_in, T]
    return ggml_add(ctx, dx, dxd);                                                                       // [n_in, T]
}

// RMS norm without the weight: n = x / sqrt(mean(x²) + eps).
// Backward twin: ggml's RMS_NORM_BACK where the backend has it, else composed from basic ops
// (Metal): dx = (dn - n · mean(dn ⊙ n)) / sqrt(mean(x²) + eps)
ggml_tensor * rms_norm_back(graph_ctx & g, ggml_tensor * x, ggml_tensor * n, ggml_tensor * dn) {
    ggml_context * ctx = g.ctx;
    // x, n, dn: [n_embd, T], or [hd, n_heads, T] for a head norm (rows of ne[0] normalised)
    if (g.caps.rms_norm_back) return ggml_rms_norm_back(ctx, dn, x, g.e.hp.rms_eps);                                          // [n_embd, T]
    const float   inv_n = 1.0f / (float) x->ne[0];
    ggml_tensor * rms   = ggml_sqrt(ctx, ggml_scale_bias(ctx, ggml_sum_rows(ctx, ggml_sqr(ctx, x)), inv_n, g.e.hp.rms_eps));  // [1, T]
    ggml_tensor * c     = ggml_scale(ctx, ggml_sum_rows(ctx, ggml_mul(ctx, dn, n)), inv_n);                                   // [1, T]
    return ggml_div(ctx, ggml_sub(ctx, dn, ggml_mul(ctx, n, c)), rms);                                                        // [n_embd, T]
}

// The fused RMS norms (fused.h: ggml's RMS_NORM + MUL and MUL + RMS_NORM_BACK + ADD, bit for bit)
// where the fused ops run, the backend has RMS_NORM_BACK (the CPU) and the tensors are contiguous.
bool fused_norm(const graph_ctx & g, const ggml_tensor * x) {
    return g.e.norm_k && fused_ops(g) && g.caps.rms_norm_back && ggml_is_contiguous(x);
}

// rms_norm(x) ⊙ w for rows of x [n, ...], w [n] (the model's norms, Qwen3's per-head norms of q and
// k); n: the normalised x before the weight, kept for norm_mul_back (null with the fused norm, whose
// backward needs only x).
ggml_tensor * norm_mul(graph_ctx & g, ggml_tensor * x, ggml_tensor * w, ggml_tensor *& n) {
    if (fused_norm(g, x)) {
        n = nullptr;
        return rms_norm_mul(g.ctx, (fused_mode) g.e.norm_k, x, w, g.e.hp.rms_eps);  // [n, ...]
    }
    n = ggml_rms_norm(g.ctx, x, g.e.hp.rms_eps);                                    // [n, ...]
    return ggml_mul(g.ctx, n, w);                                                   // [n, ...]
}

// Backward twin of norm_mul(): dres + rms_norm_back(x, n, dh ⊙ w) (dres null: none); the norm's
// weight is frozen.
ggml_tensor * norm_mul_back(graph_ctx & g, ggml_tensor * x, ggml_tensor * n, ggml_tensor * w, ggml_tensor * dh, ggml_tensor * dres) {
    if (fused_norm(g, x) && ggml_is_contiguous(dh) && (!dres || ggml_is_contiguous(dres))) {
        return rms_norm_mul_back(g.ctx, (fused_mode) g.e.norm_k, x, dh, w, dres, g.e.hp.rms_eps);  // [n, ...]
    }
    GGML_ASSERT(n || g.caps.rms_norm_back);
    ggml_tensor * dx = rms_norm_back(g, x, n, ggml_mul(g.ctx, dh, w));  // [n, ...]
    return dres ? ggml_add(g.ctx, dres, dx) : dx;                       // [n, ...]
}

// Backward twin of P = softmax(scale·S + mask): dS = scale · P ⊙ (dP - Σ_k dP ⊙ P). ggml's
// SOFT_MAX_BACK where the backend has it, else composed from basic ops (Metal).
ggml_tensor * soft_max_back(graph_ctx & g, ggml_tensor * p, ggml_tensor * dp, float scale) {
    ggml_context * ctx = g.ctx;
    if (g.caps.soft_max_back) return ggml_soft_max_ext_back(ctx, dp, p, scale, 0.0f);  // [T_k, T_q, n_head]
    ggml_tensor * dot = ggml_sum_rows(ctx, ggml_mul(ctx, dp, p));                      // [1, T_q, n_head]
    return ggml_scale(ctx, ggml_mul(ctx, p, ggml_sub(ctx, dp, dot)), scale);           // [T_k, T_q, n_head]
}

// RoPE on x [hd, n_heads, T] (q or k), positions 0..T-1, in the architecture's mode (llama: NORM,
// adjacent pairs; qwen2/qwen3: NEOX, pairs half a head apart) with llama3's frequency factors
// (rope_freqs.weight) where the model has them; its backward twin is rope_back.
ggml_tensor * rope(graph_ctx & g, ggml_tensor * x) {
    const llama_hparams & hp = g.e.hp;
    return ggml_rope_ext(g.ctx, x, g.in.pos, g.e.rope_freqs, (int) hp.n_rot, hp.rope_type, (int) hp.n_ctx, hp.rope_freq_base,
                         hp.rope_freq_scale, 0.0f, 1.0f, 0.0f, 0.0f);  // [hd, n_heads, T]
}

// Backward twin of rope(): the inverse rotation of dy [hd, n_heads, T].
ggml_tensor * rope_back(graph_ctx & g, ggml_tensor * dy) {
    const llama_hparams & hp = g.e.hp;
    return ggml_rope_ext_back(g.ctx, dy, g.in.pos, g.e.rope_freqs, (int) hp.n_rot, hp.rope_type, (int) hp.n_ctx, hp.rope_freq_base,
                              hp.rope_freq_scale, 0.0f, 1.0f, 0.0f, 0.0f);  // [hd, n_heads, T]
}

// [X, T, n_head] (contiguous) -> [T·g, X, n_head_kv]: the heads sharing one K/V head are folded
// into the contracted dimension, so one mul_mat sums their contributions to dK or dV.
ggml_tensor * fold_heads(graph_ctx & g, ggml_tensor * t) {
    const llama_hparams & hp  = g.e.hp;
    const int64_t         grp = hp.n_head / hp.n_head_kv;
    const int64_t         X = t->ne[0], T = t->ne[1];
    ggml_tensor *         t4 = ggml_reshape_4d(g.ctx, t, X, T, grp, hp.n_head_kv);     // [X, T, g, n_kv]
    ggml_tensor *         p  = ggml_cont(g.ctx, ggml_permute(g.ctx, t4, 2, 0, 1, 3));  // [T, g, X, n_kv]
    return ggml_reshape_3d(g.ctx, p, T * grp, X, hp.n_head_kv);                        // [T·g, X, n_kv]
}

struct layer_saved {
    ggml_tensor * x = nullptr, *n1 = nullptr, *x1 = nullptr, *n2 = nullptr;  // [n_embd, T]
    ggml_tensor * qr = nullptr;                                              // [hd, n_head, T]     roped q
    ggml_tensor * kr = nullptr;                                              // [hd, n_head_kv, T]  roped k
    ggml_tensor * q3 = nullptr, *qn = nullptr;                               // [hd, n_head, T]     q before / in its head norm (qwen3)
    ggml_tensor * k3 = nullptr, *kn = nullptr;                               // [hd, n_head_kv, T]  k before / in its head norm (qwen3)
    ggml_tensor * v3 = nullptr;                                              // [hd, n_head_kv, T]
    ggml_tensor * p  = nullptr;                                              // [T_k, T_q, n_head]  attention probabilities
    ggml_tensor * g = nullptr, *sg = nullptr, *u = nullptr;                  // [n_ff, T]
    linear_saved  lin[TARGET_COUNT];
};

// One block (llama, qwen2, qwen3). Returns x2 = x1 + FFN(norm(x1)), x1 = x + Attn(norm(x)).
// Recompute for a checkpointed layer: `kept` is the first pass's state. The outputs of the q, k, v
// and o projections are taken from it; the rest is computed again, except the block's output (the
// next layer's kept input): it returns null then.
ggml_tensor * layer_forward(graph_ctx & g, int il, ggml_tensor * x, layer_saved & s, const layer_saved * kept = nullptr) {
    engine &              e   = g.e;
    ggml_context *        ctx = g.ctx;
    const llama_hparams & hp  = e.hp;
    const llama_layer &   L   = e.layers[il];
    const int64_t         T = g.T, hd = hp.head_dim();

    s.x              = x;                                  // [n_embd, T]
    ggml_tensor * h  = norm_mul(g, x, L.attn_norm, s.n1);  // [n_embd, T]
    auto          kl = [&](int t) {
        return kept ? &kept->lin[t] : nullptr;
    };
    ggml_tensor * q  = linear(g, il, TARGET_Q, h, s.lin[TARGET_Q], kl(TARGET_Q), true);  // [n_embd_q, T]
    ggml_tensor * k  = linear(g, il, TARGET_K, h, s.lin[TARGET_K], kl(TARGET_K), true);  // [n_embd_kv, T]
    ggml_tensor * v  = linear(g, il, TARGET_V, h, s.lin[TARGET_V], kl(TARGET_V), true);  // [n_embd_kv, T]
    ggml_tensor * q3 = ggml_reshape_3d(ctx, q, hd, hp.n_head, T);                        // [hd, n_head, T]
    ggml_tensor * k3 = ggml_reshape_3d(ctx, k, hd, hp.n_head_kv, T);                     // [hd, n_head_kv, T]
    if (L.attn_q_norm) {
        s.q3 = q3;
        q3   = norm_mul(g, q3, L.attn_q_norm, s.qn);  // [hd, n_head, T]
    }
    if (L.attn_k_norm) {
        s.k3 = k3;
        k3   = norm_mul(g, k3, L.attn_k_norm, s.kn);      // [hd, n_head_kv, T]
    }
    s.qr = rope(g, q3);                                   // [hd, n_head, T]
    s.kr = rope(g, k3);                                   // [hd, n_head_kv, T]
    s.v3 = ggml_reshape_3d(ctx, v, hd, hp.n_head_kv, T);  // [hd, n_head_kv, T]

    ggml_tensor * o;                                      // [n_embd_q, T]
    if (fused_attn(g)) {
        const attn_fwd_out a = attn_forward(ctx, (fused_mode) e.fused, s.qr, attn_pack_t(ctx, (fused_mode) e.fused, s.kr), s.v3);
        s.p                  = a.p;                                                                       // [T_pad, T_q, n_head]
        o                    = a.o;                                                                       // [n_embd_q, T]
    } else {
        ggml_tensor * Q  = ggml_permute(ctx, s.qr, 0, 2, 1, 3);                                           // [hd, T, n_head]
        ggml_tensor * K  = ggml_permute(ctx, s.kr, 0, 2, 1, 3);                                           // [hd, T, n_head_kv]
        ggml_tensor * kq = ggml_mul_mat(ctx, K, Q);                                                       // [T_k, T_q, n_head]
        s.p              = ggml_soft_max_ext(ctx, kq, g.in.kq_mask, 1.0f / std::sqrt((float) hd), 0.0f);  // [T_k, T_q, n_head]
        ggml_tensor * Vt = ggml_cont(ctx, ggml_permute(ctx, s.v3, 1, 2, 0, 3));                           // [T_k, hd, n_head_kv]
        o                = ggml_mul_mat(ctx, Vt, s.p);                                                    // [hd, T_q, n_head]
        o                = ggml_cont(ctx, ggml_permute(ctx, o, 0, 2, 1, 3));                              // [hd, n_head, T]
        o                = ggml_reshape_2d(ctx, o, hp.n_embd_q(), T);                                     // [n_embd_q, T]
    }
    o    = linear(g, il, TARGET_O, o, s.lin[TARGET_O], kl(TARGET_O), true);                               // [n_embd, T]
    s.x1 = ggml_add(ctx, x, o);                                                                           // [n_embd, T]

    ggml_tensor * h2       = norm_mul(g, s.x1, L.ffn_norm, s.n2);                                         // [n_embd, T]
    // With checkpointing, the gate/up outputs (the FFN's two biggest products) are kept for the
    // last layers that fit graph_ctx::keep_ffn_from's budget, and recomputed for the others.
    const bool    keep_ffn = il >= g.keep_ffn_from;
    s.g                    = linear(g, il, TARGET_GATE, h2, s.lin[TARGET_GATE], kl(TARGET_GATE), keep_ffn);  // [n_ff, T]
    s.u                    = linear(g, il, TARGET_UP, h2, s.lin[TARGET_UP], kl(TARGET_UP), keep_ffn);        // [n_ff, T]
    if (bf16_direct(g, il, TARGET_DOWN)) {
        // silu(g) ⊙ u straight into the down product's BF16 input (no recompute needs the product)
        linear_saved & sv = s.lin[TARGET_DOWN];
        sv.y = kept ? nullptr : bf16k_mul_mat_r(ctx, L.w[TARGET_DOWN], swiglu_forward_bf16(ctx, (fused_mode) e.fused, s.g, s.u), T);
        return kept ? nullptr : ggml_add(ctx, s.x1, sv.y);        // [n_embd, T]
    }
    ggml_tensor * a;                                              // [n_ff, T]  silu(g) ⊙ u
    if (fused_ops(g)) {
        a = swiglu_forward(ctx, (fused_mode) e.fused, s.g, s.u);  // [n_ff, T]  (its backward twin recomputes silu(g): no s.sg kept)
    } else {
        s.sg = ggml_silu(ctx, s.g);                               // [n_ff, T]
        a    = ggml_mul(ctx, s.sg, s.u);                          // [n_ff, T]
    }
    ggml_tensor * d = linear(g, il, TARGET_DOWN, a, s.lin[TARGET_DOWN], kl(TARGET_DOWN), false, !kept);  // [n_embd, T]
    return kept ? nullptr : ggml_add(ctx, s.x1, d);                                                      // [n_embd, T]
}

// Backward twin of ggml's composition of attention (layer_forward's path off the fused ops): dO
// [hd, n_head, T] -> dq, dk (through rope_back) and dv, each [hd, n_heads, T].
void attention_back(graph_ctx & g, const layer_saved & s, ggml_tensor * d_o, ggml_tensor *& dq, ggml_tensor *& dk, ggml_tensor *& dv) {
    ggml_context * ctx = g.ctx;
    const int64_t  hd  = g.e.hp.head_dim();
    ggml_tensor *  dO  = ggml_cont(ctx, ggml_permute(ctx, d_o, 0, 2, 1, 3));  // [hd, T_q, n_head]

    // O = V·P: dP = Vᵀ·dO, dV = Σ_(q, heads of the group) dO·Pᵀ
    ggml_tensor * V  = ggml_permute(ctx, s.v3, 0, 2, 1, 3);                       // [hd, T_k, n_head_kv]
    ggml_tensor * dP = ggml_mul_mat(ctx, V, dO);                                  // [T_k, T_q, n_head]
    ggml_tensor * dV = ggml_mul_mat(ctx, fold_heads(g, dO), fold_heads(g, s.p));  // [hd, T_k, n_head_kv]

    // S = scale·K·Q + mask, P = softmax(S)
    ggml_tensor * dS = soft_max_back(g, s.p, dP, 1.0f / std::sqrt((float) hd));  // [T_k, T_q, n_head]
    ggml_tensor * Kt = ggml_cont(ctx, ggml_permute(ctx, s.kr, 1, 2, 0, 3));      // [T_k, hd, n_head_kv]
    ggml_tensor * dQ = ggml_mul_mat(ctx, Kt, dS);                                // [hd, T_q, n_head]
    ggml_tensor * Q  = ggml_cont(ctx, ggml_permute(ctx, s.qr, 0, 2, 1, 3));      // [hd, T_q, n_head]
    // dK[d, k, j] = Σ_(q, heads i of group j) dS[k, q, h] · Q[d, q, h]
    ggml_tensor * dK = ggml_mul_mat(ctx, fold_heads(g, Q), fold_heads(g, dS));  // [hd, T_k, n_head_kv]

    dq = rope_back(g, ggml_cont(ctx, ggml_permute(ctx, dQ, 0, 2, 1, 3)));       // [hd, n_head, T]
    dk = rope_back(g, ggml_cont(ctx, ggml_permute(ctx, dK, 0, 2, 1, 3)));       // [hd, n_head_kv, T]
    dv = ggml_cont(ctx, ggml_permute(ctx, dV, 0, 2, 1, 3));                     // [hd, n_head_kv, T]
}

// Backward twin of layer_forward(): dx2 -> dx.
ggml_tensor * layer_backward(graph_ctx & g, int il, const layer_saved & s, ggml_tensor * dx2) {
    engine &              e   = g.e;
    ggml_context *        ctx = g.ctx;
    const llama_hparams & hp  = e.hp;
    const llama_layer &   L   = e.layers[il];
    const int64_t         T = g.T, hd = hp.head_dim();

    // FFN
    ggml_tensor * da = linear_back(g, il, TARGET_DOWN, s.lin[TARGET_DOWN], dx2);  // [n_ff, T]
    ggml_tensor * dh2;                                                            // [n_embd, T]
    if (bf16_direct(g, il, TARGET_GATE) && bf16_direct(g, il, TARGET_UP)) {
        // dg and du straight into the BF16 inputs of Wgᵀ·dg and Wuᵀ·du
        const swiglu_grads sw = swiglu_backward_bf16(ctx, (fused_mode) e.fused, da, s.g, s.u);  // each [lda, T_pad] bf16
        dh2                   = ggml_add(ctx, bf16k_mul_mat_t_r(ctx, L.w[TARGET_GATE], L.wt[TARGET_GATE], 0, sw.dg, T),
                                         bf16k_mul_mat_t_r(ctx, L.w[TARGET_UP], L.wt[TARGET_UP], 0, sw.du, T));
    } else {
        ggml_tensor *du, *dg;  // [n_ff, T]
        if (fused_ops(g)) {
            const swiglu_grads sw = swiglu_backward(ctx, (fused_mode) e.fused, da, s.g, s.u);
            du                    = sw.du;
            dg                    = sw.dg;
        } else {
            du = ggml_mul(ctx, da, s.sg);                           // [n_ff, T]
            dg = ggml_silu_back(ctx, ggml_mul(ctx, da, s.u), s.g);  // [n_ff, T]
        }
        dh2 = ggml_add(ctx, linear_back(g, il, TARGET_GATE, s.lin[TARGET_GATE], dg), linear_back(g, il, TARGET_UP, s.lin[TARGET_UP], du));
    }
    ggml_tensor * dx1 = norm_mul_back(g, s.x1, s.n2, L.ffn_norm, dh2, dx2);  // [n_embd, T]

    // attention output projection
    ggml_tensor * dattn = linear_back(g, il, TARGET_O, s.lin[TARGET_O], dx1);  // [n_embd_q, T]
    ggml_tensor * dO    = ggml_reshape_3d(ctx, dattn, hd, hp.n_head, T);       // [hd, n_head, T]
    ggml_tensor * dq, *dk, *dv;                                                // [hd, n_head | n_head_kv, T]
    if (fused_attn(g)) {
        const fused_mode m  = (fused_mode) e.fused;
        const attn_grads gr = attn_backward(ctx, m, s.qr, s.kr, attn_pack_t(ctx, m, s.v3), s.p, dO);
        dq                  = rope_back(g, gr.dq);  // [hd, n_head, T]
        dk                  = rope_back(g, gr.dk);  // [hd, n_head_kv, T]
        dv                  = gr.dv;                // [hd, n_head_kv, T]
    } else {
        attention_back(g, s, dO, dq, dk, dv);
    }
    if (L.attn_q_norm) dq = norm_mul_back(g, s.q3, s.qn, L.attn_q_norm, dq, nullptr);  // [hd, n_head, T]
    if (L.attn_k_norm) dk = norm_mul_back(g, s.k3, s.kn, L.attn_k_norm, dk, nullptr);  // [hd, n_head_kv, T]

    // The first layer's input gradient (into the frozen embeddings) is not needed: only the
    // adapters' gradients are computed there.
    const bool    need_dx = il > 0;
    ggml_tensor * dhq = linear_back(g, il, TARGET_Q, s.lin[TARGET_Q], ggml_reshape_2d(ctx, dq, hp.n_embd_q(), T), need_dx);   // [n_embd, T]
    ggml_tensor * dhk = linear_back(g, il, TARGET_K, s.lin[TARGET_K], ggml_reshape_2d(ctx, dk, hp.n_embd_kv(), T), need_dx);  // [n_embd, T]
    ggml_tensor * dhv = linear_back(g, il, TARGET_V, s.lin[TARGET_V], ggml_reshape_2d(ctx, dv, hp.n_embd_kv(), T), need_dx);  // [n_embd, T]
    if (!need_dx) return nullptr;
    ggml_tensor * dh = ggml_add(ctx, ggml_add(ctx, dhq, dhk), dhv);                                                           // [n_embd, T]
    return norm_mul_back(g, s.x, s.n1, L.attn_norm, dh, dx1);                                                                 // [n_embd, T]
}

// The gradient of the loss with respect to the target logits [n_vocab, n_t]: the fused head's
// P - onehot (⊙ w_t) scaled in place, or ggml's composition from P.
ggml_tensor * logits_back(graph_ctx & g, const ce_grads & ce, ggml_tensor * P) {
    ggml_context * ctx = g.ctx;
    const int64_t  n_t = g.n_t;
    // d(grad_scale · Σ NLL)/d logits = grad_scale · (P - onehot); weighted:
    // d(-grad_scale · Σ_t w_t · log softmax(z_t / temp)[target])/dz_t = grad_scale · w_t / temp · (P - onehot)
    const float    k   = g.weighted ? g.grad_scale * g.inv_temp : g.grad_scale;
    ggml_tensor *  dlogits;                                                         // [n_vocab, n_t]
    if (ce.d) {
        dlogits = ggml_scale_inplace(ctx, ce.d, k);                                 // [n_vocab, n_t]
    } else {
        g.in.onehot = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, g.e.hp.n_vocab, n_t);  // [n_vocab, n_t]
        ggml_set_input(g.in.onehot);
        ggml_tensor * d = ggml_sub(ctx, P, g.in.onehot);                            // [n_vocab, n_t]
        if (g.weighted) d = ggml_mul(ctx, d, g.in.tw);                              // [n_vocab, n_t]
        dlogits = ggml_scale(ctx, d, k);                                            // [n_vocab, n_t]
    }
    return dlogits;
}

}  // namespace

ggml_cgraph * build_graph(graph_ctx & g, graph_outputs & out) {
    engine &              e   = g.e;
    ggml_context *        ctx = g.ctx;
    const llama_hparams & hp  = e.hp;
    const int64_t         T   = g.T;

    g.in.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);  // [T]
    g.in.pos    = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);  // [T]
    ggml_set_input(g.in.tokens);
    ggml_set_input(g.in.pos);
    if (!fused_attn(g)) {
        // the causal mask of ggml's soft_max_ext (the fused ops stop each row at the diagonal)
        g.in.kq_mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, T, T);  // [T_k, T_q]
        ggml_set_input(g.in.kq_mask);
    }

    ggml_cgraph * gf = ggml_new_graph_custom(ctx, graph_size(hp), false);

    ggml_tensor *            x = ggml_get_rows(ctx, e.tok_embd, g.in.tokens);  // [n_embd, T]
    std::vector<layer_saved> saved(hp.n_layer);
    for (int il = 0; il < hp.n_layer; il++) x = layer_forward(g, il, x, saved[il]);
    ggml_tensor * nf;                                      // [n_embd, T]  (null with the fused norm)
    ggml_tensor * hf = norm_mul(g, x, e.output_norm, nf);  // [n_embd, T]
    if (g.mode == graph_mode::logits) {
        out.logits = weight_mul(g, e.output, hf);          // [n_vocab, T]
        ggml_set_output(out.logits);
        ggml_build_forward_expand(gf, out.logits);
        return gf;
    }

    // Only positions with a target go through the output head: prompt positions carry no loss,
    // and the [n_vocab, ·] products and element-wise ops are a tenth of a step.
    const int64_t n_t = g.n_t;
    g.in.tgt          = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_t);               // [n_t]
    ggml_set_input(g.in.tgt);
    ggml_tensor * hf_t = ggml_get_rows(ctx, hf, g.in.tgt);                         // [n_embd, n_t]
    out.logits         = weight_mul(g, e.output, hf_t);                            // [n_vocab, n_t]
    if (g.inv_temp != 1.0f) out.logits = ggml_scale(ctx, out.logits, g.inv_temp);  // [n_vocab, n_t]
    ggml_set_output(out.logits);
    g.in.tgt_flat = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_t);                   // [n_t]
    ggml_set_input(g.in.tgt_flat);
    if (g.weighted) {
        g.in.tw = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, n_t);  // [1, n_t]
        ggml_set_input(g.in.tw);
    }
    out.argmax      = ggml_argmax(ctx, out.logits);  // [n_t]
    // train on the fused ops: P at the targets, then P - onehot (⊙ w_t) in the logits' memory after
    // the argmax read them, without P or a one-hot matrix (fused.h); else ggml's softmax, get_rows,
    // and below sub and mul
    ggml_tensor * P = nullptr;  // [n_vocab, n_t]
    ce_grads      ce;
    if (g.mode == graph_mode::train && fused_ops(g)) {
        ce             = ce_backward(ctx, (fused_mode) e.fused, out.logits, g.in.tgt_flat, g.in.tw, out.argmax);
        out.p_target   = ce.p_target;  // [1, n_t]
        out.logp_exact = ce.logp;      // [1, n_t]
        out.logits     = nullptr;      // overwritten by the gradient
        ggml_set_output(out.logp_exact);
        ggml_build_forward_expand(gf, out.logp_exact);
    } else {
        P            = ggml_soft_max(ctx, out.logits);                                                   // [n_vocab, n_t]
        out.p_target = ggml_get_rows(ctx, ggml_reshape_2d(ctx, P, 1, hp.n_vocab * n_t), g.in.tgt_flat);  // [1, n_t]
    }
    ggml_set_output(out.p_target);
    ggml_set_output(out.argmax);
    ggml_build_forward_expand(gf, out.p_target);
    ggml_build_forward_expand(gf, out.argmax);
    out.n_forward = ggml_graph_n_nodes(gf);
    if (g.mode == graph_mode::eval) return gf;

    ggml_tensor * dlogits = logits_back(g, ce, P);  // [n_vocab, n_t]
    // dhf = outputᵀ·dlogits in vocabulary chunks, so that lean mode's transposed copy of the
    // output matrix is a chunk at a time (16 MB instead of 131 MB at TinyLlama shape). Fast mode
    // reads the same chunks from its full copy, so both sum in the same order.
    ggml_tensor * dhf_t   = nullptr;  // [n_embd, n_t]
    const int64_t V = hp.n_vocab, C = 4096;
    for (int64_t v0 = 0; v0 < V; v0 += C) {
        const int64_t c    = std::min(C, V - v0);
        ggml_tensor * dl_c = ggml_view_2d(ctx, dlogits, c, n_t, dlogits->nb[1], v0 * ggml_element_size(dlogits));   // [c, n_t]
        if (cpu_bf16_kernel(g, e.output)) {
            ggml_tensor * w_c  = ggml_view_2d(ctx, e.output, hp.n_embd, c, e.output->nb[1], v0 * e.output->nb[1]);  // [n_embd, c]
            ggml_tensor * part = weight_mul_t(g, w_c, e.output_t, dl_c, e.output_t ? v0 : 0);                       // [n_embd, n_t]
            dhf_t              = dhf_t ? ggml_add(ctx, dhf_t, part) : part;                                         // [n_embd, n_t]
            continue;
        }
        ggml_tensor * wt_c;                                                                                             // [c, n_embd]
        if (transposed_copy(g, e.output, e.output_t)) {
            wt_c = ggml_view_2d(ctx, e.output_t, c, hp.n_embd, e.output_t->nb[1], v0 * ggml_element_size(e.output_t));  // [c, n_embd]
        } else {
            ggml_tensor * w_c = ggml_view_2d(ctx, e.output, hp.n_embd, c, e.output->nb[1], v0 * e.output->nb[1]);       // [n_embd, c]
            wt_c              = weight_t(g, w_c, nullptr);
        }
        ggml_tensor * part = ggml_mul_mat(ctx, wt_c, dl_c);              // [n_embd, n_t]
        dhf_t              = dhf_t ? ggml_add(ctx, dhf_t, part) : part;  // [n_embd, n_t]
    }
    // Backward twin of get_rows: scatter back with a 0/1 matrix (exact; GET_ROWS_BACK is missing
    // on Metal).
    g.in.scatter = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_t, T);                    // [n_t, T]
    ggml_set_input(g.in.scatter);
    ggml_tensor * dhf = ggml_mul_mat(ctx, transpose_cont(ctx, dhf_t), g.in.scatter);  // [n_embd, T]
    ggml_tensor * dx  = norm_mul_back(g, x, nf, e.output_norm, dhf, nullptr);         // [n_embd, T]
    ggml_build_forward_expand(gf, dx);
    // Layer by layer, each expanded before the next is built, so that the node order (which the
    // allocator follows) is: recompute layer il (checkpointing), its backward, its adapter
    // gradient updates; then layer il-1. Whatever no later node reads is freed on the way.
    for (int il = (int) hp.n_layer - 1; il >= 0; il--) {
        layer_saved         recomputed;
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

graph_ctx graph_ctx_init(engine & e, graph_run & run, const graph_params & p) {
    const size_t n_nodes = graph_size(e.hp);
    const size_t mem     = ggml_tensor_overhead() * n_nodes * 2 + ggml_graph_overhead_custom(n_nodes, false);
    // not zeroed: ggml writes each object it places, so only the pages it uses are touched
    run.meta.reset(new uint8_t[mem]);
    ggml_init_params ip     = {mem, run.meta.get(), true};
    run.ctx                 = ggml_init(ip);
    const bool    dropout   = p.mode == graph_mode::train && e.opts.lora.dropout > 0.0f;
    // Checkpointing keeps the gate/up outputs of the last layers within an eighth of the weights'
    // memory (2·n_ff F32 per token per layer: all 22 TinyLlama layers up to 270 tokens, 5 of them
    // at 1,024) and recomputes the rest; each kept layer saves its two biggest products' recompute.
    const int64_t ffn_bytes = 2 * e.hp.n_ff * p.n_tokens * (int64_t) sizeof(float);
    const int64_t n_keep    = ffn_bytes > 0 ? std::min<int64_t>(e.hp.n_layer, (int64_t) (e.weight_bytes / 8) / ffn_bytes) : 0;
    return graph_ctx{e,
                     run.ctx,
                     p.n_tokens,
                     p.n_targets,
                     p.grad_scale,
                     p.inv_temp,
                     p.weighted && p.mode == graph_mode::train,
                     p.caps ? *p.caps : e.caps,
                     p.mode,
                     dropout,
                     {},
                     lora_index(e),
                     {},
                     (int) (e.hp.n_layer - n_keep)};
}

}  // namespace t2s
