// Serving with the engine (core/serve/serve.h, Engine::forward_batch): every
// sequence's logits in a batched step equal the same sequence run alone through the
// single-sequence path (forward() over a HostKVCache of the same policy, a path that
// knows nothing of blocks), at every step, under full, window and int8 policies;
// prefix sharing changes only the work, by exactly the hit blocks' rows; forks copy
// a shared partial block N-1 times and sampled forks repeat with their seed; a pool
// too small for all requests preempts and still gives every request its tokens.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "core/rng.h"
#include "core/serve/serve.h"
#include "tests/test_helpers.h"

namespace {

std::unique_ptr<kv::Model> serve_model() { return kvtest::random_model(96, 64, 32, 2, 4, 2, 11); }

kv::ServeRequest req(std::vector<int> prompt, int n_new, int arrive = 0, int fork = 1) {
    return {std::move(prompt), n_new, arrive, fork};
}

// Shared prefix of 9 tokens (two full blocks of 4), late arrivals, one fork.
std::vector<kv::ServeRequest> mixed_requests() {
    const std::vector<int> pre = kvtest::seq_ids(9, 96, 1);
    auto with = [&](std::vector<int> tail) {
        std::vector<int> p = pre;
        p.insert(p.end(), tail.begin(), tail.end());
        return p;
    };
    return {req(with({5, 6}), 7), req(with({40}), 5, 1), req(kvtest::seq_ids(6, 96, 2), 6, 0, 2),
            req(with({7, 8, 9}), 4, 3), req(kvtest::seq_ids(3, 96, 3), 8, 2)};
}

kv::ServeOptions options(int pool_blocks, const kv::CachePolicy& pol = {}, bool prefix = true) {
    kv::ServeOptions o;
    o.sched.block_size = 4;
    o.sched.pool_blocks = pool_blocks;
    o.sched.max_batch = 8;
    o.sched.prefix_caching = prefix;
    o.policy = pol;
    return o;
}

// The logits each sequence sampled from, by token index (a preempted sequence samples
// an index again after its recompute: both are kept).
using Captured = std::map<std::pair<int, int>, std::vector<std::vector<float>>>;

kv::ServeResult serve(kv::Engine& e, const std::vector<kv::ServeRequest>& reqs, const kv::ServeOptions& o,
                      Captured* cap = nullptr) {
    int checked = 0;
    auto on_logits = [&](int seq, int idx, std::span<const float> l) {
        if (cap) (*cap)[{seq, idx}].emplace_back(l.begin(), l.end());
    };
    auto on_step = [&](const kv::Scheduler& s, const kv::ServeStep&) {
        s.check_invariants();  // throws, naming the broken rule
        ++checked;
    };
    kv::ServeResult r = kv::run_serve(e, reqs, o, on_logits, on_step);
    CHECK(checked == int(r.steps.size()));
    return r;
}

// The sequence alone through forward(): prefill of the prompt, then one token a step.
// Returns the largest logit difference against every captured copy.
float alone_diff(kv::Engine& e, const kv::ServeSeqResult& s, const kv::CachePolicy& pol, const Captured& cap) {
    auto cache = e.make_cache(pol);
    kv::StepTrace tr;
    tr.step = 0;
    float worst = 0.f;
    std::vector<int> known = s.prompt_ids;
    for (size_t g = 0; g < s.tokens.size(); ++g) {
        kv::ForwardRequest fr;
        const int p0 = g == 0 ? 0 : int(known.size()) - 1;
        fr.ids = std::span<const int>(known).subspan(size_t(p0));
        fr.start_pos = p0;
        fr.trace_opts.record = false;
        e.forward(fr, *cache, tr);
        const auto it = cap.find({s.id, int(g)});
        REQUIRE(it != cap.end());
        for (const auto& l : it->second) worst = std::max(worst, kvtest::max_abs_diff(l, tr.logits));
        known.push_back(s.tokens[g]);
    }
    return worst;
}

}  // namespace

namespace {

void check_batched_equals_alone(const kv::Model& m) {
    auto e = kv::make_cpu_engine(m);
    std::vector<kv::CachePolicy> pols = {{}, {6, 2, kv::KvDtype::f32}, {0, 0, kv::KvDtype::int8}};
    if (m.config.is_mla()) pols.push_back({6, 2, kv::KvDtype::int8, kv::MlaRead::absorbed});
    for (const kv::CachePolicy& pol : pols) {
        CAPTURE(kv::policy_text(pol));
        Captured cap;
        const kv::ServeResult r = serve(*e, mixed_requests(), options(64, pol), &cap);
        CHECK(r.prefix_hits > 0);  // the shared prefix was hit
        int batched_steps = 0;
        for (const kv::ServeStep& s : r.steps) batched_steps += s.running.size() > 1;
        CHECK(batched_steps > 3);
        for (const kv::ServeSeqResult& s : r.seqs) {
            CAPTURE(s.id);
            CHECK(alone_diff(*e, s, pol, cap) <= 1e-4f);
        }
    }
}

}  // namespace

TEST_CASE("serve: every sequence's batched logits equal it run alone, under full, window and int8") {
    check_batched_equals_alone(*serve_model());
}

// The Llama family in a batch: each row turned by its own sequence's positions.
TEST_CASE("serve: Llama family, every sequence's batched logits equal it run alone") {
    uint64_t seed = 60;
    for (const kv::ModelConfig& cfg : kvtest::llama_shapes()) {
        CAPTURE(cfg.qkv_bias);
        check_batched_equals_alone(*kvtest::random_llama(cfg, seed++));
    }
}

// MLA in a batch: the pool's slots hold latent rows, read expanded or absorbed.
TEST_CASE("serve: MLA, every sequence's batched logits equal it run alone") {
    uint64_t seed = 90;
    for (const kv::ModelConfig& cfg : kvtest::mla_shapes()) {
        CAPTURE(cfg.mla.q_lora_rank);
        check_batched_equals_alone(*kvtest::random_llama(cfg, seed++));
    }
}

TEST_CASE("serve: prefix sharing changes only the work, by exactly the hit blocks' rows") {
    auto m = serve_model();
    auto e = kv::make_cpu_engine(*m);
    const kv::ServeResult on = serve(*e, mixed_requests(), options(64));
    const kv::ServeResult off = serve(*e, mixed_requests(), options(64, {}, false));
    CHECK(off.prefix_hits == 0);
    CHECK(on.prefix_hits >= 4);
    const int64_t rows_per_block = 4LL * m->config.n_layer * m->config.n_kv_head;
    REQUIRE(on.seqs.size() == off.seqs.size());
    for (size_t i = 0; i < on.seqs.size(); ++i) {
        CAPTURE(i);
        CHECK(on.seqs[i].tokens == off.seqs[i].tokens);
        CHECK(on.seqs[i].kv_rows_computed ==
              off.seqs[i].kv_rows_computed - on.seqs[i].prefix_blocks_hit * rows_per_block);
    }
    CHECK(on.seqs[1].prefix_blocks_hit == 2);  // request 1 arrives after request 0's prefill
}

TEST_CASE("serve: N forks sharing a partial block copy it N-1 times, sampled forks repeat with their seed") {
    auto m = serve_model();
    auto e = kv::make_cpu_engine(*m);
    // 6 prompt tokens: block 1 holds positions 4 and 5 and is shared by 3 forks.
    const std::vector<kv::ServeRequest> reqs = {req(kvtest::seq_ids(6, 96, 5), 3, 0, 3)};
    const kv::ServeResult greedy = serve(*e, reqs, options(16));
    CHECK(greedy.cow_copies == 2);
    CHECK(greedy.steps[1].copies == 2);
    kv::ServeOptions o = options(16);
    o.sampling.temperature = 1.5f;
    o.sampling.seed = 42;
    const kv::ServeResult a = serve(*e, reqs, o), b = serve(*e, reqs, o);
    std::set<std::vector<int>> distinct;
    for (size_t i = 0; i < a.seqs.size(); ++i) {
        CHECK(a.seqs[i].tokens == b.seqs[i].tokens);
        distinct.insert(a.seqs[i].tokens);
    }
    CHECK(distinct.size() > 1);  // the forks' streams differ
    o.sampling.seed = 43;
    const kv::ServeResult c = serve(*e, reqs, o);
    bool any_differs = false;
    for (size_t i = 0; i < a.seqs.size(); ++i) any_differs = any_differs || a.seqs[i].tokens != c.seqs[i].tokens;
    CHECK(any_differs);
}

TEST_CASE("serve: a pool too small for all requests preempts, recomputes and gives the same greedy tokens") {
    auto m = serve_model();
    auto e = kv::make_cpu_engine(*m);
    const std::vector<kv::ServeRequest> reqs = {req(kvtest::seq_ids(7, 96, 1), 12), req(kvtest::seq_ids(5, 96, 2), 12),
                                                req(kvtest::seq_ids(6, 96, 3), 12)};
    const kv::ServeResult big = serve(*e, reqs, options(64));
    Captured cap;
    const kv::ServeResult small = serve(*e, reqs, options(7), &cap);
    CHECK(big.preemptions == 0);
    CHECK(small.preemptions > 0);
    CHECK(small.kv_rows_recomputed > 0);
    CHECK(big.kv_rows_recomputed == 0);
    int64_t per_seq = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
        CAPTURE(i);
        CHECK(small.seqs[i].tokens == big.seqs[i].tokens);
        CHECK(alone_diff(*e, small.seqs[i], {}, cap) <= 1e-4f);
        per_seq += small.seqs[i].kv_rows_recomputed;
    }
    CHECK(per_seq == small.kv_rows_recomputed);
    CHECK(small.peak_blocks <= 7);
}

// 240 requests of random lengths, prefixes, forks and arrivals over 1000 steps, a pool
// of 12 blocks: the invariants after every step, every logit against the alone path.
TEST_CASE("serve: a randomized run keeps the invariants and equals the alone path") {
    auto m = serve_model();
    auto e = kv::make_cpu_engine(*m);
    kv::SplitMix64 rng{2026};
    std::vector<kv::ServeRequest> reqs;
    const std::vector<int> shared = kvtest::seq_ids(8, 96, 9);
    for (int i = 0; i < 240; ++i) {
        std::vector<int> p(shared.begin(), shared.begin() + long(rng.next() % 9));
        const int tail = 1 + int(rng.next() % 6);
        for (int t = 0; t < tail; ++t) p.push_back(int(rng.next() % 96));
        reqs.push_back(req(p, 1 + int(rng.next() % 10), int(rng.next() % 1000), 1 + int(rng.next() % 2)));
    }
    Captured cap;
    const kv::ServeResult r = serve(*e, reqs, options(12), &cap);
    CHECK(r.steps.size() >= 1000);
    CHECK(r.preemptions > 0);
    CHECK(r.prefix_hits > 0);
    for (const kv::ServeSeqResult& s : r.seqs) {
        CAPTURE(s.id);
        CHECK(int(s.tokens.size()) == reqs[size_t(s.request)].new_tokens);
        CHECK(alone_diff(*e, s, {}, cap) <= 1e-4f);
    }
}

TEST_CASE("serve: a batch is refused when it would write one slot twice or reads outside the pool") {
    auto m = serve_model();
    auto e = kv::make_cpu_engine(*m);
    auto pool = e->make_paged({}, 4, 4);
    const std::vector<int> ids = {1, 2}, t0 = {0}, t9 = {9};
    kv::BatchResult out;
    const std::vector<kv::BatchSeq> twice = {{ids, 0, t0}, {ids, 0, t0}};
    CHECK(kvtest::error_of([&] { e->forward_batch(twice, *pool, out); }).find("two sequences") != std::string::npos);
    const std::vector<kv::BatchSeq> outside = {{ids, 0, t9}};
    CHECK(kvtest::error_of([&] { e->forward_batch(outside, *pool, out); }).find("not in the pool") != std::string::npos);
    CHECK(kvtest::error_of([&] { e->make_paged({}, 0, 4); }).find("0 blocks") != std::string::npos);
}
