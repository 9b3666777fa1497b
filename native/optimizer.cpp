// The optimizer: the AdamW step with global-norm clipping (torch.optim.AdamW semantics) on the
// LoRA tensors and their accumulated gradients, and zeroing those gradients.
#include "engine.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace t2s {

void engine_zero_grad(engine & e) {
    std::vector<float> zeros;
    for (lora_pair & p : e.lora) {
        zeros.assign(std::max(ggml_nelements(p.ga), ggml_nelements(p.gb)), 0.0f);
        ggml_backend_tensor_set(p.ga, zeros.data(), 0, ggml_nbytes(p.ga));
        ggml_backend_tensor_set(p.gb, zeros.data(), 0, ggml_nbytes(p.gb));
    }
}

double engine_step(engine & e, const step_params & p) {
    std::vector<host_tensor> params = lora_get(e, false);
    std::vector<host_tensor> grads  = lora_get(e, true);

    double sq = 0.0;
    for (const host_tensor & g : grads)
        for (float x : g.data) sq += (double) x * x;
    const double norm = std::sqrt(sq);
    if (!std::isfinite(norm))
        throw std::runtime_error("step: the gradient norm is not finite (" + std::to_string(norm) +
                                 "); the step was skipped and gradients kept for inspection");

    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1
    float clip = 1.0f;
    if (p.max_grad_norm > 0.0f) clip = (float) std::min(1.0, (double) p.max_grad_norm / (norm + 1e-6));

    adam_state & st = e.adam;
    if (st.m.empty()) {
        for (const host_tensor & h : params) {
            st.m.emplace_back(h.data.size(), 0.0f);
            st.v.emplace_back(h.data.size(), 0.0f);
        }
    }
    st.t += 1;
    // torch.optim.AdamW (single-tensor path): decoupled weight decay, then bias-corrected Adam.
    const double bc1       = 1.0 - std::pow((double) p.beta1, (double) st.t);
    const double bc2       = 1.0 - std::pow((double) p.beta2, (double) st.t);
    const float  step_size = (float) (p.lr / bc1);
    const float  bc2_sqrt  = (float) std::sqrt(bc2);
    const float  decay     = (float) (1.0 - (double) p.lr * p.weight_decay);
    for (size_t i = 0; i < params.size(); i++) {
        float *       w = params[i].data.data();
        const float * g = grads[i].data.data();
        float *       m = st.m[i].data();
        float *       v = st.v[i].data();
        for (size_t j = 0; j < params[i].data.size(); j++) {
            const float gj = g[j] * clip;
            w[j] *= decay;
            m[j]              = p.beta1 * m[j] + (1.0f - p.beta1) * gj;
            v[j]              = p.beta2 * v[j] + (1.0f - p.beta2) * gj * gj;
            const float denom = std::sqrt(v[j]) / bc2_sqrt + p.eps;
            w[j] -= step_size * (m[j] / denom);
        }
    }
    lora_set(e, params);
    engine_zero_grad(e);
    return norm;
}

}  // namespace t2s
