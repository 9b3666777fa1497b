// The rank-r LoRA products of an adapted linear layer and their backward pass as fused CPU ops
// (ggml custom ops), in F32.
//
// ggml's composition (graph.cpp, the path of every other backend) multiplies [r, ·] matrices with
// mul_mat, which splits an [8 x 2048] product over its 8 rows and runs length-8 dot products for
// B·t (11-17 GFLOP/s on two cores at TinyLlama shape), plus OUT_PROD, SCALE, ADD, CONT and the
// dropout MUL around them. Here three ops do the whole adapter work of one layer:
//
//   forward     t = A·xd, then y = y_base + s·B·t              (lora_forward; y_base = W·x)
//   backward    dt = s·Bᵀ·dy, gB += s·t·dyᵀ                     (lora_backward_b)
//               dx = dx_base + (Aᵀ·dt) ⊙ mask, gA += xd·dtᵀ     (lora_backward_a; dx_base = Wᵀ·dy)
//
// with xd = x ⊙ mask (the dropout mask, scaled by 1/(1-p)), applied as the ops read x: no xd
// tensor is made. y and dx are written in place of y_base and dx_base (the frozen weight's
// products, read by nothing else). The adapters' gradient accumulators gA, gB (lora_pair's ga, gb)
// are updated in place where ggml's path adds and copies: each element by one thread, and by one
// op per graph (an adapter belongs to one layer and target). The forward is two ops split over
// tokens (t apart from y, so that the saved t does not hold y's memory); backward_b splits dt over
// tokens and gB over n_out; backward_a splits gA and dx over n_in, in chunks, so that x and the
// mask are read from memory once for both. No op waits on another thread.
//
// The products are F32 with F32 accumulation in a different summation order than ggml's mul_mat
// and out_prod: the gradient checks hold both to the same bounds. graph.cpp uses the ops in
// training graphs only; the logits and eval graphs keep ggml's composition, llama.cpp's op for op.
// The kernels are one template compiled for AVX-512, AVX2+FMA and SSE2 (fused_hw.cpp, by target
// pragma), picked by CPUID at engine load.
#pragma once

#include "fused.h"
#include "ggml.h"

#include <string>

namespace t2s {

// The variant that runs them is a fused_mode (fused.h): the engine's engine.lora_k, read from
// TEXT2SQL_FUSED_LORA where TEXT2SQL_FUSED leaves the fused ops on.

struct lora_fwd_out {
    ggml_tensor * y;  // [n_out, T]  y_base + s·B·A·xd (null without y_base)
    ggml_tensor * t;  // [r, T]      A·xd (read by lora_backward_b)
};
// x [n_in, T] (rows contiguous), mask [n_in, T] or null, a [n_in, r], b [r, n_out], y_base
// [n_out, T] or null (only t is computed: a checkpoint recompute), s the adapter scale.
// Two nodes: "lora.forward_t" and "lora.forward_y".
lora_fwd_out lora_forward(ggml_context * ctx,
                          fused_mode     m,
                          ggml_tensor *  x,
                          ggml_tensor *  mask,
                          ggml_tensor *  a,
                          ggml_tensor *  b,
                          ggml_tensor *  y_base,
                          float          s);

// The first backward twin of lora_forward: dy [n_out, T], the forward's t, b and the adapter's dB
// accumulator gb [r, n_out]. Returns dt [r, T] = s·Bᵀ·dy; adds s·t·dyᵀ into gb as it runs.
ggml_tensor *
lora_backward_b(ggml_context * ctx, fused_mode m, ggml_tensor * dy, ggml_tensor * t, ggml_tensor * b, ggml_tensor * gb, float s);

// The second: dt from lora_backward_b, the forward's x and mask, the adapter's dA accumulator ga
// [n_in, r] and dx_base = Wᵀ·dy [n_in, T]. Returns dx = dx_base + (Aᵀ·dt) ⊙ mask [n_in, T], in
// place of dx_base; adds xd·dtᵀ into ga as it runs. Without dx_base (the input gradient is not
// needed) only ga is updated and the node returned is a 1-float placeholder: the caller must
// expand it into the graph.
ggml_tensor * lora_backward_a(ggml_context * ctx,
                              fused_mode     m,
                              ggml_tensor *  dt,
                              ggml_tensor *  x,
                              ggml_tensor *  mask,
                              ggml_tensor *  a,
                              ggml_tensor *  ga,
                              ggml_tensor *  dx_base);

// Whether a graph node is one of these ops (the profiler names them), its profile key and its
// floating-point operations (2 per multiply-add).
bool        lora_is_op(const ggml_tensor * t);
std::string lora_profile_key(const ggml_tensor * t, fused_mode m);  // m: the engine's mode
double      lora_flop(const ggml_tensor * t);

// The kernels of one variant (fused_hw.cpp), run by the custom ops over thread ith of nth; s is
// the adapter scale.
struct lora_kernels {
    void (*forward_t)(ggml_tensor * dst, float s, int ith, int nth);
    void (*forward_y)(ggml_tensor * dst, float s, int ith, int nth);
    void (*backward_b)(ggml_tensor * dst, float s, int ith, int nth);
    void (*backward_a)(ggml_tensor * dst, int ith, int nth);
};
const lora_kernels * lora_kernels_for(fused_mode m);  // null where this build lacks the variant

}  // namespace t2s
