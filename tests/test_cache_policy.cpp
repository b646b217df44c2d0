// Cache policies through the engine and the session: cached == uncached under every
// policy, counters == core's formulas, a window as long as the sequence == full, a
// window against a separately written masked forward, back() across an eviction ==
// a fresh run, and one engine serving several caches.
#include <doctest/doctest.h>

#include <cmath>

#include "core/engine/engine.h"
#include "core/engine/formulas.h"
#include "core/session/session.h"
#include "test_helpers.h"

using kv::CachePolicy;
using kv::KvDtype;
using kvtest::max_abs_diff;

namespace {

struct Shape {
    int V, T, C, L, H, Hkv;
    uint64_t seed;
};
// Three random configurations: multi-head, grouped-query, multi-query.
const Shape kShapes[] = {{40, 32, 32, 2, 4, 4, 21}, {50, 40, 48, 3, 6, 2, 22}, {30, 32, 32, 2, 4, 1, 23}};

const CachePolicy kPolicies[] = {
    {0, 0, KvDtype::f32}, {5, 0, KvDtype::f32}, {5, 2, KvDtype::f32}, {0, 0, KvDtype::f16},
    {0, 0, KvDtype::int8}, {4, 1, KvDtype::int8}, {6, 3, KvDtype::f16},
};

// Cached vs uncached logits under one policy. f32: both paths compute the same K/V
// to float error (~1e-6), so 1e-4. f16/int8 round those K/V: equal inputs round
// equally, but a value within float error of a rounding boundary may round either
// way, moving that one stored value by one step (f16: 2^-11 |x|, int8: max|x|/127 of
// its row). Through softmax weights <= 1 and projections of weights ~0.02 such a
// flip moves a logit by about step * |V| * 0.02 * sqrt(C): measured on random:tiny
// (5 seeds x 56 steps, full and window 5) 1.9e-5 with one int8 flip, 1e-6 without.
// The bound, 1e-2, leaves room for several flips in one step and larger rows.
float bound(const CachePolicy& p) { return p.dtype == KvDtype::f32 ? 1e-4f : 1e-2f; }

// A plain masked GPT-2 forward in double precision, written apart from the engine
// (no cache, no tiles, no Eigen products): logits of the last position of `ids`.
// Keys are rounded as the policy stores them, so it checks mask and storage.
std::vector<double> masked_forward(const kv::Model& m, const std::vector<int>& ids, const CachePolicy& pol) {
    const kv::ModelConfig& c = m.config;
    const kv::Weights& w = m.weights;
    const int n = int(ids.size()), C = c.n_embd, hd = c.head_dim(), kvd = c.kv_dim();
    using Rows = std::vector<std::vector<double>>;
    Rows x(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(C)));
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < C; ++j) x[i][j] = double(w.wte(ids[i], j)) + double(w.wpe(i, j));
    auto layernorm = [&](const std::vector<double>& v, const kv::RowVec& g, const kv::RowVec& b) {
        double mean = 0, var = 0;
        for (double a : v) mean += a;
        mean /= C;
        for (double a : v) var += (a - mean) * (a - mean);
        var /= C;
        std::vector<double> o(static_cast<size_t>(C));
        for (int j = 0; j < C; ++j) o[j] = (v[j] - mean) / std::sqrt(var + c.layer_norm_epsilon) * g(j) + b(j);
        return o;
    };
    auto matvec = [](const std::vector<double>& v, const kv::RowMat& W, const kv::RowVec& b) {
        std::vector<double> o(static_cast<size_t>(W.cols()));
        for (int j = 0; j < W.cols(); ++j) {
            double s = b(j);
            for (int i = 0; i < W.rows(); ++i) s += v[i] * double(W(i, j));
            o[j] = s;
        }
        return o;
    };
    auto store = [&](const double* row) {  // one kv head's row as the cache keeps it
        std::vector<float> f(row, row + hd);
        if (pol.dtype == KvDtype::f16)
            for (float& a : f) a = kv::round_f16(a);
        if (pol.dtype == KvDtype::int8) {
            const float s = kv::int8_scale(f.data(), hd);
            for (float& a : f) a = float(kv::quantize_int8(a, s)) * s;
        }
        return std::vector<double>(f.begin(), f.end());
    };
    for (int l = 0; l < c.n_layer; ++l) {
        const kv::LayerWeights& lw = w.layers[size_t(l)];
        Rows qkv(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) qkv[i] = matvec(layernorm(x[i], lw.ln_1_w, lw.ln_1_b), lw.attn_w, lw.attn_b);
        Rows att(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(C), 0.0));
        for (int h = 0; h < c.n_head; ++h) {
            const int g = c.kv_head_of(h);
            for (int i = 0; i < n; ++i) {
                std::vector<double> sc;
                std::vector<int> keys;
                for (int j = 0; j <= i; ++j) {
                    if (!pol.reads(i, j)) continue;
                    const auto k = store(qkv[j].data() + C + g * hd);
                    double s = 0;
                    for (int d = 0; d < hd; ++d) s += qkv[i][h * hd + d] * k[d];
                    sc.push_back(s / std::sqrt(double(hd)));
                    keys.push_back(j);
                }
                double mx = -1e300, z = 0;
                for (double s : sc) mx = std::max(mx, s);
                for (double& s : sc) z += (s = std::exp(s - mx));
                for (size_t t = 0; t < keys.size(); ++t) {
                    const auto v = store(qkv[keys[t]].data() + C + kvd + g * hd);
                    for (int d = 0; d < hd; ++d) att[i][h * hd + d] += sc[t] / z * v[d];
                }
            }
        }
        for (int i = 0; i < n; ++i) {
            const auto o = matvec(att[i], lw.attn_proj_w, lw.attn_proj_b);
            for (int j = 0; j < C; ++j) x[i][j] += o[j];
            auto f = matvec(layernorm(x[i], lw.ln_2_w, lw.ln_2_b), lw.fc_w, lw.fc_b);
            for (double& a : f) a = 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
            const auto o2 = matvec(f, lw.mlp_proj_w, lw.mlp_proj_b);
            for (int j = 0; j < C; ++j) x[i][j] += o2[j];
        }
    }
    const auto hl = layernorm(x[size_t(n - 1)], w.ln_f_w, w.ln_f_b);
    const kv::RowMat& head = w.head(c);
    std::vector<double> logits(static_cast<size_t>(c.vocab_size));
    for (int v = 0; v < c.vocab_size; ++v) {
        double s = 0;
        for (int j = 0; j < C; ++j) s += hl[j] * double(head(v, j));
        logits[v] = s;
    }
    return logits;
}

}  // namespace

namespace {

// Cached == uncached at every step under every policy, counters == the formulas.
// An MLA model runs every policy twice: its latent rows read expanded and absorbed.
void check_every_policy(const kv::Model& m) {
    const int V = m.config.vocab_size;
    std::vector<CachePolicy> pols(std::begin(kPolicies), std::end(kPolicies));
    if (m.config.is_mla())
        for (CachePolicy p : kPolicies) {
            p.mla = kv::MlaRead::absorbed;
            pols.push_back(p);
        }
    for (const CachePolicy& pol : pols) {
        CAPTURE(m.config.n_kv_head);
        CAPTURE(kv::policy_text(pol));
        auto engine = std::shared_ptr<kv::Engine>(kv::make_cpu_engine(m));
        kv::Session on(m, engine, pol), off(m, engine, pol);
        off.set_cache(false);
        const int p = 6;
        on.set_prompt_ids(kvtest::seq_ids(p, V, 1));
        off.set_prompt_ids(kvtest::seq_ids(p, V, 1));
        for (int s = 0; s < 14; ++s) {
            CAPTURE(s);
            const kv::StepTrace& a = on.step();
            const kv::StepTrace& b = off.step();
            CHECK(max_abs_diff(a.logits, b.logits) <= bound(pol));
            REQUIRE(a.next_id == b.next_id);
            kvtest::check_counters(a.counters, kv::formula_step(m.config, pol, p, s, true));
            kvtest::check_counters(b.counters, kv::formula_step(m.config, pol, p, s, false));
        }
        kvtest::check_counters(on.totals(), kv::formula_total(m.config, pol, p, 14, true));
        if (pol.windowed()) CHECK(on.totals().kv_rows_evicted > 0);
        CHECK(on.cache().n_used() == kv::rows_kept(pol, p + 13));
    }
}

}  // namespace

TEST_CASE("every policy: cached == uncached at every step, and the counters equal the formulas") {
    for (const Shape& sh : kShapes) check_every_policy(*kvtest::random_model(sh.V, sh.T, sh.C, sh.L, sh.H, sh.Hkv, sh.seed));
}

// The Llama family: RoPE keys are stored rotated at their absolute positions, so a
// window's surviving rows (and the sinks) are read back unchanged after evictions.
TEST_CASE("Llama family, every policy: cached == uncached at every step, and the counters equal the formulas") {
    uint64_t seed = 40;
    for (const kv::ModelConfig& cfg : kvtest::llama_shapes()) {
        CAPTURE(cfg.qkv_bias);
        check_every_policy(*kvtest::random_llama(cfg, seed++));
    }
}

// MLA: the cache holds latent rows [c_KV | k_R]; a window evicts them, f16 and int8
// round them (int8: one scale per latent row), and both reads agree with the cache off.
TEST_CASE("MLA, every policy, expanded and absorbed: cached == uncached at every step, and the counters equal the formulas") {
    uint64_t seed = 80;
    for (const kv::ModelConfig& cfg : kvtest::mla_shapes()) {
        CAPTURE(cfg.mla.q_lora_rank);
        check_every_policy(*kvtest::random_llama(cfg, seed++));
    }
}

TEST_CASE("a window at least as long as the sequence is exactly the full cache") {
    auto m = kvtest::random_model(40, 32, 32, 2, 4, 2, 31);
    for (const CachePolicy& wide : {CachePolicy{24, 0, KvDtype::f32}, CachePolicy{32, 3, KvDtype::f32}}) {
        CAPTURE(kv::policy_text(wide));
        for (bool cache : {true, false}) {
            CAPTURE(cache);
            kv::Session full(*m, kv::make_cpu_engine(*m)), win(*m, kv::make_cpu_engine(*m), wide);
            full.set_cache(cache);
            win.set_cache(cache);
            full.set_prompt_ids(kvtest::seq_ids(5, 40));
            win.set_prompt_ids(kvtest::seq_ids(5, 40));
            for (int s = 0; s < 19; ++s) {  // 5 + 18 = 23 positions <= 24
                CAPTURE(s);
                const auto& a = full.step();
                const auto& b = win.step();
                CHECK(a.logits == b.logits);
                CHECK(a.counters == b.counters);
            }
        }
    }
}

TEST_CASE("a window against a separately written masked forward, at every decode step") {
    for (const Shape& sh : {kShapes[1], kShapes[2]}) {
        auto m = kvtest::random_model(sh.V, sh.T, sh.C, sh.L, sh.H, sh.Hkv, sh.seed);
        for (const CachePolicy& pol : {CachePolicy{4, 0, KvDtype::f32}, CachePolicy{5, 2, KvDtype::f32},
                                       CachePolicy{4, 1, KvDtype::int8}}) {
            CAPTURE(sh.Hkv);
            CAPTURE(kv::policy_text(pol));
            kv::Session s(*m, kv::make_cpu_engine(*m), pol);
            s.set_prompt_ids(kvtest::seq_ids(3, sh.V, 2));
            for (int step = 0; step < 12; ++step) {
                CAPTURE(step);
                const kv::StepTrace& t = s.step();
                const std::vector<int> fed(s.tokens().begin(), s.tokens().end() - 1);
                const std::vector<double> ref = masked_forward(*m, fed, pol);
                double worst = 0;
                for (size_t v = 0; v < ref.size(); ++v) worst = std::max(worst, std::abs(ref[v] - double(t.logits[v])));
                // f32: 1e-4. int8: the reference rounds K/V from double-precision rows;
                // a value near a rounding boundary may round the other way (see bound()).
                CHECK(worst <= (pol.dtype == KvDtype::f32 ? 1e-4 : 1e-2));
            }
        }
    }
}

TEST_CASE("back() across an eviction, then step(), equals a fresh run of the same tokens") {
    auto m = kvtest::random_model(40, 32, 32, 2, 4, 2, 41);
    for (const CachePolicy& pol : {CachePolicy{4, 1, KvDtype::f32}, CachePolicy{3, 0, KvDtype::int8}}) {
        for (bool cache : {true, false}) {
            CAPTURE(kv::policy_text(pol));
            CAPTURE(cache);
            kv::Session s(*m, kv::make_cpu_engine(*m), pol);
            s.set_cache(cache);
            s.set_sampling({0.9f, 8, 77, 10});
            s.set_prompt_ids(kvtest::seq_ids(4, 40));
            std::vector<kv::StepTrace> first;
            for (int i = 0; i < 14; ++i) first.push_back(s.step());
            REQUIRE(s.totals().kv_rows_evicted > 0);
            for (int k = 0; k < 8; ++k) REQUIRE(s.back());  // back past several evictions
            CHECK(s.cache().n_used() == kv::rows_kept(pol, s.n_fed()));
            for (int i = 6; i < 14; ++i) {
                CAPTURE(i);
                const auto& t = s.step();
                CHECK(t.logits == first[size_t(i)].logits);  // exact: the rows came back as stored
                CHECK(t.next_id == first[size_t(i)].next_id);
                CHECK(t.counters == first[size_t(i)].counters);
                CHECK(t.evicted == first[size_t(i)].evicted);
            }
        }
    }
}

TEST_CASE("one engine serves several caches: interleaved sessions equal separate ones") {
    auto m = kvtest::random_model(40, 32, 32, 2, 4, 2, 51);
    auto shared = std::shared_ptr<kv::Engine>(kv::make_cpu_engine(*m));
    kv::Session a(*m, shared), b(*m, shared, {5, 1, KvDtype::int8});
    kv::Session a_alone(*m, kv::make_cpu_engine(*m)), b_alone(*m, kv::make_cpu_engine(*m), {5, 1, KvDtype::int8});
    for (kv::Session* s : {&a, &b, &a_alone, &b_alone}) s->set_prompt_ids(kvtest::seq_ids(4, 40, 3));
    for (int i = 0; i < 10; ++i) {
        CAPTURE(i);
        CHECK(a.step().logits == a_alone.step().logits);
        CHECK(b.step().logits == b_alone.step().logits);
    }
    CHECK(&a.engine() == &b.engine());
}

TEST_CASE("the trace says which keys were read, what was evicted and where each position sits") {
    auto m = kvtest::random_model(40, 32, 32, 2, 4, 2, 61);
    const CachePolicy pol{4, 1, KvDtype::f32};
    kv::Session s(*m, kv::make_cpu_engine(*m), pol);
    s.set_prompt_ids(kvtest::seq_ids(6, 40));
    const kv::StepTrace& t0 = s.step();               // positions 0..5; keeps 0, 3, 4, 5
    CHECK(t0.evicted == std::vector<int>{1, 2});
    CHECK(t0.keys_read == std::vector<int>{0, 1, 2, 3, 4, 5});
    const kv::StepTrace& t1 = s.step();               // query 6 reads 0 and 3..6
    CHECK(t1.keys_read == std::vector<int>{0, 3, 4, 5, 6});
    CHECK(t1.cache_rows_read == 4);
    CHECK(t1.evicted == std::vector<int>{3});
    int held = 0;
    for (int slot = 0; slot < int(t1.slot_pos.size()); ++slot)
        if (t1.slot_pos[size_t(slot)] >= 0) {
            ++held;
            CHECK(s.cache().slot_of(t1.slot_pos[size_t(slot)]) == slot);
        }
    CHECK(held == 4);
    for (const kv::HeadTrace& h : t1.heads) {  // evicted and masked keys have weight 0
        CHECK(h.attn(0, 1) == 0.f);
        CHECK(h.attn(0, 2) == 0.f);
        CHECK(h.attn(0, 0) > 0.f);
        CHECK(h.attn.row(0).sum() == doctest::Approx(1.0f).epsilon(1e-5));
    }
}

TEST_CASE("logit_difference: the largest gap, the greedy tokens, and inf for what cannot be compared") {
    const kv::LogitDiff d = kv::logit_difference({1.f, 3.f, 2.f}, {1.5f, 2.f, 2.25f});
    CHECK(d.max_abs_logit_diff == doctest::Approx(1.0));
    CHECK(!d.same_top1);  // index 1 against the reference's index 2
    CHECK(d.ref_top1 == 2);
    CHECK(!kv::logit_difference({1.f, 3.f, 2.f}, {1.f, 3.f, 4.f}).same_top1);
    CHECK(kv::logit_difference({1.f, 2.f}, {1.f, 2.f, 3.f}).max_abs_logit_diff == INFINITY);
    CHECK(kv::logit_difference({1.f, NAN}, {1.f, 2.f}).max_abs_logit_diff == INFINITY);
    CHECK(kv::logit_difference({4.f, 4.f}, {4.f, 1.f}).same_top1);  // first maximum wins a tie
}

TEST_CASE("StepReference: a session's vs_full equals a separate full f32 session fed the same tokens") {
    const Shape sh = kShapes[1];
    const auto model = kvtest::random_model(sh.V, sh.T, sh.C, sh.L, sh.H, sh.Hkv, sh.seed);
    kv::Session s(*model, kv::make_engine(*model, "cpu"), CachePolicy{5, 1, KvDtype::int8});
    s.set_measure_vs_full(true);
    s.set_prompt_ids({3, 1, 4, 1, 5});
    for (int i = 0; i < 8; ++i) {
        CAPTURE(i);
        if (i == 5) s.set_cache(false);  // a cache-off step: the reference goes back to position 0
        if (i == 6) {                      // back(): the reference goes back too
            s.back();
            s.set_cache(true);
        }
        const kv::StepTrace& t = s.step();
        kv::Session full(*model, kv::make_engine(*model, "cpu"));
        full.set_prompt_ids(std::vector<int>(s.tokens().begin(), s.tokens().end() - 1));
        const kv::StepTrace& f = full.step();
        REQUIRE(t.vs_full.measured());
        const float d = max_abs_diff(t.logits, f.logits);  // a prefill, not the reference's cached steps
        CHECK(std::abs(t.vs_full.max_abs_logit_diff - d) <= 1e-4f + 1e-3f * d);
        CHECK(t.vs_full.ref_top1 == f.next_id);
    }
    kv::Session plain(*model, kv::make_engine(*model, "cpu"));  // full f32: nothing to measure
    plain.set_measure_vs_full(true);
    plain.set_prompt_ids({3, 1, 4});
    CHECK(!plain.step().vs_full.measured());
}
