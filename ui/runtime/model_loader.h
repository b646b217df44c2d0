// ModelLoader: loads a model on its own std::thread, so the window keeps drawing (and
// the previous model keeps working) while a big checkpoint is read. The thread only
// calls kv::load_model with progress and cancel hooks (core/model/model_io.h) and
// touches nothing else; the Controller takes the finished model and builds its sessions.
// docs/design.md, "Loading a model off the UI thread".
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/model/model_io.h"
#include "ui/state/load_view.h"

namespace kvui {

class ModelLoader {
public:
    ModelLoader() = default;
    ~ModelLoader() { stop(); }
    ModelLoader(const ModelLoader&) = delete;
    ModelLoader& operator=(const ModelLoader&) = delete;

    // Starts loading spec (cancelling and dropping a load already running).
    void start(const std::string& spec, std::optional<kv::WeightType> weights);
    void cancel() { cancel_ = true; }  // the thread stops at the next tensor
    void stop();                       // cancel, join, drop what it made
    void join();
    bool running() const { return view_running_; }                 // started, result not taken
    bool finished() const { return view_running_ && done_; }       // the thread has returned
    // Joins and hands over the result: the model, or null with `error` set (and
    // `cancelled` true when the load was cancelled).
    std::unique_ptr<kv::Model> take(std::string& error, bool& cancelled);
    // After take(): the same model with f32 weights when the loaded one holds 16-bit
    // weights and the twin fits kMaxTwinBytes (twice the held bytes, an upper bound of
    // the f32 bytes), else null: the window's vs_f32.
    std::unique_ptr<kv::Model> take_f32_twin() { return std::move(twin_); }
    static constexpr int64_t kMaxTwinBytes = int64_t(1) << 30;  // GPT-2 124M (0.5 GB in f32) fits, 355M does not
    LoadView snapshot() const;
    // For tests: runs on the loading thread after each progress report (before the
    // cancel check), so a test can hold a load half done. Set while no load runs.
    void set_observer(std::function<void(const kv::LoadProgress&)> f) { observer_ = std::move(f); }

private:
    void work(std::string spec, std::optional<kv::WeightType> weights);

    std::thread thread_;
    std::atomic<bool> cancel_{false};
    std::atomic<bool> done_{false};
    std::atomic<bool> view_running_{false};
    mutable std::mutex mu_;
    LoadView view_;                      // guarded by mu_
    std::unique_ptr<kv::Model> model_;   // the thread's result, read after done_
    std::unique_ptr<kv::Model> twin_;    // its f32 twin (16-bit weights), or null
    std::string error_;
    std::function<void(const kv::LoadProgress&)> observer_;
    bool cancelled_ = false;
};

}  // namespace kvui
