// text2sql engine: a Llama-like model (GGUF architectures llama, qwen2, qwen3) loaded from GGUF,
// LoRA adapters on any subset of its linear layers, and a hand-written forward/backward graph on
// ggml. src/formats/architectures.ts owns the description of the architectures; model.cpp's
// arch table mirrors it.
//
// Files: model.cpp loads the model (gguf_util.cpp: GGUF helpers), adapter.cpp holds the LoRA
// state, optimizer.cpp the AdamW step, graph.cpp builds the graph (graph.h), runner.cpp runs it,
// kernels.cpp has the CPU kernels, profile.cpp the profiler, backend_ops.cpp the backend checks.
//
// Every function here may throw std::runtime_error with a message meant for the user; the N-API
// layer (addon.cpp) turns it into a rejected Promise.
#pragma once

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace t2s {

// The seven linear layers of a Llama block that can carry a LoRA adapter.
enum lora_target : int {
    TARGET_Q = 0,
    TARGET_K,
    TARGET_V,
    TARGET_O,
    TARGET_GATE,
    TARGET_UP,
    TARGET_DOWN,
    TARGET_COUNT,
};

// GGUF tensor name stem: blk.N.<stem>.weight. The user-facing names (q, q_proj) live in
// src/engine/lora.ts, which passes the engine validated indices in this enum's order.
const char * target_gguf_stem(int t);  // "attn_q"

// The architectures the engine trains (llama.cpp's src/models/{llama,qwen2,qwen3}.cpp).
enum model_arch : int {
    ARCH_LLAMA = 0,  // Llama 1/2/3.x, Mistral: q/k rows permuted (RoPE mode 0), optional llama3 rope_freqs
    ARCH_QWEN2,      // Qwen2/2.5: q/k/v biases, NEOX RoPE
    ARCH_QWEN3,      // Qwen3 dense: per-head RMSNorm of q and k before RoPE, NEOX RoPE
};

struct llama_hparams {
    model_arch  arch            = ARCH_LLAMA;
    std::string arch_name       = "llama";  // GGUF general.architecture
    int         rope_type       = 0;        // GGML_ROPE_TYPE_NORMAL (0) or GGML_ROPE_TYPE_NEOX (2)
    int64_t     n_vocab         = 0;
    int64_t     n_embd          = 0;
    int64_t     n_layer         = 0;
    int64_t     n_head          = 0;
    int64_t     n_head_kv       = 0;
    int64_t     n_ff            = 0;
    int64_t     n_ctx           = 0;
    int64_t     n_rot           = 0;
    int64_t     n_embd_head     = 0;  // head dim: <arch>.attention.key_length, else n_embd / n_head
    float       rope_freq_base  = 10000.0f;
    float       rope_freq_scale = 1.0f;
    float       rms_eps         = 1e-5f;

    int64_t head_dim() const { return n_embd_head; }
    int64_t n_embd_q() const { return n_embd_head * n_head; }  // rows of q, columns of o (!= n_embd in Qwen3-0.6B/4B)
    int64_t n_embd_kv() const { return n_embd_head * n_head_kv; }
    // [n_in, n_out] of a target's weight
    int64_t target_in(int t) const;
    int64_t target_out(int t) const;
};

struct llama_layer {
    ggml_tensor *                           attn_norm   = nullptr;  // [n_embd] f32
    ggml_tensor *                           ffn_norm    = nullptr;  // [n_embd] f32
    ggml_tensor *                           attn_q_norm = nullptr;  // [head_dim] f32 (qwen3), else null
    ggml_tensor *                           attn_k_norm = nullptr;  // [head_dim] f32 (qwen3), else null
    std::array<ggml_tensor *, TARGET_COUNT> bias{};                 // [n_out] f32 frozen bias (q, k, v of qwen2), else null
    std::array<ggml_tensor *, TARGET_COUNT> w{};                    // [n_in, n_out]  frozen weights
    std::array<ggml_tensor *, TARGET_COUNT> wt{};                   // [n_out, n_in]  transposed copies for dX = Wᵀ·dY (null when lean)
};

struct lora_config {
    int                            r       = 8;
    float                          alpha   = 16.0f;
    float                          dropout = 0.0f;
    bool                           rslora  = false;
    uint64_t                       seed    = 42;
    std::array<bool, TARGET_COUNT> targets{};

    float scale() const;
};

// One adapted linear layer: y = W·x + scale · B·(A·dropout(x)).
struct lora_pair {
    int           layer  = 0;
    int           target = 0;
    ggml_tensor * a      = nullptr;  // [n_in, r]
    ggml_tensor * b      = nullptr;  // [r, n_out]
    ggml_tensor * ga     = nullptr;  // [n_in, r]   accumulated gradient
    ggml_tensor * gb     = nullptr;  // [r, n_out]  accumulated gradient
    std::string   name_a() const;    // "blk.0.attn_q.weight.lora_a"
    std::string   name_b() const;
};

struct adam_state {
    int64_t                         t = 0;
    std::vector<std::vector<float>> m;  // one per parameter tensor (a0, b0, a1, b1, ...)
    std::vector<std::vector<float>> v;
};

struct step_params {
    float lr            = 2e-4f;
    float beta1         = 0.9f;
    float beta2         = 0.999f;
    float eps           = 1e-8f;
    float weight_decay  = 0.0f;
    float max_grad_norm = 0.0f;  // <= 0: no clipping
};

struct batch_stats {
    double  loss_sum  = 0.0;  // sum of token NLL over unmasked positions
    int64_t n_tokens  = 0;    // unmasked positions
    int64_t n_correct = 0;    // unmasked positions whose argmax equals the target
};

// Fused backward ops the backend has; where it lacks one, the graph composes it from basic ops.
struct op_caps {
    bool soft_max_back    = false;  // SOFT_MAX_BACK (CPU, CUDA; not Metal)
    bool rms_norm_back    = false;  // RMS_NORM_BACK (CPU, CUDA; not Metal)
    bool out_prod         = false;  // OUT_PROD f32 x f32, for the LoRA gradients (CPU, CUDA; not Metal)
    bool custom_transpose = false;  // lean mode's Wᵀ through a tiled CPU op (kernels.cpp; else CONT)
};

struct engine_options {
    std::string model_path;
    std::string device       = "auto";  // auto | cpu | cuda | metal
    int         threads      = 0;       // 0: hardware concurrency
    // lean: no transposed weight copies; each Wᵀ is made in the graph just before its backward
    // product and freed right after (about half the weight memory, a little more time).
    bool        lean         = false;
    // checkpoint: the forward pass keeps only each layer's input and the outputs of its
    // attention projections; the backward pass recomputes the rest of the layer (norms, RoPE,
    // attention, the FFN) just before that layer's backward (less activation memory, more time).
    bool        checkpoint   = false;
    bool        profile      = false;  // time every graph node (slow); read with engine_profile_take
    bool        portable_ops = false;  // compose every backward op from basic ops, as on Metal (tests)
    // quantized weights: false (fast) multiplies them with ggml's quantized kernels (activations
    // rounded to 8 bits) and makes each Wᵀ in BF16; true (exact, for checks) dequantizes each
    // weight to F32 per layer for the forward product too and makes Wᵀ in F32: the exact model
    // of the dequantized weights, whose gradients finite differences can check.
    bool        quant_exact  = false;
    lora_config lora;
};

// Per-op timings gathered when engine_options.profile is set.
struct profile_entry {
    std::string phase;  // forward | backward
    std::string op;     // e.g. MUL_MAT bf16 x f32 (weight), SOFT_MAX f32
    int64_t     count = 0;
    double      ms    = 0.0;
    double      flop  = 0.0;  // multiply-adds x 2, for MUL_MAT
};

struct engine {
    engine_options opts;
    llama_hparams  hp;
    std::string    weight_type;                     // "f32" | "f16" | "bf16" | "q8_0" | ... (of the first layer's q matrix)
    ggml_type      quant_wt_type = GGML_TYPE_BF16;  // type of the Wᵀ made from quantized weights (quant.cpp; F32 when exact)
    std::string    device_name;                     // backend name as ggml reports it

    ggml_backend_t backend     = nullptr;
    ggml_backend_t backend_cpu = nullptr;            // set when the backend is the CPU (thread count)

    ggml_context *           ctx_w       = nullptr;  // weights (and their transposed copies)
    ggml_backend_buffer_t    buf_w       = nullptr;
    ggml_context *           ctx_wr      = nullptr;  // quantized weights in ggml's CPU_REPACK layout (quant.h)
    ggml_backend_buffer_t    buf_wr      = nullptr;
    ggml_tensor *            tok_embd    = nullptr;  // [n_embd, n_vocab]
    ggml_tensor *            output_norm = nullptr;  // [n_embd]
    ggml_tensor *            output      = nullptr;  // [n_embd, n_vocab] (token_embd when tied)
    ggml_tensor *            output_t    = nullptr;  // [n_vocab, n_embd]
    ggml_tensor *            rope_freqs  = nullptr;  // [n_rot/2] or null
    ggml_tensor *            quant_rows  = nullptr;  // [max n_out] i32 0, 1, ...: GET_ROWS index dequantizing a whole weight (quant.h)
    std::vector<llama_layer> layers;

    ggml_context *         ctx_lora = nullptr;  // adapter weights and gradients
    ggml_backend_buffer_t  buf_lora = nullptr;
    std::vector<lora_pair> lora;
    adam_state             adam;
    uint64_t               dropout_calls = 0;  // advances the dropout stream on every accumulate

    ggml_gallocr_t             galloc           = nullptr;
    size_t                     weight_bytes     = 0;  // base weights (+ transposed copies unless lean)
    size_t                     transposed_bytes = 0;  // of which transposed copies
    size_t                     quant_bytes      = 0;  // of which quantized matrices
    size_t                     quant_t_bytes    = 0;  // largest Wᵀ made from a quantized weight (one at a time)
    std::vector<profile_entry> profile;               // accumulated when opts.profile
    op_caps                    caps;                  // fused ops the graph may use on this backend
    // The frozen-weight products of a BF16 model on the CPU: 0 ggml's mul_mat, 1 the AMX-BF16
    // tiles, 2 the same kernel on an emulated tile unit (amx_mode, amx.h). With 1 or 2 the
    // transposed copies (wt, output_t; fast mode) hold W packed for the tiles instead.
    int                        amx        = 0;
    // The forward products of Q8_0 weights on the CPU: text2sql's AVX512-VNNI GEMM (q8_gemm.h)
    // where the CPU has it, else ggml's kernel (logged at load when the model has Q8_0 weights).
    bool                       q8_gemm    = false;
    // text2sql's fused CPU ops (causal attention, the SwiGLU backward; fused.h): 0 ggml's
    // composition of the same (graph.cpp), else the kernels' variant (fused_mode; TEXT2SQL_FUSED).
    int                        fused      = 0;
    // The adapters' rank-r products on the CPU: 0 ggml's composition (graph.cpp), else text2sql's
    // fused ops in that variant (fused_mode, lora.h; TEXT2SQL_FUSED_LORA, off with TEXT2SQL_FUSED=0).
    int                        lora_k     = 0;
    // The RMS norms and their backward on the CPU: 0 ggml's RMS_NORM, MUL, RMS_NORM_BACK and ADD, else
    // text2sql's fused norm in that variant (fused.h; TEXT2SQL_FUSED_NORM, off with TEXT2SQL_FUSED=0).
    int                        norm_k     = 0;
    // With the fused ops and the AVX512-BF16 kernel: the SwiGLU ops write the BF16 inputs of the
    // down (forward), gate and up (backward) products themselves where those have no adapter
    // (graph.cpp's bf16_direct; TEXT2SQL_FUSED_BF16=0 turns it off).
    bool                       fused_bf16 = false;

    ~engine();
};

// Loading and adapters (model.cpp, adapter.cpp)
std::unique_ptr<engine> engine_init(const engine_options & opts);
int64_t                 lora_param_count(const engine & e);
void                    lora_reset(engine & e);  // PEFT init: A ~ U(±1/sqrt(n_in)), B = 0
struct host_tensor {
    std::string          name;
    std::vector<int64_t> ne;
    std::vector<float>   data;
};
std::vector<host_tensor> lora_get(const engine & e, bool gradients);
void                     lora_set(engine & e, const std::vector<host_tensor> & tensors, bool gradients = false);
void                     lora_save_gguf(const engine & e, const std::string & path);
void                     lora_load_gguf(engine & e, const std::string & path);

// Compute (runner.cpp)
// tokens/mask: [n_seq, seq_len] row-major, right-padded; mask[i][j] = 1 marks token j of sequence i
// as a prediction target (predicted from tokens 0..j-1). grad_scale multiplies every gradient
// (the trainer passes 1 / unmasked tokens of the whole accumulated batch).
batch_stats engine_accumulate(engine & e, const int32_t * tokens, const uint8_t * mask, int64_t n_seq, int64_t seq_len, float grad_scale);
// weights: [n_seq, seq_len] f32, weights[i][j] != 0 marks token j as a target with that weight: the
// gradient is that of -grad_scale · Σ w · log softmax(logits / temperature)[target] (GRPO).
batch_stats engine_accumulate_weighted(engine &        e,
                                       const int32_t * tokens,
                                       const float *   weights,
                                       int64_t         n_seq,
                                       int64_t         seq_len,
                                       float           grad_scale,
                                       float           temperature);
batch_stats engine_evaluate(engine & e, const int32_t * tokens, const uint8_t * mask, int64_t n_seq, int64_t seq_len);
// [n_seq, seq_len]: log softmax(logits / temperature)[token j] where mask[i][j], else 0; forward only.
std::vector<double> engine_logprobs(engine &        e,
                                    const int32_t * tokens,
                                    const uint8_t * mask,
                                    int64_t         n_seq,
                                    int64_t         seq_len,
                                    float           temperature);
std::vector<float>  engine_logits(engine & e, const int32_t * tokens, int64_t n_tokens);  // [n_tokens, n_vocab]

// Bytes of the compute buffer (activations and temporaries): the largest graph so far.
size_t engine_compute_bytes(const engine & e);

// Optimizer (optimizer.cpp)
double engine_step(engine & e, const step_params & p);  // returns the gradient norm before clipping
void   engine_zero_grad(engine & e);

// Per-op timings since the last call (engine_options.profile), slowest first (profile.cpp).
std::vector<profile_entry> engine_profile_take(engine & e);

// Backend checks (backend_ops.cpp)
// Throws when the backend lacks an op of the training graph (no silent CPU fallback).
void engine_check_backend_ops(engine & e);

// The ops a training graph uses, for the portability test: one line per node "OP" or "UNARY:SILU".
// caps: build the graph as for a backend with these fused ops (default: this engine's).
std::vector<std::string> engine_graph_ops(engine & e, int64_t n_tokens, const op_caps * caps = nullptr);

// Which fused backward ops the engine's backend runs (probed with ggml_backend_supports_op).
op_caps engine_probe_caps(engine & e);

}  // namespace t2s
