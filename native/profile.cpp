// The profiler (engine_options.profile): computes a graph one node at a time and adds each node's
// time, by phase (forward, backward) and op kind, to the engine's profile.
#include "amx.h"
#include "bf16k.h"
#include "fused.h"
#include "graph.h"
#include "lora.h"
#include "q8_gemm.h"
#include "quant.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>

namespace t2s {

namespace {

// A weight's product (W·x, Wᵀ·dy by our kernels): an activation, though its src[0] is the weight.
// The fused LoRA ops write y and dx in place of them, so that views of those reach them.
bool is_product(const ggml_tensor * t) {
    const char * n = std::strchr(t->name, '.');
    return t->op == GGML_OP_CUSTOM && n && (std::strcmp(n, ".mul_mat") == 0 || std::strcmp(n, ".mul_mat_t") == 0);
}

bool is_weight(const engine & e, const ggml_tensor * t) {
    if (!t) return false;
    if (t->buffer == e.buf_w || (t->buffer && t->buffer == e.buf_wr)) return true;
    if (t->view_src) return is_weight(e, t->view_src);
    if (is_product(t)) return false;
    return (t->op == GGML_OP_MAP_CUSTOM1 || t->op == GGML_OP_CUSTOM || t->op == GGML_OP_CONT || t->op == GGML_OP_TRANSPOSE ||
            amx_is_op(t) || bf16k_is_op(t)) &&
           is_weight(e, t->src[0]);
}

// The kernel of a node that multiplies a frozen weight: ours (the AMX tiles) or ggml's for its type.
std::string weight_kernel(const engine & e, const ggml_tensor * t) {
    if (amx_is_op(t) || bf16k_is_op(t)) return amx_mode_name((amx_mode) e.amx);
    if (!e.backend_cpu) return e.device_name;
    if (ggml_is_quantized(t->src[0]->type)) return quant_mul_mat_kernel(e, t->src[0]);
    return ggml_cpu_mul_mat_kernel(t->src[0]->type);
}

// "MUL_MAT bf16 x f32 (frozen weight)", "SOFT_MAX f32 x f32", "CUSTOM bf16 (weight transpose)" ...
std::string profile_key(const engine & e, const ggml_tensor * t) {
    std::string k = t->op == GGML_OP_UNARY ? std::string("UNARY ") + ggml_unary_op_name(ggml_get_unary_op(t)) : ggml_op_name(t->op);
    for (int j = 0; j < 2 && t->src[j]; j++) k += std::string(j ? " x " : " ") + ggml_type_name(t->src[j]->type);
    const int64_t V = e.hp.n_vocab;
    if (fused_is_op(t)) return fused_profile_key(t, (fused_mode) e.fused);  // "FUSED attn_forward f32 [fused-avx512]"
    // "LORA forward_t f32 (LoRA) [fused-avx512]"
    if (lora_is_op(t)) return lora_profile_key(t, (fused_mode) e.lora_k);
    if (amx_is_op(t)) {
        // "AMX W·x bf16 x f32 (frozen weight) [amx-bf16]": the product nodes; the rounding and packing nodes apart
        const std::string n = t->name;
        if (n == "amx.mul_mat" || n == "amx.mul_mat_t") {
            const ggml_tensor * w = n == "amx.mul_mat" ? t->src[0] : t->src[1];
            const bool head       = n == "amx.mul_mat" ? t->ne[0] == V : w == e.output_t || (w->src[0] && w->src[0]->view_src == e.output);
            return std::string(n == "amx.mul_mat" ? "AMX W·x" : "AMX Wᵀ·dy") + " bf16 x f32" +
                   (head ? " (output head)" : " (frozen weight)") + " [" + weight_kernel(e, t) + "]";
        }
        return n == "amx.pack_w" ? "AMX pack W (lean)" : n == "amx.pack_x" ? "AMX round+pack x" : "AMX round dy";
    }
    if (bf16k_is_op(t)) {
        // "BF16 W·x bf16 x f32 (frozen weight) [avx512-bf16]": the products (W: src[0] of W·x,
        // src[2] of Wᵀ·dy, a view of the output matrix for the head's chunks), the rounding apart
        const std::string n = t->name;
        if (n == "bf16k.round") return "BF16 round activations";
        const bool fwd  = n == "bf16k.mul_mat";
        const bool head = fwd ? t->ne[0] == V : t->src[2]->view_src == e.output;
        return std::string(fwd ? "BF16 W·x" : "BF16 Wᵀ·dy") + " bf16 x f32" + (head ? " (output head)" : " (frozen weight)") + " [" +
               weight_kernel(e, t) + "]";
    }
    if (q8_is_op(t)) {
        // "Q8 W·x q8_0 x i8 (frozen weight) [text2sql Q8_0 GEMM ...]", and the activations' quantization apart
        if (std::strcmp(t->name, "q8.mul_mat") != 0) return "Q8 quantize x";
        return std::string("Q8 W·x q8_0 x f32") + (t->ne[0] == V ? " (output head)" : " (frozen weight)") + " [" + q8_gemm_name() + "]";
    }
    if (t->op == GGML_OP_MUL_MAT) {
        const int64_t r = e.opts.lora.r;
        if (is_weight(e, t->src[0]))
            k += std::string(t->src[0]->ne[0] == V || t->src[0]->ne[1] == V ? " (output head)" : " (frozen weight)") + " [" +
                 weight_kernel(e, t) + "]";
        else if (t->src[0]->ne[0] == r || t->src[0]->ne[1] == r || t->ne[0] == r || t->ne[1] == r)
            k += " (LoRA)";
        else
            k += " (attention)";
    } else if ((t->op == GGML_OP_MAP_CUSTOM1 || t->op == GGML_OP_CONT) && is_weight(e, t->src[0])) {
        k += " (weight transpose)";
    }
    return k;
}

}  // namespace

void graph_compute_profiled(engine & e, ggml_cgraph * gf, int n_forward) {
    // One node at a time, timed. Adds a thread start-up per node: small next to the big products.
    std::map<std::pair<std::string, std::string>, profile_entry> acc;
    for (const profile_entry & p : e.profile) acc[{p.phase, p.op}] = p;
    std::vector<uint8_t> meta(ggml_graph_overhead_custom(1, false) + ggml_tensor_overhead());
    ggml_init_params     ip   = {meta.size(), meta.data(), true};
    ggml_context *       ctx1 = ggml_init(ip);
    ggml_cgraph *        one  = ggml_new_graph_custom(ctx1, 1, false);
    const int            n    = ggml_graph_n_nodes(gf);
    for (int i = 0; i < n; i++) {
        ggml_tensor * t = ggml_graph_node(gf, i);
        if (op_is_view(t->op)) continue;
        ggml_graph_clear(one);
        ggml_graph_add_node(one, t);
        const auto        t0 = std::chrono::steady_clock::now();
        const ggml_status st = ggml_backend_graph_compute(e.backend, one);
        ggml_backend_synchronize(e.backend);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        check_compute_status(e, st);
        const std::string phase = n_forward == 0 || i < n_forward ? "forward" : "backward";
        const std::string key   = profile_key(e, t);
        profile_entry &   p     = acc[{phase, key}];
        p.phase                 = phase;
        p.op                    = key;
        p.count += 1;
        p.ms += ms;
        if (fused_is_op(t)) p.flop += fused_flop(t);
        p.flop += lora_flop(t);
        if (t->op == GGML_OP_MUL_MAT) p.flop += 2.0 * (double) t->src[0]->ne[0] * (double) ggml_nelements(t);
        if (amx_is_op(t) && strcmp(t->name, "amx.mul_mat") == 0) p.flop += 2.0 * (double) t->src[0]->ne[0] * (double) ggml_nelements(t);
        if (q8_is_op(t) && strcmp(t->name, "q8.mul_mat") == 0) p.flop += 2.0 * (double) t->src[0]->ne[0] * (double) ggml_nelements(t);
        if (amx_is_op(t) && strcmp(t->name, "amx.mul_mat_t") == 0) p.flop += 2.0 * (double) t->src[0]->ne[0] * (double) ggml_nelements(t);
        if (bf16k_is_op(t) && strcmp(t->name, "bf16k.mul_mat") == 0) p.flop += 2.0 * (double) t->src[0]->ne[0] * (double) ggml_nelements(t);
        if (bf16k_is_op(t) && strcmp(t->name, "bf16k.mul_mat_t") == 0)
            p.flop += 2.0 * (double) t->src[2]->ne[1] * (double) ggml_nelements(t);
    }
    ggml_free(ctx1);
    e.profile.clear();
    for (auto & kv : acc) e.profile.push_back(kv.second);
}

std::vector<profile_entry> engine_profile_take(engine & e) {
    std::vector<profile_entry> p = std::move(e.profile);
    e.profile.clear();
    std::sort(p.begin(), p.end(), [](const profile_entry & a, const profile_entry & b) { return a.ms > b.ms; });
    return p;
}

}  // namespace t2s
