// Loading a GGUF of a Llama-like architecture (llama, qwen2, qwen3) onto a ggml backend, with the transposed weight copies the
// backward pass multiplies by (dX = Wᵀ·dY through a fast mul_mat, never autodiff's out_prod).
#include "amx.h"
#include "engine.h"
#include "fused.h"
#include "gguf_util.h"
#include "kernels.h"
#include "lora.h"
#include "q8_gemm.h"
#include "quant.h"

#include "ggml-cpu.h"
#include "gguf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace t2s {

static const char * k_stems[TARGET_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

const char * target_gguf_stem(int t) { return k_stems[t]; }

int64_t llama_hparams::target_in(int t) const {
    switch (t) {
        case TARGET_DOWN: return n_ff;
        case TARGET_O: return n_embd_q();
        default: return n_embd;
    }
}

int64_t llama_hparams::target_out(int t) const {
    switch (t) {
        case TARGET_Q: return n_embd_q();
        case TARGET_O: return n_embd;
        case TARGET_K:
        case TARGET_V: return n_embd_kv();
        default: return t == TARGET_DOWN ? n_embd : n_ff;
    }
}

float lora_config::scale() const { return rslora ? alpha / std::sqrt((float) r) : alpha / (float) r; }

engine::~engine() {
    if (galloc) ggml_gallocr_free(galloc);
    if (buf_lora) ggml_backend_buffer_free(buf_lora);
    if (ctx_lora) ggml_free(ctx_lora);
    if (buf_w) ggml_backend_buffer_free(buf_w);
    if (ctx_w) ggml_free(ctx_w);
    if (buf_wr) ggml_backend_buffer_free(buf_wr);
    if (ctx_wr) ggml_free(ctx_wr);
    if (backend) ggml_backend_free(backend);
}

// ---------------------------------------------------------------------------------------------
// Loading steps: the GGUF file, the backend, hyperparameters, tensors, weights and LoRA tensors

namespace {

struct gguf_file {
    gguf_context * g    = nullptr;
    ggml_context * meta = nullptr;  // tensor descriptions only (no_alloc)
    ~gguf_file() {
        if (g) gguf_free(g);
        if (meta) ggml_free(meta);
    }
};

std::string shape_str(const ggml_tensor * t) { return t2s::shape_str(std::vector<int64_t>(t->ne, t->ne + ggml_n_dims(t))); }

// Chooses and starts the ggml backend for `device`.
ggml_backend_t init_backend(const std::string & device, ggml_backend_t & cpu_out) {
    cpu_out       = nullptr;
    auto find_dev = [](const char * reg_name) -> ggml_backend_dev_t {
        for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
            ggml_backend_dev_t d   = ggml_backend_dev_get(i);
            ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(d);
            if (strcmp(ggml_backend_reg_name(reg), reg_name) == 0) return d;
        }
        return nullptr;
    };
    ggml_backend_dev_t dev = nullptr;
    if (device == "cpu") {
        dev = nullptr;
    } else if (device == "cuda" || device == "metal") {
        dev = find_dev(device == "cuda" ? "CUDA" : "MTL");
        if (!dev) {
            throw std::runtime_error(
                "device '" + device + "' was requested but this build of the text2sql engine has no " +
                (device == "cuda" ? std::string("CUDA backend (rebuild with TEXT2SQL_CUDA=1 npm run build:native, with nvcc on PATH)") :
                                    std::string("Metal backend (Metal is built on macOS only)")));
        }
    } else if (device == "auto") {
        dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
    } else {
        throw std::runtime_error("device must be one of auto, cpu, cuda, metal; got '" + device + "'");
    }
    if (dev) {
        ggml_backend_t b = ggml_backend_dev_init(dev, nullptr);
        if (!b) throw std::runtime_error(std::string("failed to initialise the ") + ggml_backend_dev_name(dev) + " backend");
        return b;
    }
    ggml_backend_t b = ggml_backend_cpu_init();
    if (!b) throw std::runtime_error("failed to initialise the CPU backend");
    cpu_out = b;
    return b;
}

// Copies a 2D weight [n_in, n_out] into its transpose [n_out, n_in] with the CPU kernel of the
// graph's lean-mode transpose: the transposed view has element (o, i) at o·n_in·esz + i·esz.
void transpose_2d(const uint8_t * src, uint8_t * dst, int64_t n_in, int64_t n_out, size_t esz) {
    if (!transpose_copy((const char *) src, n_in * esz, esz, dst, n_out, n_in, esz, 0, 1)) {
        throw std::runtime_error("transpose: unsupported element size " + std::to_string(esz));
    }
}

// The architectures the engine trains, as src/formats/architectures.ts describes them, and the
// recognised ones it refuses (with the reason).
struct arch_info {
    const char * name;
    model_arch   arch;
    int          rope_type;   // llama.cpp's llama_model_rope_type
    bool         rope_freqs;  // reads rope_freqs.weight (llama3 RoPE scaling): llama only, as llama.cpp
    bool         qk_norm;     // attn_q_norm / attn_k_norm required
};
const arch_info k_archs[] = {
    {"llama", ARCH_LLAMA, GGML_ROPE_TYPE_NORMAL, true,  false},
    {"qwen2", ARCH_QWEN2, GGML_ROPE_TYPE_NEOX,   false, false},
    {"qwen3", ARCH_QWEN3, GGML_ROPE_TYPE_NEOX,   false, true },
};
const char * const k_refused[][2] = {
    {"qwen2moe",  "a mixture-of-experts model"                      },
    {"qwen3moe",  "a mixture-of-experts model"                      },
    {"qwen35",    "a hybrid-attention model"                        },
    {"qwen35moe", "a hybrid-attention mixture-of-experts model"     },
    {"qwen3next", "a hybrid-attention model"                        },
    {"qwen2vl",   "a multimodal model"                              },
    {"qwen3vl",   "a multimodal model"                              },
    {"llama4",    "a multimodal mixture-of-experts model"           },
    {"gemma",     "a different block (GeGLU, scaled embeddings)"    },
    {"gemma2",    "a sliding-window attention model"                },
    {"gemma3",    "a sliding-window attention model"                },
    {"gemma3n",   "a multimodal model"                              },
    {"gemma4",    "a sliding-window attention model"                },
    {"phi3",      "a model with fused q/k/v and gate/up projections"},
};

std::string supported_archs() {
    return "llama (Llama 1/2/3.x, TinyLlama, Mistral, SmolLM2), qwen2 (Qwen2, Qwen2.5, Qwen2.5-Coder), qwen3 (Qwen3 dense)";
}

const arch_info & find_arch(gguf_context * g, const std::string & path) {
    const std::string arch = kv_str(g, "general.architecture");
    for (const arch_info & a : k_archs)
        if (arch == a.name) return a;
    std::string why;
    for (const auto & r : k_refused)
        if (arch == r[0]) why = std::string(" (") + r[1] + ")";
    throw std::runtime_error("'" + path + "' has architecture '" + arch + "'" + why + "; the text2sql engine supports " +
                             supported_archs());
}

// Reads and checks the hyperparameters, with the keys llama.cpp reads for the architecture
// (n_vocab comes from the token embedding, later).
llama_hparams read_hparams(gguf_context * g, const std::string & path) {
    const arch_info & ai = find_arch(g, path);
    const std::string a  = ai.name;
    llama_hparams     hp;
    hp.arch                   = ai.arch;
    hp.arch_name              = a;
    hp.rope_type              = ai.rope_type;
    hp.n_embd                 = kv_int(g, a + ".embedding_length", 0, true, path);
    hp.n_layer                = kv_int(g, a + ".block_count", 0, true, path);
    hp.n_ff                   = kv_int(g, a + ".feed_forward_length", 0, true, path);
    hp.n_head                 = kv_int(g, a + ".attention.head_count", 0, true, path);
    hp.n_head_kv              = kv_int(g, a + ".attention.head_count_kv", hp.n_head, false, path);
    hp.n_ctx                  = kv_int(g, a + ".context_length", 2048, false, path);
    hp.n_embd_head            = kv_int(g, a + ".attention.key_length", hp.n_head > 0 ? hp.n_embd / hp.n_head : 0, false, path);
    const int64_t n_embd_v    = kv_int(g, a + ".attention.value_length", hp.n_embd_head, false, path);
    hp.n_rot                  = kv_int(g, a + ".rope.dimension_count", hp.n_embd_head, false, path);
    hp.rope_freq_base         = kv_float(g, a + ".rope.freq_base", 10000.0f, path);
    hp.rms_eps                = kv_float(g, a + ".attention.layer_norm_rms_epsilon", 1e-5f, path);
    const std::string scaling = kv_str(g, a + ".rope.scaling.type");
    if (scaling == "linear") {
        const float factor = kv_float(g, a + ".rope.scaling.factor", 1.0f, path);
        hp.rope_freq_scale = factor > 0 ? 1.0f / factor : 1.0f;
    } else if (!scaling.empty() && scaling != "none") {
        throw std::runtime_error("'" + path + "' uses RoPE scaling '" + scaling + "'; supported: none, linear, llama3 (rope_freqs.weight)");
    }
    if (kv_int(g, a + ".expert_count", 0, false, path) > 0) {
        throw std::runtime_error("'" + path + "' is a mixture-of-experts model (" + a +
                                 ".expert_count > 0); the text2sql engine trains dense models only");
    }
    if (kv_float(g, a + ".attention.scale", 0.0f, path) != 0.0f) {
        throw std::runtime_error("'" + path + "' sets " + a + ".attention.scale; only the 1/sqrt(head dim) attention scale is supported");
    }
    if (hp.n_head <= 0 || hp.n_head_kv <= 0 || hp.n_embd_head <= 0 || hp.n_head % hp.n_head_kv != 0 || hp.n_layer <= 0 ||
        (gguf_find_key(g, (a + ".attention.key_length").c_str()) < 0 && hp.n_embd % hp.n_head != 0)) {
        throw std::runtime_error("'" + path + "' has inconsistent hyperparameters (n_embd " + std::to_string(hp.n_embd) + ", heads " +
                                 std::to_string(hp.n_head) + ", kv heads " + std::to_string(hp.n_head_kv) + ", head dim " +
                                 std::to_string(hp.n_embd_head) + ")");
    }
    if (n_embd_v != hp.n_embd_head) {
        throw std::runtime_error("'" + path + "': key and value head sizes differ (" + std::to_string(hp.n_embd_head) + " vs " +
                                 std::to_string(n_embd_v) + "); not supported");
    }
    if (hp.n_rot != hp.head_dim()) {
        throw std::runtime_error("'" + path + "': partial rotary embeddings (rope.dimension_count " + std::to_string(hp.n_rot) +
                                 " != head dim " + std::to_string(hp.head_dim()) + ") are not supported");
    }
    return hp;
}

// The model's tensors as the file describes them (gguf_file.meta), checked for shape and type.
struct model_meta {
    ggml_tensor *tok = nullptr, *out_norm = nullptr, *out = nullptr, *rope_freqs = nullptr;
    struct layer {
        ggml_tensor *                           attn_norm, *ffn_norm;
        ggml_tensor *                           q_norm = nullptr, *k_norm = nullptr;  // qwen3
        std::array<ggml_tensor *, TARGET_COUNT> w;
        std::array<ggml_tensor *, TARGET_COUNT> bias{};                               // q/k/v biases (optional, as in llama.cpp)
    };
    std::vector<layer> layers;
};

// Tensor lookup with shape and type checks.
ggml_tensor * find_tensor(const gguf_file &    gf,
                          const std::string &  path,
                          const std::string &  name,
                          std::vector<int64_t> ne,
                          bool                 matrix,
                          bool                 required) {
    ggml_tensor * t = ggml_get_tensor(gf.meta, name.c_str());
    if (!t) {
        if (required) throw std::runtime_error("'" + path + "' has no tensor '" + name + "'");
        return nullptr;
    }
    const bool ok_type =
        matrix ? (t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16 || t->type == GGML_TYPE_BF16 || quant_type_supported(t->type)) :
                 t->type == GGML_TYPE_F32;
    if (!ok_type) {
        throw std::runtime_error("'" + path + "': tensor '" + name + "' has type " + ggml_type_name(t->type) + "; supported: " +
                                 (matrix ? std::string("F32, F16, BF16, ") + quant_supported_list() : std::string("F32")));
    }
    for (size_t i = 0; i < 4; i++) {
        const int64_t want = i < ne.size() ? ne[i] : 1;
        if (t->ne[i] != want) {
            throw std::runtime_error("'" + path + "': tensor '" + name + "' has shape " + shape_str(t) + ", expected " +
                                     t2s::shape_str(ne));
        }
    }
    return t;
}

// Throws when the file holds a tensor the engine would not use (a bias or extra weight of a
// variant it does not implement): computing without it would silently give another model.
void check_no_unknown_tensors(const gguf_file & gf, const std::string & path, const std::vector<std::string> & used) {
    const int64_t n = gguf_get_n_tensors(gf.g);
    for (int64_t i = 0; i < n; i++) {
        const std::string name = gguf_get_tensor_name(gf.g, i);
        if (std::find(used.begin(), used.end(), name) != used.end()) continue;
        throw std::runtime_error("'" + path + "' has tensor '" + name +
                                 "', which the text2sql engine does not implement for architecture '" +
                                 kv_str(gf.g, "general.architecture") + "' (nothing is dropped silently)");
    }
}

// Finds every tensor of the model; sets hp.n_vocab from the token embedding.
model_meta find_tensors(const gguf_file & gf, const std::string & path, llama_hparams & hp) {
    std::vector<std::string> used;
    auto                     find = [&](const std::string & name, std::vector<int64_t> ne, bool matrix, bool required) {
        ggml_tensor * t = find_tensor(gf, path, name, std::move(ne), matrix, required);
        if (t) used.push_back(name);
        return t;
    };
    model_meta m;
    m.tok = ggml_get_tensor(gf.meta, "token_embd.weight");
    if (!m.tok) throw std::runtime_error("'" + path + "' has no tensor 'token_embd.weight'");
    hp.n_vocab = m.tok->ne[1];
    m.tok      = find("token_embd.weight", {hp.n_embd, hp.n_vocab}, true, true);
    m.out_norm = find("output_norm.weight", {hp.n_embd}, false, true);
    m.out      = find("output.weight", {hp.n_embd, hp.n_vocab}, true, false);  // absent: tied to token_embd
    if (hp.arch == ARCH_LLAMA) m.rope_freqs = find("rope_freqs.weight", {hp.n_rot / 2}, false, false);
    m.layers.resize(hp.n_layer);
    for (int64_t il = 0; il < hp.n_layer; il++) {
        const std::string   p  = "blk." + std::to_string(il) + ".";
        model_meta::layer & lm = m.layers[il];
        lm.attn_norm           = find(p + "attn_norm.weight", {hp.n_embd}, false, true);
        lm.ffn_norm            = find(p + "ffn_norm.weight", {hp.n_embd}, false, true);
        for (int t = 0; t < TARGET_COUNT; t++) {
            lm.w[t] = find(p + k_stems[t] + ".weight", {hp.target_in(t), hp.target_out(t)}, true, true);
        }
        for (int t : {TARGET_Q, TARGET_K, TARGET_V}) lm.bias[t] = find(p + k_stems[t] + ".bias", {hp.target_out(t)}, false, false);
        if (hp.arch == ARCH_QWEN3) {
            lm.q_norm = find(p + "attn_q_norm.weight", {hp.head_dim()}, false, true);
            lm.k_norm = find(p + "attn_k_norm.weight", {hp.head_dim()}, false, true);
        }
    }
    check_no_unknown_tensors(gf, path, used);
    return m;
}

// One tensor to read from the file into the backend, transposed or not (or packed for the AMX tiles).
struct copy_job {
    ggml_tensor * src_meta;
    ggml_tensor * dst;
    bool          transpose;
    bool          pack = false;
};

// Backend and weight memory: every base tensor plus (unless lean) a transposed copy of each
// matrix. Returns what to read into them.
std::vector<copy_job> alloc_weights(engine & e, const model_meta & m) {
    const llama_hparams & hp        = e.hp;
    const bool            lean      = e.opts.lean;
    const size_t          n_tensors = 8 + hp.n_layer * (4 + 3 * TARGET_COUNT);
    ggml_init_params      ip        = {ggml_tensor_overhead() * n_tensors, nullptr, true};
    e.ctx_w                         = ggml_init(ip);
    e.ctx_wr                        = ggml_init(ip);
    // matrices that ggml's repacked GEMM multiplies (Q4_K, Q4_0 on AVX2) go to a CPU_REPACK buffer
    auto dup                        = [&](ggml_tensor * src) {
        const bool    repack = src != m.tok && quant_repack_for(e, src) != quant_repack::none;
        ggml_tensor * t      = ggml_dup_tensor(repack ? e.ctx_wr : e.ctx_w, src);  // src's shape
        ggml_set_name(t, ggml_get_name(src));
        return t;
    };
    auto dup_t = [&](ggml_tensor * src) {
        ggml_tensor * t = ggml_new_tensor_2d(e.ctx_w, src->type, src->ne[1], src->ne[0]);  // [n_out, n_in]
        ggml_format_name(t, "%s.T", ggml_get_name(src));
        return t;
    };
    std::vector<copy_job> jobs;
    // AMX: Wᵀ·dy reads W packed in tile panels (amx.h) instead of a transposed copy (same size
    // when n_out is a multiple of 32 and n_in of 16, else the padding)
    auto                  add_t = [&](ggml_tensor * src) {
        if (!e.amx || src->type != GGML_TYPE_BF16) {
            ggml_tensor * t = dup_t(src);
            jobs.push_back({src, t, true});
            return t;
        }
        const int64_t kp = (src->ne[1] + 31) / 32 * 32, np = (src->ne[0] + 15) / 16 * 16;
        ggml_tensor * t = ggml_new_tensor_2d(e.ctx_w, GGML_TYPE_BF16, kp * 16, np / 16);  // [Kp·16, Np/16]  panels of W
        ggml_format_name(t, "%s.amx", ggml_get_name(src));
        jobs.push_back({src, t, false, true});
        return t;
    };

    e.tok_embd = dup(m.tok);
    jobs.push_back({m.tok, e.tok_embd, false});
    e.output_norm = dup(m.out_norm);
    jobs.push_back({m.out_norm, e.output_norm, false});
    if (m.out) {
        e.output = dup(m.out);
        jobs.push_back({m.out, e.output, false});
    } else {
        e.output = e.tok_embd;  // tied embeddings
    }
    ggml_tensor * m_out_src = m.out ? m.out : m.tok;
    // quantized matrices never get a kept transposed copy: their Wᵀ is made per layer (quant.cpp)
    auto          keep_t    = [&](ggml_tensor * src) {
        return !lean && !ggml_is_quantized(src->type);
    };
    if (keep_t(m_out_src)) e.output_t = add_t(m_out_src);
    if (m.rope_freqs) {
        e.rope_freqs = dup(m.rope_freqs);
        jobs.push_back({m.rope_freqs, e.rope_freqs, false});
    }
    e.layers.resize(hp.n_layer);
    for (int64_t il = 0; il < hp.n_layer; il++) {
        llama_layer &             L  = e.layers[il];
        const model_meta::layer & lm = m.layers[il];
        L.attn_norm                  = dup(lm.attn_norm);
        jobs.push_back({lm.attn_norm, L.attn_norm, false});
        L.ffn_norm = dup(lm.ffn_norm);
        jobs.push_back({lm.ffn_norm, L.ffn_norm, false});
        for (auto [src, dst] : {std::make_pair(lm.q_norm, &L.attn_q_norm), std::make_pair(lm.k_norm, &L.attn_k_norm)}) {
            if (!src) continue;
            *dst = dup(src);
            jobs.push_back({src, *dst, false});
        }
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!lm.bias[t]) continue;
            L.bias[t] = dup(lm.bias[t]);
            jobs.push_back({lm.bias[t], L.bias[t], false});
        }
        for (int t = 0; t < TARGET_COUNT; t++) {
            L.w[t] = dup(lm.w[t]);
            jobs.push_back({lm.w[t], L.w[t], false});
            if (keep_t(lm.w[t])) L.wt[t] = add_t(lm.w[t]);
        }
    }
    // the row index of the portable dequantization (GET_ROWS of every row: quant.cpp)
    int64_t max_q_rows = 0;
    for (const copy_job & j : jobs) {
        if (ggml_is_quantized(j.dst->type)) max_q_rows = std::max(max_q_rows, j.dst->ne[1]);
    }
    if (max_q_rows > 0) e.quant_rows = ggml_new_tensor_1d(e.ctx_w, GGML_TYPE_I32, max_q_rows);  // [max n_out]
    e.buf_w = ggml_backend_alloc_ctx_tensors(e.ctx_w, e.backend);
    if (!e.buf_w) throw std::runtime_error("out of memory allocating the model weights on " + e.device_name);
    ggml_backend_buffer_set_usage(e.buf_w, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    e.weight_bytes = ggml_backend_buffer_get_size(e.buf_w);
    if (e.quant_rows) {
        std::vector<int32_t> rows((size_t) max_q_rows);
        for (int64_t i = 0; i < max_q_rows; i++) rows[(size_t) i] = (int32_t) i;
        ggml_backend_tensor_set(e.quant_rows, rows.data(), 0, ggml_nbytes(e.quant_rows));
    }
    if (ggml_get_first_tensor(e.ctx_wr)) {
        e.buf_wr = ggml_backend_alloc_ctx_tensors_from_buft(e.ctx_wr, quant_repack_buft(e));
        if (!e.buf_wr) throw std::runtime_error("out of memory allocating the model weights (CPU_REPACK) on " + e.device_name);
        ggml_backend_buffer_set_usage(e.buf_wr, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        e.weight_bytes += ggml_backend_buffer_get_size(e.buf_wr);
    }
    const size_t wt_esz = ggml_type_size(e.quant_wt_type);
    for (const copy_job & j : jobs) {
        if (j.transpose || j.pack) e.transposed_bytes += ggml_nbytes(j.dst);
        if (!ggml_is_quantized(j.dst->type)) continue;
        e.quant_bytes += ggml_nbytes(j.dst);
        // the output head's Wᵀ is made a 4,096-row chunk at a time (graph.cpp)
        const int64_t rows = j.dst == e.output ? std::min<int64_t>(4096, j.dst->ne[1]) : j.dst->ne[1];
        if (j.dst != e.tok_embd || !m.out) e.quant_t_bytes = std::max(e.quant_t_bytes, (size_t) (rows * j.dst->ne[0]) * wt_esz);
    }
    return jobs;
}

// Reads each tensor once from the file; writes it (and its transpose) to the backend.
void upload_weights(const gguf_file & gf, const std::string & path, const std::vector<copy_job> & jobs) {
    FILE * f = fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open model file '" + path + "'");
    std::vector<uint8_t> buf, tbuf;
    const size_t         data_off = gguf_get_data_offset(gf.g);
    for (const copy_job & j : jobs) {
        const int64_t id     = gguf_find_tensor(gf.g, ggml_get_name(j.src_meta));
        const size_t  nbytes = ggml_nbytes(j.src_meta);
        buf.resize(nbytes);
        if (fseeko(f, (off_t) (data_off + gguf_get_tensor_offset(gf.g, id)), SEEK_SET) != 0 || fread(buf.data(), 1, nbytes, f) != nbytes) {
            fclose(f);
            throw std::runtime_error("'" + path + "' is truncated: cannot read the data of tensor '" + ggml_get_name(j.src_meta) + "'");
        }
        if (j.pack) {
            const int64_t n_in = j.src_meta->ne[0], n_out = j.src_meta->ne[1];
            tbuf.resize(ggml_nbytes(j.dst));
            amx_pack_b_bf16((const uint16_t *) buf.data(), n_in, 1, n_out, n_in, (uint16_t *) tbuf.data(), 0, 1);
            ggml_backend_tensor_set(j.dst, tbuf.data(), 0, tbuf.size());
        } else if (j.transpose) {
            tbuf.resize(nbytes);
            transpose_2d(buf.data(), tbuf.data(), j.src_meta->ne[0], j.src_meta->ne[1], ggml_type_size(j.src_meta->type));
            ggml_backend_tensor_set(j.dst, tbuf.data(), 0, nbytes);
        } else {
            ggml_backend_tensor_set(j.dst, buf.data(), 0, nbytes);
        }
    }
    fclose(f);
}

// The LoRA tensors (A, B and their gradients) of every targeted layer, PEFT-initialised.
void alloc_lora(engine & e) {
    const llama_hparams & hp = e.hp;
    const lora_config &   lc = e.opts.lora;
    if (lc.r <= 0) throw std::runtime_error("lora.r must be a positive integer, got " + std::to_string(lc.r));
    if (!(lc.dropout >= 0.0f && lc.dropout < 1.0f))
        throw std::runtime_error("lora.dropout must be in [0, 1), got " + std::to_string(lc.dropout));
    int n_targets = 0;
    for (int t = 0; t < TARGET_COUNT; t++) n_targets += lc.targets[t];
    if (n_targets == 0) throw std::runtime_error("lora.target_modules is empty: choose from q, k, v, o, gate, up, down");

    ggml_init_params lp = {ggml_tensor_overhead() * (4 * n_targets * hp.n_layer + 4), nullptr, true};
    e.ctx_lora          = ggml_init(lp);
    for (int64_t il = 0; il < hp.n_layer; il++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!lc.targets[t]) continue;
            lora_pair p;
            p.layer  = (int) il;
            p.target = t;
            p.a      = ggml_new_tensor_2d(e.ctx_lora, GGML_TYPE_F32, hp.target_in(t), lc.r);   // [n_in, r]
            p.b      = ggml_new_tensor_2d(e.ctx_lora, GGML_TYPE_F32, lc.r, hp.target_out(t));  // [r, n_out]
            p.ga     = ggml_dup_tensor(e.ctx_lora, p.a);                                       // [n_in, r]
            p.gb     = ggml_dup_tensor(e.ctx_lora, p.b);                                       // [r, n_out]
            ggml_set_name(p.a, p.name_a().c_str());
            ggml_set_name(p.b, p.name_b().c_str());
            e.lora.push_back(p);
        }
    }
    e.buf_lora = ggml_backend_alloc_ctx_tensors(e.ctx_lora, e.backend);
    if (!e.buf_lora) throw std::runtime_error("out of memory allocating the LoRA adapter on " + e.device_name);
    lora_reset(e);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::unique_ptr<engine> engine_init(const engine_options & opts) {
    const std::string & path = opts.model_path;
    gguf_check_magic(path, "model");

    gguf_file        gf;
    gguf_init_params gp = {/*no_alloc =*/true, /*ctx =*/&gf.meta};
    gf.g                = gguf_init_from_file(path.c_str(), gp);
    if (!gf.g) throw std::runtime_error("'" + path + "' could not be read as GGUF (corrupt or truncated file)");

    auto e             = std::make_unique<engine>();
    e->opts            = opts;
    e->quant_wt_type   = opts.quant_exact ? GGML_TYPE_F32 : GGML_TYPE_BF16;
    e->hp              = read_hparams(gf.g, path);
    const model_meta m = find_tensors(gf, path, e->hp);
    e->weight_type     = ggml_type_name(m.layers[0].w[TARGET_Q]->type);
    for (auto & c : e->weight_type) c = (char) tolower(c);

    e->backend     = init_backend(opts.device, e->backend_cpu);
    e->device_name = ggml_backend_name(e->backend);
    if (e->backend_cpu && e->weight_type == "bf16") {
        std::string note;
        e->amx = (int) amx_mode_from_env(note);
        if (!note.empty()) fprintf(stderr, "text2sql: %s\n", note.c_str());
    }
    if (e->backend_cpu && !opts.quant_exact) {
        std::string note;
        e->q8_gemm = q8_gemm_available(note);
        if (!e->q8_gemm && e->weight_type == "q8_0") fprintf(stderr, "text2sql: Q8_0 products run ggml's kernel: %s\n", note.c_str());
    }
    if (e->backend_cpu) {
        std::string note;
        e->fused = (int) fused_mode_from_env(note);
        if (!note.empty()) fprintf(stderr, "text2sql: %s\n", note.c_str());
    }
    if (e->backend_cpu) {
        std::string note;
        // TEXT2SQL_FUSED's variant unless TEXT2SQL_FUSED_LORA names one (or 0)
        e->lora_k = !e->fused ? 0 : getenv("TEXT2SQL_FUSED_LORA") ? (int) fused_mode_from_env(note, "TEXT2SQL_FUSED_LORA") : e->fused;
        if (!note.empty()) fprintf(stderr, "text2sql: %s\n", note.c_str());
    }
    if (e->backend_cpu) {
        std::string note;
        // the fused RMS norms: TEXT2SQL_FUSED's variant unless TEXT2SQL_FUSED_NORM names one (or 0)
        e->norm_k = !e->fused ? 0 : getenv("TEXT2SQL_FUSED_NORM") ? (int) fused_mode_from_env(note, "TEXT2SQL_FUSED_NORM") : e->fused;
        if (!note.empty()) fprintf(stderr, "text2sql: %s\n", note.c_str());
        const char * bf = getenv("TEXT2SQL_FUSED_BF16");
        e->fused_bf16   = e->fused && !(bf && (std::string(bf) == "0" || std::string(bf) == "off"));
    }
    if (e->backend_cpu) {
        const int n_threads = opts.threads > 0 ? opts.threads : (int) std::max(1u, std::thread::hardware_concurrency());
        ggml_backend_cpu_set_n_threads(e->backend_cpu, n_threads);
    }
    upload_weights(gf, path, alloc_weights(*e, m));
    alloc_lora(*e);

    e->caps = engine_probe_caps(*e);
    if (opts.portable_ops) e->caps.soft_max_back = e->caps.rms_norm_back = e->caps.out_prod = false;
    e->galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(e->backend));
    engine_check_backend_ops(*e);
    return e;
}

}  // namespace t2s
