// text2sql's fused CPU ops (ggml custom ops, F32): causal self-attention with its backward pass,
// and the SwiGLU backward. The graph (graph.cpp) builds them where the engine runs them on the CPU
// (engine.fused, TEXT2SQL_FUSED); every other backend, and TEXT2SQL_FUSED=0, get ggml's composition
// of the same maths.
//
// Attention. ggml's composition materialises S = K·Q, P, dP and dS per head and needs permuted
// contiguous copies of Q, K, Kᵀ, Vᵀ, O, dO, dQ, dK, dV and of P and dS with the heads of a group
// folded together: about a fifth of a TinyLlama step on two cores. Here each op reads q, k, v, dO
// in the layout the projections give ([hd, n_heads, T]) and writes O, dQ, dK, dV in the layout the
// next op wants, so no copy is made apart from Kᵀ and Vᵀ (attn_pack_t, [T_pad, hd, n_kv]: 1/32 of
// P's size at TinyLlama shape). Causal rows stop at the diagonal: the masked half of every product
// is skipped.
//
//   forward    S = scale · Q·Kᵀ, P = softmax_causal(S), O = P·V         (attn_forward)
//   backward   dP = dO·Vᵀ, dS = scale · P ⊙ (dP - rowsum(dP ⊙ P)),
//              dQ = dS·K                                                 (attn_backward, op 1)
//              dV = Σ_group Pᵀ·dO, dK = Σ_group dSᵀ·Q                     (attn_backward, op 2)
//
// The softmax is ggml's own (ggml_vec_soft_max_f32, its exp and double-precision row sum); the
// products are F32 with F32 accumulation, in a different summation order than ggml's mul_mat: the
// gradient checks hold both to the same bounds.
//
// SwiGLU. The forward gives silu(g) ⊙ u in one pass (silu(g) is not kept), and its backward gives dg
// and du in one pass, both with a vector exp (ggml's SILU_BACK calls expf per element, and two MULs
// go around it).
//
// RMS norms. The model's norms (and Qwen3's per-head norms) as one op forward (RMS_NORM, MUL) and
// one backward (MUL, RMS_NORM_BACK, the residual's ADD), with ggml's arithmetic exactly: ggml sums
// each row's squares in double one element after another, so a row waits on the add's latency;
// here eight rows' sums run side by side, each in ggml's order.
//
// Each kernel is one template compiled for AVX-512, AVX2+FMA and the baseline (fused_hw.cpp, by
// target pragma), picked by CPUID at engine load.
#pragma once

#include "ggml.h"

#include <cstdint>
#include <string>

namespace t2s {

// Which variant runs the fused ops: off (ggml's composition) or the kernels' ISA.
enum class fused_mode : int { off = 0, base = 1, avx2 = 2, avx512 = 3 };
const char * fused_mode_name(fused_mode m);  // "ggml" | "fused-base" | "fused-avx2" | "fused-avx512"

// The mode for a new engine on the CPU: TEXT2SQL_FUSED=0 turns it off; unset, 1 or auto take
// the widest variant CPUID allows; avx2 or base (the build's baseline vectors) force that variant
// (tests, benchmarks of the AVX2 path on an AVX-512 CPU). `note` says why a request was not
// followed. The fused LoRA products (lora.h) take the same variant, or TEXT2SQL_FUSED_LORA's
// (read the same way) where it is set.
fused_mode fused_mode_from_env(std::string & note, const char * var = "TEXT2SQL_FUSED");

// Whether the fused ops serve this head size (the kernel's vectors are 16 floats): hd % 16 == 0.
bool attn_fits(int64_t head_dim);

// [hd, n_kv, T] (contiguous) -> [T_pad, hd, n_kv]: each head's Kᵀ or Vᵀ, zero past T (T_pad: T
// rounded up to 16).
ggml_tensor * attn_pack_t(ggml_context * ctx, fused_mode m, ggml_tensor * x);

struct attn_fwd_out {
    ggml_tensor * o;  // [hd · n_head, T]      the heads' outputs, as the output projection reads them
    ggml_tensor * p;  // [T_pad, T, n_head]    P, zero past the diagonal (read by attn_backward)
};
// q [hd, n_head, T], kt = attn_pack_t(k) [T_pad, hd, n_kv], v [hd, n_kv, T]; scale 1/sqrt(hd).
attn_fwd_out attn_forward(ggml_context * ctx, fused_mode m, ggml_tensor * q, ggml_tensor * kt, ggml_tensor * v);

struct attn_grads {
    ggml_tensor * dq;  // [hd, n_head, T]
    ggml_tensor * dk;  // [hd, n_kv, T]
    ggml_tensor * dv;  // [hd, n_kv, T]
};
// The backward twin of attn_forward: dO [hd, n_head, T] (contiguous), the forward's q, k, P and
// vt = attn_pack_t(v).
attn_grads
attn_backward(ggml_context * ctx, fused_mode m, ggml_tensor * q, ggml_tensor * k, ggml_tensor * vt, ggml_tensor * p, ggml_tensor * d_o);

// a = silu(g) ⊙ u [n_ff, T] in one pass (ggml: SILU, then MUL with silu(g) kept for the backward).
ggml_tensor * swiglu_forward(ggml_context * ctx, fused_mode m, ggml_tensor * g, ggml_tensor * u);

struct swiglu_grads {
    ggml_tensor * dg;  // [n_ff, T]
    ggml_tensor * du;  // [n_ff, T]
};
// The backward twin of swiglu_forward, in one pass over da, g, u (ggml: two MULs and a SILU_BACK,
// whose exp is scalar): dg, du [n_ff, T] from da, g, u [n_ff, T].
swiglu_grads swiglu_backward(ggml_context * ctx, fused_mode m, ggml_tensor * da, ggml_tensor * g, ggml_tensor * u);

// h = rms_norm(x) ⊙ w [n, rows] for x [n, rows] (contiguous; each row of n normalised), w [n]: ggml's
// RMS_NORM then MUL in one pass, bit for bit (the same float and double operations in the same
// order; eight rows' sums at a time, where ggml sums one row after another).
ggml_tensor * rms_norm_mul(ggml_context * ctx, fused_mode m, ggml_tensor * x, ggml_tensor * w, float eps);

// Its backward twin with the residual's gradient added: dres + rms_norm_back(x, dh ⊙ w) [n, rows]
// (dres null: none), as ggml's MUL, RMS_NORM_BACK and ADD, bit for bit where ggml's build fuses
// RMS_NORM_BACK's multiply-add as it does with FMA (taken to be where the CPU has FMA: ggml is
// built with -march=native).
ggml_tensor *
rms_norm_mul_back(ggml_context * ctx, fused_mode m, ggml_tensor * x, ggml_tensor * dh, ggml_tensor * w, ggml_tensor * dres, float eps);

// The same two ops for products that read their output only as BF16 (the AVX512-BF16 kernel's A,
// bf16k.h): each value as above, rounded as bf16k_round rounds it, in its layout ([bf16k_lda(n_ff),
// bf16k_rows(T)], zero padded), with no F32 tensor between. n_ff % 16 == 0 (every variant computes
// every value in vectors, as the F32 ops do then).
ggml_tensor * swiglu_forward_bf16(ggml_context * ctx, fused_mode m, ggml_tensor * g, ggml_tensor * u);  // [lda, T_pad] bf16
swiglu_grads  swiglu_backward_bf16(ggml_context * ctx,
                                   fused_mode     m,
                                   ggml_tensor *  da,
                                   ggml_tensor *  g,
                                   ggml_tensor *  u);  // each [lda, T_pad] bf16

struct ce_grads {
    ggml_tensor * d        = nullptr;  // [n_vocab, n_t]  P - onehot (⊙ w_t), in z's memory; the caller scales it
    ggml_tensor * p_target = nullptr;  // [1, n_t]        P at each target
    ggml_tensor * logp     = nullptr;  // [1, n_t]        its exact log (for a P that underflowed)
};
// The output head's softmax and the cross-entropy gradient with no [n_vocab, n_t] tensor besides z:
// z [n_vocab, n_t] (the logits over the temperature) is overwritten by P - onehot (⊙ w_t), after
// `after` (nodes that read z: the argmax) and after a first op took P and log P at the targets.
// tgt_flat [n_t] i32 (i·n_vocab + target i), tw [1, n_t] or null. P is ggml's SOFT_MAX
// (ggml_vec_soft_max_f32), P - onehot and ⊙ w_t as ggml's SUB and MUL.
ce_grads ce_backward(ggml_context * ctx, fused_mode m, ggml_tensor * z, ggml_tensor * tgt_flat, ggml_tensor * tw, ggml_tensor * after);

// Whether a graph node is one of these ops (the profiler names them), its profile key and the
// FLOPs of its products (the attention ops: the causal half that they compute; else 0).
bool        fused_is_op(const ggml_tensor * t);
std::string fused_profile_key(const ggml_tensor * t, fused_mode m);  // m: the engine's mode
double      fused_flop(const ggml_tensor * t);

// The kernels of one variant (fused_hw.cpp), run by the custom ops over thread ith of nth.
struct fused_kernels {
    void (*pack_t)(ggml_tensor * dst, const ggml_tensor * x, int ith, int nth);
    void (*forward)(ggml_tensor * dst, int ith, int nth);
    void (*backward_q)(ggml_tensor * dst, int ith, int nth);
    void (*backward_kv)(ggml_tensor * dst, int ith, int nth);
    void (*swiglu)(ggml_tensor * dst, int ith, int nth);
    void (*swiglu_back)(ggml_tensor * dst, int ith, int nth);
    void (*ce_stats)(ggml_tensor * dst, int ith, int nth);
    void (*ce_back)(ggml_tensor * dst, int ith, int nth);
    void (*rms_norm)(ggml_tensor * dst, int ith, int nth, float eps);
    void (*rms_norm_back)(ggml_tensor * dst, int ith, int nth, float eps, bool fma);
    void (*swiglu_bf16)(ggml_tensor * dst, int ith, int nth);
    void (*swiglu_back_bf16)(ggml_tensor * dst, int ith, int nth);
};
const fused_kernels * fused_kernels_for(fused_mode m);  // null where this build lacks the variant

}  // namespace t2s
