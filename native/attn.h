// Causal self-attention and its backward pass as fused CPU ops (ggml custom ops), in F32.
//
// ggml's composition (graph.cpp, the path of every other backend) materialises S = K·Q, P, dP and
// dS per head and needs permuted contiguous copies of Q, K, Kᵀ, Vᵀ, O, dO, dQ, dK, dV and of P and
// dS with the heads of a group folded together: about a fifth of a TinyLlama step on two cores.
// Here each op reads q, k, v, dO in the layout the projections give ([hd, n_heads, T]) and writes
// O, dQ, dK, dV in the layout the next op wants, so no copy is made apart from Kᵀ and Vᵀ
// (attn_pack_t, [T_pad, hd, n_kv]: 1/32 of P's size at TinyLlama shape). Causal rows stop at the
// diagonal: the masked half of every product is skipped.
//
//   forward    S = scale · Q·Kᵀ, P = softmax_causal(S), O = P·V         (attn_forward)
//   backward   dP = dO·Vᵀ, dS = scale · P ⊙ (dP - rowsum(dP ⊙ P)),
//              dQ = dS·K                                                 (attn_backward, op 1)
//              dV = Σ_group Pᵀ·dO, dK = Σ_group dSᵀ·Q                     (attn_backward, op 2)
//
// The softmax is ggml's own (ggml_vec_soft_max_f32, its exp and double-precision row sum); the
// products are F32 with F32 accumulation, in a different summation order than ggml's mul_mat: the
// gradient checks hold both to the same bounds. The micro-kernel is one template compiled for
// AVX-512, AVX2+FMA and SSE2 (attn_hw.cpp, by target pragma), picked by CPUID at engine load.
#pragma once

#include "ggml.h"

#include <cstdint>
#include <string>

namespace t2s {

// Which variant runs the fused attention: off (ggml's composition) or the kernel's ISA.
enum class attn_mode : int { off = 0, base = 1, avx2 = 2, avx512 = 3 };
const char * attn_mode_name(attn_mode m);  // "ggml" | "fused-base" | "fused-avx2" | "fused-avx512"

// The mode for a new engine on the CPU: TEXT2SQL_FUSED_ATTN=0 turns it off; unset, 1 or auto take
// the widest variant CPUID allows; avx2 or base (the build's baseline vectors) force that variant (tests, benchmarks of the AVX2
// path on an AVX-512 CPU). `note` says why a request was not followed.
attn_mode attn_mode_from_env(std::string & note);

// Whether the fused ops serve this head size (the kernel's vectors are 16 floats): hd % 16 == 0.
bool attn_fits(int64_t head_dim);

// [hd, n_kv, T] (contiguous) -> [T_pad, hd, n_kv]: each head's Kᵀ or Vᵀ, zero past T (T_pad: T
// rounded up to 16).
ggml_tensor * attn_pack_t(ggml_context * ctx, attn_mode m, ggml_tensor * x);

struct attn_fwd_out {
    ggml_tensor * o;  // [hd · n_head, T]      the heads' outputs, as the output projection reads them
    ggml_tensor * p;  // [T_pad, T, n_head]    P, zero past the diagonal (read by attn_backward)
};
// q [hd, n_head, T], kt = attn_pack_t(k) [T_pad, hd, n_kv], v [hd, n_kv, T]; scale 1/sqrt(hd).
attn_fwd_out attn_forward(ggml_context * ctx, attn_mode m, ggml_tensor * q, ggml_tensor * kt, ggml_tensor * v);

struct attn_grads {
    ggml_tensor * dq;  // [hd, n_head, T]
    ggml_tensor * dk;  // [hd, n_kv, T]
    ggml_tensor * dv;  // [hd, n_kv, T]
};
// The backward twin of attn_forward: dO [hd, n_head, T] (contiguous), the forward's q, k, P and
// vt = attn_pack_t(v).
attn_grads
attn_backward(ggml_context * ctx, attn_mode m, ggml_tensor * q, ggml_tensor * k, ggml_tensor * vt, ggml_tensor * p, ggml_tensor * d_o);

// Whether a graph node is one of these ops (the profiler names them), and its profile key.
bool        attn_is_op(const ggml_tensor * t);
std::string attn_profile_key(const ggml_tensor * t, attn_mode m);  // m: the engine's mode

// The kernels of one variant (attn_hw.cpp), run by the custom ops over thread ith of nth.
struct attn_kernels {
    void (*pack_t)(ggml_tensor * dst, const ggml_tensor * x, int ith, int nth);
    void (*forward)(ggml_tensor * dst, int ith, int nth);
    void (*backward_q)(ggml_tensor * dst, int ith, int nth);
    void (*backward_kv)(ggml_tensor * dst, int ith, int nth);
};
const attn_kernels * attn_kernels_for(attn_mode m);  // null where this build lacks the variant

}  // namespace t2s
