// SweepRunner: kv::run_sweep on a worker thread, published point by point.
// Progress is work-weighted: the cached pass decodes every position up to max_pos,
// an uncached point costs ~ pos+1 tokens.
#include "ui/runtime/sweep_runner.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "ui/runtime/spawn.h"

namespace kvui {

const char* sweep_state_name(SweepState s) {
    switch (s) {
    case SweepState::idle: return "idle";
    case SweepState::running: return "running";
    case SweepState::done: return "done";
    case SweepState::cancelled: return "cancelled";
    case SweepState::failed: return "failed";
    }
    return "?";
}

void SweepRunner::start(const kv::Model& model, const kv::SweepOptions& opt, bool overlay) {
    stop();
    cancel_ = false;
    running_ = true;
    {
        std::lock_guard<std::mutex> lock(mu_);
        view_ = ScalingView{};
        view_.state = SweepState::running;
        view_.max_pos = opt.max_pos == 0 ? model.config.n_ctx : opt.max_pos;
        view_.stride = opt.stride;
        view_.weights = model.weights.type;
        view_.weight_bytes = model.weights.bytes();
        view_.overlay = overlay;
        view_.other_weights = other_weight_type(model.weights.type);
    }
    thread_ = spawn([this, &model, opt, overlay] { work(model, opt, overlay); });
}

void SweepRunner::join() {
    if (thread_.joinable()) thread_.join();
}

void SweepRunner::stop() {
    cancel_ = true;
    join();
    std::lock_guard<std::mutex> lock(mu_);
    view_ = ScalingView{};
}

ScalingView SweepRunner::snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return view_;
}

// One curve: where its points go, the work it weighs (for the progress bar) and
// the work done before it.
struct SweepRunner::Pass {
    std::vector<kv::SweepPoint> ScalingView::*dst;
    std::vector<int> pos;
    double w_cached = 0, w_uncached = 0;  // work of its two passes, per repeat pass
    double done = 0, total = 0;           // over all curves
    std::chrono::steady_clock::time_point t0;
};

void SweepRunner::work(const kv::Model& model, kv::SweepOptions opt, bool overlay) {
    SweepState end = SweepState::done;
    std::string error;
    Pass pass;
    pass.t0 = std::chrono::steady_clock::now();
    try {
        pass.pos = kv::sweep_positions(model.config, opt);
        // A one-token decode step streams all the weights for one row: on a CPU it
        // costs about as much as 8 tokens of a batched forward (GPT-2 124M here: 40 ms
        // vs 1.9 ms a token), so the bar moves about evenly through both passes.
        constexpr double kStepTokens = 8.0;
        pass.w_cached = kStepTokens * (pass.pos.back() + 1.0 + static_cast<double>(pass.pos.size()) * opt.repeats);
        for (int p : pass.pos) pass.w_uncached += (p + 1.0) * opt.repeats;
        const int passes = opt.repeats > 1 ? 3 : 1;
        pass.total = (pass.w_cached + pass.w_uncached) * passes * (overlay ? 2 : 1);
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (auto* d : {&view_.points, &view_.other_points}) {
                d->resize(d == &view_.points || overlay ? pass.pos.size() : 0);
                for (size_t i = 0; i < d->size(); ++i) (*d)[i] = kv::SweepPoint{pass.pos[i], -1.0, -1.0};
            }
        }
        pass.dst = &ScalingView::points;
        end = measure(model, opt, pass);
        if (overlay && end == SweepState::done) {
            // The same model held in the other type: what changes is only the bytes each step streams.
            kv::Model other;
            other.name = model.name;
            other.config = model.config;
            other.weights = model.weights;
            kv::set_weight_type(other.weights, other.config, other_weight_type(model.weights.type));
            {
                std::lock_guard<std::mutex> lock(mu_);
                view_.other_weight_bytes = other.weights.bytes();
            }
            pass.dst = &ScalingView::other_points;
            end = measure(other, opt, pass);
        }
    } catch (const std::exception& e) {
        end = SweepState::failed;
        error = e.what();
    }
    std::lock_guard<std::mutex> lock(mu_);
    view_.state = end;
    view_.error = error;
    view_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - pass.t0).count();
    if (end == SweepState::done) view_.progress = 1.f;
    running_ = false;
}

// One curve: the cached decode step at every position (one run_sweep per repeat
// pass), then the full uncached forward at each position, one point at a time.
SweepState SweepRunner::measure(const kv::Model& model, const kv::SweepOptions& opt, Pass& pass) {
    auto set_progress = [&](double work) {
        std::lock_guard<std::mutex> lock(mu_);
        view_.progress = static_cast<float>(std::clamp(work / pass.total, 0.0, 1.0));
        view_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - pass.t0).count();
    };
    auto keep = [](double& dst, double ms) { dst = dst < 0 ? ms : std::min(dst, ms); };
    // Small models (repeats > 1) run each pass 3 times and keep the fastest per
    // point: their steps take microseconds, so a few ms of another process's work
    // would otherwise show as a bump over many points.
    const int passes = opt.repeats > 1 ? 3 : 1;
    for (int rep = 0; rep < passes; ++rep) {
        kv::SweepOptions oc = opt;
        oc.uncached = false;
        const std::vector<kv::SweepPoint> cached = kv::run_sweep(model, oc, [&](float f) {
            set_progress(pass.done + f * pass.w_cached);
            return !cancel_;
        });
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<kv::SweepPoint>& pts = view_.*pass.dst;
        for (size_t i = 0; i < cached.size() && i < pts.size(); ++i) keep(pts[i].ms_cached, cached[i].ms_cached);
        if (cancel_) return SweepState::cancelled;
        pass.done += pass.w_cached;
    }
    for (int rep = 0; rep < passes; ++rep) {
        for (size_t i = 0; i < pass.pos.size(); ++i) {
            const int p = pass.pos[i];
            kv::SweepOptions ou = opt;
            ou.cached = false;
            ou.max_pos = p + 1;
            ou.stride = std::max(1, p);  // positions {0, p}: the 1-token forward at 0 is cheap
            ou.warmup = i == 0 ? opt.warmup : 1;
            const std::vector<kv::SweepPoint> u = kv::run_sweep(model, ou, [&](float) { return !cancel_; });
            if (cancel_ || u.empty() || u.back().pos != p) return SweepState::cancelled;
            pass.done += (p + 1.0) * opt.repeats;
            set_progress(pass.done);
            std::lock_guard<std::mutex> lock(mu_);
            keep((view_.*pass.dst)[i].ms_uncached, u.back().ms_uncached);
        }
    }
    return SweepState::done;
}

}  // namespace kvui
