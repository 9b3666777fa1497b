// Quantized frozen weights: the supported types and the in-graph Wᵀ for dX = Wᵀ·dY.
//
// Forward products use ggml's quantized mul_mat as they are (on the CPU it quantizes the
// activations to the type's vec_dot type, Q8_0 / Q8_1 / Q8_K, before the dot products). The
// backward never multiplies by the quantized weight: each Wᵀ is dequantized and transposed just
// before its product (BF16 by default, as lean mode's BF16 copies; F32 on request for exact
// gradient checks) and freed right after it, so peak memory holds the quantized weights plus one
// layer's temporaries.
#include "quant.h"

#include <algorithm>
#include <vector>

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

void dequant_transpose_op(ggml_tensor * dst, int ith, int nth, void *) {
    // src [n_in, n_out] quantized rows (row stride nb[1]); dst [n_out, n_in] contiguous
    const ggml_tensor *      src      = dst->src[0];
    const int64_t            n_in     = src->ne[0];
    const int64_t            n_out    = src->ne[1];
    const ggml_to_float_t    to_float = ggml_get_type_traits(src->type)->to_float;
    const bool               bf16     = dst->type == GGML_TYPE_BF16;
    const int64_t            B        = 64;
    std::vector<float>       rows((size_t) (B * n_in));  // [n_in, B] dequantized band of rows
    std::vector<ggml_bf16_t> tmp(bf16 ? (size_t) B : 0);
    for (int64_t ob = (int64_t) ith * B; ob < n_out; ob += (int64_t) nth * B) {
        const int64_t nb = std::min(B, n_out - ob);
        for (int64_t r = 0; r < nb; r++) to_float((const char *) src->data + (ob + r) * src->nb[1], rows.data() + r * n_in, n_in);
        for (int64_t i = 0; i < n_in; i++) {
            if (bf16) {
                ggml_bf16_t * out = (ggml_bf16_t *) dst->data + i * n_out + ob;
                for (int64_t r = 0; r < nb; r++) out[r] = ggml_fp32_to_bf16(rows[r * n_in + i]);
            } else {
                float * out = (float *) dst->data + i * n_out + ob;
                for (int64_t r = 0; r < nb; r++) out[r] = rows[r * n_in + i];
            }
        }
    }
}

ggml_tensor * quant_weight_fwd(graph_ctx & g, ggml_tensor * w) {
    if (!ggml_is_quantized(w->type) || !g.e.opts.quant_exact) return w;                       // [n_in, n_out]
    return ggml_cpy(g.ctx, w, ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, w->ne[0], w->ne[1]));  // [n_in, n_out] f32
}

ggml_tensor * quant_weight_t(graph_ctx & g, ggml_tensor * w) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    if (g.caps.custom_transpose) {
        ggml_tensor * args[1] = {w};
        return ggml_custom_4d(g.ctx, g.e.quant_wt_type, n_out, n_in, 1, 1, args, 1, dequant_transpose_op, GGML_N_TASKS_MAX,
                              nullptr);                                                            // [n_out, n_in]
    }
    ggml_tensor * wf = ggml_cpy(g.ctx, w, ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, n_in, n_out));  // [n_in, n_out] f32
    ggml_tensor * wt = ggml_transpose(g.ctx, wf);                                                  // [n_out, n_in] view
    return g.e.quant_wt_type == GGML_TYPE_F32 ? ggml_cont(g.ctx, wt) :
                                                ggml_cpy(g.ctx, wt, ggml_new_tensor_2d(g.ctx, g.e.quant_wt_type, n_out, n_in));
}

}  // namespace t2s
