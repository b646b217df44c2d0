// kvscope-cli serve: many requests from one paged pool (docs/design.md, "Serving";
// ../shared/DESIGN.md has the flags and the JSON). Human text goes to stderr, the
// JSON record to stdout.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/cli_commands.h"
#include "app/cli_common.h"
#include "core/serve/presets.h"
#include "core/serve/requests.h"
#include "core/serve/serve.h"

using nlohmann::json;

namespace cli {

namespace {

struct ServeArgs {
    std::string model, requests, preset, backend = "cpu", weights;
    std::vector<std::string> prompts;
    int n_new = 0, block_size = 16, pool_blocks = 0, max_batch = 64, fork = 1, threads = 0, top_k = 0;
    bool no_prefix_cache = false, trace_tables = false, as_json = false;
    float temperature = 0.f;
    uint64_t seed = 0;
    PolicyArgs policy;
};

void check_serve_args(const ServeArgs& a, const CLI::App& c) {
    if (c.count("--requests") + c.count("--prompts") + c.count("--preset") != 1)
        throw UsageError("serve: give the requests with exactly one of --requests FILE, --prompts TEXT... and --preset NAME");
    if (c.count("--prompts") && !c.count("--new")) throw UsageError("--prompts: needs --new N");
    if ((c.count("--requests") || c.count("--preset")) && c.count("--new"))
        throw UsageError("--new: only with --prompts (a requests file or a preset gives \"new\" per request)");
    if (a.block_size < 1) throw UsageError("--block-size: " + std::to_string(a.block_size) + " must be at least 1");
    if (c.count("--pool-blocks") && a.pool_blocks < 1)
        throw UsageError("--pool-blocks: " + std::to_string(a.pool_blocks) + " must be at least 1");
    if (a.max_batch < 1) throw UsageError("--max-batch: " + std::to_string(a.max_batch) + " must be at least 1");
    if (a.fork < 1) throw UsageError("--fork: " + std::to_string(a.fork) + " must be at least 1");
    if (a.temperature < 0.f || !std::isfinite(a.temperature)) throw UsageError("--temperature: must be >= 0");
    if (a.top_k < 0) throw UsageError("--top-k: must be >= 0");
}

std::vector<kv::ServeRequest> read_serve_requests(const ServeArgs& a, const kv::Model& m) {
    const kv::RequestRules rules = kv::model_request_rules(m, a.fork);
    if (!a.requests.empty()) return kv::read_requests(a.requests, rules);
    if (!a.preset.empty()) {
        if (!m.tokenizer) throw UsageError("--preset: its prompts are text, and this model has no tokenizer");
        return kv::parse_requests(kv::requests_jsonl(kv::serve_preset(a.preset).requests), "--preset " + a.preset, rules);
    }
    try {
        return kv::parse_prompts(a.prompts, a.n_new, rules);
    } catch (const kv::Error& e) {
        throw UsageError(e.what());
    }
}

// Without --pool-blocks: room for every sequence's positions at once (no preemption).
int default_pool_blocks(const std::vector<kv::ServeRequest>& reqs, int B) {
    int64_t blocks = 0;
    for (const kv::ServeRequest& q : reqs)
        blocks += int64_t(q.fork) * ((int64_t(q.prompt.size()) + q.new_tokens - 1 + B - 1) / B);
    return int(std::min<int64_t>(blocks, 1 << 20));
}

// A pool larger than most of this machine's memory is refused before it is allocated.
void check_pool_memory(int64_t bytes, int pool_blocks) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return;
    const int64_t phys = int64_t(pages) * page;
    if (bytes > phys / 10 * 8)
        throw UsageError("--pool-blocks: " + std::to_string(pool_blocks) + " blocks take " +
                         std::to_string(bytes >> 20) + " MiB, more than this machine's memory allows (" +
                         std::to_string(phys >> 20) + " MiB)");
}

json blocks_json(const kv::PoolCounts& b) {
    return {{"used", b.used}, {"free", b.free}, {"cached", b.cached}, {"shared", b.shared}};
}

json step_json(const kv::ServeStep& s, bool tables) {
    json j = {{"step", s.step},         {"running", s.running},   {"admitted", s.admitted},
              {"finished", s.finished}, {"preempted", s.preempted}, {"tokens", s.tokens},
              {"blocks", blocks_json(s.blocks)}, {"waste_slots", s.waste_slots}, {"copies", s.copies},
              {"kv_rows_computed", s.kv_rows_computed}, {"held_positions", s.held_positions},
              {"contiguous_slots", s.contiguous_slots}, {"ms", s.ms}};
    if (tables) {
        json t = json::array();
        for (const auto& [id, table] : s.tables) t.push_back({{"id", id}, {"block_table", table}});
        j["tables"] = t;
    }
    return j;
}

json serve_json(const kv::Model& m, const kv::ServeResult& r, bool tables) {
    json steps = json::array(), reqs = json::array();
    for (const kv::ServeStep& s : r.steps) steps.push_back(step_json(s, tables));
    for (const kv::ServeSeqResult& s : r.seqs) {
        json text = json::array();
        for (int id : s.tokens) text.push_back(token_bytes(m, id));
        reqs.push_back({{"id", s.id}, {"request", s.request}, {"fork", s.fork}, {"prompt_ids", s.prompt_ids},
                        {"tokens", s.tokens}, {"text", text}, {"prefix_blocks_hit", s.prefix_blocks_hit},
                        {"preemptions", s.preemptions}, {"kv_rows_computed", s.kv_rows_computed},
                        {"kv_rows_recomputed", s.kv_rows_recomputed}, {"block_table", s.block_table}});
    }
    const json contiguous = {{"reserved_bytes", r.contiguous.reserved_bytes},
                             {"used_bytes", r.contiguous.used_bytes},
                             {"max_concurrent", r.contiguous.max_concurrent}};
    const json totals = {{"tokens_generated", r.tokens_generated}, {"steps", int(r.steps.size())},
                         {"peak_blocks", r.peak_blocks}, {"peak_bytes", r.peak_bytes}, {"contiguous", contiguous},
                         {"prefix_hits", r.prefix_hits}, {"cow_copies", r.cow_copies},
                         {"preemptions", r.preemptions}, {"kv_rows_recomputed", r.kv_rows_recomputed},
                         {"tokens_per_s", r.tokens_per_s()}};
    return {{"model", model_json(m)},
            {"pool", {{"block_size", r.block_size}, {"blocks", r.n_blocks}, {"bytes_per_block", r.bytes_per_block}}},
            {"steps", steps}, {"requests", reqs}, {"totals", totals}};
}

void print_serve_text(const kv::Model& m, const kv::ServeResult& r) {
    for (const kv::ServeSeqResult& s : r.seqs) {
        std::cerr << "request " << s.request;
        if (s.fork > 0) std::cerr << " fork " << s.fork;
        std::cerr << ":";
        for (int id : s.tokens) std::cerr << token_text(m, id);
        std::cerr << "\n";
    }
    const double MiB = 1024.0 * 1024.0;
    std::fprintf(stderr,
                 "%d tokens in %zu steps, %.1f tokens/s; pool %d blocks of %d; peak %d blocks (%.2f MiB); contiguous "
                 "reservation %.2f MiB (%.2f used); prefix hits %d, copies %d, preemptions %d\n",
                 r.tokens_generated, r.steps.size(), r.tokens_per_s(), r.n_blocks, r.block_size, r.peak_blocks,
                 r.peak_bytes / MiB, r.contiguous.reserved_bytes / MiB, r.contiguous.used_bytes / MiB, r.prefix_hits,
                 r.cow_copies, r.preemptions);
}

// --preset: its pool and sampling, where the command line does not give them.
void apply_preset(ServeArgs& a, const CLI::App& c) {
    if (a.preset.empty()) return;
    const kv::ServePreset* p = nullptr;
    try {
        p = &kv::serve_preset(a.preset);
    } catch (const kv::Error& e) {
        throw UsageError(e.what());
    }
    if (!c.count("--block-size")) a.block_size = p->sched.block_size;
    if (!c.count("--pool-blocks")) a.pool_blocks = p->sched.pool_blocks;
    if (!c.count("--max-batch")) a.max_batch = p->sched.max_batch;
    if (!c.count("--temperature")) a.temperature = p->sampling.temperature;
    if (!c.count("--seed")) a.seed = p->sampling.seed;
}

int run_serve(ServeArgs a, const CLI::App& c) {
    check_serve_args(a, c);
    apply_preset(a, c);
    const kv::CachePolicy policy = policy_of(a.policy, c);
    auto m = open_model(a.model, a.weights);
    const std::vector<kv::ServeRequest> reqs = read_serve_requests(a, *m);
    kv::ServeOptions opt;
    opt.sched.block_size = a.block_size;
    opt.sched.pool_blocks = c.count("--pool-blocks") || !a.preset.empty() ? a.pool_blocks : default_pool_blocks(reqs, a.block_size);
    opt.sched.max_batch = a.max_batch;
    opt.sched.prefix_caching = !a.no_prefix_cache;
    opt.policy = policy;
    opt.sampling = {a.temperature, a.top_k, a.seed, 0};
    opt.trace_tables = a.trace_tables;
    check_pool_memory(kv::cache_bytes_for(m->config, policy.dtype, int64_t(opt.sched.pool_blocks) * a.block_size),
                      opt.sched.pool_blocks);
    auto engine = kv::make_engine(*m, a.backend);
    engine->set_threads(a.threads);
    const kv::ServeResult r = kv::run_serve(*engine, reqs, opt);
    print_serve_text(*m, r);
    if (a.as_json) print_json(serve_json(*m, r, a.trace_tables), 1);
    return 0;
}

}  // namespace

std::function<int()> add_serve_command(CLI::App& app) {
    auto a = std::make_shared<ServeArgs>();
    auto* c = app.add_subcommand("serve", "serve many requests from one paged pool of cache blocks");
    c->add_option("--model", a->model, "model folder or random:SPEC (default: bundled)");
    c->add_option("--requests", a->requests, "JSON Lines: {\"prompt\"|\"ids\", \"new\", \"arrive\", \"fork\"} a line");
    c->add_option("--prompts", a->prompts, "prompts, all arriving at step 0 (with --new)");
    c->add_option("--preset", a->preset, "the window's request sets: " + kv::serve_preset_names());
    c->add_option("--new", a->n_new, "with --prompts: tokens each request generates");
    c->add_option("--block-size", a->block_size, "token slots per block (default 16)");
    c->add_option("--pool-blocks", a->pool_blocks, "blocks in the pool (default: every request at once)");
    c->add_option("--max-batch", a->max_batch, "sequences running at once at most (default 64)");
    c->add_option("--fork", a->fork, "continuations sampled per prompt (default 1)");
    c->add_flag("--no-prefix-cache", a->no_prefix_cache, "no sharing of prompt blocks, no keeping blocks after use");
    c->add_option("--temperature", a->temperature, "0 = greedy (default)");
    c->add_option("--top-k", a->top_k, "sample among the k most likely (0 = all)");
    c->add_option("--seed", a->seed, "sampling seed");
    c->add_option("--threads", a->threads, "worker threads (0 = one per hardware thread)");
    c->add_option("--backend", a->backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    c->add_flag("--trace-tables", a->trace_tables, "with --json: every step's block tables");
    c->add_flag("--json", a->as_json, "print a JSON record to stdout");
    add_weights_option(c, a->weights);
    add_policy_options(c, a->policy);
    return [a, c]() { return *c ? run_serve(*a, *c) : -1; };
}

}  // namespace cli
