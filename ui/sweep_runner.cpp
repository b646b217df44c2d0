// SweepRunner: kv::run_sweep on a worker thread, published point by point.
// Progress is work-weighted: the cached pass decodes every position up to max_pos,
// an uncached point costs ~ pos+1 tokens.
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

int default_sweep_max_pos(const kv::ModelConfig& c) { return c.n_ctx <= 128 ? c.n_ctx : std::min(c.n_ctx, 512); }

int default_sweep_stride(int max_pos) { return max_pos <= 128 ? 1 : std::max(1, max_pos / 32); }

kv::SweepOptions sweep_options(const kv::ModelConfig& c, int max_pos, int stride) {
    kv::SweepOptions o;
    o.max_pos = max_pos <= 0 ? default_sweep_max_pos(c) : std::clamp(max_pos, 2, c.n_ctx);
    o.stride = stride <= 0 ? default_sweep_stride(o.max_pos) : std::clamp(stride, 1, std::max(1, o.max_pos - 1));
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
        // A one-token decode step streams all the weights for one row: on a CPU it
        // costs about as much as 8 tokens of a batched forward (GPT-2 124M here: 40 ms
        // vs 1.9 ms a token), so the bar moves about evenly through both passes.
        constexpr double kStepTokens = 8.0;
        const double w_cached = kStepTokens * (pos.back() + 1.0 + static_cast<double>(pos.size()) * opt.repeats);
        double w_uncached = 0;
        for (int p : pos) w_uncached += (p + 1.0) * opt.repeats;
        const double total = w_cached + w_uncached;
        {
            std::lock_guard<std::mutex> lock(mu_);
            view_.points.resize(pos.size());
            for (size_t i = 0; i < pos.size(); ++i) view_.points[i] = kv::SweepPoint{pos[i], -1.0, -1.0};
        }
        auto set_progress = [&](double work) {
            std::lock_guard<std::mutex> lock(mu_);
            view_.progress = static_cast<float>(std::clamp(work / total, 0.0, 1.0));
            view_.seconds = seconds();
        };

        // Small models (repeats > 1) run each pass 3 times and keep the fastest per
        // point: their steps take microseconds, so a few ms of another process's work
        // would otherwise show as a bump over many points.
        const int passes = opt.repeats > 1 ? 3 : 1;
        const double pass_total = total;
        double done = 0;
        auto keep = [](double& dst, double ms) { dst = dst < 0 ? ms : std::min(dst, ms); };

        // 1. The cached decode step at every chosen position, in one run per pass.
        for (int pass = 0; pass < passes && end == SweepState::done; ++pass) {
            kv::SweepOptions oc = opt;
            oc.uncached = false;
            std::vector<kv::SweepPoint> cached = kv::run_sweep(model, oc, [&](float f) {
                set_progress((done + f * w_cached) / passes);
                return !cancel_;
            });
            {
                std::lock_guard<std::mutex> lock(mu_);
                for (size_t i = 0; i < cached.size() && i < view_.points.size(); ++i)
                    keep(view_.points[i].ms_cached, cached[i].ms_cached);
            }
            if (cancel_) end = SweepState::cancelled;
            done += w_cached;
        }

        // 2. The full forward of pos+1 tokens at each position, one point at a time.
        for (int pass = 0; pass < passes && end == SweepState::done; ++pass) {
            for (size_t i = 0; i < pos.size() && end == SweepState::done; ++i) {
                const int p = pos[i];
                kv::SweepOptions ou = opt;
                ou.cached = false;
                ou.max_pos = p + 1;
                ou.stride = std::max(1, p);  // positions {0, p}: the 1-token forward at 0 is cheap
                ou.warmup = i == 0 ? opt.warmup : 1;
                std::vector<kv::SweepPoint> u = kv::run_sweep(model, ou, [&](float) { return !cancel_; });
                if (cancel_ || u.empty() || u.back().pos != p) {
                    end = SweepState::cancelled;
                    break;
                }
                done += (p + 1.0) * opt.repeats;
                std::lock_guard<std::mutex> lock(mu_);
                keep(view_.points[i].ms_uncached, u.back().ms_uncached);
                view_.progress = static_cast<float>(std::min(1.0, done / (pass_total * passes)));
                view_.seconds = seconds();
            }
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
