// Engine and Session: cached and uncached logits agree at every step, the counters
// match core's formulas (docs/design.md, "Counters"), back()/reset() leave nothing stale.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/session/session.h"
#include "test_helpers.h"

using kvtest::expected_counters;
using kvtest::max_abs_diff;
using kvtest::check_counters;
using kvtest::random_model;

TEST_CASE("cached and uncached logits agree at every step") {
    struct Shape { int V, T, C, L, H, Hkv, p, n_new; };
    // The last shape fills n_ctx exactly: p + n_new - 1 == T.
    const Shape shapes[] = {
        {50, 32, 32, 2, 4, 4, 4, 20},
        {97, 24, 48, 3, 6, 6, 1, 23},
        {64, 16, 16, 1, 2, 2, 7, 10},
        {40, 20, 32, 2, 4, 2, 3, 18},  // grouped-query: 2 kv heads for 4 query heads
    };
    for (const auto& sh : shapes) {
        CAPTURE(sh.V); CAPTURE(sh.T); CAPTURE(sh.C); CAPTURE(sh.L); CAPTURE(sh.H); CAPTURE(sh.Hkv);
        auto m = random_model(sh.V, sh.T, sh.C, sh.L, sh.H, sh.Hkv, 42 + sh.V);
        kv::Session on(*m, kv::make_cpu_engine(*m)), off(*m, kv::make_cpu_engine(*m));
        off.set_cache(false);
        const auto ids = kvtest::seq_ids(sh.p, sh.V);
        on.set_prompt_ids(ids);
        off.set_prompt_ids(ids);
        for (int s = 0; s < sh.n_new; ++s) {
            CAPTURE(s);
            const auto& a = on.step();
            const auto& b = off.step();
            CHECK(max_abs_diff(a.logits, b.logits) <= 1e-4f);
            REQUIRE(a.next_id == b.next_id);
        }
        if (sh.p + sh.n_new - 1 == sh.T) {
            CHECK(on.n_fed() == sh.T);
            std::string why;
            CHECK_FALSE(on.can_step(&why));
            CHECK(why.find("context is full") != std::string::npos);
            CHECK_THROWS_AS(on.step(), kv::Error);
        }
    }
}

TEST_CASE("incremental logits equal a full forward at every position") {
    auto m = random_model(30, 16, 32, 2, 4, 4, 3);
    auto full = kv::make_cpu_engine(*m);
    auto inc = kv::make_cpu_engine(*m);
    auto full_cache = full->make_cache({}), inc_cache = inc->make_cache({});
    const auto ids = kvtest::seq_ids(12, 30, 1);
    kv::ForwardRequest req;
    req.ids = ids;
    req.all_logits = true;
    kv::StepTrace tr;
    std::vector<float> all;
    full->forward(req, *full_cache, tr, &all);
    REQUIRE(all.size() == ids.size() * 30);
    for (int i = 0; i < int(ids.size()); ++i) {
        CAPTURE(i);
        kv::ForwardRequest r1;
        r1.ids = std::span<const int>(ids.data() + i, 1);
        r1.start_pos = i;
        kv::StepTrace t1;
        inc->forward(r1, *inc_cache, t1);
        std::vector<float> row(all.begin() + i * 30, all.begin() + (i + 1) * 30);
        CHECK(max_abs_diff(t1.logits, row) <= 1e-5f);
    }
}

TEST_CASE("counters equal the formulas per step and in total") {
    auto m = random_model(48, 32, 32, 2, 4, 4, 11);
    const auto& c = m->config;
    for (int p : {1, 4, 7}) {
        for (int N : {1, 5, 20}) {
            for (bool cache : {true, false}) {
                CAPTURE(p); CAPTURE(N); CAPTURE(cache);
                kv::Session s(*m, kv::make_cpu_engine(*m));
                s.set_cache(cache);
                s.set_prompt_ids(kvtest::seq_ids(p, 48));
                for (int i = 0; i < N; ++i) {
                    CAPTURE(i);
                    check_counters(s.step().counters, expected_counters(c, p, i, cache));
                }
                const int64_t L = c.n_layer, Hkv = c.n_kv_head;
                const kv::Counters tot = s.totals();
                if (cache)
                    CHECK(tot.kv_rows_computed == L * Hkv * (p + N - 1));
                else
                    CHECK(tot.kv_rows_computed == L * Hkv * (int64_t(N) * p + int64_t(N) * (N - 1) / 2));
                CHECK(tot.cache_rows == p + N - 1);
                // Badges: with the cache every position is computed once; without, the
                // first prompt token is computed at every step.
                const auto counts = s.compute_counts();
                CHECK(counts[0] == (cache ? 1 : N));
            }
        }
    }
}

TEST_CASE("counters follow the mode of each step when the cache is toggled mid-run") {
    auto m = random_model(48, 40, 32, 2, 4, 2, 5);
    kv::Session s(*m, kv::make_cpu_engine(*m));
    kv::Session ref(*m, kv::make_cpu_engine(*m));
    const int p = 4;
    s.set_prompt_ids(kvtest::seq_ids(p, 48));
    ref.set_prompt_ids(kvtest::seq_ids(p, 48));
    const bool modes[] = {true, true, false, false, true, false, true, true, false, true};
    for (int i = 0; i < 10; ++i) {
        CAPTURE(i);
        s.set_cache(modes[i]);
        const auto& t = s.step();
        CHECK(t.cache_on == modes[i]);
        check_counters(t.counters, expected_counters(m->config, p, i, modes[i]));
        // The chosen tokens and logits do not depend on the mode.
        const auto& r = ref.step();
        CHECK(max_abs_diff(t.logits, r.logits) <= 1e-4f);
        CHECK(t.next_id == r.next_id);
    }
}

TEST_CASE("back() then step() reproduces the same logits and counters") {
    auto m = random_model(40, 32, 32, 2, 4, 4, 8);
    for (bool cache : {true, false}) {
        CAPTURE(cache);
        kv::Session s(*m, kv::make_cpu_engine(*m));
        s.set_cache(cache);
        s.set_sampling({0.9f, 8, 1234, 10});  // sampling, so the per-step random stream matters
        s.set_prompt_ids(kvtest::seq_ids(5, 40));
        std::vector<kv::StepTrace> first;
        for (int i = 0; i < 8; ++i) first.push_back(s.step());
        for (int k = 0; k < 3; ++k) REQUIRE(s.back());
        CHECK(s.n_steps() == 5);
        CHECK(s.cache().n_used() == s.n_fed());
        for (int i = 5; i < 8; ++i) {
            CAPTURE(i);
            const auto& t = s.step();
            CHECK(max_abs_diff(t.logits, first[i].logits) <= 1e-6f);
            CHECK(t.next_id == first[i].next_id);
            check_counters(t.counters, first[i].counters);
        }
        // Back past the prefill, then forward again.
        while (s.back()) {}
        CHECK(s.n_steps() == 0);
        CHECK(s.cache().n_used() == 0);
        CHECK_FALSE(s.back());
        const auto& t0 = s.step();
        CHECK(max_abs_diff(t0.logits, first[0].logits) <= 1e-6f);
    }
}

TEST_CASE("reset() and a new prompt leave no stale cache rows") {
    auto m = random_model(40, 32, 32, 2, 4, 4, 9);
    kv::Session s(*m, kv::make_cpu_engine(*m));
    s.set_prompt_ids(kvtest::seq_ids(9, 40, 1));
    for (int i = 0; i < 10; ++i) s.step();
    // A new, shorter prompt: its logits must equal those of a fresh session.
    const auto ids = kvtest::seq_ids(3, 40, 2);
    s.set_prompt_ids(ids);
    CHECK(s.cache().n_used() == 0);
    kv::Session fresh(*m, kv::make_cpu_engine(*m));
    fresh.set_prompt_ids(ids);
    for (int i = 0; i < 6; ++i) {
        CAPTURE(i);
        const auto& a = s.step();
        const auto& b = fresh.step();
        CHECK(max_abs_diff(a.logits, b.logits) == 0.0f);
        CHECK(a.counters == b.counters);
    }
    s.reset();
    CHECK(s.n_steps() == 0);
    CHECK(s.tokens() == ids);
    CHECK(s.cache().n_used() == 0);
}

TEST_CASE("the trace records q, k, v and attention where the work happens") {
    auto m = random_model(40, 32, 32, 2, 4, 4, 12);
    kv::Session s(*m, kv::make_cpu_engine(*m));
    const int p = 4, hd = m->config.head_dim();
    s.set_prompt_ids(kvtest::seq_ids(p, 40));
    SUBCASE("prefill: a full causal matrix per head") {
        const auto& t = s.step();
        CHECK(t.phase == kv::Phase::prefill);
        REQUIRE(t.heads.size() == size_t(m->config.n_layer * m->config.n_head));
        for (const auto& h : t.heads) {
            REQUIRE(h.q.rows() == p);
            REQUIRE(h.q.cols() == hd);
            REQUIRE(h.attn.rows() == p);
            REQUIRE(h.attn.cols() == p);
            for (int i = 0; i < p; ++i) {
                CAPTURE(i);
                CHECK(h.attn.row(i).sum() == doctest::Approx(1.0f).epsilon(1e-5));
                for (int j = i + 1; j < p; ++j) CHECK(h.attn(i, j) == 0.0f);
            }
        }
    }
    SUBCASE("decode with cache: one query over every cached key; k/v equal the cache") {
        s.step();
        const auto& t = s.step();
        CHECK(t.cache_rows_read == p);
        for (const auto& h : t.heads) {
            REQUIRE(h.q.rows() == 1);
            REQUIRE(h.attn.cols() == p + 1);
            CHECK(h.attn.row(0).sum() == doctest::Approx(1.0f).epsilon(1e-5));
            kv::RowMat K, V;
            s.cache().read_positions(h.layer, h.kv_head, K, V);
            REQUIRE(K.rows() == p + 1);
            CHECK((K.row(p) - h.k.row(0)).cwiseAbs().maxCoeff() == 0.0f);
            CHECK((V.row(p) - h.v.row(0)).cwiseAbs().maxCoeff() == 0.0f);
        }
    }
    SUBCASE("decode without cache: recomputed rows equal the cached ones") {
        s.step();
        s.step();
        s.set_cache(false);
        const auto& t = s.step();
        for (const auto& h : t.heads) {
            REQUIRE(h.q.rows() == p + 2);
            CHECK(h.recompute_max_diff >= 0.0f);
            CHECK(h.recompute_max_diff <= 1e-5f);
        }
    }
    SUBCASE("large models record only the selected head") {
        kv::TraceOptions o;
        o.all_heads = false;
        o.layer = 1;
        o.head = 2;
        s.set_trace_options(o);
        const auto& t = s.step();
        REQUIRE(t.heads.size() == 1);
        CHECK(t.heads[0].layer == 1);
        CHECK(t.heads[0].head == 2);
        CHECK(t.find_head(1, 2) != nullptr);
        CHECK(t.find_head(0, 0) == nullptr);
    }
}

TEST_CASE("bad prompts give clear errors, not crashes") {
    auto m = random_model(40, 8, 16, 1, 2, 2, 1);
    kv::Session s(*m, kv::make_cpu_engine(*m));
    SUBCASE("empty") { CHECK_THROWS_WITH_AS(s.set_prompt_ids({}), doctest::Contains("empty"), kv::Error); }
    SUBCASE("longer than n_ctx") {
        CHECK_THROWS_WITH_AS(s.set_prompt_ids(kvtest::seq_ids(9, 40)), doctest::Contains("context holds 8"),
                             kv::Error);
    }
    SUBCASE("id out of range") {
        CHECK_THROWS_WITH_AS(s.set_prompt_ids({1, 40}), doctest::Contains("outside the vocabulary"), kv::Error);
    }
    SUBCASE("text on a model without tokenizer") {
        CHECK_THROWS_WITH_AS(s.set_prompt_text("hello"), doctest::Contains("no tokenizer"), kv::Error);
    }
    SUBCASE("no prompt yet") {
        std::string why;
        CHECK_FALSE(s.can_step(&why));
        CHECK_THROWS_AS(s.step(), kv::Error);
    }
    SUBCASE("NaN logits are reported") {
        m->weights.ln_f_w(0) = std::numeric_limits<float>::quiet_NaN();
        kv::Session bad(*m, kv::make_cpu_engine(*m));
        bad.set_prompt_ids({1, 2});
        CHECK_THROWS_WITH_AS(bad.step(), doctest::Contains("NaN"), kv::Error);
    }
}

TEST_CASE("sampling: the token of a step depends on (seed, step) alone, and follows top-k softmax") {
    std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
    kv::SamplingOptions greedy;
    CHECK(kv::sample_token(logits, greedy, 0) == 1);
    SUBCASE("frequencies follow softmax over the top k") {
        // top-k 2 at temperature 1 keeps ids 1 and 2: p(1) = 1 / (1 + e^-0.1) = 0.52498.
        kv::SamplingOptions o{1.0f, 2, 77, 5};
        const int n = 4000;
        int ones = 0;
        for (int step = 0; step < n; ++step) {
            CAPTURE(step);
            const int a = kv::sample_token(logits, o, step);
            REQUIRE((a == 1 || a == 2));
            ones += a == 1;
        }
        // 4 standard deviations of the binomial: sqrt(0.25 / 4000) = 0.0079.
        double freq = double(ones) / n;
        CAPTURE(freq);
        CHECK(std::abs(freq - 1.0 / (1.0 + std::exp(-0.1))) < 0.032);
        // Temperature 0.25 sharpens it: p(1) = 1 / (1 + e^-0.4) = 0.59869.
        o.temperature = 0.25f;
        ones = 0;
        for (int step = 0; step < n; ++step) ones += kv::sample_token(logits, o, step) == 1;
        freq = double(ones) / n;
        CAPTURE(freq);
        CHECK(std::abs(freq - 1.0 / (1.0 + std::exp(-0.4))) < 0.031);
    }
    SUBCASE("a session going back and stepping again picks the same tokens; another seed differs") {
        auto m = random_model(40, 16, 16, 1, 2, 2, 5);
        // Random weights give nearly flat logits: every seed draws its own sequence.
        auto tokens = [&](uint64_t seed, bool go_back) {
            kv::Session s(*m, kv::make_cpu_engine(*m));
            s.set_sampling({1.0f, 0, seed, 5});
            s.set_prompt_ids({1, 2, 3});
            for (int i = 0; i < 8; ++i) s.step();
            if (go_back) {
                for (int i = 0; i < 5; ++i) REQUIRE(s.back());
                // Stepping on draws again from (seed, step), not from where a stream stopped.
                for (int i = 0; i < 5; ++i) s.step();
            }
            return s.tokens();
        };
        const std::vector<int> straight = tokens(77, false);
        CHECK(tokens(77, true) == straight);
        CHECK(tokens(78, false) != straight);
        // Not a constant: the 8 sampled tokens are not all the greedy token.
        std::set<int> distinct(straight.begin() + 3, straight.end());
        CHECK(distinct.size() > 1);
    }
    const auto top = kv::top_tokens(logits, 3);
    REQUIRE(top.size() == 3);
    CHECK(top[0].id == 1);
    CHECK(top[1].id == 2);
    CHECK(top[2].id == 4);
    float z = 0;
    for (float x : logits) z += std::exp(x);
    CHECK(top[0].prob == doctest::Approx(std::exp(2.0f) / z));
}

// Steps of several tokens after the window has slid (a prefill in chunks, a prompt
// behind stale rows) and windows wider than an attention tile of 32 rows: the tile's
// shared key products must leave out what a later row's window has passed, and count
// no key twice. Each chunking must equal one token a step, whose tiles have one row.
TEST_CASE("a windowed step of many tokens equals one token a step, for any chunking and window") {
    auto m = kvtest::random_model(96, 80, 32, 2, 4, 2, 11);
    auto e = kv::make_cpu_engine(*m);
    const std::vector<int> ids = kvtest::seq_ids(72, 96, 1);
    auto last_logits = [&](const kv::CachePolicy& pol, const std::vector<int>& cuts) {
        auto c = e->make_cache(pol);
        kv::StepTrace tr;
        int p = 0;
        for (int cut : cuts) {
            kv::ForwardRequest fr;
            fr.ids = std::span<const int>(ids).subspan(size_t(p), size_t(cut - p));
            fr.start_pos = p;
            fr.trace_opts.record = false;
            e->forward(fr, *c, tr);
            p = cut;
        }
        return tr.logits;
    };
    std::vector<int> one_by_one(72);
    for (int i = 0; i < 72; ++i) one_by_one[size_t(i)] = i + 1;
    for (const kv::CachePolicy& pol : {kv::CachePolicy{6, 2}, kv::CachePolicy{6, 0}, kv::CachePolicy{40, 2},
                                       kv::CachePolicy{40, 0}, kv::CachePolicy{33, 1}}) {
        const std::vector<float> want = last_logits(pol, one_by_one);
        for (const std::vector<int>& cuts : std::vector<std::vector<int>>{{72}, {8, 72}, {9, 12, 72}, {40, 72}, {50, 70, 72}}) {
            CAPTURE(kv::policy_text(pol));
            CAPTURE(cuts[0]);
            CHECK(kvtest::max_abs_diff(last_logits(pol, cuts), want) < 1e-5f);
        }
    }
}

// RoPE models: the trace keeps each key before and after its rotation; the cache holds
// the rotated one. The rotation is written here from transformers' apply_rotary_pos_emb
// (pairs (i, i + hd/2) turned by pos * inv_freq[i]), in double.
TEST_CASE("Llama family: the trace keeps k before and after RoPE, and the cache holds the rotated k") {
    auto m = kvtest::random_llama(kv::ModelConfig::llama_tiny(), 13);
    const kv::ModelConfig& c = m->config;
    const int p = 5, hd = c.head_dim(), half = hd / 2;
    const std::vector<float> inv = kv::rope_inv_freq(hd, c.rope);
    kv::Session s(*m, kv::make_cpu_engine(*m));
    s.set_prompt_ids(kvtest::seq_ids(p, c.vocab_size));
    s.step();
    const auto& t = s.step();  // decode: one row at position p
    REQUIRE(t.heads.size() == size_t(c.n_layer * c.n_head));
    for (const auto& h : t.heads) {
        CAPTURE(h.layer);
        CAPTURE(h.head);
        REQUIRE(h.k_before_rope.rows() == 1);
        REQUIRE(h.k_before_rope.cols() == hd);
        CHECK(h.first_pos == p);
        double worst = 0;
        for (int i = 0; i < half; ++i) {
            const double a = double(float(p) * inv[size_t(i)]);
            const double x1 = h.k_before_rope(0, i), x2 = h.k_before_rope(0, i + half);
            worst = std::max(worst, std::abs(h.k(0, i) - (x1 * std::cos(a) - x2 * std::sin(a))));
            worst = std::max(worst, std::abs(h.k(0, i + half) - (x2 * std::cos(a) + x1 * std::sin(a))));
        }
        CHECK(worst <= 1e-5);
        CHECK((h.k - h.k_before_rope).cwiseAbs().maxCoeff() > 1e-3f);  // the rotation is not the identity
        kv::RowMat K, V;
        s.cache().read_positions(h.layer, h.kv_head, K, V);
        REQUIRE(K.rows() == p + 1);
        CHECK((K.row(p) - h.k.row(0)).cwiseAbs().maxCoeff() == 0.0f);
    }
    // GPT-2 records no pre-rotation keys.
    auto g = random_model(40, 32, 32, 2, 4, 4, 12);
    kv::Session sg(*g, kv::make_cpu_engine(*g));
    sg.set_prompt_ids(kvtest::seq_ids(3, 40));
    CHECK(sg.step().heads.at(0).k_before_rope.size() == 0);
}

// MLA: the cache holds one latent row per position and layer; the trace's k and v
// are a head's expansion of it, recomputed here from kv_b_proj's columns directly.
TEST_CASE("MLA: the cache holds the latent row, and the trace's k and v expand it for each head") {
    for (const kv::ModelConfig& cfg : kvtest::mla_shapes()) {
        CAPTURE(cfg.mla.q_lora_rank);
        auto m = kvtest::random_llama(cfg, 21);
        const kv::ModelConfig& c = m->config;
        const int p = 5, dc = c.mla.kv_lora_rank, dr = c.mla.qk_rope_head_dim, dn = c.mla.qk_nope_head_dim;
        const int dv = c.mla.v_head_dim;
        kv::Session s(*m, kv::make_cpu_engine(*m));
        s.set_prompt_ids(kvtest::seq_ids(p, c.vocab_size));
        s.step();
        const auto& t = s.step();  // decode: one row at position p
        REQUIRE(t.heads.size() == size_t(c.n_layer * c.n_head));
        CHECK(t.counters.kv_rows_computed == c.n_layer);  // one latent row a layer
        CHECK(t.counters.cache_bytes == int64_t(c.n_layer) * (dc + dr) * (p + 1) * 4);
        for (const auto& h : t.heads) {
            CAPTURE(h.layer);
            CAPTURE(h.head);
            CHECK(h.kv_head == 0);
            kv::RowMat L, none;
            REQUIRE(s.cache().read_positions(h.layer, 0, L, none));
            REQUIRE(L.cols() == dc + dr);
            CHECK(none.cols() == 0);
            REQUIRE(h.latent.rows() == 1);
            CHECK((L.row(p) - h.latent.row(0)).cwiseAbs().maxCoeff() == 0.0f);
            const kv::RowMat& B = m->weights.layers[size_t(h.layer)].kv_b_w;
            const kv::RowVec cl = L.row(p).head(dc);
            const kv::RowVec k_nope = cl * B.middleCols(h.head * (dn + dv), dn);
            const kv::RowVec v = cl * B.middleCols(h.head * (dn + dv) + dn, dv);
            CHECK((h.k.row(0).head(dn) - k_nope).cwiseAbs().maxCoeff() <= 1e-5f);
            CHECK((h.k.row(0).tail(dr) - L.row(p).tail(dr)).cwiseAbs().maxCoeff() == 0.0f);
            CHECK((h.v.row(0) - v).cwiseAbs().maxCoeff() <= 1e-5f);
            CHECK(h.v.cols() == dv);
            // k_R was turned: its norm kept, its values moved.
            const kv::RowVec k0 = h.k_before_rope.row(0).tail(dr), k1 = h.k.row(0).tail(dr);
            CHECK(std::abs(k0.norm() - k1.norm()) <= 1e-4f * k0.norm());
            CHECK((k0 - k1).cwiseAbs().maxCoeff() > 1e-3f);
        }
    }
}
