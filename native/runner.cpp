// The runner: fills a graph's inputs (tokens, positions, causal mask, targets, dropout masks),
// computes it on the engine's backend and reads the loss back, one sequence at a time. The graph
// itself is built in graph.cpp; engine_accumulate(_weighted), engine_evaluate, engine_logprobs and
// engine_logits start here.
#include "graph.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace t2s {

namespace {

// Loss of one sequence: Σ NLL, targets and correct argmaxes.
struct seq_result {
    double  loss    = 0;
    int64_t n       = 0;
    int64_t correct = 0;
};

// Throws unless every token id is in the vocabulary; with seq_len > 0 the message names the
// sequence and position of a batch, else the position.
void check_token_ids(const engine & e, const int32_t * tokens, int64_t n, int64_t seq_len) {
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] >= 0 && tokens[i] < e.hp.n_vocab) continue;
        const std::string where = seq_len > 0 ? "sequence " + std::to_string(i / seq_len) + ", position " + std::to_string(i % seq_len) :
                                                "position " + std::to_string(i);
        throw std::runtime_error("token id " + std::to_string(tokens[i]) + " at " + where + " is outside the vocabulary [0, " +
                                 std::to_string(e.hp.n_vocab) + ")");
    }
}

void fill_common_inputs(graph_ctx & g, const int32_t * tokens) {
    const int64_t T = g.T;
    ggml_backend_tensor_set(g.in.tokens, tokens, 0, T * sizeof(int32_t));
    std::vector<int32_t> pos(T);
    for (int64_t i = 0; i < T; i++) pos[i] = (int32_t) i;
    ggml_backend_tensor_set(g.in.pos, pos.data(), 0, T * sizeof(int32_t));
    if (!g.in.kq_mask) return;  // the fused attention has no mask input
    std::vector<float> mask(T * T);
    for (int64_t q = 0; q < T; q++) {
        for (int64_t k = 0; k < T; k++) mask[q * T + k] = k <= q ? 0.0f : -INFINITY;
    }
    ggml_backend_tensor_set(g.in.kq_mask, mask.data(), 0, mask.size() * sizeof(float));
}

// The target inputs: positions tgt, their flat index into the logits and (train) the one-hot
// targets and the scatter matrix of get_rows' backward twin.
void fill_target_inputs(graph_ctx & g, const int32_t * tokens, const std::vector<int32_t> & tgt) {
    const int64_t V = g.e.hp.n_vocab, T = g.T, n_t = g.n_t;
    ggml_backend_tensor_set(g.in.tgt, tgt.data(), 0, n_t * sizeof(int32_t));
    std::vector<int32_t> flat(n_t);
    for (int64_t i = 0; i < n_t; i++) flat[i] = (int32_t) (i * V + tokens[tgt[i] + 1]);
    ggml_backend_tensor_set(g.in.tgt_flat, flat.data(), 0, n_t * sizeof(int32_t));
    if (g.in.onehot) {
        // [n_vocab, n_t] zeros and n_t ones, written in place (a host copy would be 33 MB to fault
        // in, zero and copy per sequence at TinyLlama's vocabulary and 256 targets)
        ggml_backend_tensor_memset(g.in.onehot, 0, 0, ggml_nbytes(g.in.onehot));
        const float one = 1.0f;
        for (int64_t i = 0; i < n_t; i++) ggml_backend_tensor_set(g.in.onehot, &one, (size_t) flat[i] * sizeof(float), sizeof(float));
    }
    if (g.in.scatter) {
        std::vector<float> sc((size_t) n_t * T, 0.0f);
        for (int64_t i = 0; i < n_t; i++) sc[(size_t) tgt[i] * n_t + i] = 1.0f;  // scatter[i, tgt[i]]
        ggml_backend_tensor_set(g.in.scatter, sc.data(), 0, sc.size() * sizeof(float));
    }
}

// Each adapted layer draws its own mask, as each PEFT module has its own nn.Dropout.
// The stream is seeded by (seed, call number) so runs are reproducible.
void fill_dropout_masks(graph_ctx & g) {
    engine &           e = g.e;
    const float        p = e.opts.lora.dropout, keep_scale = 1.0f / (1.0f - p);
    uint64_t           s = e.opts.lora.seed * 0x9E3779B97F4A7C15ull + (++e.dropout_calls) * 0xD1B54A32D192ED03ull;
    std::vector<float> m;
    for (auto & dm : g.in.drop) {
        m.resize(ggml_nelements(dm.first));
        for (float & x : m) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;  // xorshift64
            x = ((double) (s >> 11) * (1.0 / 9007199254740992.0)) < p ? 0.0f : keep_scale;
        }
        ggml_backend_tensor_set(dm.first, m.data(), 0, m.size() * sizeof(float));
    }
}

void alloc_graph(engine & e, ggml_cgraph * gf) {
    if (!ggml_gallocr_alloc_graph(e.galloc, gf)) {
        throw std::runtime_error("out of memory allocating the compute graph on " + e.device_name);
    }
}

// One sequence's graph: built, allocated, its token inputs filled.
struct seq_graph {
    graph_run     run;
    graph_ctx     g;
    graph_outputs out;
    ggml_cgraph * gf = nullptr;

    seq_graph(engine & e, const graph_params & p, const int32_t * tokens) : g(graph_ctx_init(e, run, p)) {
        gf = build_graph(g, out);
        alloc_graph(e, gf);
        fill_common_inputs(g, tokens);
    }
};

void run_graph(engine & e, ggml_cgraph * gf, int n_forward) {
    if (e.opts.profile) {
        graph_compute_profiled(e, gf, n_forward);
        return;
    }
    check_compute_status(e, ggml_backend_graph_compute(e.backend, gf));
}

// log p(target) of the computed graph's target i (at position j), from the (temperature-divided)
// logits' softmax; where the probability underflowed, the exact log-softmax of the logits row (or
// the fused graph's, which overwrote the logits).
double target_logp(const graph_ctx &     g,
                   const graph_outputs & out,
                   const int32_t *       tokens,
                   int64_t               i,
                   int64_t               j,
                   float                 pt,
                   std::vector<float> &  row) {
    if (pt > 1e-30f) return std::log((double) pt);
    if (out.logp_exact) {
        float lp = 0.0f;
        ggml_backend_tensor_get(out.logp_exact, &lp, (size_t) i * sizeof(float), sizeof(float));
        return lp;
    }
    const int64_t V = g.e.hp.n_vocab;
    row.resize(V);
    ggml_backend_tensor_get(out.logits, row.data(), (size_t) i * V * sizeof(float), V * sizeof(float));
    double mx = -INFINITY, sum = 0;
    for (float l : row) mx = std::max(mx, (double) l);
    for (float l : row) sum += std::exp((double) l - mx);
    return (double) row[tokens[j + 1]] - mx - std::log(sum);
}

// Σ NLL, count and correct argmaxes of the computed graph's targets; each target's log p in
// logps[tgt[i] + 1] when logps is set.
seq_result read_loss(const graph_ctx &            g,
                     const graph_outputs &        out,
                     const int32_t *              tokens,
                     const std::vector<int32_t> & tgt,
                     double *                     logps) {
    const int64_t        n_t = g.n_t;
    std::vector<float>   pt(n_t);
    std::vector<int32_t> am(n_t);
    ggml_backend_tensor_get(out.p_target, pt.data(), 0, n_t * sizeof(float));
    ggml_backend_tensor_get(out.argmax, am.data(), 0, n_t * sizeof(int32_t));
    seq_result         r;
    std::vector<float> row;
    for (int64_t i = 0; i < n_t; i++) {
        const int64_t j  = tgt[i];
        const double  lp = target_logp(g, out, tokens, i, j, pt[i], row);
        if (logps) logps[j + 1] = lp;
        r.loss -= lp;
        r.n += 1;
        r.correct += am[i] == tokens[j + 1];
    }
    return r;
}

// How one batch runs: the graph mode, the gradient scale, the temperature, per-target weights.
struct run_opts {
    graph_mode mode       = graph_mode::train;
    float      grad_scale = 0.0f;
    float      inv_temp   = 1.0f;
    bool       weighted   = false;  // train: w_next[j] weighs target j+1's gradient (else 0/1 mask)
};

// One sequence of T input tokens: position j predicts tokens[j+1] where w_next[j] != 0.
seq_result run_sequence(engine & e, const run_opts & o, const int32_t * tokens, const float * w_next, int64_t T, double * logps) {
    std::vector<int32_t> tgt;  // positions with a target
    for (int64_t j = 0; j < T; j++)
        if (w_next[j] != 0.0f) tgt.push_back((int32_t) j);
    const int64_t n_t = (int64_t) tgt.size();
    if (n_t == 0) return {};
    graph_params gp;
    gp.mode       = o.mode;
    gp.n_tokens   = T;
    gp.n_targets  = n_t;
    gp.grad_scale = o.grad_scale;
    gp.inv_temp   = o.inv_temp;
    gp.weighted   = o.weighted;
    seq_graph sg(e, gp, tokens);
    fill_target_inputs(sg.g, tokens, tgt);
    if (sg.g.in.tw) {
        std::vector<float> tw(n_t);
        for (int64_t i = 0; i < n_t; i++) tw[i] = w_next[tgt[i]];
        ggml_backend_tensor_set(sg.g.in.tw, tw.data(), 0, n_t * sizeof(float));
    }
    if (sg.g.dropout) fill_dropout_masks(sg.g);
    run_graph(e, sg.gf, sg.out.n_forward);
    return read_loss(sg.g, sg.out, tokens, tgt, logps);
}

// weight(s, j): the weight of token j of sequence s as a target (0: not a target). logps, when
// set, receives [n_seq, seq_len] log-probabilities at the targets.
template <class W>
batch_stats run_batch(engine & e, const run_opts & o, const int32_t * tokens, W weight, int64_t n_seq, int64_t seq_len, double * logps) {
    if (n_seq <= 0 || seq_len <= 0) throw std::runtime_error("batch is empty");
    check_token_ids(e, tokens, n_seq * seq_len, seq_len);
    batch_stats        st;
    std::vector<float> w;
    for (int64_t s = 0; s < n_seq; s++) {
        const int32_t * tk = tokens + s * seq_len;
        if (weight(s, 0) != 0.0f)
            throw std::runtime_error("mask of sequence " + std::to_string(s) +
                                     " marks position 0, which has no preceding token to predict it from");
        int64_t last = -1;
        for (int64_t j = seq_len - 1; j >= 1; j--)
            if (weight(s, j) != 0.0f) {
                last = j;
                break;
            }
        if (last < 0) continue;  // nothing to learn from this sequence
        const int64_t T = last;  // inputs tokens[0..last), targets tokens[1..last]
        if (T > e.hp.n_ctx) {
            throw std::runtime_error("sequence " + std::to_string(s) + " needs " + std::to_string(T + 1) +
                                     " tokens but the model's context length is " + std::to_string(e.hp.n_ctx));
        }
        w.assign(T, 0.0f);
        for (int64_t j = 0; j < T; j++) w[j] = weight(s, j + 1);
        seq_result r = run_sequence(e, o, tk, w.data(), T, logps ? logps + s * seq_len : nullptr);
        st.loss_sum += r.loss;
        st.n_tokens += r.n;
        st.n_correct += r.correct;
    }
    return st;
}

// The 0/1 weights of a Uint8 mask.
auto mask_weight(const uint8_t * mask, int64_t seq_len) {
    return [mask, seq_len](int64_t s, int64_t j) {
        return mask[s * seq_len + j] ? 1.0f : 0.0f;
    };
}

float checked_inv_temp(float temperature, const char * call) {
    if (!(temperature > 0.0f) || !std::isfinite(temperature))
        throw std::runtime_error(std::string(call) + ": temperature must be a positive number, got " + std::to_string(temperature));
    return 1.0f / temperature;
}

}  // namespace

batch_stats engine_accumulate(engine & e, const int32_t * tokens, const uint8_t * mask, int64_t n_seq, int64_t seq_len, float grad_scale) {
    run_opts o;
    o.grad_scale = grad_scale;
    return run_batch(e, o, tokens, mask_weight(mask, seq_len), n_seq, seq_len, nullptr);
}

batch_stats engine_accumulate_weighted(engine &        e,
                                       const int32_t * tokens,
                                       const float *   weights,
                                       int64_t         n_seq,
                                       int64_t         seq_len,
                                       float           grad_scale,
                                       float           temperature) {
    for (int64_t i = 0; i < n_seq * seq_len; i++)
        if (!std::isfinite(weights[i]))
            throw std::runtime_error("weight of sequence " + std::to_string(i / seq_len) + ", position " + std::to_string(i % seq_len) +
                                     " is not finite");
    run_opts o;
    o.grad_scale = grad_scale;
    o.inv_temp   = checked_inv_temp(temperature, "accumulateWeighted");
    o.weighted   = true;
    auto w       = [weights, seq_len](int64_t s, int64_t j) {
        return weights[s * seq_len + j];
    };
    return run_batch(e, o, tokens, w, n_seq, seq_len, nullptr);
}

batch_stats engine_evaluate(engine & e, const int32_t * tokens, const uint8_t * mask, int64_t n_seq, int64_t seq_len) {
    run_opts o;
    o.mode = graph_mode::eval;
    return run_batch(e, o, tokens, mask_weight(mask, seq_len), n_seq, seq_len, nullptr);
}

std::vector<double> engine_logprobs(engine &        e,
                                    const int32_t * tokens,
                                    const uint8_t * mask,
                                    int64_t         n_seq,
                                    int64_t         seq_len,
                                    float           temperature) {
    run_opts o;
    o.mode     = graph_mode::eval;
    o.inv_temp = checked_inv_temp(temperature, "logprobs");
    std::vector<double> logps((size_t) (n_seq * seq_len), 0.0);
    run_batch(e, o, tokens, mask_weight(mask, seq_len), n_seq, seq_len, logps.data());
    return logps;
}

std::vector<float> engine_logits(engine & e, const int32_t * tokens, int64_t T) {
    if (T <= 0) throw std::runtime_error("logits: no tokens");
    if (T > e.hp.n_ctx)
        throw std::runtime_error("logits: " + std::to_string(T) + " tokens exceed the model's context length " +
                                 std::to_string(e.hp.n_ctx));
    check_token_ids(e, tokens, T, 0);
    graph_params gp;
    gp.mode      = graph_mode::logits;
    gp.n_tokens  = T;
    gp.n_targets = T;
    seq_graph sg(e, gp, tokens);
    run_graph(e, sg.gf, 0);
    std::vector<float> logits((size_t) T * e.hp.n_vocab);
    ggml_backend_tensor_get(sg.out.logits, logits.data(), 0, logits.size() * sizeof(float));
    return logits;
}

void check_compute_status(const engine & e, ggml_status st) {
    if (st != GGML_STATUS_SUCCESS)
        throw std::runtime_error(std::string("graph compute failed on ") + e.device_name + " (status " + std::to_string((int) st) + ")");
}

size_t engine_compute_bytes(const engine & e) { return e.galloc ? ggml_gallocr_get_buffer_size(e.galloc, 0) : 0; }

}  // namespace t2s
