// The paged block pool and the scheduler (core/serve), as bookkeeping: prefix hits on
// exactly the full blocks of a common prefix, blocks kept after release, forks and
// copy-on-write, preemption, the contiguous baseline's arithmetic, bad sizes, and a
// randomized run checking the invariants after every step.
//
// A shadow engine executes every step's plan on fake rows: the row at position p of a
// sequence is chain(row at p - 1 read through its block table, token p), so a hit on a
// wrong block, a missed copy or a block reused while read shows up as a wrong row.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "core/engine/kv_cache.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/serve/baseline.h"
#include "core/serve/block_pool.h"
#include "core/serve/scheduler.h"

using kv::BlockPool;
using kv::BlockTable;
using kv::Scheduler;
using kv::SchedulerConfig;
using kv::ServeRequest;
using kv::StepPlan;

namespace {

uint64_t row_of(uint64_t prev, int token) { return kv::chain_hash(prev, std::span<const int>(&token, 1)); }

// Fake sampling: the same token for the same (request, fork, position), however the
// run was scheduled.
int fake_token(const kv::Sequence& s) {
    return 100 + int((uint32_t(s.request) * 7919u + uint32_t(s.fork) * 104729u + uint32_t(s.tokens.size()) * 31u) % 900u);
}

// Rows of the pool's slots, (P * B), written only by executing plans.
struct ShadowEngine {
    int B;
    std::vector<uint64_t> slots;
    ShadowEngine(int n_blocks, int block_size) : B(block_size), slots(size_t(n_blocks * block_size), 0) {}
    uint64_t& at(const std::vector<int>& table, int p) { return slots[size_t(table[size_t(p / B)] * B + p % B)]; }
    void execute(const StepPlan& plan) {
        for (const kv::BlockCopy& c : plan.copies)
            std::copy_n(slots.begin() + c.src * B, B, slots.begin() + c.dst * B);
        for (const kv::SeqWork& w : plan.work)
            for (int i = 0; i < w.n; ++i) {
                const int p = w.first_pos + i;
                const uint64_t prev = p == 0 ? kv::kRootHash : at(w.table, p - 1);
                at(w.table, p) = row_of(prev, w.input_ids[size_t(i)]);
            }
    }
    // Every running sequence reads back exactly the rows of its own tokens.
    void verify(const Scheduler& sch) {
        for (const kv::Sequence& s : sch.sequences()) {
            if (s.state != kv::SeqState::running) continue;
            uint64_t row = kv::kRootHash;
            for (int p = 0; p < s.table.n_pos; ++p) {
                row = row_of(row, s.tokens[size_t(p)]);
                if (at(s.table.blocks, p) != row)
                    FAIL("sequence " << s.id << " reads a wrong row at position " << p << " (block "
                                     << s.table.blocks[size_t(p / B)] << ")");
            }
        }
    }
};

struct RunResult {
    std::vector<StepPlan> plans;
    int copies = 0;
};

// Runs to the end (at most max_steps), executing and checking every step.
RunResult run_all(Scheduler& sch, int max_steps = 100000) {
    ShadowEngine shadow(sch.pool().n_blocks(), sch.pool().block_size());
    RunResult r;
    while (!sch.done()) {
        REQUIRE(sch.step_index() < max_steps);
        r.plans.push_back(sch.step(fake_token));
        shadow.execute(r.plans.back());
        r.copies += int(r.plans.back().copies.size());
        sch.check_invariants();
        shadow.verify(sch);
        const kv::PoolCounts c = r.plans.back().blocks;
        REQUIRE(c.used + c.free + c.cached == sch.pool().n_blocks());
    }
    return r;
}

std::vector<int> ids(int n, int from) {
    std::vector<int> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) v[size_t(i)] = from + i;
    return v;
}

std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Throws kv::Error whose message contains `part`.
template <class F>
void check_error(F&& f, const std::string& part) {
    CAPTURE(part);
    try {
        f();
        FAIL("no kv::Error thrown");
    } catch (const kv::Error& e) {
        CHECK(std::string(e.what()).find(part) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("block table: positions map to table[p / B] at offset p % B, waste counts empty slots") {
    BlockPool pool(8, 4);
    BlockTable t;
    std::vector<kv::BlockCopy> copies;
    REQUIRE(pool.append(t, 6, copies));
    REQUIRE(t.blocks.size() == 2);
    CHECK(t.block_of(5, 4) == t.blocks[1]);
    CHECK(t.block_of(3, 4) == t.blocks[0]);
    CHECK(t.waste_slots(4) == 2);
    CHECK(pool.waste_slots() == 2);
    CHECK(pool.block(t.blocks[1]).fill == 2);
    REQUIRE(pool.append(t, 2, copies));
    CHECK(t.waste_slots(4) == 0);
    CHECK(pool.counts().used == 2);
    CHECK(pool.counts().free == 6);
    CHECK(copies.empty());
    const BlockTable* tables[] = {&t};
    pool.check_invariants(tables);
}

TEST_CASE("block pool: check_invariants names what is wrong") {
    BlockPool pool(4, 2);
    BlockTable t;
    std::vector<kv::BlockCopy> copies;
    REQUIRE(pool.append(t, 3, copies));
    SUBCASE("a table the pool does not know about") {
        check_error([&] { pool.check_invariants({}); }, "reference count 1 but 0 tables point at it");
    }
    SUBCASE("a table that claims more positions than its blocks hold") {
        BlockTable wrong = t;
        wrong.n_pos = 4;
        const BlockTable* tables[] = {&wrong};
        check_error([&] { pool.check_invariants(tables); }, "slots filled, its tables hold");
    }
    SUBCASE("a table that lost a block") {
        BlockTable wrong = t;
        wrong.blocks.pop_back();
        const BlockTable* tables[] = {&wrong};
        check_error([&] { pool.check_invariants(tables); }, "holds 3 positions in 1 blocks");
    }
}

TEST_CASE("serve: bad sizes throw kv::Error with a clear message") {
    check_error([] { BlockPool(4, 0); }, "block size 0 must be at least 1");
    check_error([] { BlockPool(0, 16); }, "pool of 0 blocks must have at least 1 block");
    SchedulerConfig cfg{4, 3, 8, true};
    auto make = [&](ServeRequest q) { Scheduler s(cfg, {q}); };
    check_error([&] { make({ids(13, 1), 1, 0, 1}); }, "request 0: prompt of 13 tokens + 1 new needs 4 blocks of 4 slots; the pool has 3");
    check_error([&] { make({ids(10, 1), 4, 0, 1}); }, "needs 4 blocks");  // 13 positions held at the end
    check_error([&] { make({{}, 1, 0, 1}); }, "request 0: the prompt is empty");
    check_error([&] { make({ids(3, 1), 0, 0, 1}); }, "new tokens 0 must be at least 1");
    check_error([&] { make({ids(3, 1), 1, 0, 9}); }, "fork 9 must be between 1 and max batch 8");
    check_error([&] { Scheduler s({0, 3, 8, true}, {}); }, "block size 0");
    check_error([&] { Scheduler s({4, 0, 8, true}, {}); }, "pool of 0 blocks");
    check_error([&] { Scheduler s({4, 3, 0, true}, {}); }, "max batch 0 must be at least 1");
    Scheduler ok(cfg, {{ids(10, 1), 3, 0, 1}});  // 12 positions: exactly 3 blocks
    run_all(ok);
}

TEST_CASE("prefix sharing hits exactly the full blocks of the common prefix, never a partial one") {
    const int B = 4;
    int common = 0, hits = 0;
    SUBCASE("10 common tokens: 2 full blocks, the partial third is not shared") { common = 10, hits = 2; }
    SUBCASE("8 common tokens: 2 blocks") { common = 8, hits = 2; }
    SUBCASE("7 common tokens: 1 block") { common = 7, hits = 1; }
    SUBCASE("3 common tokens: none") { common = 3, hits = 0; }
    CAPTURE(common);
    const std::vector<int> prefix = ids(common, 1);
    const std::vector<int> a = concat(prefix, ids(14 - common, 200)), b = concat(prefix, ids(13 - common, 300));
    for (bool caching : {true, false}) {
        CAPTURE(caching);
        // b arrives at step 1, when a's prefill (step 0) is in the pool.
        Scheduler sch({B, 32, 8, caching}, {{a, 5, 0, 1}, {b, 5, 1, 1}});
        const RunResult r = run_all(sch);
        const int want = caching ? hits : 0;
        const kv::SeqWork& w = r.plans[1].work.back();
        REQUIRE(w.prefill);
        CHECK(w.seq == 1);
        CHECK(w.prefix_hit_pos == want * B);
        CHECK(w.first_pos == want * B);
        CHECK(w.n == int(b.size()) - want * B);
        CHECK(sch.sequences()[1].prefix_blocks_hit == want);
        CHECK(sch.prefix_hits() == want);
        CHECK(r.plans[1].blocks.shared == want);  // the hit blocks, still held by a
        for (int i = 0; i < want; ++i) CHECK(w.table[size_t(i)] == r.plans[0].work[0].table[size_t(i)]);
    }
}

TEST_CASE("prefix sharing: a prompt entirely in the pool still computes its last block") {
    const std::vector<int> p = ids(8, 1);  // two full blocks of 4
    Scheduler sch({4, 16, 8, true}, {{p, 2, 0, 1}, {p, 2, 1, 1}});
    const RunResult r = run_all(sch);
    const kv::SeqWork& w = r.plans[1].work.back();
    CHECK(w.prefix_hit_pos == 4);  // the last token's logits are needed: block 1 is recomputed
    CHECK(w.n == 4);
}

TEST_CASE("blocks kept after release are hit by a later request; prefix caching off keeps none") {
    const int B = 4;
    const std::vector<int> prefix = ids(12, 1);
    for (bool caching : {true, false}) {
        CAPTURE(caching);
        SUBCASE("nothing in between: the kept blocks are hit") {
            // a finishes at step 0 (1 new token); b arrives at step 3.
            Scheduler sch({B, 8, 8, caching}, {{concat(prefix, {50}), 1, 0, 1}, {concat(prefix, {60, 61}), 2, 3, 1}});
            const RunResult r = run_all(sch);
            CHECK(r.plans[0].finished == std::vector<int>{0});
            CHECK(r.plans[0].blocks.used == 0);
            CHECK(r.plans[0].blocks.cached == (caching ? 3 : 0));
            CHECK(r.plans[0].blocks.free == (caching ? 5 : 8));
            CHECK(sch.sequences()[1].prefix_blocks_hit == (caching ? 3 : 0));
            CHECK(r.plans[3].work.back().first_pos == (caching ? 12 : 0));
        }
        SUBCASE("an unrelated request in between takes the pool: the oldest kept blocks are evicted") {
            // c (7 blocks, 28 positions) needs the free blocks and 2 of a's 3 kept ones.
            Scheduler sch({B, 8, 8, caching},
                          {{concat(prefix, {50}), 1, 0, 1}, {ids(27, 500), 2, 1, 1}, {concat(prefix, {60}), 1, 5, 1}});
            run_all(sch);
            // a's blocks were released last block first, so its prefix head outlives its tail:
            // block 0 of the prefix is still kept, blocks 1 and 2 were evicted.
            CHECK(sch.sequences()[2].prefix_blocks_hit == (caching ? 1 : 0));
        }
    }
}

TEST_CASE("forks share every block and make N-1 copies on first writes into a partial last block") {
    const int B = 4;
    int p = 0, forks = 0, copies = 0;
    SUBCASE("6-token prompt, 4 forks: the partial block is copied 3 times") { p = 6, forks = 4, copies = 3; }
    SUBCASE("6-token prompt, 2 forks: 1 copy") { p = 6, forks = 2, copies = 1; }
    SUBCASE("8-token prompt, 4 forks: no partial block, no copy") { p = 8, forks = 4, copies = 0; }
    CAPTURE(p);
    CAPTURE(forks);
    Scheduler sch({B, 32, 8, true}, {{ids(p, 1), 6, 0, forks}});
    const RunResult r = run_all(sch);
    const StepPlan& prefill = r.plans[0];
    REQUIRE(prefill.work.size() == 1);
    CHECK(prefill.work[0].samplers.size() == size_t(forks));
    CHECK(prefill.admitted.size() == size_t(forks));
    CHECK(prefill.blocks.used == (p + B - 1) / B);
    CHECK(prefill.blocks.shared == (p + B - 1) / B);  // the partial last one included
    CHECK(r.plans[1].copies.size() == size_t(copies));
    CHECK(r.copies == copies);
    CHECK(sch.pool().cow_copies() == copies);
    for (const kv::Sequence& s : sch.sequences()) {
        CHECK(s.generated() == 6);
        CHECK(std::equal(s.tokens.begin(), s.tokens.begin() + p, ids(p, 1).begin()));
    }
    // The forks sampled different continuations (fake tokens depend on the fork).
    CHECK(sch.sequences()[0].tokens[size_t(p)] != sch.sequences()[1].tokens[size_t(p)]);
}

TEST_CASE("preemption: a pool too small for all requests finishes every request with the same tokens") {
    const int B = 4;
    std::vector<ServeRequest> reqs;
    for (int r = 0; r < 4; ++r) reqs.push_back({ids(10, 10 * r + 1), 20, 0, 1});  // 29 positions: 8 blocks each
    Scheduler big({B, 64, 8, true}, reqs), small({B, 12, 8, true}, reqs);
    run_all(big);
    const RunResult r = run_all(small);
    CHECK(big.preemptions() == 0);
    CHECK(small.preemptions() > 0);
    int preempted = 0, per_seq = 0;
    for (const StepPlan& plan : r.plans) preempted += int(plan.preempted.size());
    for (const kv::Sequence& s : small.sequences()) per_seq += s.preemptions;
    CHECK(preempted == small.preemptions());
    CHECK(per_seq == small.preemptions());
    CHECK(small.peak_used_blocks() <= 12);
    for (size_t i = 0; i < reqs.size(); ++i) {
        CAPTURE(i);
        CHECK(small.sequences()[i].generated() == 20);
        CHECK(small.sequences()[i].tokens == big.sequences()[i].tokens);
    }
    // The most recently admitted running request is the one preempted.
    for (const StepPlan& plan : r.plans)
        for (int id : plan.preempted) CHECK(small.sequences()[size_t(id)].request > 0);
}

TEST_CASE("scheduler: max batch bounds the running sequences, and late arrivals join while others run") {
    std::vector<ServeRequest> reqs;
    for (int r = 0; r < 6; ++r) reqs.push_back({ids(5, 1 + 10 * r), 4, r, 1});
    Scheduler sch({4, 64, 2, true}, reqs);
    const RunResult r = run_all(sch);
    for (const StepPlan& plan : r.plans) CHECK(plan.running.size() <= 2);
    CHECK(r.plans[1].admitted == std::vector<int>{1});  // request 1 joins while 0 decodes
    CHECK(r.plans[1].work.size() == 2);
    CHECK(r.plans[1].tokens == 1 + 5);
}

TEST_CASE("contiguous baseline: reserved = prompt + max new per sequence, used, and how many fit") {
    const std::vector<ServeRequest> reqs = {{ids(10, 1), 5, 0, 1}, {ids(4, 1), 4, 1, 2}, {ids(2, 1), 2, 2, 1}};
    kv::ModelConfig cfg = kv::ModelConfig::tiny();
    const int64_t slot = kv::bytes_per_slot(cfg, kv::KvDtype::f32);
    CHECK(slot == int64_t(2) * cfg.n_layer * cfg.kv_dim() * 4);
    const kv::ContiguousBaseline b = kv::contiguous_baseline(reqs, 31 * slot, slot);
    CHECK(b.reserved_slots == 15 + 2 * 8 + 4);
    CHECK(b.used_slots == 14 + 2 * 7 + 3);
    CHECK(b.reserved_bytes == b.reserved_slots * slot);
    CHECK(b.used_bytes == b.used_slots * slot);
    CHECK(b.max_concurrent == 2);  // 15 + 16 = 31 slots fit, the third's 4 do not
    CHECK(kv::contiguous_baseline(reqs, 30 * slot, slot).max_concurrent == 1);
    CHECK(kv::bytes_per_slot(cfg, kv::KvDtype::int8) == kv::cache_bytes_for(cfg, kv::KvDtype::int8, 1));
}

TEST_CASE("serve: a randomized run keeps every invariant after every step") {
    int preemptions = 0, hits = 0, copies = 0, steps = 0;
    for (uint64_t seed = 1; seed <= 6; ++seed) {
        CAPTURE(seed);
        kv::SplitMix64 rng{seed};
        auto pick = [&](int lo, int hi) { return lo + int(rng.next() % uint64_t(hi - lo + 1)); };
        const int B = std::vector<int>{1, 2, 4, 8, 16}[size_t(pick(0, 4))];
        std::vector<std::vector<int>> prefixes;
        for (int i = 0; i < 4; ++i) prefixes.push_back(ids(pick(0, 3 * B), 1000 * (i + 1)));
        std::vector<ServeRequest> reqs;
        int longest = 0;
        for (int i = 0, n = pick(40, 80); i < n; ++i) {
            ServeRequest q;
            q.prompt = concat(prefixes[size_t(pick(0, 3))], ids(pick(1, 2 * B + 3), 20000 + 100 * i));
            q.new_tokens = pick(1, 40);
            q.arrive = pick(0, 1000);
            q.fork = pick(0, 4) == 0 ? pick(2, 3) : 1;
            longest = std::max(longest, int(q.prompt.size()) + q.new_tokens - 1);
            reqs.push_back(q);
        }
        reqs[0].arrive = 1000;  // the run lasts at least 1000 steps
        const int min_blocks = (longest + B - 1) / B;
        SchedulerConfig cfg{B, pick(min_blocks, 3 * min_blocks), pick(3, 16), pick(0, 4) != 0};
        CAPTURE(B);
        CAPTURE(cfg.pool_blocks);
        CAPTURE(cfg.max_batch);
        Scheduler sch(cfg, reqs);
        run_all(sch);
        for (const kv::Sequence& s : sch.sequences()) {
            CHECK(s.generated() == s.new_tokens);
            CHECK(s.state == kv::SeqState::finished);
        }
        CHECK(sch.step_index() >= 1000);
        preemptions += sch.preemptions();
        hits += sch.prefix_hits();
        copies += sch.pool().cow_copies();
        steps += sch.step_index();
    }
    MESSAGE("randomized: " << steps << " steps, " << preemptions << " preemptions, " << hits << " prefix hits, "
                           << copies << " copies");
    // The seeds exercise what the test is for.
    CHECK(preemptions > 0);
    CHECK(hits > 0);
    CHECK(copies > 0);
}
