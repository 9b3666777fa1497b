// What the engine's backend runs: the probe of its fused backward ops (op_caps), the check that
// it supports every op of the training graph (no silent CPU fallback), and the op list of a
// training graph for the portability test.
#include "graph.h"
#include "quant.h"

#include <stdexcept>

namespace t2s {

namespace {

// A training graph as the engine would train (with dropout masks when lora.dropout > 0).
ggml_cgraph * build_train_graph(engine & e, graph_run & run, int64_t T, int64_t n_t, const op_caps * caps, graph_outputs & out) {
    graph_params gp;
    gp.mode       = graph_mode::train;
    gp.n_tokens   = T;
    gp.n_targets  = n_t;
    gp.grad_scale = 1.0f;
    gp.caps       = caps;
    graph_ctx g   = graph_ctx_init(e, run, gp);
    return build_graph(g, out);
}

}  // namespace

void engine_check_backend_ops(engine & e) {
    graph_run     run;
    graph_outputs out;
    ggml_cgraph * gf = build_train_graph(e, run, 8, 4, nullptr, out);
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
        ggml_tensor * t = ggml_graph_node(gf, i);
        if (op_is_view(t->op)) continue;  // views compute nothing
        // ggml's CPU_REPACK buffer vouches only for MUL_MAT on its weights; our dequantizing
        // transpose (quant.cpp) reads the repacked layout itself
        if (t->op == GGML_OP_CUSTOM && quant_repack_of(e, t->src[0]) != quant_repack::none) continue;
        if (!ggml_backend_supports_op(e.backend, t)) {
            std::string types;
            for (int j = 0; j < GGML_MAX_SRC && t->src[j]; j++) types += std::string(j ? ", " : "") + ggml_type_name(t->src[j]->type);
            throw std::runtime_error(
                "the training graph needs " + std::string(ggml_op_desc(t)) + " (" + types + ") which the " + e.device_name +
                " backend does not support; nothing falls back to the CPU silently, so choose device 'cpu' or report this");
        }
    }
}

op_caps engine_probe_caps(engine & e) {
    std::vector<uint8_t> meta(ggml_tensor_overhead() * 16);
    ggml_init_params     ip  = {meta.size(), meta.data(), true};
    ggml_context *       ctx = ggml_init(ip);
    ggml_tensor *        a   = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 8, 8, 2);  // [8, 8, 2]
    ggml_tensor *        b   = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 8, 8, 2);  // [8, 8, 2]
    ggml_tensor *        c   = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 4, 8);     // [4, 8]
    op_caps              caps;
    caps.soft_max_back    = ggml_backend_supports_op(e.backend, ggml_soft_max_ext_back(ctx, a, b, 0.5f, 0.0f));
    caps.rms_norm_back    = ggml_backend_supports_op(e.backend, ggml_rms_norm_back(ctx, a, b, 1e-5f));
    caps.out_prod         = ggml_backend_supports_op(e.backend, ggml_out_prod(ctx, ggml_view_2d(ctx, a, 8, 8, a->nb[1], 0), c));
    caps.custom_transpose = e.backend_cpu != nullptr;  // custom ops run on the CPU backend only
    ggml_free(ctx);
    return caps;
}

std::vector<std::string> engine_graph_ops(engine & e, int64_t T, const op_caps * caps) {
    graph_run                run;
    graph_outputs            out;
    ggml_cgraph *            gf = build_train_graph(e, run, T, T, caps, out);
    std::vector<std::string> ops;
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
        ggml_tensor * t = ggml_graph_node(gf, i);
        std::string   s = t->op == GGML_OP_UNARY ? std::string("UNARY:") + ggml_unary_op_name(ggml_get_unary_op(t)) : ggml_op_name(t->op);
        for (int j = 0; j < GGML_MAX_SRC && t->src[j]; j++) {
            const ggml_tensor * src    = t->src[j];
            const char *        layout = ggml_is_contiguous(src) ? "" : src->nb[0] == ggml_type_size(src->type) ? "~" : "^";
            s += std::string(j ? "," : " ") + ggml_type_name(src->type) + layout;
        }
        if (t->op == GGML_OP_MUL_MAT && (t->src[0]->ne[2] < t->src[1]->ne[2] || t->src[0]->ne[3] < t->src[1]->ne[3])) s += " broadcast";
        ops.push_back(s);
    }
    return ops;
}

}  // namespace t2s
