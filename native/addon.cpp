// N-API surface of the text2sql engine. Its TypeScript types live in src/engine/native.ts.
//
// Every long call runs in a Napi::AsyncWorker and returns a Promise. Execute() touches no napi
// values: arguments are copied into plain C++ values on the main thread first, and any
// std::exception becomes a rejection whose message names the failing call.
#include "addon.h"
#include "amx.h"
#include "engine.h"
#include "fused.h"
#include "kernels.h"
#include "lora.h"
#include "quant.h"

#include "ggml.h"

#include <napi.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>

namespace {

using t2s::engine;
using t2s_addon::queue;
using t2s_addon::queue_array;
using t2s_addon::task;
using t2s_addon::to_typed_array;

std::mutex  g_log_mutex;
std::string g_last_log;

void log_callback(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        g_last_log = text;
    }
}

Napi::Object stats_to_js(Napi::Env env, const t2s::batch_stats & s) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("lossSum", s.loss_sum);
    o.Set("nTokens", (double) s.n_tokens);
    o.Set("nCorrect", (double) s.n_correct);
    return o;
}

class native_engine : public Napi::ObjectWrap<native_engine> {
  public:
    static Napi::FunctionReference * ctor;

    static Napi::Function init_class(Napi::Env env) {
        return DefineClass(env, "NativeEngine",
                           {
                               InstanceMethod("info", &native_engine::info),
                               InstanceMethod("accumulate", &native_engine::accumulate),
                               InstanceMethod("accumulateWeighted", &native_engine::accumulate_weighted),
                               InstanceMethod("logprobs", &native_engine::logprobs),
                               InstanceMethod("evaluate", &native_engine::evaluate),
                               InstanceMethod("logits", &native_engine::logits),
                               InstanceMethod("step", &native_engine::step),
                               InstanceMethod("zeroGrad", &native_engine::zero_grad),
                               InstanceMethod("getAdapter", &native_engine::get_adapter),
                               InstanceMethod("setAdapter", &native_engine::set_adapter),
                               InstanceMethod("resetAdapter", &native_engine::reset_adapter),
                               InstanceMethod("saveAdapter", &native_engine::save_adapter),
                               InstanceMethod("loadAdapter", &native_engine::load_adapter),
                               InstanceMethod("getOptimizerState", &native_engine::get_optimizer_state),
                               InstanceMethod("setOptimizerState", &native_engine::set_optimizer_state),
                               InstanceMethod("graphOps", &native_engine::graph_ops),
                               InstanceMethod("takeProfile", &native_engine::take_profile),
                               InstanceMethod("dispose", &native_engine::dispose),
                           });
    }

    explicit native_engine(const Napi::CallbackInfo & info) : Napi::ObjectWrap<native_engine>(info) {}

    std::unique_ptr<engine> e;
    bool                    busy = false;

  private:
    engine & live(const Napi::Env & env, const char * call) {
        if (!e) throw Napi::Error::New(env, std::string(call) + ": the engine has been disposed");
        if (busy) throw Napi::Error::New(env, std::string(call) + ": the engine is busy with another call (await it first)");
        return *e;
    }

    Napi::Value run(Napi::Env env, const char * name, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done) {
        auto * t                       = new task(env, name, std::move(work), std::move(done));
        busy                           = true;
        Napi::ObjectReference self     = Napi::Persistent(Value());
        auto                  self_ptr = std::make_shared<Napi::ObjectReference>(std::move(self));
        t->on_finish                   = [this, self_ptr]() {
            busy = false;
            self_ptr->Reset();
        };
        return queue(t);
    }

    Napi::Value info(const Napi::CallbackInfo & info) {
        Napi::Env                  env = info.Env();
        engine &                   en  = live(env, "info");
        const t2s::llama_hparams & hp  = en.hp;
        Napi::Object               o   = Napi::Object::New(env);
        o.Set("nVocab", (double) hp.n_vocab);
        o.Set("nEmbd", (double) hp.n_embd);
        o.Set("nLayer", (double) hp.n_layer);
        o.Set("nHead", (double) hp.n_head);
        o.Set("nHeadKv", (double) hp.n_head_kv);
        o.Set("headDim", (double) hp.head_dim());
        o.Set("arch", hp.arch_name);
        o.Set("nFf", (double) hp.n_ff);
        o.Set("nCtx", (double) hp.n_ctx);
        o.Set("ropeFreqBase", hp.rope_freq_base);
        o.Set("rmsEps", hp.rms_eps);
        o.Set("weightType", en.weight_type);
        o.Set("matmulKernel", en.amx                                 ? t2s::amx_mode_name((t2s::amx_mode) en.amx) :
                              en.q8_gemm && en.weight_type == "q8_0" ? "q8_0-vnni" :
                                                                       "ggml");
        o.Set("fusedKernel", t2s::fused_mode_name((t2s::fused_mode) en.fused));
        o.Set("loraKernel", t2s::fused_mode_name((t2s::fused_mode) en.lora_k));
        o.Set("normKernel", t2s::fused_mode_name((t2s::fused_mode) en.norm_k));
        o.Set("device", en.device_name);
        o.Set("trainableParams", (double) t2s::lora_param_count(en));
        o.Set("loraScale", en.opts.lora.scale());
        o.Set("optimizerSteps", (double) en.adam.t);
        o.Set("dropoutCalls", (double) en.dropout_calls);
        o.Set("lean", en.opts.lean);
        o.Set("checkpoint", en.opts.checkpoint);
        o.Set("weightBytes", (double) en.weight_bytes);
        o.Set("transposedBytes", (double) en.transposed_bytes);
        o.Set("quantBytes", (double) en.quant_bytes);
        o.Set("quantTBytes", (double) en.quant_t_bytes);
        o.Set("computeBytes", (double) t2s::engine_compute_bytes(en));
        Napi::Array targets = Napi::Array::New(env);
        uint32_t    k       = 0;
        for (int t = 0; t < t2s::TARGET_COUNT; t++)
            if (en.opts.lora.targets[t]) targets.Set(k++, (double) t);
        o.Set("targets", targets);
        return o;
    }

    struct batch_args {
        std::vector<int32_t> tokens;
        std::vector<uint8_t> mask;
        int64_t              n_seq, seq_len;
    };

    static batch_args read_batch(const Napi::CallbackInfo & info, const char * call) {
        Napi::Env env = info.Env();
        if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber()) {
            throw Napi::TypeError::New(env,
                                       std::string(call) + "(tokens: Int32Array, mask: Uint8Array, nSeq, seqLen, ...) got wrong arguments");
        }
        Napi::TypedArray ta = info[0].As<Napi::TypedArray>(), tm = info[1].As<Napi::TypedArray>();
        if (ta.TypedArrayType() != napi_int32_array || tm.TypedArrayType() != napi_uint8_array) {
            throw Napi::TypeError::New(env, std::string(call) + ": tokens must be an Int32Array and mask a Uint8Array");
        }
        batch_args b;
        b.n_seq   = info[2].As<Napi::Number>().Int64Value();
        b.seq_len = info[3].As<Napi::Number>().Int64Value();
        if (b.n_seq <= 0 || b.seq_len <= 0 || (int64_t) ta.ElementLength() != b.n_seq * b.seq_len ||
            (int64_t) tm.ElementLength() != b.n_seq * b.seq_len) {
            throw Napi::RangeError::New(env, std::string(call) + ": tokens and mask must both hold nSeq × seqLen = " +
                                                 std::to_string(b.n_seq) + " × " + std::to_string(b.seq_len) + " values (got " +
                                                 std::to_string(ta.ElementLength()) + " and " + std::to_string(tm.ElementLength()) + ")");
        }
        Napi::Int32Array t32 = info[0].As<Napi::Int32Array>();
        Napi::Uint8Array m8  = info[1].As<Napi::Uint8Array>();
        b.tokens.assign(t32.Data(), t32.Data() + t32.ElementLength());
        b.mask.assign(m8.Data(), m8.Data() + m8.ElementLength());
        return b;
    }

    // info[i] as a float; `what` (call: argument) names it in the error
    static float float_arg(const Napi::CallbackInfo & info, size_t i, const char * what) {
        if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
        return info[i].As<Napi::Number>().FloatValue();
    }

    Napi::Value accumulate(const Napi::CallbackInfo & info) {
        Napi::Env   env   = info.Env();
        engine &    en    = live(env, "accumulate");
        auto        b     = std::make_shared<batch_args>(read_batch(info, "accumulate"));
        const float scale = float_arg(info, 4, "accumulate: gradScale");
        auto        res   = std::make_shared<t2s::batch_stats>();
        return run(
            env, "accumulate",
            [&en, b, scale, res]() { *res = t2s::engine_accumulate(en, b->tokens.data(), b->mask.data(), b->n_seq, b->seq_len, scale); },
            [res](Napi::Env env) { return stats_to_js(env, *res); });
    }

    // accumulateWeighted(tokens: Int32Array, weights: Float32Array, nSeq, seqLen, gradScale, temperature)
    Napi::Value accumulate_weighted(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        engine &  en  = live(env, "accumulateWeighted");
        if (info.Length() < 6 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber() ||
            !info[4].IsNumber() || !info[5].IsNumber() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
            info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
            throw Napi::TypeError::New(env,
                                       "accumulateWeighted(tokens: Int32Array, weights: Float32Array, nSeq, seqLen, gradScale, "
                                       "temperature) got wrong arguments");
        }
        Napi::Int32Array   t32   = info[0].As<Napi::Int32Array>();
        Napi::Float32Array w32   = info[1].As<Napi::Float32Array>();
        const int64_t      n_seq = info[2].As<Napi::Number>().Int64Value(), seq_len = info[3].As<Napi::Number>().Int64Value();
        if (n_seq <= 0 || seq_len <= 0 || (int64_t) t32.ElementLength() != n_seq * seq_len ||
            (int64_t) w32.ElementLength() != n_seq * seq_len) {
            throw Napi::RangeError::New(env, "accumulateWeighted: tokens and weights must both hold nSeq × seqLen values");
        }
        auto        tokens = std::make_shared<std::vector<int32_t>>(t32.Data(), t32.Data() + t32.ElementLength());
        auto        w      = std::make_shared<std::vector<float>>(w32.Data(), w32.Data() + w32.ElementLength());
        const float scale = info[4].As<Napi::Number>().FloatValue(), temp = info[5].As<Napi::Number>().FloatValue();
        auto        res = std::make_shared<t2s::batch_stats>();
        return run(
            env, "accumulateWeighted",
            [&en, tokens, w, n_seq, seq_len, scale, temp, res]() {
                *res = t2s::engine_accumulate_weighted(en, tokens->data(), w->data(), n_seq, seq_len, scale, temp);
            },
            [res](Napi::Env env) { return stats_to_js(env, *res); });
    }

    // logprobs(tokens, mask, nSeq, seqLen, temperature) -> Float64Array [nSeq × seqLen]
    Napi::Value logprobs(const Napi::CallbackInfo & info) {
        Napi::Env   env  = info.Env();
        engine &    en   = live(env, "logprobs");
        auto        b    = std::make_shared<batch_args>(read_batch(info, "logprobs"));
        const float temp = float_arg(info, 4, "logprobs: temperature");
        auto        res  = std::make_shared<std::vector<double>>();
        return run(
            env, "logprobs",
            [&en, b, temp, res]() { *res = t2s::engine_logprobs(en, b->tokens.data(), b->mask.data(), b->n_seq, b->seq_len, temp); },
            [res](Napi::Env env) -> Napi::Value { return to_typed_array(env, *res); });
    }

    Napi::Value evaluate(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        engine &  en  = live(env, "evaluate");
        auto      b   = std::make_shared<batch_args>(read_batch(info, "evaluate"));
        auto      res = std::make_shared<t2s::batch_stats>();
        return run(
            env, "evaluate", [&en, b, res]() { *res = t2s::engine_evaluate(en, b->tokens.data(), b->mask.data(), b->n_seq, b->seq_len); },
            [res](Napi::Env env) { return stats_to_js(env, *res); });
    }

    Napi::Value logits(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        engine &  en  = live(env, "logits");
        if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
            throw Napi::TypeError::New(env, "logits(tokens: Int32Array) got wrong arguments");
        }
        Napi::Int32Array t    = info[0].As<Napi::Int32Array>();
        auto             toks = std::make_shared<std::vector<int32_t>>(t.Data(), t.Data() + t.ElementLength());
        auto             res  = std::make_shared<std::vector<float>>();
        return run(
            env, "logits", [&en, toks, res]() { *res = t2s::engine_logits(en, toks->data(), (int64_t) toks->size()); },
            [res](Napi::Env env) -> Napi::Value { return to_typed_array(env, *res); });
    }

    Napi::Value step(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        engine &  en  = live(env, "step");
        if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "step(params) needs an object");
        Napi::Object     o = info[0].As<Napi::Object>();
        t2s::step_params p;
        auto             num = [&](const char * key, float & dst) {
            Napi::Value v = o.Get(key);
            if (v.IsUndefined()) return;
            if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("step: ") + key + " must be a number");
            dst = v.As<Napi::Number>().FloatValue();
        };
        num("lr", p.lr);
        num("beta1", p.beta1);
        num("beta2", p.beta2);
        num("eps", p.eps);
        num("weightDecay", p.weight_decay);
        num("maxGradNorm", p.max_grad_norm);
        auto res = std::make_shared<double>(0.0);
        return run(
            env, "step", [&en, p, res]() { *res = t2s::engine_step(en, p); },
            [res](Napi::Env env) { return Napi::Number::New(env, *res); });
    }

    Napi::Value zero_grad(const Napi::CallbackInfo & info) {
        t2s::engine_zero_grad(live(info.Env(), "zeroGrad"));
        return info.Env().Undefined();
    }

    static Napi::Array tensors_to_js(Napi::Env env, const std::vector<t2s::host_tensor> & ts) {
        Napi::Array arr = Napi::Array::New(env, ts.size());
        for (size_t i = 0; i < ts.size(); i++) {
            Napi::Object o = Napi::Object::New(env);
            o.Set("name", ts[i].name);
            Napi::Array ne = Napi::Array::New(env, ts[i].ne.size());
            for (size_t k = 0; k < ts[i].ne.size(); k++) ne.Set((uint32_t) k, (double) ts[i].ne[k]);
            o.Set("ne", ne);
            o.Set("data", to_typed_array(env, ts[i].data));
            arr.Set((uint32_t) i, o);
        }
        return arr;
    }

    static std::vector<t2s::host_tensor> tensors_from_js(Napi::Env env, Napi::Value v, const char * call) {
        if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(call) + ": expected an array of {name, ne, data}");
        Napi::Array                   arr = v.As<Napi::Array>();
        std::vector<t2s::host_tensor> out;
        for (uint32_t i = 0; i < arr.Length(); i++) {
            Napi::Value item = arr.Get(i);
            if (!item.IsObject()) throw Napi::TypeError::New(env, std::string(call) + ": item " + std::to_string(i) + " is not an object");
            Napi::Object o = item.As<Napi::Object>();
            Napi::Value  d = o.Get("data"), ne = o.Get("ne"), name = o.Get("name");
            if (!name.IsString() || !ne.IsArray() || !d.IsTypedArray() || d.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
                throw Napi::TypeError::New(
                    env, std::string(call) + ": item " + std::to_string(i) + " needs name: string, ne: number[], data: Float32Array");
            }
            t2s::host_tensor h;
            h.name          = name.As<Napi::String>().Utf8Value();
            Napi::Array nea = ne.As<Napi::Array>();
            for (uint32_t k = 0; k < nea.Length(); k++) h.ne.push_back(nea.Get(k).As<Napi::Number>().Int64Value());
            Napi::Float32Array fa = d.As<Napi::Float32Array>();
            h.data.assign(fa.Data(), fa.Data() + fa.ElementLength());
            out.push_back(std::move(h));
        }
        return out;
    }

    Napi::Value get_adapter(const Napi::CallbackInfo & info) {
        Napi::Env  env   = info.Env();
        engine &   en    = live(env, "getAdapter");
        const bool grads = info.Length() > 0 && info[0].ToBoolean().Value();
        return tensors_to_js(env, t2s::lora_get(en, grads));
    }

    Napi::Value set_adapter(const Napi::CallbackInfo & info) {
        Napi::Env  env   = info.Env();
        engine &   en    = live(env, "setAdapter");
        auto       ts    = tensors_from_js(env, info.Length() ? info[0] : env.Undefined(), "setAdapter");
        const bool grads = info.Length() > 1 && info[1].ToBoolean().Value();
        try {
            t2s::lora_set(en, ts, grads);
        } catch (const std::exception & ex) {
            throw Napi::Error::New(env, std::string("setAdapter: ") + ex.what());
        }
        return env.Undefined();
    }

    Napi::Value reset_adapter(const Napi::CallbackInfo & info) {
        t2s::lora_reset(live(info.Env(), "resetAdapter"));
        return info.Env().Undefined();
    }

    // saveAdapter(path) / loadAdapter(path): a GGUF LoRA file, written or read off the main thread
    Napi::Value adapter_file(const Napi::CallbackInfo & info, const char * call, std::function<void(engine &, const std::string &)> fn) {
        Napi::Env env = info.Env();
        engine &  en  = live(env, call);
        if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, std::string(call) + "(path: string)");
        std::string path = info[0].As<Napi::String>().Utf8Value();
        return run(env, call, [&en, path, fn]() { fn(en, path); }, [](Napi::Env env) { return env.Undefined(); });
    }

    Napi::Value save_adapter(const Napi::CallbackInfo & info) {
        return adapter_file(info, "saveAdapter", [](engine & e, const std::string & path) { t2s::lora_save_gguf(e, path); });
    }

    Napi::Value load_adapter(const Napi::CallbackInfo & info) {
        return adapter_file(info, "loadAdapter", [](engine & e, const std::string & path) { t2s::lora_load_gguf(e, path); });
    }

    // AdamW moments and step count, for resumable training.
    Napi::Value get_optimizer_state(const Napi::CallbackInfo & info) {
        Napi::Env    env = info.Env();
        engine &     en  = live(env, "getOptimizerState");
        Napi::Object o   = Napi::Object::New(env);
        o.Set("t", (double) en.adam.t);
        o.Set("dropoutCalls", (double) en.dropout_calls);
        std::vector<t2s::host_tensor> m, v;
        std::vector<t2s::host_tensor> shapes = t2s::lora_get(en, false);
        for (size_t i = 0; i < en.adam.m.size(); i++) {
            m.push_back({shapes[i].name, shapes[i].ne, en.adam.m[i]});
            v.push_back({shapes[i].name, shapes[i].ne, en.adam.v[i]});
        }
        o.Set("m", tensors_to_js(env, m));
        o.Set("v", tensors_to_js(env, v));
        return o;
    }

    Napi::Value set_optimizer_state(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        engine &  en  = live(env, "setOptimizerState");
        if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "setOptimizerState({t, m, v})");
        Napi::Object                  o      = info[0].As<Napi::Object>();
        auto                          m      = tensors_from_js(env, o.Get("m"), "setOptimizerState");
        auto                          v      = tensors_from_js(env, o.Get("v"), "setOptimizerState");
        std::vector<t2s::host_tensor> shapes = t2s::lora_get(en, false);
        if (!m.empty() && (m.size() != shapes.size() || v.size() != shapes.size())) {
            throw Napi::Error::New(
                env, "setOptimizerState: expected " + std::to_string(shapes.size()) + " moment tensors, got " + std::to_string(m.size()));
        }
        for (size_t i = 0; i < m.size(); i++) {
            if (m[i].name != shapes[i].name || m[i].data.size() != shapes[i].data.size() || v[i].data.size() != shapes[i].data.size()) {
                throw Napi::Error::New(env, "setOptimizerState: moment tensor " + std::to_string(i) + " ('" + m[i].name +
                                                "') does not match '" + shapes[i].name + "'");
            }
        }
        if (!o.Get("t").IsNumber()) throw Napi::TypeError::New(env, "setOptimizerState: t must be a number");
        en.adam.t = o.Get("t").As<Napi::Number>().Int64Value();
        if (o.Get("dropoutCalls").IsNumber()) en.dropout_calls = (uint64_t) o.Get("dropoutCalls").As<Napi::Number>().Int64Value();
        en.adam.m.clear();
        en.adam.v.clear();
        for (size_t i = 0; i < m.size(); i++) {
            en.adam.m.push_back(std::move(m[i].data));
            en.adam.v.push_back(std::move(v[i].data));
        }
        return env.Undefined();
    }

    Napi::Value graph_ops(const Napi::CallbackInfo & info) {
        Napi::Env     env      = info.Env();
        engine &      en       = live(env, "graphOps");
        const int64_t T        = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int64Value() : 8;
        // optional caps {softMaxBack, rmsNormBack, outProd, customTranspose}: the graph as built for such a backend
        t2s::op_caps  caps     = en.caps;
        const bool    has_caps = info.Length() > 1 && info[1].IsObject();
        if (has_caps) {
            Napi::Object c    = info[1].As<Napi::Object>();
            auto         flag = [&](const char * k, bool & dst) {
                if (c.Get(k).IsBoolean()) dst = c.Get(k).As<Napi::Boolean>().Value();
            };
            flag("softMaxBack", caps.soft_max_back);
            flag("rmsNormBack", caps.rms_norm_back);
            flag("outProd", caps.out_prod);
            flag("customTranspose", caps.custom_transpose);
        }
        std::vector<std::string> ops = t2s::engine_graph_ops(en, T, &caps);
        Napi::Array              arr = Napi::Array::New(env, ops.size());
        for (size_t i = 0; i < ops.size(); i++) arr.Set((uint32_t) i, ops[i]);
        return arr;
    }

    // takeProfile() -> [{phase, op, count, ms, flop}], slowest first; clears the accumulated timings.
    Napi::Value take_profile(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        engine &  en  = live(env, "takeProfile");
        if (busy) throw Napi::Error::New(env, "takeProfile: the engine is busy with another call (await it first)");
        std::vector<t2s::profile_entry> p   = t2s::engine_profile_take(en);
        Napi::Array                     out = Napi::Array::New(env, p.size());
        for (size_t i = 0; i < p.size(); i++) {
            Napi::Object o = Napi::Object::New(env);
            o.Set("phase", p[i].phase);
            o.Set("op", p[i].op);
            o.Set("count", (double) p[i].count);
            o.Set("ms", p[i].ms);
            o.Set("flop", p[i].flop);
            out.Set((uint32_t) i, o);
        }
        return out;
    }

    Napi::Value dispose(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        if (busy) throw Napi::Error::New(env, "dispose: the engine is busy with another call (await it first)");
        e.reset();
        return env.Undefined();
    }
};

Napi::FunctionReference * native_engine::ctor = nullptr;

// createEngine(options) -> Promise<NativeEngine>
Napi::Value create_engine(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "createEngine(options) needs an object");
    Napi::Object        o = info[0].As<Napi::Object>();
    t2s::engine_options opts;
    auto                str = [&](const char * k, std::string & dst) {
        Napi::Value v = o.Get(k);
        if (v.IsString()) dst = v.As<Napi::String>().Utf8Value();
    };
    str("modelPath", opts.model_path);
    str("device", opts.device);
    if (o.Get("threads").IsNumber()) opts.threads = o.Get("threads").As<Napi::Number>().Int32Value();
    if (o.Get("lean").IsBoolean()) opts.lean = o.Get("lean").As<Napi::Boolean>().Value();
    if (o.Get("checkpoint").IsBoolean()) opts.checkpoint = o.Get("checkpoint").As<Napi::Boolean>().Value();
    if (o.Get("profile").IsBoolean()) opts.profile = o.Get("profile").As<Napi::Boolean>().Value();
    if (o.Get("portableOps").IsBoolean()) opts.portable_ops = o.Get("portableOps").As<Napi::Boolean>().Value();
    if (o.Get("quantExact").IsBoolean()) opts.quant_exact = o.Get("quantExact").As<Napi::Boolean>().Value();
    if (o.Get("r").IsNumber()) opts.lora.r = o.Get("r").As<Napi::Number>().Int32Value();
    if (o.Get("alpha").IsNumber()) opts.lora.alpha = o.Get("alpha").As<Napi::Number>().FloatValue();
    if (o.Get("dropout").IsNumber()) opts.lora.dropout = o.Get("dropout").As<Napi::Number>().FloatValue();
    if (o.Get("rslora").IsBoolean()) opts.lora.rslora = o.Get("rslora").As<Napi::Boolean>().Value();
    if (o.Get("seed").IsNumber()) opts.lora.seed = (uint64_t) o.Get("seed").As<Napi::Number>().Int64Value();
    Napi::Value tv = o.Get("targets");
    // target indices in the lora_target order (src/engine/lora.ts owns the names): checked here,
    // not parsed again
    if (!tv.IsArray()) throw Napi::TypeError::New(env, "createEngine: targets must be an array of LoRA target indices");
    Napi::Array ta = tv.As<Napi::Array>();
    for (uint32_t i = 0; i < ta.Length(); i++) {
        Napi::Value  item = ta.Get(i);
        const double t    = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : -1.0;
        if (!item.IsNumber() || t != std::floor(t) || t < 0 || t >= t2s::TARGET_COUNT) {
            throw Napi::RangeError::New(env, "createEngine: LoRA target index " + item.ToString().Utf8Value() + " is out of range [0, " +
                                                 std::to_string(t2s::TARGET_COUNT) + ")");
        }
        opts.lora.targets[(int) t] = true;
    }
    if (opts.model_path.empty()) throw Napi::TypeError::New(env, "createEngine: modelPath must be a non-empty string");

    auto   res = std::make_shared<std::unique_ptr<engine>>();
    auto * t   = new task(
        env, "createEngine", [opts, res]() { *res = t2s::engine_init(opts); },
        [res](Napi::Env env) -> Napi::Value {
            Napi::Object obj              = native_engine::ctor->New({});
            native_engine::Unwrap(obj)->e = std::move(*res);
            return obj;
        });
    return queue(t);
}

t2s::amx_tiles g_amx_tiles = t2s::amx_tiles::absent;

// The kernel argument (info[0]) of the kernel hooks: "amx" (the tile unit), "emulate" (its scalar
// emulation), "avx512" (the AVX512-BF16 GEMM, bf16k.h), "ggml" (ggml's mul_mat), and where `packed`
// is given "avx512-packed" (the AVX512-BF16 GEMM on panels packed beforehand; *packed set)
t2s::amx_mode kernel_arg(const Napi::CallbackInfo & info, const char * call, bool * packed = nullptr) {
    const std::string k = info[0].As<Napi::String>().Utf8Value();
    if (k != "amx" && k != "emulate" && k != "ggml" && k != "avx512" && !(packed && k == "avx512-packed"))
        throw Napi::TypeError::New(
            info.Env(), std::string(call) + ": kernel must be amx, emulate, avx512" + (packed ? ", avx512-packed" : "") + " or ggml");
    if (packed) *packed = k == "avx512-packed";
    return k == "amx"     ? t2s::amx_mode::hw :
           k == "emulate" ? t2s::amx_mode::emulate :
           k == "ggml"    ? t2s::amx_mode::off :
                            t2s::amx_mode::avx512;
}

int64_t i64_arg(const Napi::CallbackInfo & info, size_t i) { return info[i].As<Napi::Number>().Int64Value(); }

// amxMatmulTest(kernel, transpose, w: Uint16Array (bf16 bits), x: Float32Array, K, N, T, threads)
//   -> Promise<Float32Array [T·N]>: the AMX kernel ("amx", "emulate") or ggml's mul_mat ("ggml")
// on given arrays, for the kernel tests (src/engine/native.ts documents the layouts).
Napi::Value amx_matmul_test(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 8 || !info[0].IsString() || !info[2].IsTypedArray() || !info[3].IsTypedArray())
        throw Napi::TypeError::New(env, "amxMatmulTest(kernel, transpose, w, x, K, N, T, threads)");
    bool                packed = false;
    const t2s::amx_mode mode   = kernel_arg(info, "amxMatmulTest", &packed);
    const bool          tr     = info[1].ToBoolean().Value();
    Napi::Uint16Array   w      = info[2].As<Napi::Uint16Array>();
    Napi::Float32Array  x      = info[3].As<Napi::Float32Array>();
    const int64_t       K = i64_arg(info, 4), N = i64_arg(info, 5), T = i64_arg(info, 6);
    const int           th = info[7].As<Napi::Number>().Int32Value();
    if (K <= 0 || N <= 0 || T <= 0 || (int64_t) w.ElementLength() != K * N || (int64_t) x.ElementLength() != K * T)
        throw Napi::RangeError::New(env, "amxMatmulTest: w must hold K·N and x K·T elements, K, N, T > 0");
    auto wv  = std::make_shared<std::vector<uint16_t>>(w.Data(), w.Data() + w.ElementLength());
    auto xv  = std::make_shared<std::vector<float>>(x.Data(), x.Data() + x.ElementLength());
    auto out = std::make_shared<std::vector<float>>((size_t) (N * T));
    return queue_array(env, "amxMatmulTest", out,
                       [=]() { t2s::amx_matmul_test(mode, tr, wv->data(), xv->data(), K, N, T, th, out->data(), packed); });
}

// matmulBench(kernel, type, K, N, T, threads, reps) -> Promise<Float64Array [reps]>: amx.h's
// roofline microbenchmark, each timed run's milliseconds (src/engine/matmul-bench.ts validates).
Napi::Value matmul_bench(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 7 || !info[0].IsString() || !info[1].IsString())
        throw Napi::TypeError::New(env, "matmulBench(kernel, type, K, N, T, threads, reps)");
    const t2s::amx_mode mode = kernel_arg(info, "matmulBench");
    const std::string   tn   = info[1].As<Napi::String>().Utf8Value();
    if (tn != "f32" && tn != "f16" && tn != "bf16") throw Napi::TypeError::New(env, "matmulBench: type must be f32, f16 or bf16");
    const ggml_type type = tn == "f32" ? GGML_TYPE_F32 : tn == "f16" ? GGML_TYPE_F16 : GGML_TYPE_BF16;
    const int64_t   K = i64_arg(info, 2), N = i64_arg(info, 3), T = i64_arg(info, 4);
    const int       th = info[5].As<Napi::Number>().Int32Value(), reps = info[6].As<Napi::Number>().Int32Value();
    if (K <= 0 || N <= 0 || T <= 0 || reps < 1) throw Napi::RangeError::New(env, "matmulBench: K, N, T and reps must be positive");
    auto ms = std::make_shared<std::vector<double>>((size_t) reps);
    return queue_array(env, "matmulBench", ms, [=]() { t2s::matmul_bench(mode, type, K, N, T, th, reps, ms->data()); });
}

// quantTransposeTest(type, x, nIn, nOut, row0, repack, bf16, threads): quant.h's test hook
Napi::Value quant_transpose_test(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 8 || !info[0].IsString() || !info[1].IsTypedArray())
        throw Napi::TypeError::New(env, "quantTransposeTest(type, x, nIn, nOut, row0, repack, bf16, threads)");
    const std::string  tn   = info[0].As<Napi::String>().Utf8Value();
    Napi::Float32Array x    = info[1].As<Napi::Float32Array>();
    const int64_t      n_in = info[2].As<Napi::Number>().Int64Value(), n_out = info[3].As<Napi::Number>().Int64Value();
    const int64_t      row0 = info[4].As<Napi::Number>().Int64Value();
    const bool         rp = info[5].ToBoolean().Value(), bf16 = info[6].ToBoolean().Value();
    const int          th   = info[7].As<Napi::Number>().Int32Value();
    ggml_type          type = GGML_TYPE_COUNT;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        if (ggml_get_type_traits((ggml_type) t)->type_name && tn == ggml_type_name((ggml_type) t)) type = (ggml_type) t;
    }
    if (type == GGML_TYPE_COUNT || n_in <= 0 || n_out <= 0 || (int64_t) x.ElementLength() != n_in * n_out)
        throw Napi::RangeError::New(env, "quantTransposeTest: a ggml type name (q4_K, ...) and x of nIn·nOut elements");
    auto   xv  = std::make_shared<std::vector<float>>(x.Data(), x.Data() + x.ElementLength());
    auto   wt  = std::make_shared<std::vector<uint8_t>>();
    auto   ref = std::make_shared<std::vector<float>>();
    auto   rep = std::make_shared<bool>(false);
    auto * t   = new task(
        env, "quantTransposeTest",
        [=]() { *rep = t2s::quant_transpose_test(type, xv->data(), n_in, n_out, row0, rp, bf16, th, *wt, *ref); },
        [wt, ref, rep](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("wt", to_typed_array(env, *wt));
            o.Set("ref", to_typed_array(env, *ref));
            o.Set("repacked", *rep);
            return o;
        });
    return queue(t);
}

Napi::Value system_info(const Napi::CallbackInfo & info) {
    Napi::Env    env  = info.Env();
    Napi::Object o    = Napi::Object::New(env);
    Napi::Array  devs = Napi::Array::New(env);
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t d  = ggml_backend_dev_get(i);
        Napi::Object       dv = Napi::Object::New(env);
        dv.Set("name", ggml_backend_dev_name(d));
        dv.Set("description", ggml_backend_dev_description(d));
        dv.Set("backend", ggml_backend_reg_name(ggml_backend_dev_backend_reg(d)));
        devs.Set((uint32_t) i, dv);
    }
    o.Set("devices", devs);
    o.Set("amxTiles", t2s::amx_tiles_name(g_amx_tiles));
    // the CPU features that decide the kernels (CPUID), and the kernel of the frozen-weight
    // products (W·x, Wᵀ·dy, output head) per weight type on the CPU backend
    const t2s::cpu_features f  = t2s::cpu_features_get();
    Napi::Object            cf = Napi::Object::New(env);
    cf.Set("avx2", f.avx2);
    cf.Set("avx512f", f.avx512f);
    cf.Set("avx512_bf16", f.avx512_bf16);
    cf.Set("avx512_fp16", f.avx512_fp16);
    cf.Set("amx_tile", f.amx_tile);
    cf.Set("amx_bf16", f.amx_bf16);
    cf.Set("amx_int8", f.amx_int8);
    o.Set("cpuFeatures", cf);
    std::string         note;
    const t2s::amx_mode am = t2s::amx_mode_from_env(note);
    Napi::Object        k  = Napi::Object::New(env);
    k.Set("f32", t2s::ggml_cpu_mul_mat_kernel(GGML_TYPE_F32));
    k.Set("f16", t2s::ggml_cpu_mul_mat_kernel(GGML_TYPE_F16));
    k.Set("bf16", am == t2s::amx_mode::off    ? t2s::ggml_cpu_mul_mat_kernel(GGML_TYPE_BF16) :
                  am == t2s::amx_mode::avx512 ? "avx512-bf16 (text2sql's AVX512-BF16 GEMM, vdpbf16ps), activations to BF16" :
                                                std::string(t2s::amx_mode_name(am)) + " (text2sql's AMX tiles), activations to BF16");
    o.Set("kernels", k);
    o.Set("kernelNote", note);
    std::lock_guard<std::mutex> lock(g_log_mutex);
    o.Set("lastLog", g_last_log);
    return o;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
    // before any compute in this process: ours, or node-llama-cpp's in the same process
    g_amx_tiles = t2s::cpu_request_amx_tiles();
    ggml_log_set(log_callback, nullptr);
    Napi::Function cls  = native_engine::init_class(env);
    native_engine::ctor = new Napi::FunctionReference(Napi::Persistent(cls));
    exports.Set("NativeEngine", cls);
    exports.Set("createEngine", Napi::Function::New(env, create_engine));
    exports.Set("systemInfo", Napi::Function::New(env, system_info));
    exports.Set("amxMatmulTest", Napi::Function::New(env, amx_matmul_test));
    exports.Set("quantTransposeTest", Napi::Function::New(env, quant_transpose_test));
    exports.Set("matmulBench", Napi::Function::New(env, matmul_bench));
    return exports;
}

}  // namespace

NODE_API_MODULE(text2sql, init)
