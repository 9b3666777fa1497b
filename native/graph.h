// The training graph's shared declarations: what graph.cpp builds (graph_ctx, its inputs and
// outputs) for the runner (runner.cpp), the profiler (profile.cpp) and the backend checks
// (backend_ops.cpp).
#pragma once

#include "engine.h"

#include <array>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace t2s {

enum class graph_mode { logits, eval, train };

struct graph_inputs {
    ggml_tensor *                              tokens   = nullptr;  // [T] i32
    ggml_tensor *                              pos      = nullptr;  // [T] i32
    ggml_tensor *                              kq_mask  = nullptr;  // [T, T] f32, 0 or -inf (null with the fused attention, fused.h)
    ggml_tensor *                              tgt      = nullptr;  // [n_t] i32, the positions that have a target (loss)
    ggml_tensor *                              tgt_flat = nullptr;  // [n_t] i32, i·n_vocab + target of position tgt[i]
    ggml_tensor *                              scatter  = nullptr;  // [n_t, T] f32, scatter[i, j] = 1 where tgt[i] == j
    ggml_tensor *                              onehot   = nullptr;  // [n_vocab, n_t] f32, 1 at each target position's target
    ggml_tensor *                              tw       = nullptr;  // [1, n_t] f32, each target's gradient weight (weighted train)
    std::vector<std::pair<ggml_tensor *, int>> drop;                // dropout masks [n_in, T] and the lora pair index
};

struct graph_outputs {
    int           n_forward  = 0;        // graph nodes of the forward pass (the rest is backward)
    ggml_tensor * logits     = nullptr;  // [n_vocab, T] (logits mode) or [n_vocab, n_t], divided by the temperature
    ggml_tensor * p_target   = nullptr;  // [1, n_t]  softmax probability of the target
    // [1, n_t] its exact log, where the fused train graph overwrote the logits with their gradient
    // (logits is null then); else null, and an underflowed P is redone from the logits
    ggml_tensor * logp_exact = nullptr;
    ggml_tensor * argmax     = nullptr;  // [n_t] i32
};

// The memory of one graph's ggml context (tensor and graph metadata; the allocator places the data).
struct graph_run {
    std::unique_ptr<uint8_t[]> meta;
    ggml_context *             ctx = nullptr;
    ~graph_run() {
        if (ctx) ggml_free(ctx);
    }
};

// The named parameters of graph_ctx_init.
struct graph_params {
    graph_mode      mode       = graph_mode::train;
    int64_t         n_tokens   = 0;        // T: input tokens of the sequence
    int64_t         n_targets  = 0;        // positions with a target (eval, train)
    float           grad_scale = 0.0f;     // gradient weight of every target (train)
    float           inv_temp   = 1.0f;     // logits are divided by the temperature (eval, train)
    bool            weighted   = false;    // train: each target's gradient is also multiplied by its weight (in.tw)
    const op_caps * caps       = nullptr;  // fused ops to build with (null: the engine's)
};

struct graph_ctx {
    engine &                                         e;
    ggml_context *                                   ctx;
    int64_t                                          T;
    int64_t                                          n_t;  // positions with a target (eval, train); the output head runs on these only
    float                                            grad_scale;  // gradient weight of every target (train)
    float                                            inv_temp;    // 1 / temperature of the target logits (eval, train)
    bool                                             weighted;    // train: per-target weights in in.tw
    op_caps                                          caps;
    graph_mode                                       mode;
    bool                                             dropout;  // train mode with lora.dropout > 0: each adapted layer gets a mask input
    graph_inputs                                     in;
    // lora pair index per [layer][target], -1 when the target has no adapter
    std::vector<std::array<int, TARGET_COUNT>>       lora_idx;
    // gradient accumulation nodes (ggml_cpy into the persistent gradient tensors)
    std::vector<ggml_tensor *>                       grad_updates;
    // checkpointing: layers il >= keep_ffn_from keep their gate/up outputs (graph_ctx_init's budget)
    int                                              keep_ffn_from = 0;
    // x -> its form for the CPU BF16 kernel's W·x (amx_prepare_x), made once per x
    std::unordered_map<ggml_tensor *, ggml_tensor *> prepared_x;
};

// A graph context for one sequence, its ggml context made in `run` (graph.cpp).
graph_ctx graph_ctx_init(engine & e, graph_run & run, const graph_params & p);

// The forward graph (logits, eval) or forward + backward graph (train) of g (graph.cpp).
ggml_cgraph * build_graph(graph_ctx & g, graph_outputs & out);

// Ops that compute nothing (views, leaves): skipped by the profiler and the backend check.
inline bool op_is_view(ggml_op op) {
    return op == GGML_OP_NONE || op == GGML_OP_RESHAPE || op == GGML_OP_TRANSPOSE || op == GGML_OP_VIEW || op == GGML_OP_PERMUTE;
}

// Throws unless a graph compute succeeded (runner.cpp).
void check_compute_status(const engine & e, ggml_status st);

// Computes gf one node at a time, adding each node's time to e.profile (profile.cpp).
void graph_compute_profiled(engine & e, ggml_cgraph * gf, int n_forward);

}  // namespace t2s
