#include "core/session/bench.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/engine/threadpool.h"

namespace kv {

std::vector<int> bench_ids(const ModelConfig& cfg, int n, uint64_t seed) {
    std::vector<int> ids(std::max(0, n));
    for (int i = 0; i < n; ++i)
        ids[i] = int((1000003ULL * uint64_t(i + 1) + seed * 7919ULL) % uint64_t(cfg.vocab_size));
    return ids;
}

BatchPoint measure_batch(const Model& model, const BatchBenchOptions& opt, int size) {
    const ModelConfig& cfg = model.config;
    const int B = 16, positions = opt.prompt_len + opt.warmup + opt.steps;
    if (size < 1) throw Error("--batch: sizes must be at least 1");
    if (opt.prompt_len < 1 || opt.steps < 1 || opt.warmup < 0)
        throw Error("--batch: needs --prompt-len and --new of at least 1 and --warmup of at least 0");
    if (positions > cfg.n_ctx)
        throw Error("--batch: --prompt-len + --warmup + --new = " + std::to_string(positions) +
                    " positions exceed the model's context of " + std::to_string(cfg.n_ctx));
    auto engine = make_engine(model, opt.backend);
    engine->set_threads(opt.threads);
    const int per_seq = (positions + B - 1) / B;
    auto pool = engine->make_paged(opt.policy, size * per_seq, B);
    const size_t n = static_cast<size_t>(size);
    std::vector<std::vector<int>> tables(n), ids(n);
    std::vector<BatchSeq> batch(n);
    for (int i = 0; i < size; ++i) {
        for (int b = 0; b < per_seq; ++b) tables[size_t(i)].push_back(i * per_seq + b);
        ids[size_t(i)] = bench_ids(cfg, opt.prompt_len, opt.seed + uint64_t(i));
    }
    BatchResult out;
    std::vector<int> next(n);
    auto run = [&](bool prefill, int pos) {  // every sequence: its prompt, or one token at pos
        for (int i = 0; i < size; ++i)
            batch[size_t(i)] = prefill ? BatchSeq{ids[size_t(i)], 0, tables[size_t(i)]}
                                       : BatchSeq{std::span<const int>(&next[size_t(i)], 1), pos, tables[size_t(i)]};
        engine->forward_batch(batch, *pool, out);
        for (int i = 0; i < size; ++i) {
            const float* l = out.logits.data() + size_t(i) * cfg.vocab_size;
            next[size_t(i)] = int(std::max_element(l, l + cfg.vocab_size) - l);
        }
    };
    run(true, 0);
    int pos = opt.prompt_len;
    for (int w = 0; w < opt.warmup; ++w) run(false, pos++);
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < opt.steps; ++s) run(false, pos++);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    BatchPoint p;
    p.size = size;
    p.ms_per_step = ms / opt.steps;
    p.tokens_per_s = size * 1000.0 / p.ms_per_step;
    return p;
}

int64_t decode_weight_bytes(const ModelConfig& cfg, WeightType t) {
    const int64_t C = cfg.n_embd, Q = cfg.qkv_dim();
    int64_t per_layer = C * Q + int64_t(cfg.o_dim()) * C + C * cfg.fc_dim() + int64_t(cfg.ff_dim()) * C;
    if (cfg.is_mla())  // q_b_proj and kv_b_proj
        per_layer += int64_t(cfg.mla.q_lora_rank) * cfg.q_dim() +
                     int64_t(cfg.mla.kv_lora_rank) * cfg.n_head * (cfg.mla.qk_nope_head_dim + cfg.mla.v_head_dim);
    const int64_t matrices = cfg.n_layer * per_layer + int64_t(cfg.vocab_size) * C;
    const int64_t all = cfg.n_params_nonembedding() + int64_t(cfg.vocab_size) * C;
    return (all - matrices) * 4 + matrices * weight_type_bytes(t);
}

double measure_read_bandwidth(int threads, int64_t bytes, int repeats) {
    if (bytes < (1 << 20)) throw Error("bandwidth: buffer of " + std::to_string(bytes) + " bytes is too small");
    ThreadPool pool(threads);
    const int64_t n = bytes / int64_t(sizeof(float));
    Vec buf = Vec::Constant(n, 1.0f);
    const int parts = pool.size() * 8;
    std::vector<float> sums(parts);
    double best = 0;
    for (int r = 0; r < std::max(1, repeats); ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_for(parts, [&](int i) {
            const int64_t a = n * i / parts, b = n * (i + 1) / parts;
            sums[i] = buf.segment(a, b - a).sum();
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, double(n) * sizeof(float) / s / 1e9);
    }
    volatile float keep = sums[0];  // the sums are used
    (void)keep;
    return best;
}

ResidentSize resident_size() {
    ResidentSize r;
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ss(line);
        std::string key;
        int64_t kb = -1;
        ss >> key >> kb;
        if (key == "VmRSS:" && kb >= 0) r.rss = kb * 1024;
        if (key == "VmHWM:" && kb >= 0) r.peak = kb * 1024;
    }
    return r;
}

std::vector<int> sweep_positions(const ModelConfig& cfg, const SweepOptions& opt) {
    const int max_pos = opt.max_pos == 0 ? cfg.n_ctx : opt.max_pos;
    if (max_pos < 1 || max_pos > cfg.n_ctx)
        throw Error("sweep: --max-pos " + std::to_string(opt.max_pos) + " is outside [1, n_ctx = " +
                    std::to_string(cfg.n_ctx) + "]");
    if (opt.stride < 1) throw Error("sweep: --stride " + std::to_string(opt.stride) + " must be at least 1");
    std::vector<int> pos;
    for (int p = 0; p < max_pos; p += opt.stride) pos.push_back(p);
    if (pos.back() != max_pos - 1) pos.push_back(max_pos - 1);
    return pos;
}

std::vector<SweepPoint> run_sweep(const Model& model, const SweepOptions& opt,
                                  const std::function<bool(float)>& on_progress) {
    const ModelConfig& cfg = model.config;
    const std::vector<int> positions = sweep_positions(cfg, opt);
    if (opt.repeats < 1) throw Error("sweep: repeats " + std::to_string(opt.repeats) + " must be at least 1");
    if (opt.warmup < 0) throw Error("sweep: warmup " + std::to_string(opt.warmup) + " must not be negative");
    if (!opt.cached && !opt.uncached) throw Error("sweep: neither mode selected (cached, uncached)");

    std::unique_ptr<Engine> engine = make_engine(model, opt.backend);
    if (opt.threads > 0) engine->set_threads(opt.threads);
    std::unique_ptr<KVCache> cache = engine->make_cache(opt.policy);
    const std::vector<int> ids = bench_ids(cfg, positions.back() + 1, opt.seed);

    // Work per point, for progress: a cached step ~ 1 token, an uncached one ~ pos+1.
    double total = 0, done = 0;
    for (int p : positions) total += (opt.cached ? 1.0 : 0.0) + (opt.uncached ? p + 1.0 : 0.0);
    total *= opt.repeats;
    bool cancelled = false;
    auto report = [&](double work) {
        done += work;
        if (on_progress && !on_progress(float(std::min(1.0, done / total)))) cancelled = true;
        return !cancelled;
    };

    StepTrace tr;
    ForwardRequest req;
    req.trace_opts.record = false;
    auto run = [&](int start, int n) {
        req.ids = std::span<const int>(ids.data() + start, size_t(n));
        req.start_pos = start;
        req.n_known = start;
        engine->forward(req, *cache, tr);  // goes back to [0, start) first
        return tr.ms;
    };
    for (int i = 0; i < opt.warmup; ++i) run(0, std::min(int(ids.size()), 4));

    std::vector<SweepPoint> pts(positions.size());
    for (size_t i = 0; i < positions.size(); ++i) pts[i].pos = positions[i];

    size_t n_cached = opt.cached ? 0 : positions.size();
    if (opt.cached) {
        // Decode one token at a time; the cache has always seen positions [0, pos).
        cache->clear();
        size_t next = 0;
        for (int pos = 0; pos <= positions.back() && !cancelled; ++pos) {
            if (int(next) < int(positions.size()) && positions[next] == pos) {
                double best = 1e300;
                for (int r = 0; r < opt.repeats && !cancelled; ++r) {
                    best = std::min(best, run(pos, 1));
                    report(1.0);
                }
                if (cancelled) break;
                pts[next++].ms_cached = best;
                n_cached = next;
            } else {
                run(pos, 1);
            }
        }
    }
    size_t n_uncached = opt.uncached ? 0 : positions.size();
    if (opt.uncached && !cancelled) {
        for (size_t i = 0; i < positions.size() && !cancelled; ++i) {
            const int pos = positions[i];
            double best = 1e300;
            for (int r = 0; r < opt.repeats && !cancelled; ++r) {
                best = std::min(best, run(0, pos + 1));
                report(pos + 1.0);
            }
            if (cancelled) break;
            pts[i].ms_uncached = best;
            n_uncached = i + 1;
        }
    }
    pts.resize(std::min(n_cached, n_uncached));
    if (!cancelled && on_progress) on_progress(1.0f);
    return pts;
}

}  // namespace kv
