// SweepRunner: kv::run_sweep on a worker thread, published point by point.
// Progress is work-weighted like run_sweep's own: a cached step ~ 1 token (the
// cached pass decodes every position up to max_pos), an uncached point ~ pos+1.
#include "ui/sweep_runner.h"

#include <algorithm>
#include <chrono>
#include <exception>

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

int default_sweep_stride(const kv::ModelConfig& c) { return c.n_ctx <= 128 ? 1 : std::max(1, c.n_ctx / 32); }

kv::SweepOptions sweep_options(const kv::ModelConfig& c, int max_pos, int stride) {
    kv::SweepOptions o;
    o.max_pos = max_pos <= 0 ? c.n_ctx : std::clamp(max_pos, 2, c.n_ctx);
    o.stride = stride <= 0 ? default_sweep_stride(c) : std::clamp(stride, 1, std::max(1, o.max_pos - 1));
    // Small models' steps take microseconds: one engine thread (no hand-offs to wait
    // on) and the fastest of 7 keep scheduling noise out; big ones use every core.
    const bool small = c.n_embd < 256;
    o.repeats = small ? 7 : 1;
    o.threads = small ? 1 : 0;
    o.warmup = 2;
    return o;
}

void SweepRunner::start(const kv::Model& model, const kv::SweepOptions& opt) {
    stop();
    cancel_ = false;
    running_ = true;
    {
        std::lock_guard<std::mutex> lock(mu_);
        view_ = ScalingView{};
        view_.state = SweepState::running;
        view_.max_pos = opt.max_pos == 0 ? model.config.n_ctx : opt.max_pos;
        view_.stride = opt.stride;
    }
    thread_ = std::thread([this, &model, opt] { work(model, opt); });
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

void SweepRunner::work(const kv::Model& model, kv::SweepOptions opt) {
    const auto t0 = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    SweepState end = SweepState::done;
    std::string error;
    try {
        const std::vector<int> pos = kv::sweep_positions(model.config, opt);
        const double w_cached = static_cast<double>(pos.back() + 1) + static_cast<double>(pos.size()) * opt.repeats;
        double w_uncached = 0;
        for (int p : pos) w_uncached += (p + 1.0) * opt.repeats;
        const double total = w_cached + w_uncached;
        {
            std::lock_guard<std::mutex> lock(mu_);
            view_.points.resize(pos.size());
            for (size_t i = 0; i < pos.size(); ++i) view_.points[i] = kv::SweepPoint{pos[i], -1.0, -1.0};
        }
        auto set_progress = [&](double done) {
            std::lock_guard<std::mutex> lock(mu_);
            view_.progress = static_cast<float>(std::clamp(done / total, 0.0, 1.0));
            view_.seconds = seconds();
        };

        // 1. The cached decode step at every chosen position, in one pass.
        kv::SweepOptions oc = opt;
        oc.uncached = false;
        std::vector<kv::SweepPoint> cached = kv::run_sweep(model, oc, [&](float f) {
            set_progress(f * w_cached);
            return !cancel_;
        });
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (size_t i = 0; i < cached.size() && i < view_.points.size(); ++i)
                view_.points[i].ms_cached = cached[i].ms_cached;
        }
        if (cancel_) end = SweepState::cancelled;

        // 2. The full forward of pos+1 tokens at each position, one point at a time.
        double done = w_cached;
        for (size_t i = 0; i < pos.size() && end == SweepState::done; ++i) {
            const int p = pos[i];
            kv::SweepOptions ou = opt;
            ou.cached = false;
            ou.max_pos = p + 1;
            ou.stride = std::max(1, p);  // positions {0, p}: the 1-token forward at 0 is noise-cheap
            ou.warmup = i == 0 ? opt.warmup : 1;
            std::vector<kv::SweepPoint> u = kv::run_sweep(model, ou, [&](float) { return !cancel_; });
            if (cancel_ || u.empty() || u.back().pos != p) {
                end = SweepState::cancelled;
                break;
            }
            done += (p + 1.0) * opt.repeats;
            std::lock_guard<std::mutex> lock(mu_);
            view_.points[i].ms_uncached = u.back().ms_uncached;
            view_.progress = static_cast<float>(std::min(1.0, done / total));
            view_.seconds = seconds();
        }
    } catch (const std::exception& e) {
        end = SweepState::failed;
        error = e.what();
    }
    std::lock_guard<std::mutex> lock(mu_);
    view_.state = end;
    view_.error = error;
    view_.seconds = seconds();
    if (end == SweepState::done) view_.progress = 1.f;
    running_ = false;
}

}  // namespace kvui
