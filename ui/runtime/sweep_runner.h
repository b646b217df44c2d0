// SweepRunner: the Scaling panel's measurement. Runs kv::run_sweep on its own
// std::thread so frames keep drawing: first the cached decode step at every chosen
// position (one call; it decodes its way up), then the full uncached forward at each
// position, one run_sweep call per point, so the growing line appears point by point.
// The thread only reads the const Model (run_sweep makes its own engine) and never
// touches a Session; the owner must keep the Model alive until join() returns, which
// the Controller does by calling stop() before it replaces or frees the model.
#pragma once
#include <atomic>
#include <mutex>
#include <thread>

#include "core/session/bench.h"
#include "core/model/model_io.h"
#include "ui/state/app_state.h"
#include "ui/state/sweep_choice.h"

namespace kvui {

class SweepRunner {
public:
    SweepRunner() = default;
    ~SweepRunner() { stop(); }
    SweepRunner(const SweepRunner&) = delete;
    SweepRunner& operator=(const SweepRunner&) = delete;

    // Starts a sweep (stopping any running one). model must outlive the thread.
    // overlay: then the same sweep on a copy of the model with its weights held in
    // other_weight_type(its type), into ScalingView::other_points.
    void start(const kv::Model& model, const kv::SweepOptions& opt, bool overlay = false);
    // Asks the thread to stop after the point it is measuring; keeps what it has.
    void cancel() { cancel_ = true; }
    // Blocks until the thread has finished (done, cancelled or failed).
    void join();
    // cancel() + join(), and the view goes back to idle (the model is going away).
    void stop();
    bool running() const { return running_; }
    // The state so far (safe from any thread).
    ScalingView snapshot() const;

private:
    struct Pass;  // one curve's measurement: positions, weights of the work, progress
    void work(const kv::Model& model, kv::SweepOptions opt, bool overlay);
    SweepState measure(const kv::Model& model, const kv::SweepOptions& opt, Pass& pass);

    std::thread thread_;
    std::atomic<bool> cancel_{false};
    std::atomic<bool> running_{false};
    mutable std::mutex mu_;
    ScalingView view_;  // guarded by mu_
};

}  // namespace kvui
