// The stale-cache bug, shown on purpose (lesson chapter 8): a second prompt run on top
// of the first prompt's cache rows gives a different, wrong continuation; the clean
// run (reset between prompts) equals a fresh session's. The contaminated run is also
// checked against what the bug means, computed independently: a fresh session whose
// prompt is the stale tokens followed by the new prompt.
#include <doctest/doctest.h>

#include "test_helpers.h"

namespace {

const std::string kTiny = KVSCOPE_SOURCE_DIR "/assets/models/tiny-gpt";

struct Run {
    std::vector<int> next;              // tokens chosen at steps 0..n-1
    std::vector<std::vector<float>> logits;
};

Run steps(kv::Session& s, int n) {
    Run r;
    for (int i = 0; i < n; ++i) {
        const kv::StepTrace& t = s.step();
        r.next.push_back(t.next_id);
        r.logits.push_back(t.logits);
    }
    return r;
}

std::unique_ptr<kv::Session> session(const kv::Model& m) {
    return std::make_unique<kv::Session>(m, kv::make_cpu_engine(m));
}

}  // namespace

TEST_CASE("stale cache: the contaminated continuation differs, the clean one equals a fresh session's") {
    std::unique_ptr<kv::Model> m = kv::load_model(kTiny);
    REQUIRE(m->tokenizer);
    const kv::ModelConfig& c = m->config;
    const std::vector<int> a = m->tokenizer->encode("Python is a programming").ids;
    const std::vector<int> b = m->tokenizer->encode("The cat sat on the").ids;
    const int n_a = 6, n_b = 5;

    auto dirty = session(*m);
    dirty->set_prompt_ids(a);
    steps(*dirty, n_a);
    const int stale = dirty->n_fed();
    REQUIRE(stale == int(a.size()) + n_a - 1);
    dirty->set_prompt_keeping_stale_cache(b);
    CHECK(dirty->stale_rows() == stale);
    CHECK(dirty->cache().n_used() == stale);  // the rows stayed
    const Run bad = steps(*dirty, n_b);

    // Step 0 of the contaminated run: b's tokens at positions stale.., reading the stale rows.
    const kv::StepTrace& t0 = dirty->history()[0];
    CHECK(t0.start_pos == stale);
    CHECK(t0.counters.kv_rows_reused == int64_t(c.n_layer) * c.n_kv_head * stale);
    CHECK(t0.counters.kv_rows_computed == int64_t(c.n_layer) * c.n_kv_head * int(b.size()));
    std::vector<int> once(b.size() + n_b, 1);
    once.back() = 0;  // chosen at the last step, not fed yet
    CHECK(dirty->compute_counts() == once);

    auto clean = session(*m);  // the same history, then the cure: a reset
    clean->set_prompt_ids(a);
    steps(*clean, n_a);
    clean->set_prompt_ids(b);
    CHECK(clean->cache().n_used() == 0);
    const Run good = steps(*clean, n_b);

    auto fresh = session(*m);
    fresh->set_prompt_ids(b);
    const Run ref = steps(*fresh, n_b);

    CHECK(good.next == ref.next);
    for (int i = 0; i < n_b; ++i) {
        CAPTURE(i);
        CHECK(kvtest::max_abs_diff(good.logits[i], ref.logits[i]) == 0.f);
    }
    CHECK(bad.next != good.next);
    CHECK(kvtest::max_abs_diff(bad.logits[0], good.logits[0]) > 1e-2f);

    // What the bug computes: the stale tokens and the new prompt as one sequence.
    std::vector<int> joined = dirty->stale_ids();
    joined.insert(joined.end(), b.begin(), b.end());
    auto whole = session(*m);
    whole->set_prompt_ids(joined);
    const Run same = steps(*whole, n_b);
    CHECK(same.next == bad.next);
    for (int i = 0; i < n_b; ++i) {
        CAPTURE(i);
        CHECK(kvtest::max_abs_diff(same.logits[i], bad.logits[i]) < 1e-4f);
    }
}

TEST_CASE("stale cache: back, reset, the cache switch and the context limit") {
    std::unique_ptr<kv::Model> m = kv::load_model("random:tiny");
    auto s = session(*m);
    s->set_prompt_ids({5, 9, 3, 7});
    steps(*s, 3);
    s->set_prompt_keeping_stale_cache({1, 2});
    REQUIRE(s->stale_rows() == 6);
    steps(*s, 2);
    CHECK(s->n_fed() == 6 + 2 + 1);
    CHECK(s->back());
    CHECK(s->back());
    CHECK(s->cache().n_used() == 6);  // back to the prompt: the stale rows remain
    s->set_cache(false);
    CHECK_THROWS_WITH_AS(s->step(), doctest::Contains("cache on"), kv::Error);
    s->set_cache(true);
    s->reset();  // the cure
    CHECK(s->stale_rows() == 0);
    CHECK(s->cache().n_used() == 0);

    s->set_cache(false);
    CHECK_THROWS_WITH_AS(s->set_prompt_keeping_stale_cache({1}), doctest::Contains("cache on"), kv::Error);
    s->set_cache(true);
    const int n_ctx = m->config.n_ctx;
    s->set_prompt_ids(kvtest::seq_ids(n_ctx - 2, m->config.vocab_size));
    steps(*s, 2);
    CHECK_THROWS_WITH_AS(s->set_prompt_keeping_stale_cache({1, 2}), doctest::Contains("stale cache rows"), kv::Error);
}
