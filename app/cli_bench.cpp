// kvscope-cli bench: timed prefill and decode (README, "Command line tools": --model SPEC --prompt-len P
// --new N [--no-cache] [--threads T] [--backend cpu|cuda] [--json]), plus --runs R
// (report the median run) and --sweep (ms per step at every position, both modes,
// as CSV with --csv FILE or as JSON). Timings are the engine's own forward times
// (StepTrace::ms); the session records counters and logits only.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "app/cli_commands.h"
#include "app/cli_common.h"
#include "core/engine/matmul.h"
#include "core/session/bench.h"
#include "core/text/tokenizer.h"

namespace cli {

using nlohmann::json;

namespace {

int run_bench_draft(const BenchArgs& a, const CLI::App& c) {
    if (a.no_cache) throw UsageError("--draft: speculative decoding needs the cache (drop --no-cache)");
    refuse_with_draft(c);
    return run_bench_speculative(a);
}

struct RunResult {
    double prefill_ms = 0, decode_ms = 0, ms_per_token = 0, tokens_per_s = 0, cpu_ms = 0;
    double read_gb_per_s = 0;  // --ceiling: measured just before the run
};

double process_cpu_ms() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int effective_threads(int t) { return t > 0 ? t : std::max(1, int(std::thread::hardware_concurrency())); }

// A model opened and warmed up for timed runs: a prefill and a few decode steps. The
// first (cold) prefill ends the time to first token, counted from before the model
// was opened.
struct Prepared {
    std::unique_ptr<kv::Model> m;
    std::unique_ptr<kv::Session> s;
    double load_ms = 0, first_token_ms = 0;
    double weight_gb = 0;       // streamed once by a cached decode step
    kv::ResidentSize loaded;    // after the first token, before --ceiling's buffer
};

Prepared prepare(const BenchArgs& a, const std::string& weights) {
    using Clock = std::chrono::steady_clock;
    const auto t_start = Clock::now();
    Prepared p;
    p.m = open_model(a.model.empty() ? "random:gpt2-124m" : a.model, weights);
    p.load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
    check_new(*p.m, a.prompt_len, a.n_new);
    p.s = std::make_unique<kv::Session>(make_session(*p.m, a.backend, a.policy));
    if (a.threads > 0) p.s->engine().set_threads(a.threads);
    p.s->set_cache(!a.no_cache);
    p.s->set_prompt_ids(kv::bench_ids(p.m->config, a.prompt_len, a.seed));
    p.s->step();
    p.first_token_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
    p.loaded = kv::resident_size();
    for (int i = 1; i < std::min(a.warmup + 1, a.n_new); ++i) p.s->step();
    p.weight_gb = double(kv::decode_weight_bytes(p.m->config, p.m->weights.type)) / 1e9;
    return p;
}

// One timed run from a reset: (the read bandwidth,) the prefill, n_new - 1 decode steps.
RunResult timed_run(kv::Session& s, const BenchArgs& a, int threads) {
    s.reset();
    RunResult rr;
    if (a.ceiling) rr.read_gb_per_s = kv::measure_read_bandwidth(threads, int64_t(256) << 20, 3);
    rr.prefill_ms = s.step().ms;
    const double cpu0 = process_cpu_ms();
    for (int i = 1; i < a.n_new; ++i) rr.decode_ms += s.step().ms;
    rr.cpu_ms = process_cpu_ms() - cpu0;
    const int decoded = a.n_new - 1;
    rr.ms_per_token = decoded > 0 ? rr.decode_ms / decoded : rr.prefill_ms;
    rr.tokens_per_s = 1000.0 / rr.ms_per_token;
    return rr;
}

double median_of(const std::vector<RunResult>& runs, double RunResult::*f) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*f);
    return median(v);
}

json runs_json(const std::vector<RunResult>& runs, bool ceiling, double weight_gb) {
    json j = json::array();
    for (const auto& r : runs) {
        json e = {{"prefill_ms", r.prefill_ms},
                  {"decode_ms", r.decode_ms},
                  {"ms_per_token", r.ms_per_token},
                  {"tokens_per_s", r.tokens_per_s},
                  {"decode_cpu_ms", r.cpu_ms}};
        if (ceiling) {
            e["read_gb_per_s"] = r.read_gb_per_s;
            e["ceiling_tokens_per_s"] = r.read_gb_per_s / weight_gb;
            e["fraction_of_ceiling"] = r.tokens_per_s / (r.read_gb_per_s / weight_gb);
        }
        j.push_back(e);
    }
    return j;
}

void print_runs(const std::vector<RunResult>& runs, bool ceiling, double weight_gb, int threads, const char* label) {
    for (const auto& r : runs) {
        std::fprintf(stderr, "  run%s: prefill %.2f ms, decode %.3f ms/token = %.1f tokens/s (cpu %.0f%% of %d threads)",
                     label, r.prefill_ms, r.ms_per_token, r.tokens_per_s,
                     r.decode_ms > 0 ? 100.0 * r.cpu_ms / (r.decode_ms * threads) : 0.0, threads);
        if (ceiling)
            std::fprintf(stderr, "; read bandwidth %.1f GB/s -> ceiling %.1f tokens/s, reached %.0f%%",
                         r.read_gb_per_s, r.read_gb_per_s / weight_gb,
                         100.0 * r.tokens_per_s / (r.read_gb_per_s / weight_gb));
        std::fprintf(stderr, "\n");
    }
}

// --vs-f32: the same runs on the model held in f32, interleaved with the main ones
// (run r of each back to back, the order alternating), so the decode ratio is
// measured in one process at one moment of the machine: the median of the per-run
// ratios, and the f32 runs' median rate.
json vs_f32_json(const std::vector<RunResult>& runs, const std::vector<RunResult>& runs32, const Prepared& p32,
                 bool ceiling) {
    std::vector<double> ratios;
    for (size_t i = 0; i < runs.size(); ++i) ratios.push_back(runs[i].tokens_per_s / runs32[i].tokens_per_s);
    return {{"tokens_per_s", 1000.0 / median_of(runs32, &RunResult::ms_per_token)},
            {"decode_ratio", median(ratios)},
            {"decode_ratios", ratios},
            {"runs", runs_json(runs32, ceiling, p32.weight_gb)}};
}

int run_bench(const BenchArgs& a) {
    if (a.prompt_len < 1) throw UsageError("--prompt-len: must be at least 1");
    if (a.runs < 1) throw UsageError("--runs: must be at least 1");
    if (a.warmup < 0) throw UsageError("--warmup: must not be negative");
    Prepared p = prepare(a, a.weights);
    if (a.vs_f32 && p.m->weights.type == kv::WeightType::f32)
        throw UsageError("--vs-f32: the model is held in f32 already; add --weights f16 or --weights bf16");
    std::optional<Prepared> p32;
    if (a.vs_f32) p32 = prepare(a, "f32");
    const int threads = effective_threads(a.threads);
    std::vector<RunResult> runs, runs32;
    for (int r = 0; r < a.runs; ++r) {
        if (p32 && r % 2 == 1) runs32.push_back(timed_run(*p32->s, a, threads));
        runs.push_back(timed_run(*p.s, a, threads));
        if (p32 && r % 2 == 0) runs32.push_back(timed_run(*p32->s, a, threads));
    }
    const double ms_per_token = median_of(runs, &RunResult::ms_per_token);
    const double prefill_ms = median_of(runs, &RunResult::prefill_ms), tokens_per_s = 1000.0 / ms_per_token;
    const kv::Model& m = *p.m;
    json out = {{"mode", a.no_cache ? "uncached" : "cached"},
                {"model", model_json(m)},
                {"weights", kv::weight_type_name(m.weights.type)},
                {"matmul_kernel", kv::matmul::kernel_name(kv::matmul::kernel())},
                {"backend", p.s->engine().backend()},
                {"threads", threads},
                {"prompt_len", a.prompt_len},
                {"new_tokens", a.n_new},
                {"prefill_ms", prefill_ms},
                {"decode_ms", median_of(runs, &RunResult::decode_ms)},
                {"ms_per_token", ms_per_token},
                {"tokens_per_s", tokens_per_s},
                {"weight_gb_per_token", p.weight_gb},
                {"load_ms", p.load_ms},
                {"time_to_first_token_ms", p.first_token_ms},
                {"rss_bytes_after_first_token", p.loaded.rss},
                {"peak_rss_bytes_after_first_token", p.loaded.peak},
                {"runs", runs_json(runs, a.ceiling, p.weight_gb)}};
    if (a.policy_args.given) out["cache"] = policy_json(a.policy, m.config);
    if (!a.no_cache) out["weight_gb_per_s"] = p.weight_gb / (ms_per_token / 1000.0);
    print_runs(runs, a.ceiling, p.weight_gb, threads, "");
    const std::string mode = std::string(a.no_cache ? "uncached" : "cached") +
                             (a.policy_args.given ? ", cache " + kv::policy_text(a.policy) : "");
    std::fprintf(stderr,
                 "%s, %s weights, %s, %s, %d threads, prompt %d, %d new%s: prefill %.2f ms, decode %.3f ms/token = "
                 "%.1f tokens/s\n",
                 m.name.c_str(), kv::weight_type_name(m.weights.type), p.s->engine().backend().c_str(), mode.c_str(),
                 threads, a.prompt_len, a.n_new, a.runs > 1 ? (", median of " + std::to_string(a.runs)).c_str() : "",
                 prefill_ms, ms_per_token, tokens_per_s);
    std::fprintf(stderr, "load %.0f ms, time to first token %.0f ms, resident %.0f MB (peak %.0f MB) after it\n",
                 p.load_ms, p.first_token_ms, double(p.loaded.rss) / 1e6, double(p.loaded.peak) / 1e6);
    if (p32) {
        out["vs_f32"] = vs_f32_json(runs, runs32, *p32, a.ceiling);
        print_runs(runs32, a.ceiling, p32->weight_gb, threads, " f32");
        std::fprintf(stderr, "vs f32 weights, runs interleaved: f32 %.1f tokens/s; %s decodes %.2fx as fast (median of %d)\n",
                     out["vs_f32"]["tokens_per_s"].get<double>(), kv::weight_type_name(m.weights.type),
                     out["vs_f32"]["decode_ratio"].get<double>(), a.runs);
    }
    if (a.as_json) print_json(out, 1);
    return 0;
}

// "1,2,4,8" -> sizes; a UsageError naming --batch otherwise.
std::vector<int> batch_sizes(const std::string& text) {
    std::vector<int> sizes;
    try {
        for (int id : kv::parse_token_ids(text)) sizes.push_back(id);
    } catch (const kv::Error&) {
        sizes.clear();
    }
    if (sizes.empty() || std::any_of(sizes.begin(), sizes.end(), [](int s) { return s < 1 || s > 256; }))
        throw UsageError("--batch: '" + text + "' is not a list of batch sizes 1..256 (example: --batch 1,2,4,8,16)");
    return sizes;
}

// Aggregate decode tokens/s by batch size, all measured in this run.
int run_batch(const BenchArgs& a) {
    const std::vector<int> sizes = batch_sizes(a.batch);
    auto m = open_model(a.model.empty() ? "random:gpt2-124m" : a.model, a.weights);
    kv::BatchBenchOptions o;
    o.backend = a.backend;
    o.threads = a.threads;
    o.prompt_len = a.prompt_len;
    o.steps = a.n_new;
    o.warmup = a.warmup;
    o.seed = a.seed;
    o.policy = a.policy;
    json points = json::array();
    double base = 0;
    for (int size : sizes) {
        const kv::BatchPoint p = kv::measure_batch(*m, o, size);
        if (points.empty()) base = p.tokens_per_s;
        std::fprintf(stderr, "batch %3d: %8.2f ms/step  %8.1f tokens/s  (%.2fx the first size)\n", p.size,
                     p.ms_per_step, p.tokens_per_s, p.tokens_per_s / base);
        points.push_back({{"size", p.size}, {"tokens_per_s", p.tokens_per_s}, {"ms_per_step", p.ms_per_step}});
    }
    std::fprintf(stderr, "%s, %s weights, %d threads, prompt %d, %d timed steps after %d warm-up\n", m->name.c_str(),
                 kv::weight_type_name(m->weights.type), effective_threads(a.threads), a.prompt_len, a.n_new, a.warmup);
    if (a.as_json) {
        json out = {{"model", model_json(*m)}, {"weights", kv::weight_type_name(m->weights.type)},
                    {"backend", a.backend}, {"threads", effective_threads(a.threads)}, {"prompt_len", a.prompt_len},
                    {"new_tokens", a.n_new}, {"batch", points}};
        if (a.policy_args.given) out["cache"] = policy_json(a.policy, m->config);
        print_json(out, 1);
    }
    return 0;
}

// Read bandwidth of the machine and the decode ceiling it implies for the model.
int run_stream(const BenchArgs& a) {
    auto m = open_model(a.model.empty() ? "random:gpt2-124m" : a.model, a.weights);
    const int threads = effective_threads(a.threads);
    const double gbs = kv::measure_read_bandwidth(threads);
    const double weight_gb = double(kv::decode_weight_bytes(m->config, m->weights.type)) / 1e9;
    std::fprintf(stderr, "read bandwidth %.1f GB/s with %d threads: %s streams %.1f MB of weights a decode step, "
                 "ceiling %.1f tokens/s\n", gbs, threads, m->name.c_str(), weight_gb * 1e3, gbs / weight_gb);
    if (a.as_json)
        print_json({{"read_gb_per_s", gbs},
                    {"threads", threads},
                    {"weight_gb_per_token", weight_gb},
                    {"ceiling_tokens_per_s", gbs / weight_gb}},
                   1);
    return 0;
}

int run_sweep(const BenchArgs& a) {
    auto m = open_model(a.model.empty() ? "random:gpt2-124m" : a.model, a.weights);
    kv::SweepOptions o;
    o.backend = a.backend;
    o.threads = a.threads;
    o.max_pos = a.max_pos;
    o.stride = a.stride;
    o.repeats = a.repeats;
    o.warmup = a.warmup;
    o.seed = a.seed;
    o.cached = a.sweep_mode != "uncached";
    o.uncached = a.sweep_mode != "cached";
    o.policy = a.policy;
    if (a.max_pos < 0 || a.max_pos > m->config.n_ctx)
        throw UsageError("--max-pos: " + std::to_string(a.max_pos) + " is outside [1, " +
                         std::to_string(m->config.n_ctx) + "] (0 = the model's context)");
    if (a.stride < 1) throw UsageError("--stride: must be at least 1");
    if (a.repeats < 1) throw UsageError("--repeats: must be at least 1");
    std::ofstream csv;
    if (!a.csv.empty()) {
        csv.open(a.csv);
        if (!csv) throw kv::Error("--csv " + a.csv + ": cannot open for writing");
    }
    int shown = -1;
    const auto pts = kv::run_sweep(*m, o, [&](float p) {
        const int pct = int(p * 100);
        if (pct / 5 != shown / 5) {
            shown = pct;
            std::fprintf(stderr, "\rsweep %3d%%", pct);
        }
        return true;
    });
    std::fprintf(stderr, "\n");
    auto cell = [](double ms) { return ms < 0 ? std::string() : std::to_string(ms); };
    if (csv.is_open()) {
        csv << "pos,ms_cached,ms_uncached\n";
        for (const auto& p : pts) csv << p.pos << "," << cell(p.ms_cached) << "," << cell(p.ms_uncached) << "\n";
        if (!csv) throw kv::Error("--csv " + a.csv + ": write failed");
    }
    // A short table on stderr: about ten rows.
    std::fprintf(stderr, "%8s %12s %14s\n", "pos", "cached ms", "uncached ms");
    const size_t every = std::max<size_t>(1, pts.size() / 10);
    for (size_t i = 0; i < pts.size(); ++i)
        if (i % every == 0 || i + 1 == pts.size())
            std::fprintf(stderr, "%8d %12.3f %14.3f\n", pts[i].pos, pts[i].ms_cached, pts[i].ms_uncached);
    if (a.as_json || a.csv.empty()) {
        json jp = json::array();
        for (const auto& p : pts) {
            json j = {{"pos", p.pos}};
            j["ms_cached"] = p.ms_cached < 0 ? json(nullptr) : json(p.ms_cached);
            j["ms_uncached"] = p.ms_uncached < 0 ? json(nullptr) : json(p.ms_uncached);
            jp.push_back(j);
        }
        json out = {{"model", model_json(*m)},   {"backend", a.backend}, {"threads", effective_threads(a.threads)},
                    {"stride", a.stride},        {"repeats", a.repeats}, {"points", jp}};
        if (a.policy_args.given) out["cache"] = policy_json(a.policy, m->config);
        print_json(out, 1);
    }
    return 0;
}

}  // namespace

std::function<int()> add_bench_command(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    auto* c = app.add_subcommand("bench", "time prefill and decode (default model: random:gpt2-124m)");
    c->add_option("--model", a->model, "model folder or random:SPEC");
    c->add_option("--prompt-len", a->prompt_len, "prompt tokens");
    add_weights_option(c, a->weights);
    c->add_option("--new", a->n_new, "new tokens");
    c->add_flag("--no-cache", a->no_cache, "recompute every token at every step");
    c->add_option("--threads", a->threads, "worker threads (0 = one per hardware thread)");
    c->add_option("--backend", a->backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    c->add_option("--warmup", a->warmup, "warm-up decode steps");
    c->add_option("--runs", a->runs, "timed runs; the median is reported");
    c->add_option("--seed", a->seed, "seed of the prompt's token ids");
    c->add_flag("--json", a->as_json, "print a JSON record to stdout");
    c->add_flag("--stream", a->stream, "measure the machine's read bandwidth and the decode ceiling it implies");
    c->add_flag("--ceiling", a->ceiling, "measure read bandwidth before each run and report the share of the ceiling");
    c->add_flag("--vs-f32", a->vs_f32,
                "with --weights f16|bf16: interleave the same runs on the model held in f32, report the decode ratio");
    c->add_flag("--sweep", a->sweep, "ms per step at every position, cached and uncached");
    c->add_option("--max-pos", a->max_pos, "sweep positions [0, MAX) (default: the model's context)");
    c->add_option("--stride", a->stride, "sweep every STRIDE-th position");
    c->add_option("--repeats", a->repeats, "sweep: time each point this often, keep the fastest");
    c->add_option("--mode", a->sweep_mode, "sweep: both, cached or uncached")
        ->check(CLI::IsMember({"both", "cached", "uncached"}));
    c->add_option("--csv", a->csv, "sweep: write pos,ms_cached,ms_uncached to FILE");
    c->add_option("--draft", a->draft, "speculative decoding with this draft model, next to plain decoding");
    c->add_option("--draft-k", a->draft_k, "with --draft: tokens proposed per round, 1..16 (default 4)");
    c->add_option("--prompt", a->prompt, "with --draft: prompt text (else --prompt-len pseudo-random ids)");
    c->add_option("--batch", a->batch, "batched decode at these batch sizes, e.g. 1,2,4,8,16 (aggregate tokens/s)");
    add_policy_options(c, a->policy_args);
    return [a, c]() {
        if (!*c) return -1;
        a->policy = policy_of(a->policy_args, *c);
        if (c->count("--draft-k") && !c->count("--draft")) throw UsageError("--draft-k: needs --draft SPEC");
        if (c->count("--prompt") && !c->count("--draft")) throw UsageError("--prompt: only with --draft");
        a->have_prompt = c->count("--prompt") > 0;
        if (c->count("--draft")) return run_bench_draft(*a, *c);
        if (a->vs_f32 && (a->stream || a->sweep)) throw UsageError("--vs-f32: only for timed runs (not --stream or --sweep)");
        if (a->stream) return run_stream(*a);
        if (c->count("--batch")) {
            if (a->sweep || a->no_cache || a->vs_f32 || a->runs != 1)
                throw UsageError("--batch: not with --sweep, --no-cache, --vs-f32 or --runs");
            return run_batch(*a);
        }
        return a->sweep ? run_sweep(*a) : run_bench(*a);
    };
}

}  // namespace cli
