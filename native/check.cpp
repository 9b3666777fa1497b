// text2sql-check: the engine's checks as a plain program, with no Node.js (for machines that have a
// GPU but no Node): central-difference gradient checks of the LoRA adapter, one AdamW step against
// its closed form, the logits' and gradients' agreement with a CPU reference, and a timed training
// step. It links the same engine sources as the addon (everything in native/ but addon.cpp).
//
//   text2sql-check --model tiny.gguf [--backend cpu|cuda|metal] [--checks grad,adamw,agree]
//   text2sql-check --model tinyllama-bf16.gguf --backend cuda --checks none --time 256,1024
//   text2sql-check --write-model FILE --shape tiny|tinyllama [--type f32|bf16] [--seed N]
//   text2sql-check --checks amx | amx-hw    the AMX-BF16 kernel (emulated tiles; amx-hw: the real ones)
//
// Output: one "key value ..." line per result (test/native-check.test.ts and
// scripts/device-check.sh read them), then "ok" or "FAILED: ..." with exit status 1.
#include "amx.h"
#include "engine.h"
#include "gguf.h"
#include "kernels.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

using namespace t2s;

namespace {

struct cli {
    std::string              model;
    std::string              backend = "cpu";
    std::vector<std::string> checks  = {"grad", "adamw", "agree"};
    std::vector<int64_t>     time_tokens;
    int                      time_iters = 3;
    int                      threads    = 0;
    std::string              write_model;
    std::string              shape = "tiny";
    std::string              type  = "f32";
    uint64_t                 seed  = 1;
};

const char * k_usage =
    "usage: text2sql-check --model FILE [--backend cpu|cuda|metal] [--checks grad,adamw,agree,amx,amx-hw|none]\n"
    "                      [--time N[,N...]] [--iters N] [--threads N]\n"
    "       text2sql-check --write-model FILE [--shape tiny|tinyllama] [--type f32|bf16] [--seed N]\n";

std::vector<std::string> split(const std::string & s) {
    std::vector<std::string> out;
    size_t                   start = 0;
    while (start <= s.size()) {
        const size_t comma = s.find(',', start);
        const size_t end   = comma == std::string::npos ? s.size() : comma;
        if (end > start) out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

int64_t parse_int(const std::string & flag, const std::string & v) {
    char *        end = nullptr;
    const int64_t n   = strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n <= 0) throw std::runtime_error(flag + ": expected a positive integer, got '" + v + "'");
    return n;
}

cli parse_cli(int argc, char ** argv) {
    cli c;
    for (int i = 1; i < argc; i++) {
        const std::string a     = argv[i];
        auto              value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value\n" + k_usage);
            return argv[++i];
        };
        if (a == "--model")
            c.model = value();
        else if (a == "--backend")
            c.backend = value();
        else if (a == "--checks") {
            const std::string v = value();
            c.checks            = v == "none" ? std::vector<std::string>{} : split(v);
            for (const std::string & k : c.checks)
                if (k != "grad" && k != "adamw" && k != "agree" && k != "amx" && k != "amx-hw")
                    throw std::runtime_error("--checks: expected grad, adamw, agree, amx, amx-hw or none, got '" + k + "'");
        } else if (a == "--time") {
            for (const std::string & t : split(value())) c.time_tokens.push_back(parse_int(a, t));
        } else if (a == "--iters")
            c.time_iters = (int) parse_int(a, value());
        else if (a == "--threads")
            c.threads = (int) parse_int(a, value());
        else if (a == "--write-model")
            c.write_model = value();
        else if (a == "--shape")
            c.shape = value();
        else if (a == "--type")
            c.type = value();
        else if (a == "--seed")
            c.seed = (uint64_t) parse_int(a, value());
        else if (a == "--help" || a == "-h") {
            fputs(k_usage, stdout);
            exit(0);
        } else
            throw std::runtime_error("unknown argument '" + a + "'\n" + k_usage);
    }
    if (c.backend != "cpu" && c.backend != "cuda" && c.backend != "metal")
        throw std::runtime_error("--backend: expected cpu, cuda or metal, got '" + c.backend + "'");
    const bool model_free =
        std::all_of(c.checks.begin(), c.checks.end(), [](const std::string & k) { return k == "amx" || k == "amx-hw"; });
    if (c.write_model.empty() && c.model.empty() && !(model_free && !c.checks.empty() && c.time_tokens.empty()))
        throw std::runtime_error(std::string("--model is required\n") + k_usage);
    return c;
}

// xorshift64*: the program's deterministic numbers (uniform in [-1, 1)).
struct rng {
    uint64_t s;
    explicit rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    double next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return (double) ((s * 0x2545F4914F6CDD1Dull) >> 11) / (double) (1ull << 52) - 1.0;
    }
};

// ---- a random-weight Llama GGUF (the device has no Node for scripts/make-test-model.ts) ----

struct shape {
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
};

void write_model(const cli & c) {
    // tiny: the test model's block shapes (src/models/test-model.ts) with a small vocabulary;
    // tinyllama: TinyLlama-1.1B's shapes (TINYLLAMA_PRESET) with its 32000-token vocabulary
    shape s;
    if (c.shape == "tiny")
        s = {512, 64, 2, 4, 2, 128, 128};
    else if (c.shape == "tinyllama")
        s = {32000, 2048, 22, 32, 4, 5632, 2048};
    else
        throw std::runtime_error("--shape: expected tiny or tinyllama, got '" + c.shape + "'");
    if (c.type != "f32" && c.type != "bf16") throw std::runtime_error("--type: expected f32 or bf16, got '" + c.type + "'");
    const ggml_type wtype = c.type == "bf16" ? GGML_TYPE_BF16 : GGML_TYPE_F32;
    const int64_t   hd = s.n_embd / s.n_head, kv = hd * s.n_head_kv;
    struct spec {
        std::string          name;
        std::vector<int64_t> ne;
        bool                 norm;
    };
    std::vector<spec> specs = {
        {"token_embd.weight",  {s.n_embd, s.n_vocab}, false},
        {"output_norm.weight", {s.n_embd},            true },
        {"output.weight",      {s.n_embd, s.n_vocab}, false},
    };
    for (int64_t l = 0; l < s.n_layer; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";

        // each block's tensors, in the order the GGUF lists them
        const spec block[] = {
            {"attn_norm.weight",   {s.n_embd},           true },
            {"ffn_norm.weight",    {s.n_embd},           true },
            {"attn_q.weight",      {s.n_embd, s.n_embd}, false},
            {"attn_k.weight",      {s.n_embd, kv},       false},
            {"attn_v.weight",      {s.n_embd, kv},       false},
            {"attn_output.weight", {s.n_embd, s.n_embd}, false},
            {"ffn_gate.weight",    {s.n_embd, s.n_ff},   false},
            {"ffn_up.weight",      {s.n_embd, s.n_ff},   false},
            {"ffn_down.weight",    {s.n_ff, s.n_embd},   false},
        };
        for (const spec & b : block) specs.push_back({p + b.name, b.ne, b.norm});
    }
    size_t bytes = 0;
    for (const spec & sp : specs) {
        int64_t n = 1;
        for (int64_t d : sp.ne) n *= d;
        bytes += ggml_row_size(sp.norm ? GGML_TYPE_F32 : wtype, n) + GGML_MEM_ALIGN;
    }
    ggml_init_params ip  = {bytes + specs.size() * ggml_tensor_overhead() + (1 << 20), nullptr, false};
    ggml_context *   ctx = ggml_init(ip);
    if (!ctx) throw std::runtime_error("write-model: out of memory (" + std::to_string(bytes >> 20) + " MiB)");
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_str(g, "general.name", ("text2sql-check random " + c.shape).c_str());
    gguf_set_val_u32(g, "llama.embedding_length", (uint32_t) s.n_embd);
    gguf_set_val_u32(g, "llama.block_count", (uint32_t) s.n_layer);
    gguf_set_val_u32(g, "llama.feed_forward_length", (uint32_t) s.n_ff);
    gguf_set_val_u32(g, "llama.attention.head_count", (uint32_t) s.n_head);
    gguf_set_val_u32(g, "llama.attention.head_count_kv", (uint32_t) s.n_head_kv);
    gguf_set_val_u32(g, "llama.context_length", (uint32_t) s.n_ctx);
    gguf_set_val_u32(g, "llama.rope.dimension_count", (uint32_t) hd);
    gguf_set_val_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    rng r(c.seed);
    for (const spec & sp : specs) {
        ggml_tensor * t = ggml_new_tensor(ctx, sp.norm ? GGML_TYPE_F32 : wtype, (int) sp.ne.size(), sp.ne.data());
        ggml_set_name(t, sp.name.c_str());
        // weights ~ U(±1/sqrt(n_in)) (unit-scale activations), norms 1 ± 0.1
        const float   scale = sp.norm ? 0.1f : 1.0f / std::sqrt((float) sp.ne[0]);
        const int64_t n     = ggml_nelements(t);
        for (int64_t i = 0; i < n; i++) {
            const float x = (sp.norm ? 1.0f : 0.0f) + scale * (float) r.next();
            if (t->type == GGML_TYPE_BF16)
                ((ggml_bf16_t *) t->data)[i] = ggml_fp32_to_bf16(x);
            else
                ((float *) t->data)[i] = x;
        }
        gguf_add_tensor(g, t);
    }
    const bool ok = gguf_write_to_file(g, c.write_model.c_str(), false);
    gguf_free(g);
    ggml_free(ctx);
    if (!ok) throw std::runtime_error("write-model: cannot write '" + c.write_model + "'");
    printf("wrote %s shape=%s type=%s n_vocab=%lld n_embd=%lld n_layer=%lld\n", c.write_model.c_str(), c.shape.c_str(), c.type.c_str(),
           (long long) s.n_vocab, (long long) s.n_embd, (long long) s.n_layer);
}

// ---- the checks ----

// Two right-padded sequences of lengths 9 and 12; positions >= 3 are targets.
struct batch {
    std::vector<int32_t> tokens;
    std::vector<uint8_t> mask;
    int64_t              n_seq = 2, seq_len = 12, n_targets = 0;
};

batch make_batch(const engine & e, uint64_t seed) {
    batch b;
    rng   r(seed);
    b.tokens.assign(b.n_seq * b.seq_len, 0);
    b.mask.assign(b.n_seq * b.seq_len, 0);
    const int64_t lo = std::min<int64_t>(100, e.hp.n_vocab / 2);
    for (int64_t s = 0; s < b.n_seq; s++) {
        const int64_t len = s == 0 ? 9 : 12;
        for (int64_t j = 0; j < len; j++) {
            b.tokens[s * b.seq_len + j] = j == 0 ? 1 : (int32_t) (lo + (int64_t) ((r.next() + 1) / 2 * (double) (e.hp.n_vocab - lo - 1)));
            b.mask[s * b.seq_len + j]   = j >= 3;
            b.n_targets += j >= 3;
        }
    }
    return b;
}

engine_options engine_opts(const cli & c, const std::string & backend, const std::vector<int> & targets, int r) {
    engine_options o;
    o.model_path = c.model;
    o.device     = backend;
    o.threads    = c.threads;
    o.lora.r     = r;
    o.lora.alpha = 2.0f * (float) r;
    for (int t : targets) o.lora.targets[t] = true;
    return o;
}

const std::vector<int> k_all_targets = {TARGET_Q, TARGET_K, TARGET_V, TARGET_O, TARGET_GATE, TARGET_UP, TARGET_DOWN};

// A random adapter (B nonzero, so every gradient is), the same for every engine of one shape.
void randomize_adapter(engine & e, uint64_t seed) {
    std::vector<host_tensor> ts = lora_get(e, false);
    rng                      r(seed);
    for (host_tensor & t : ts)
        for (float & x : t.data) x = 0.2f * (float) r.next();
    lora_set(e, ts);
}

double loss_mean(engine & e, const batch & b) {
    return engine_evaluate(e, b.tokens.data(), b.mask.data(), b.n_seq, b.seq_len).loss_sum / (double) b.n_targets;
}

// The derivative at x0 of f from its central differences D(h) = (f(x0+h) − f(x0−h))/(2h) at
// h = k·h0, k = 1..K: D(h) = f' + c3·h² + c5·h⁴ + ..., so a least-squares fit of D over
// {1, h², h⁴} gives f' with the truncation to O(h⁶) removed, and averages the loss's float32
// noise over 2K evaluations. The steps are the float steps actually taken.
template <class F> double central_difference_fit(F f, float x0, float h0, int K) {
    constexpr int P           = 3;  // 1, u², u⁴ with u = h / h_K
    double        m[P][P + 1] = {};
    const double  hk          = (double) h0 * K;
    for (int k = 1; k <= K; k++) {
        const float  xp = x0 + h0 * (float) k, xm = x0 - h0 * (float) k;
        const double d     = (f(xp) - f(xm)) / ((double) xp - (double) xm);
        const double u     = ((double) xp - (double) xm) / (2.0 * hk);
        const double pw[P] = {1.0, u * u, u * u * u * u};
        for (int a = 0; a < P; a++) {
            for (int c = 0; c < P; c++) m[a][c] += pw[a] * pw[c];
            m[a][P] += pw[a] * d;
        }
    }
    for (int a = 0; a < P; a++)  // the normal equations, by elimination (3x3, well conditioned in u)
        for (int r = a + 1; r < P; r++) {
            const double q = m[r][a] / m[a][a];
            for (int c = a; c <= P; c++) m[r][c] -= q * m[a][c];
        }
    double coef[P];
    for (int a = P - 1; a >= 0; a--) {
        double v = m[a][P];
        for (int c = a + 1; c < P; c++) v -= m[a][c] * coef[c];
        coef[a] = v / m[a][a];
    }
    return coef[0];
}

// Central differences at the largest and 2 random entries of every adapter tensor, each within
// 1e-3·|analytic| + 2e-5 (the bound of test/helpers/grad-check.ts: float32 rounding of the loss).
// The loss (a mean NLL of about 12 on the test model) moves by about 3e-7 in float32 noise
// between nearby points (its second differences at steps of 1e-4 reach 1e-6, where the curvature
// gives 1e-8). A two-step Richardson at eps = 1e-2, 2e-2 turns that into up to 3e-5 of noise in
// the derivative, at the bound's absolute term: over seven seeds of this check it reached 0.4-1.1
// of the bound on either path (ggml's composition or the fused ops). The fit over eight steps,
// 1e-2 to 8e-2, reached at most 0.61 on the same seeds and paths, with the bound unchanged.
std::string check_grad(engine & e) {
    const batch b = make_batch(e, 5);
    randomize_adapter(e, 11);
    engine_zero_grad(e);
    engine_accumulate(e, b.tokens.data(), b.mask.data(), b.n_seq, b.seq_len, 1.0f / (float) b.n_targets);
    const std::vector<host_tensor> grads  = lora_get(e, true);
    std::vector<host_tensor>       params = lora_get(e, false);
    rng                            r(3);
    int                            checked = 0, failed = 0;
    double                         worst = 0, worst_rel = 0;
    std::string                    first_fail;
    for (size_t ti = 0; ti < params.size(); ti++) {
        const std::vector<float> & g    = grads[ti].data;
        size_t                     imax = 0;
        for (size_t i = 1; i < g.size(); i++)
            if (std::fabs(g[i]) > std::fabs(g[imax])) imax = i;
        std::vector<size_t> picks = {imax};
        for (int k = 0; k < 2; k++) picks.push_back(std::min(g.size() - 1, (size_t) ((r.next() + 1) / 2 * (double) g.size())));
        for (size_t idx : picks) {
            host_tensor one = params[ti];
            const float x0  = one.data[idx];
            auto        at  = [&](float x) {
                one.data[idx] = x;
                lora_set(e, {one});
                return loss_mean(e, b);
            };
            const double fd = central_difference_fit(at, x0, 1e-2f, 8);
            at(x0);
            const double err   = std::fabs(fd - (double) g[idx]);
            const double bound = 1e-3 * std::fabs(g[idx]) + 2e-5;
            worst              = std::max(worst, err / bound);
            if (std::fabs(g[idx]) > 1e-3) worst_rel = std::max(worst_rel, err / std::fabs(g[idx]));
            checked++;
            if (err > bound && failed++ == 0)
                first_fail = grads[ti].name + "[" + std::to_string(idx) + "]: analytic " + std::to_string(g[idx]) +
                             ", central difference " + std::to_string(fd);
        }
    }
    printf("grad checked=%d failed=%d worst_of_bound=%.4f worst_rel=%.3e\n", checked, failed, worst, worst_rel);
    return failed ? "grad: " + first_fail : "";
}

// One AdamW step (clipping and weight decay) against torch.optim.AdamW's first step in closed
// form, in double: g' = g·min(1, c/(‖g‖+1e-6)), w1 = w·(1 − lr·wd) − lr·g'/(|g'| + eps).
std::string check_adamw(engine & e) {
    const batch b = make_batch(e, 7);
    randomize_adapter(e, 13);
    engine_zero_grad(e);
    e.adam = adam_state();
    engine_accumulate(e, b.tokens.data(), b.mask.data(), b.n_seq, b.seq_len, 1.0f / (float) b.n_targets);
    const std::vector<host_tensor> w0 = lora_get(e, false);
    const std::vector<host_tensor> g  = lora_get(e, true);
    double                         sq = 0;
    for (const host_tensor & t : g)
        for (float x : t.data) sq += (double) x * x;
    step_params p;
    p.lr                                    = 0.1f;
    p.weight_decay                          = 0.01f;
    p.max_grad_norm                         = (float) (0.5 * std::sqrt(sq));  // clipping on: coefficient about 0.5
    const double                   norm     = engine_step(e, p);
    const double                   clip     = std::min(1.0, (double) p.max_grad_norm / (std::sqrt(sq) + 1e-6));
    const std::vector<host_tensor> w1       = lora_get(e, false);
    double                         max_diff = 0, max_move = 0;
    for (size_t i = 0; i < w0.size(); i++) {
        for (size_t j = 0; j < w0[i].data.size(); j++) {
            const double gj = (double) g[i].data[j] * clip;
            const double want =
                (double) w0[i].data[j] * (1.0 - (double) p.lr * p.weight_decay) - (double) p.lr * gj / (std::fabs(gj) + p.eps);
            max_diff = std::max(max_diff, std::fabs(want - (double) w1[i].data[j]));
            max_move = std::max(max_move, std::fabs((double) w1[i].data[j] - (double) w0[i].data[j]));
        }
    }
    // float32 arithmetic against double: a few ulps of |w| + lr (<= 0.3)
    const double bound = 1e-7;
    printf("adamw norm=%.9g norm_closed_form=%.9g clip=%.6f max_abs_diff=%.3e bound=%.1e max_move=%.4f\n", norm, std::sqrt(sq), clip,
           max_diff, bound, max_move);
    if (std::fabs(norm - std::sqrt(sq)) > 1e-9 * std::sqrt(sq)) return "adamw: the step's gradient norm differs from the closed form";
    if (max_move < 0.05) return "adamw: the step moved no weight by lr/2 (it did not run)";
    return max_diff > bound ? "adamw: max |w1 − closed form| " + std::to_string(max_diff) + " > " + std::to_string(bound) : "";
}

double rel_l2(const std::vector<float> & a, const std::vector<float> & b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        num += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
        den += (double) b[i] * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

// Logits and adapter gradients of the engine against a reference engine on the CPU: with
// --backend cpu the reference composes every backward op from basic ops (as on Metal).
std::string check_agree(engine & e, const cli & c) {
    engine_options ro = e.opts;
    ro.device         = "cpu";
    if (c.backend == "cpu") ro.portable_ops = true;
    std::unique_ptr<engine> ref = engine_init(ro);
    const batch             b   = make_batch(e, 9);
    std::vector<float>      lg[2], gr[2];
    engine *                es[2] = {&e, ref.get()};
    for (int k = 0; k < 2; k++) {
        randomize_adapter(*es[k], 17);
        lg[k] = engine_logits(*es[k], b.tokens.data() + b.seq_len, b.seq_len);
        engine_zero_grad(*es[k]);
        engine_accumulate(*es[k], b.tokens.data(), b.mask.data(), b.n_seq, b.seq_len, 1.0f / (float) b.n_targets);
        for (const host_tensor & t : lora_get(*es[k], true)) gr[k].insert(gr[k].end(), t.data.begin(), t.data.end());
    }
    const double lr = rel_l2(lg[0], lg[1]), grl = rel_l2(gr[0], gr[1]);
    // measured on the CPU (fused vs composed ops): ~1e-7; float32 on a GPU reorders sums (~1e-6)
    const double lb = 1e-4, gb = 1e-3;
    printf("agree reference=%s logits_rel_l2=%.3e bound=%.0e grad_rel_l2=%.3e bound=%.0e\n",
           c.backend == "cpu" ? "cpu-portable-ops" : "cpu", lr, lb, grl, gb);
    if (!(lr <= lb)) return "agree: logits differ from the CPU reference by " + std::to_string(lr);
    if (!(grl <= gb)) return "agree: adapter gradients differ from the CPU reference by " + std::to_string(grl);
    return "";
}

// The AMX-BF16 kernel of the frozen-weight products on test/amx-kernel.test.ts's 12 cases (odd K,
// N and T, whole blocks; W·x and Wᵀ·dy), for machines without Node. Reference: the exact (double)
// product of the same BF16 weights and BF16 activations. Every product of two BF16 values is exact
// in F32, so a kernel differs from it only by its F32 additions: within γ_K·Σ|w·x| elementwise
// (γ_K = K·u/(1 − K·u), u = 2⁻²⁴; Higham, eq. 4.4), and two kernels within 2·γ_K·Σ|w·x| of each
// other. A wrong packing, block or edge moves an element by a whole term. "amx" runs the emulated
// tile unit against the exact product and ggml's BF16 mul_mat; "amx-hw" the real tiles against the
// exact product and the emulation, and fails where the CPU or Linux does not give them.
struct amx_case {
    int64_t K, N, T;
    bool    transpose;
};

// The worst element of `unit` against the exact product (in units of γ_K·Σ|w·x|) and against
// `other` (in units of 2·γ_K·Σ|w·x|), on seeded BF16 inputs; swap_pair swaps two weights of the
// unit's input only (the bound's teeth).
std::pair<double, double> amx_worst(amx_mode unit, amx_mode other, const amx_case & c, int threads, bool swap_pair = false) {
    rng                   r((uint64_t) (c.K * 7 + c.N + c.T) + (c.transpose ? 1000 : 0));
    std::vector<uint16_t> w((size_t) (c.K * c.N));
    std::vector<float>    x((size_t) (c.K * c.T));
    for (uint16_t & b : w) b = ggml_fp32_to_bf16((float) (0.5 * r.next())).bits;
    for (float & v : x) v = ggml_bf16_to_fp32(ggml_fp32_to_bf16((float) (2.0 * r.next())));
    std::vector<uint16_t> wu = w;
    if (swap_pair) std::swap(wu[3], wu[4]);
    std::vector<float> y1((size_t) (c.N * c.T)), y2(y1.size());
    amx_matmul_test(unit, c.transpose, wu.data(), x.data(), c.K, c.N, c.T, threads, y1.data());
    amx_matmul_test(other, c.transpose, w.data(), x.data(), c.K, c.N, c.T, threads, y2.data());
    const double u = std::ldexp(1.0, -24), gamma = (double) c.K * u / (1.0 - (double) c.K * u);
    double       worst_exact = 0, worst_other = 0;
    for (int64_t t = 0; t < c.T; t++) {
        for (int64_t n = 0; n < c.N; n++) {
            double sum = 0, abs_sum = 0;
            for (int64_t k = 0; k < c.K; k++) {
                const uint16_t wb = c.transpose ? w[k * c.N + n] : w[n * c.K + k];
                const double   p  = (double) ggml_bf16_to_fp32({wb}) * (double) x[t * c.K + k];
                sum += p;
                abs_sum += std::fabs(p);
            }
            const size_t i = (size_t) (t * c.N + n);
            const double b = gamma * abs_sum + 1e-30;
            worst_exact    = std::max(worst_exact, std::fabs((double) y1[i] - sum) / b);
            worst_other    = std::max(worst_other, std::fabs((double) y1[i] - (double) y2[i]) / (2 * b));
        }
    }
    return {worst_exact, worst_other};
}

std::string check_amx(bool hw, int threads) {
    if (hw && !(amx_hw_compiled() && cpu_has_amx_bf16() && cpu_request_amx_tiles() == amx_tiles::granted)) {
        const char * why = !amx_hw_compiled()  ? "this build has no AMX code" :
                           !cpu_has_amx_bf16() ? "CPUID reports no AMX-BF16" :
                                                 "Linux did not grant the AMX tile state";
        printf("amx unit=amx-bf16 available=0 reason=\"%s\"\n", why);
        return std::string("amx-hw: the real tiles are not available: ") + why;
    }
    const amx_mode unit = hw ? amx_mode::hw : amx_mode::emulate, other = hw ? amx_mode::emulate : amx_mode::off;
    const int64_t  shapes[][3] = {
        {100, 50, 1   },
        {37,  7,  7   },
        {64,  48, 255 },
        {300, 33, 255 },
        {70,  17, 1024},
        {32,  16, 16  },
    };
    double worst_exact = 0, worst_other = 0;
    int    n_cases = 0;
    for (const bool transpose : {false, true}) {
        for (const auto & sh : shapes) {
            const std::pair<double, double> w = amx_worst(unit, other, {sh[0], sh[1], sh[2], transpose}, threads);
            worst_exact                       = std::max(worst_exact, w.first);
            worst_other                       = std::max(worst_other, w.second);
            n_cases++;
        }
    }
    const double teeth = amx_worst(unit, other, {100, 50, 7, false}, threads, true).first;
    printf("amx unit=%s available=1 cases=%d worst_of_bound_exact=%.4f worst_of_bound_vs_%s=%.4f swapped_pair_of_bound=%.1f\n",
           amx_mode_name(unit), n_cases, worst_exact, amx_mode_name(other), worst_other, teeth);
    const std::string name = amx_mode_name(unit);
    if (!(worst_exact <= 1)) return "amx: " + name + " is outside γ_K·Σ|w·x| of the exact product";
    if (!(worst_other <= 1)) return "amx: " + name + " is outside 2·γ_K·Σ|w·x| of " + amx_mode_name(other);
    if (!(teeth > 10)) return "amx: one swapped weight pair stays within 10x the bound (the check has no teeth)";
    return "";
}

// accumulate + step on one sequence of T target tokens (LoRA r=8 on q and v): the median of iters
// timed runs after one warm-up.
void time_step(engine & e, int64_t T, int iters) {
    if (T + 1 > e.hp.n_ctx) throw std::runtime_error("--time " + std::to_string(T) + " exceeds the model's context");
    std::vector<int32_t> tokens(T + 1);
    std::vector<uint8_t> mask(T + 1, 1);
    mask[0] = 0;
    rng r(23);
    for (int64_t j = 0; j <= T; j++) tokens[j] = (int32_t) ((r.next() + 1) / 2 * (double) (e.hp.n_vocab - 1));
    step_params         p;
    std::vector<double> ms;
    for (int i = 0; i <= iters; i++) {
        const auto t0 = std::chrono::steady_clock::now();
        engine_accumulate(e, tokens.data(), mask.data(), 1, T + 1, 1.0f / (float) T);
        engine_step(e, p);
        const double d = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (i > 0) ms.push_back(d);  // the first run warms up (allocation, kernels)
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    printf("time tokens=%lld iters=%d median_ms=%.2f min_ms=%.2f max_ms=%.2f tokens_per_s=%.1f weights=%s device=%s kernel=%s\n",
           (long long) T, iters, med, ms.front(), ms.back(), 1000.0 * (double) T / med, e.weight_type.c_str(), e.device_name.c_str(),
           amx_mode_name((amx_mode) e.amx));
}

int run(const cli & c) {
    if (!c.write_model.empty()) {
        write_model(c);
        return 0;
    }
    std::vector<std::string> failures;
    auto                     has = [&](const char * k) {
        return std::find(c.checks.begin(), c.checks.end(), k) != c.checks.end();
    };
    if (has("grad") || has("adamw") || has("agree")) {
        // engine_init runs engine_check_backend_ops: it throws when an op of the training graph
        // is not on the backend (no silent CPU fallback)
        std::unique_ptr<engine> e = engine_init(engine_opts(c, c.backend, k_all_targets, 4));
        printf("backend device=%s graph_ops=%zu all_on_backend=1 custom_cpu_ops=%d\n", e->device_name.c_str(),
               engine_graph_ops(*e, 8).size(), e->caps.custom_transpose ? 1 : 0);
        const std::pair<const char *, std::string (*)(engine &)> simple[] = {
            {"grad",  check_grad },
            {"adamw", check_adamw}
        };
        for (const auto & s : simple) {
            if (!has(s.first)) continue;
            const std::string f = s.second(*e);
            if (!f.empty()) failures.push_back(f);
        }
        if (has("agree")) {
            const std::string f = check_agree(*e, c);
            if (!f.empty()) failures.push_back(f);
        }
    }
    for (const char * k : {"amx", "amx-hw"}) {
        if (!has(k)) continue;
        const std::string f = check_amx(std::string(k) == "amx-hw", c.threads > 0 ? c.threads : 2);
        if (!f.empty()) failures.push_back(f);
    }
    if (!c.time_tokens.empty()) {
        std::unique_ptr<engine> e = engine_init(engine_opts(c, c.backend, {TARGET_Q, TARGET_V}, 8));
        for (int64_t T : c.time_tokens) time_step(*e, T, c.time_iters);
    }
    for (const std::string & f : failures) printf("FAILED: %s\n", f.c_str());
    if (failures.empty()) printf("ok\n");
    return failures.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char ** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        return run(parse_cli(argc, argv));
    } catch (const std::exception & ex) {
        printf("FAILED: %s\n", ex.what());
        return 1;
    }
}
