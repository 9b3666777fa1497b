// LoRA adapter state: PEFT initialisation, get/set, GGUF LoRA save/load (the llama.cpp format),
// and the AdamW step with global-norm clipping (torch.optim.AdamW semantics).
#include "engine.h"

#include "gguf.h"

#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

namespace t2s {

std::string lora_pair::name_a() const {
    return "blk." + std::to_string(layer) + "." + target_gguf_stem(target) + ".weight.lora_a";
}

std::string lora_pair::name_b() const {
    return "blk." + std::to_string(layer) + "." + target_gguf_stem(target) + ".weight.lora_b";
}

int64_t lora_param_count(const engine & e) {
    int64_t n = 0;
    for (const lora_pair & p : e.lora) n += ggml_nelements(p.a) + ggml_nelements(p.b);
    return n;
}

static std::string shape_of(const std::vector<int64_t> & ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); i++) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

// splitmix64: a small, portable, seedable generator (std::uniform_real_distribution differs between
// standard libraries, and adapters must be reproducible everywhere).
static uint64_t splitmix64(uint64_t & s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t & s) {
    return (double) (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

void engine_zero_grad(engine & e) {
    std::vector<float> zeros;
    for (lora_pair & p : e.lora) {
        zeros.assign(std::max(ggml_nelements(p.ga), ggml_nelements(p.gb)), 0.0f);
        ggml_backend_tensor_set(p.ga, zeros.data(), 0, ggml_nbytes(p.ga));
        ggml_backend_tensor_set(p.gb, zeros.data(), 0, ggml_nbytes(p.gb));
    }
}

void lora_reset(engine & e) {
    // PEFT: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(n_in), 1/sqrt(n_in)); B = 0.
    uint64_t s = e.opts.lora.seed;
    std::vector<float> buf;
    for (lora_pair & p : e.lora) {
        const int64_t n_in = p.a->ne[0];
        const double bound = 1.0 / std::sqrt((double) n_in);
        buf.resize(ggml_nelements(p.a));
        for (float & x : buf) x = (float) ((2.0 * uniform01(s) - 1.0) * bound);
        ggml_backend_tensor_set(p.a, buf.data(), 0, ggml_nbytes(p.a));
        buf.assign(ggml_nelements(p.b), 0.0f);
        ggml_backend_tensor_set(p.b, buf.data(), 0, ggml_nbytes(p.b));
    }
    engine_zero_grad(e);
    e.adam = adam_state();
    e.dropout_calls = 0;
}

static host_tensor download(ggml_tensor * t, const std::string & name) {
    host_tensor h;
    h.name = name;
    h.ne = {t->ne[0], t->ne[1]};
    h.data.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, h.data.data(), 0, ggml_nbytes(t));
    return h;
}

std::vector<host_tensor> lora_get(const engine & e, bool gradients) {
    std::vector<host_tensor> out;
    for (const lora_pair & p : e.lora) {
        out.push_back(download(gradients ? p.ga : p.a, p.name_a()));
        out.push_back(download(gradients ? p.gb : p.b, p.name_b()));
    }
    return out;
}

void lora_set(engine & e, const std::vector<host_tensor> & tensors, bool gradients) {
    std::map<std::string, ggml_tensor *> by_name;
    for (lora_pair & p : e.lora) {
        by_name[p.name_a()] = gradients ? p.ga : p.a;
        by_name[p.name_b()] = gradients ? p.gb : p.b;
    }
    // validate everything before writing anything
    for (const host_tensor & h : tensors) {
        auto it = by_name.find(h.name);
        if (it == by_name.end()) throw std::runtime_error("adapter tensor '" + h.name + "' does not belong to this engine's LoRA targets");
        ggml_tensor * t = it->second;
        std::vector<int64_t> want = {t->ne[0], t->ne[1]};
        if (h.ne != want || (int64_t) h.data.size() != ggml_nelements(t)) {
            throw std::runtime_error("adapter tensor '" + h.name + "' has shape " + shape_of(h.ne) + " but the model needs " + shape_of(want));
        }
    }
    for (const host_tensor & h : tensors) {
        ggml_backend_tensor_set(by_name[h.name], h.data.data(), 0, h.data.size() * sizeof(float));
    }
}

void lora_save_gguf(const engine & e, const std::string & path) {
    const lora_config & lc = e.opts.lora;
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.type", "adapter");
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_str(g, "adapter.type", "lora");
    // llama.cpp scales by alpha / r; rsLoRA's alpha / sqrt(r) is the same with alpha' = alpha·sqrt(r).
    const float alpha_eff = lc.rslora ? lc.alpha * std::sqrt((float) lc.r) : lc.alpha;
    gguf_set_val_f32(g, "adapter.lora.alpha", alpha_eff);
    // our own keys, to load back exactly what was trained
    gguf_set_val_u32(g, "text2sql.lora.r", (uint32_t) lc.r);
    gguf_set_val_f32(g, "text2sql.lora.alpha", lc.alpha);
    gguf_set_val_f32(g, "text2sql.lora.dropout", lc.dropout);
    gguf_set_val_bool(g, "text2sql.lora.rslora", lc.rslora);

    // a context holding host copies of every tensor
    ggml_init_params ip = { ggml_tensor_overhead() * (e.lora.size() * 2 + 1), nullptr, true };
    ggml_context * ctx = ggml_init(ip);
    std::vector<host_tensor> hs = lora_get(e, false);
    for (const host_tensor & h : hs) {
        ggml_tensor * t = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, h.ne[0], h.ne[1]);
        ggml_set_name(t, h.name.c_str());
        gguf_add_tensor(g, t);
        gguf_set_tensor_data(g, h.name.c_str(), h.data.data());
    }
    const bool ok = gguf_write_to_file(g, path.c_str(), false);
    gguf_free(g);
    ggml_free(ctx);
    if (!ok) throw std::runtime_error("cannot write adapter file '" + path + "'");
}

void lora_load_gguf(engine & e, const std::string & path) {
    FILE * f = fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open adapter file '" + path + "': " + strerror(errno));
    char magic[4] = {0};
    const size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n != 4 || memcmp(magic, "GGUF", 4) != 0) throw std::runtime_error("'" + path + "' is not a GGUF file");

    ggml_context * ctx = nullptr;
    gguf_init_params gp = { /*no_alloc =*/ false, /*ctx =*/ &ctx };
    gguf_context * g = gguf_init_from_file(path.c_str(), gp);
    if (!g) throw std::runtime_error("'" + path + "' could not be read as GGUF (corrupt or truncated file)");
    struct guard { gguf_context * g; ggml_context * c; ~guard() { gguf_free(g); if (c) ggml_free(c); } } gd{g, ctx};

    auto str = [&](const char * key) -> std::string {
        const int64_t id = gguf_find_key(g, key);
        return id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_STRING ? gguf_get_val_str(g, id) : "";
    };
    if (str("general.type") != "adapter" || str("adapter.type") != "lora") {
        throw std::runtime_error("'" + path + "' is not a GGUF LoRA adapter (general.type '" + str("general.type") + "', adapter.type '" + str("adapter.type") + "')");
    }
    if (str("general.architecture") != "llama") {
        throw std::runtime_error("'" + path + "' is an adapter for architecture '" + str("general.architecture") + "'; this model is 'llama'");
    }
    const lora_config & lc = e.opts.lora;
    const float alpha_eff = lc.rslora ? lc.alpha * std::sqrt((float) lc.r) : lc.alpha;
    const int64_t alpha_id = gguf_find_key(g, "adapter.lora.alpha");
    if (alpha_id >= 0 && gguf_get_kv_type(g, alpha_id) == GGUF_TYPE_FLOAT32 && std::fabs(gguf_get_val_f32(g, alpha_id) - alpha_eff) > 1e-4f * std::fabs(alpha_eff)) {
        throw std::runtime_error("'" + path + "' has adapter.lora.alpha " + std::to_string(gguf_get_val_f32(g, alpha_id)) +
            " but the engine was created with alpha " + std::to_string(alpha_eff) + " (create the engine with the adapter's LoRA settings)");
    }

    std::vector<host_tensor> hs;
    size_t found = 0;
    for (const lora_pair & p : e.lora) {
        for (int which = 0; which < 2; which++) {
            const std::string name = which ? p.name_b() : p.name_a();
            ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
            ggml_tensor * want = which ? p.b : p.a;
            if (!t) throw std::runtime_error("'" + path + "' has no tensor '" + name + "' (the engine's LoRA targets differ from the adapter's)");
            if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16) {
                throw std::runtime_error("'" + path + "': tensor '" + name + "' has type " + ggml_type_name(t->type) + "; supported: F32, F16, BF16");
            }
            if (t->ne[0] != want->ne[0] || t->ne[1] != want->ne[1] || t->ne[2] != 1) {
                throw std::runtime_error("'" + path + "': tensor '" + name + "' has shape " + shape_of({t->ne[0], t->ne[1]}) +
                    " but the model needs " + shape_of({want->ne[0], want->ne[1]}));
            }
            host_tensor h;
            h.name = name;
            h.ne = {t->ne[0], t->ne[1]};
            h.data.resize(ggml_nelements(t));
            if (t->type == GGML_TYPE_F32) {
                memcpy(h.data.data(), t->data, ggml_nbytes(t));
            } else if (t->type == GGML_TYPE_F16) {
                ggml_fp16_to_fp32_row((const ggml_fp16_t *) t->data, h.data.data(), ggml_nelements(t));
            } else {
                ggml_bf16_to_fp32_row((const ggml_bf16_t *) t->data, h.data.data(), ggml_nelements(t));
            }
            hs.push_back(std::move(h));
            found++;
        }
    }
    const int64_t n_file = gguf_get_n_tensors(g);
    if ((int64_t) found != n_file) {
        throw std::runtime_error("'" + path + "' holds " + std::to_string(n_file) + " tensors but the engine's LoRA targets use " +
            std::to_string(found) + " (the adapter targets other modules)");
    }
    lora_set(e, hs);
}

double engine_step(engine & e, const step_params & p) {
    std::vector<host_tensor> params = lora_get(e, false);
    std::vector<host_tensor> grads  = lora_get(e, true);

    double sq = 0.0;
    for (const host_tensor & g : grads) for (float x : g.data) sq += (double) x * x;
    const double norm = std::sqrt(sq);
    if (!std::isfinite(norm)) throw std::runtime_error("step: the gradient norm is not finite (" + std::to_string(norm) + "); the step was skipped and gradients kept for inspection");

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
    const double bc1 = 1.0 - std::pow((double) p.beta1, (double) st.t);
    const double bc2 = 1.0 - std::pow((double) p.beta2, (double) st.t);
    const float step_size = (float) (p.lr / bc1);
    const float bc2_sqrt  = (float) std::sqrt(bc2);
    const float decay     = (float) (1.0 - (double) p.lr * p.weight_decay);
    for (size_t i = 0; i < params.size(); i++) {
        float * w = params[i].data.data();
        const float * g = grads[i].data.data();
        float * m = st.m[i].data();
        float * v = st.v[i].data();
        for (size_t j = 0; j < params[i].data.size(); j++) {
            const float gj = g[j] * clip;
            w[j] *= decay;
            m[j] = p.beta1 * m[j] + (1.0f - p.beta1) * gj;
            v[j] = p.beta2 * v[j] + (1.0f - p.beta2) * gj * gj;
            const float denom = std::sqrt(v[j]) / bc2_sqrt + p.eps;
            w[j] -= step_size * (m[j] / denom);
        }
    }
    lora_set(e, params);
    engine_zero_grad(e);
    return norm;
}

} // namespace t2s
