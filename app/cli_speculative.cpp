// kvscope-cli's speculative decoding: `generate --draft SPEC --draft-k K` (one record
// per round, README "Speculative decoding") and `bench --draft SPEC --draft-k K`
// (tokens/s and target forwards per token next to plain decoding of the same target
// in the same run).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "app/cli_commands.h"
#include "app/cli_common.h"
#include "core/session/bench.h"
#include "core/session/speculative.h"

namespace cli {

using nlohmann::json;

namespace {

json spec_counters_json(const kv::SpecCounters& c) {
    return {{"rounds", c.rounds},
            {"target_forwards", c.target_forwards},
            {"draft_forwards", c.draft_forwards},
            {"proposed", c.proposed},
            {"accepted", c.accepted},
            {"rejected", c.rejected},
            {"new_tokens", c.new_tokens},
            {"kv_rows_rolled_back", {{"target", c.target_rows_rolled_back}, {"draft", c.draft_rows_rolled_back}}},
            {"acceptance_rate", c.acceptance_rate()},
            {"target_forwards_per_token", c.target_forwards_per_token()}};
}

json round_json(const kv::SpecRound& r) {
    return {{"round", r.round},
            {"start_pos", r.start_pos},
            {"target_input", r.target_input},
            {"proposed", r.proposed},
            {"accepted", r.accepted},
            {"next_id", r.next_id},
            {"bonus", r.bonus},
            {"rolled_back", {{"target", r.counters.target_rows_rolled_back}, {"draft", r.counters.draft_rows_rolled_back}}},
            {"cache_rows", {{"target", r.target_rows_after}, {"draft", r.draft_rows_after}}},
            {"counters", spec_counters_json(r.counters)},
            {"target_ms", r.target_ms},
            {"draft_ms", r.draft_ms}};
}

// The checks a draft needs beyond the target's own: k in range, one vocabulary, a
// tokenizer for --prompt, room in the draft's context for every position used.
void check_draft(const kv::Model& target, const kv::Model& draft, int k, int p, int n_new, bool have_ids) {
    if (k < 1 || k > 16) throw UsageError("--draft-k: " + std::to_string(k) + " is out of range (1..16)");
    if (!have_ids && !draft.tokenizer)
        throw UsageError("--draft: model '" + draft.name +
                         "' has no tokenizer, so its ids cannot be matched with the prompt's words; "
                         "a random draft takes --ids 1,2,3");
    kv::check_same_vocabulary(target, draft);
    const int need = p + n_new - 1;
    if (draft.config.n_ctx < need)
        throw UsageError("--draft: " + (draft.path.empty() ? draft.name : draft.path) + "'s context holds " + std::to_string(draft.config.n_ctx) +
                         " positions, but the prompt and --new need " + std::to_string(need));
}

kv::SpecDecoder make_decoder(const kv::Model& target, const kv::Model& draft, const std::string& backend, int k) {
    kv::SpecDecoder d(target, kv::make_engine(target, backend), draft, kv::make_engine(draft, backend), k);
    kv::TraceOptions t;
    t.record = false;  // counters, logits and tokens only
    d.set_trace_options(t);
    return d;
}

}  // namespace

int run_generate_speculative(const GenerateArgs& a) {
    auto m = open_model(a.model);
    auto dm = open_model(a.draft);
    if (a.draft_k < 1 || a.draft_k > 16)
        throw UsageError("--draft-k: " + std::to_string(a.draft_k) + " is out of range (1..16)");
    const auto ids = prompt_ids(*m, a.prompt, a.ids, a.have_prompt, a.have_ids);
    check_new(*m, int(ids.size()), a.n_new);
    check_draft(*m, *dm, a.draft_k, int(ids.size()), a.n_new, a.have_ids);

    kv::SpecDecoder d = make_decoder(*m, *dm, a.backend, a.draft_k);
    d.set_sampling({a.temperature, a.top_k, a.seed, 5});
    d.set_prompt_ids(ids);
    json rounds = json::array();
    if (m->tokenizer) std::cerr << m->tokenizer->decode(ids);
    int made = 0;
    while (made < a.n_new) {
        const kv::SpecRound& r = d.round(a.n_new - made);
        made += int(r.counters.new_tokens);
        rounds.push_back(round_json(r));
        for (int i = 0; i < r.accepted; ++i) std::cerr << " " << token_text(*m, r.proposed[size_t(i)]);
        std::cerr << " [" << token_text(*m, r.next_id) << "]";
    }
    std::cerr << "\n";
    const kv::SpecCounters t = d.totals();
    kv::Counters tw, dw;
    double t_ms = 0, d_ms = 0;
    for (const auto& r : d.rounds()) {
        tw += r.target_work;
        dw += r.draft_work;
        t_ms += r.target_ms;
        d_ms += r.draft_ms;
    }
    std::fprintf(stderr,
                 "%d new tokens in %lld rounds (k = %d): %lld target forwards (%.2f per token), %lld draft forwards, "
                 "%lld of %lld drafts accepted (%.0f%%), rows rolled back: target %lld, draft %lld; %.2f ms target, "
                 "%.2f ms draft\n",
                 a.n_new, (long long)t.rounds, a.draft_k, (long long)t.target_forwards, t.target_forwards_per_token(),
                 (long long)t.draft_forwards, (long long)t.accepted, (long long)t.proposed,
                 100.0 * t.acceptance_rate(), (long long)t.target_rows_rolled_back,
                 (long long)t.draft_rows_rolled_back, t_ms, d_ms);
    if (a.as_json) {
        json totals = spec_counters_json(t);
        totals["target_work"] = counters_json(tw);
        totals["draft_work"] = counters_json(dw);
        totals["target_ms"] = t_ms;
        totals["draft_ms"] = d_ms;
        const std::vector<int> gen(d.tokens().begin() + long(ids.size()), d.tokens().end());
        json out = {{"model", model_json(*m)}, {"draft", model_json(*dm)}, {"draft_k", a.draft_k},
                    {"prompt_ids", ids},       {"rounds", rounds},         {"tokens", gen},
                    {"totals", totals}};
        if (m->tokenizer) out["text"] = m->tokenizer->decode(d.tokens());
        print_json(out, 1);
    }
    return 0;
}

namespace {

// One timed generation of n_new tokens, plain (cached Session) or speculative.
struct GenTiming {
    double ms = 0;
    int64_t target_forwards = 0;
    kv::SpecCounters spec;
    std::vector<int> tokens;
};

GenTiming time_plain(kv::Session& s, int n_new) {
    GenTiming g;
    s.reset();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n_new; ++i) s.step();
    g.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    g.target_forwards = n_new;
    g.tokens = s.tokens();
    return g;
}

GenTiming time_speculative(kv::SpecDecoder& d, int n_new) {
    GenTiming g;
    d.reset();
    const auto t0 = std::chrono::steady_clock::now();
    for (int made = 0; made < n_new;) made += int(d.round(n_new - made).counters.new_tokens);
    g.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    g.spec = d.totals();
    g.target_forwards = g.spec.target_forwards;
    g.tokens = d.tokens();
    return g;
}

json timing_json(const GenTiming& g, int n_new) {
    return {{"ms", g.ms},
            {"tokens_per_s", 1000.0 * n_new / g.ms},
            {"target_forwards", g.target_forwards},
            {"target_forwards_per_token", double(g.target_forwards) / n_new}};
}

}  // namespace

int run_bench_speculative(const BenchArgs& a) {
    auto m = open_model(a.model.empty() ? "random:gpt2-124m" : a.model);
    auto dm = open_model(a.draft);
    if (a.runs < 1) throw UsageError("--runs: must be at least 1");
    std::vector<int> ids;
    if (a.have_prompt) {
        ids = prompt_ids(*m, a.prompt, "", true, false);
    } else {
        if (a.prompt_len < 1) throw UsageError("--prompt-len: must be at least 1");
        ids = kv::bench_ids(m->config, a.prompt_len, a.seed);
    }
    check_new(*m, int(ids.size()), a.n_new);
    check_draft(*m, *dm, a.draft_k, int(ids.size()), a.n_new, !a.have_prompt);
    kv::Session plain = make_session(*m, a.backend);
    kv::SpecDecoder d = make_decoder(*m, *dm, a.backend, a.draft_k);
    if (a.threads > 0) plain.engine().set_threads(a.threads);
    if (a.threads > 0) d.set_threads(a.threads);
    plain.set_prompt_ids(ids);
    d.set_prompt_ids(ids);
    time_plain(plain, a.n_new);  // warm-up of both paths
    time_speculative(d, a.n_new);
    // Alternate the two so both see the same machine load; keep the median run.
    std::vector<GenTiming> pr, sr;
    for (int r = 0; r < a.runs; ++r) {
        pr.push_back(time_plain(plain, a.n_new));
        sr.push_back(time_speculative(d, a.n_new));
    }
    auto by_ms = [](const GenTiming& x, const GenTiming& y) { return x.ms < y.ms; };
    std::sort(pr.begin(), pr.end(), by_ms);
    std::sort(sr.begin(), sr.end(), by_ms);
    const GenTiming& p = pr[pr.size() / 2];
    const GenTiming& s = sr[sr.size() / 2];
    const bool same = p.tokens == s.tokens;
    const double ratio = double(kv::decode_weight_bytes(dm->config)) / double(kv::decode_weight_bytes(m->config));
    std::fprintf(stderr,
                 "%s with draft %s, k = %d, prompt %zu, %d new, median of %d: plain %.1f tokens/s (1.00 target "
                 "forwards per token), speculative %.1f tokens/s (%.2f target forwards per token, acceptance %.0f%%): "
                 "%.2fx%s\n",
                 m->name.c_str(), dm->name.c_str(), a.draft_k, ids.size(), a.n_new, a.runs,
                 1000.0 * a.n_new / p.ms, 1000.0 * a.n_new / s.ms,
                 s.spec.target_forwards_per_token(), 100.0 * s.spec.acceptance_rate(), p.ms / s.ms,
                 same ? "" : " (the outputs differ!)");
    if (a.as_json) {
        json spec = timing_json(s, a.n_new);
        spec["counters"] = spec_counters_json(s.spec);
        json out = {{"mode", "speculative"},
                    {"model", model_json(*m)},
                    {"draft", model_json(*dm)},
                    {"draft_k", a.draft_k},
                    {"backend", a.backend},
                    {"prompt_len", ids.size()},
                    {"new_tokens", a.n_new},
                    {"runs", a.runs},
                    {"weight_bytes_ratio", ratio},
                    {"plain", timing_json(p, a.n_new)},
                    {"speculative", spec},
                    {"speed_up", p.ms / s.ms},
                    {"same_tokens", same}};
        print_json(out, 1);
    }
    return 0;
}

}  // namespace cli
