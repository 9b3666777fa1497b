// The addon's Promise-returning worker (addon.cpp): every long native call runs in one. Execute()
// touches no napi values and turns any std::exception into a rejection naming the call.
#pragma once

#include <napi.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace t2s_addon {

// A Promise-returning worker: `work` runs off the main thread, `done` converts its result.
class task : public Napi::AsyncWorker {
  public:
    task(Napi::Env env, std::string name, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done) :
        Napi::AsyncWorker(env),
        name_(std::move(name)),
        work_(std::move(work)),
        done_(std::move(done)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

    Napi::Promise promise() { return deferred_.Promise(); }

    std::function<void()> on_finish;  // runs on the main thread, success or failure

  protected:
    void Execute() override {
        try {
            work_();
        } catch (const std::exception & ex) {
            SetError(name_ + ": " + ex.what());
        } catch (...) {
            SetError(name_ + ": unknown native error");
        }
    }
    void OnOK() override {
        if (on_finish) on_finish();
        Napi::Env env = Env();
        try {
            deferred_.Resolve(done_(env));
        } catch (const Napi::Error & err) {
            deferred_.Reject(err.Value());
        }
    }
    void OnError(const Napi::Error & err) override {
        if (on_finish) on_finish();
        deferred_.Reject(err.Value());
    }

  private:
    std::string                           name_;
    std::function<void()>                 work_;
    std::function<Napi::Value(Napi::Env)> done_;
    Napi::Promise::Deferred               deferred_;
};

// Queues `t` and returns its Promise.
inline Napi::Promise queue(task * t) {
    Napi::Promise p = t->promise();
    t->Queue();
    return p;
}

// A new JS typed array (Float32Array for float, Float64Array for double, Uint8Array for uint8_t)
// holding a copy of `v`.
template <typename T> Napi::TypedArrayOf<T> to_typed_array(Napi::Env env, const std::vector<T> & v) {
    Napi::TypedArrayOf<T> a = Napi::TypedArrayOf<T>::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
}

// Runs `work` off the main thread in a task named `name`; the Promise resolves to a typed-array copy
// of *out, which `work` fills.
template <typename T>
Napi::Promise queue_array(Napi::Env env, const char * name, std::shared_ptr<std::vector<T>> out, std::function<void()> work) {
    return queue(new task(env, name, std::move(work), [out](Napi::Env env) -> Napi::Value { return to_typed_array(env, *out); }));
}

}  // namespace t2s_addon
