// LoRA adapter state: PEFT initialisation, get/set, GGUF LoRA save/load (the llama.cpp format).
// The AdamW step on these tensors is in optimizer.cpp.
#include "engine.h"
#include "gguf_util.h"

#include "gguf.h"

#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

namespace t2s {

std::string lora_pair::name_a() const { return "blk." + std::to_string(layer) + "." + target_gguf_stem(target) + ".weight.lora_a"; }

std::string lora_pair::name_b() const { return "blk." + std::to_string(layer) + "." + target_gguf_stem(target) + ".weight.lora_b"; }

int64_t lora_param_count(const engine & e) {
    int64_t n = 0;
    for (const lora_pair & p : e.lora) n += ggml_nelements(p.a) + ggml_nelements(p.b);
    return n;
}

// splitmix64: a small, portable, seedable generator (std::uniform_real_distribution differs between
// standard libraries, and adapters must be reproducible everywhere).
static uint64_t splitmix64(uint64_t & s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t & s) { return (double) (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

void lora_reset(engine & e) {
    // PEFT: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(n_in), 1/sqrt(n_in)); B = 0.
    uint64_t           s = e.opts.lora.seed;
    std::vector<float> buf;
    for (lora_pair & p : e.lora) {
        const int64_t n_in  = p.a->ne[0];
        const double  bound = 1.0 / std::sqrt((double) n_in);
        buf.resize(ggml_nelements(p.a));
        for (float & x : buf) x = (float) ((2.0 * uniform01(s) - 1.0) * bound);
        ggml_backend_tensor_set(p.a, buf.data(), 0, ggml_nbytes(p.a));
        buf.assign(ggml_nelements(p.b), 0.0f);
        ggml_backend_tensor_set(p.b, buf.data(), 0, ggml_nbytes(p.b));
    }
    engine_zero_grad(e);
    e.adam          = adam_state();
    e.dropout_calls = 0;
}

static host_tensor download(ggml_tensor * t, const std::string & name) {
    host_tensor h;
    h.name = name;
    h.ne   = {t->ne[0], t->ne[1]};
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
        ggml_tensor *        t    = it->second;
        std::vector<int64_t> want = {t->ne[0], t->ne[1]};
        if (h.ne != want || (int64_t) h.data.size() != ggml_nelements(t)) {
            throw std::runtime_error("adapter tensor '" + h.name + "' has shape " + shape_str(h.ne) + " but the model needs " +
                                     shape_str(want));
        }
    }
    for (const host_tensor & h : tensors) {
        ggml_backend_tensor_set(by_name[h.name], h.data.data(), 0, h.data.size() * sizeof(float));
    }
}

void lora_save_gguf(const engine & e, const std::string & path) {
    const lora_config & lc = e.opts.lora;
    gguf_context *      g  = gguf_init_empty();
    gguf_set_val_str(g, "general.type", "adapter");
    gguf_set_val_str(g, "general.architecture", e.hp.arch_name.c_str());  // llama.cpp refuses an adapter of another arch
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
    ggml_init_params         ip  = {ggml_tensor_overhead() * (e.lora.size() * 2 + 1), nullptr, true};
    ggml_context *           ctx = ggml_init(ip);
    std::vector<host_tensor> hs  = lora_get(e, false);
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
    gguf_check_magic(path, "adapter");

    ggml_context *   ctx = nullptr;
    gguf_init_params gp  = {/*no_alloc =*/false, /*ctx =*/&ctx};
    gguf_context *   g   = gguf_init_from_file(path.c_str(), gp);
    if (!g) throw std::runtime_error("'" + path + "' could not be read as GGUF (corrupt or truncated file)");
    struct guard {
        gguf_context * g;
        ggml_context * c;
        ~guard() {
            gguf_free(g);
            if (c) ggml_free(c);
        }
    } gd{g, ctx};

    auto str = [&](const char * key) {
        return kv_str(g, key);
    };
    if (str("general.type") != "adapter" || str("adapter.type") != "lora") {
        throw std::runtime_error("'" + path + "' is not a GGUF LoRA adapter (general.type '" + str("general.type") + "', adapter.type '" +
                                 str("adapter.type") + "')");
    }
    if (str("general.architecture") != e.hp.arch_name) {
        throw std::runtime_error("'" + path + "' is an adapter for architecture '" + str("general.architecture") + "'; this model is '" +
                                 e.hp.arch_name + "'");
    }
    const lora_config & lc        = e.opts.lora;
    const float         alpha_eff = lc.rslora ? lc.alpha * std::sqrt((float) lc.r) : lc.alpha;
    const int64_t       alpha_id  = gguf_find_key(g, "adapter.lora.alpha");
    if (alpha_id >= 0 && gguf_get_kv_type(g, alpha_id) == GGUF_TYPE_FLOAT32 &&
        std::fabs(gguf_get_val_f32(g, alpha_id) - alpha_eff) > 1e-4f * std::fabs(alpha_eff)) {
        throw std::runtime_error("'" + path + "' has adapter.lora.alpha " + std::to_string(gguf_get_val_f32(g, alpha_id)) +
                                 " but the engine was created with alpha " + std::to_string(alpha_eff) +
                                 " (create the engine with the adapter's LoRA settings)");
    }

    std::vector<host_tensor> hs;
    size_t                   found = 0;
    for (const lora_pair & p : e.lora) {
        for (int which = 0; which < 2; which++) {
            const std::string name = which ? p.name_b() : p.name_a();
            ggml_tensor *     t    = ggml_get_tensor(ctx, name.c_str());
            ggml_tensor *     want = which ? p.b : p.a;
            if (!t)
                throw std::runtime_error("'" + path + "' has no tensor '" + name +
                                         "' (the engine's LoRA targets differ from the adapter's)");
            if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16) {
                throw std::runtime_error("'" + path + "': tensor '" + name + "' has type " + ggml_type_name(t->type) +
                                         "; supported: F32, F16, BF16");
            }
            if (t->ne[0] != want->ne[0] || t->ne[1] != want->ne[1] || t->ne[2] != 1) {
                throw std::runtime_error("'" + path + "': tensor '" + name + "' has shape " + shape_str({t->ne[0], t->ne[1]}) +
                                         " but the model needs " + shape_str({want->ne[0], want->ne[1]}));
            }
            host_tensor h;
            h.name = name;
            h.ne   = {t->ne[0], t->ne[1]};
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

}  // namespace t2s
