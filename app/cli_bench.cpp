// kvscope-cli bench: timed prefill and decode (DESIGN.md: --model SPEC --prompt-len P
// --new N [--no-cache] [--threads T] [--backend cpu|cuda] [--json]).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "app/cli_commands.h"
#include "app/cli_common.h"

namespace cli {

using nlohmann::json;

namespace {

// ---- bench ----
struct BenchArgs {
    std::string model, backend = "cpu";
    int prompt_len = 4, n_new = 32, threads = 0, warmup = 2;
    bool no_cache = false, as_json = false;
    uint64_t seed = 0;
};

int run_bench(const BenchArgs& a) {
    auto m = open_model(a.model.empty() ? "random:gpt2-124m" : a.model);
    if (a.prompt_len < 1) throw UsageError("--prompt-len: must be at least 1");
    check_new(*m, a.prompt_len, a.n_new);
    kv::Session s = make_session(*m, a.backend);
    if (a.threads > 0) s.engine().set_threads(a.threads);
    s.set_cache(!a.no_cache);
    std::vector<int> ids(a.prompt_len);
    for (int i = 0; i < a.prompt_len; ++i) ids[i] = int((1000003LL * (i + 1) + a.seed) % m->config.vocab_size);
    s.set_prompt_ids(ids);
    // Warm-up: a prefill and a few decode steps, then start over.
    for (int i = 0; i < std::min(a.warmup + 1, a.n_new); ++i) s.step();
    s.reset();
    const kv::StepTrace& pre = s.step();
    const double prefill_ms = pre.ms;
    double decode_ms = 0;
    for (int i = 1; i < a.n_new; ++i) decode_ms += s.step().ms;
    const int decoded = a.n_new - 1;
    const double ms_per_token = decoded > 0 ? decode_ms / decoded : prefill_ms;
    json out = {{"mode", a.no_cache ? "uncached" : "cached"},
                {"model", model_json(*m)},
                {"backend", s.engine().backend()},
                {"threads", a.threads},
                {"prompt_len", a.prompt_len},
                {"new_tokens", a.n_new},
                {"prefill_ms", prefill_ms},
                {"decode_ms", decode_ms},
                {"ms_per_token", ms_per_token},
                {"tokens_per_s", 1000.0 / ms_per_token}};
    std::fprintf(stderr, "%s, %s, prompt %d, %d new: prefill %.2f ms, decode %.3f ms/token = %.1f tokens/s\n",
                 m->name.c_str(), a.no_cache ? "uncached" : "cached", a.prompt_len, a.n_new, prefill_ms,
                 ms_per_token, 1000.0 / ms_per_token);
    if (a.as_json) std::cout << out.dump(1) << "\n";
    return 0;
}

}  // namespace

std::function<int()> add_bench_command(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    auto* c = app.add_subcommand("bench", "time prefill and decode (default model: random:gpt2-124m)");
    c->add_option("--model", a->model, "model folder or random:SPEC");
    c->add_option("--prompt-len", a->prompt_len, "prompt tokens");
    c->add_option("--new", a->n_new, "new tokens");
    c->add_flag("--no-cache", a->no_cache, "recompute every token at every step");
    c->add_option("--threads", a->threads, "worker threads (0 = default)");
    c->add_option("--backend", a->backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    c->add_option("--warmup", a->warmup, "warm-up decode steps");
    c->add_flag("--json", a->as_json, "print a JSON record to stdout");
    return [a, c]() { return *c ? run_bench(*a) : -1; };
}

}  // namespace cli
