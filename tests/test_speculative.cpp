// Speculative decoding (core/session/speculative.h) against plain decoding: greedy
// output equals the target's own greedy output token for token, both caches hold
// exactly a plain run's rows after every round, sampled first tokens follow the
// target's softmax (and a wrong acceptance rule is caught), counters equal their
// formulas, and the bundled draft shares tiny-gpt's vocabulary.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/model/model_io.h"
#include "core/session/session.h"
#include "core/session/speculative.h"
#include "core/train/train.h"
#include "test_helpers.h"

namespace {

const std::string kAssets = KVSCOPE_SOURCE_DIR "/assets";

const kv::Model& tiny_gpt() {
    static std::unique_ptr<kv::Model> m = kv::load_model_folder(kAssets + "/models/tiny-gpt");
    return *m;
}
const kv::Model& tiny_draft() {
    static std::unique_ptr<kv::Model> m = kv::load_model_folder(kAssets + "/models/tiny-draft");
    return *m;
}

std::vector<std::string> corpus_lines() {
    std::ifstream f(kAssets + "/corpus.txt");
    REQUIRE(f);
    std::vector<std::string> lines;
    for (std::string s; std::getline(f, s);)
        if (!kv::WordTokenizer::split_words(s).empty()) lines.push_back(s);
    return lines;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE(f);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// The target's plain greedy continuation: n cached decode steps.
std::vector<int> plain_greedy(const kv::Model& m, const std::vector<int>& prompt, int n) {
    kv::Session s(m, kv::make_cpu_engine(m));
    s.set_prompt_ids(prompt);
    for (int i = 0; i < n; ++i) s.step();
    return {s.tokens().begin() + long(prompt.size()), s.tokens().end()};
}

kv::SpecDecoder make_pair(const kv::Model& target, const kv::Model& draft, int k) {
    kv::SpecDecoder d(target, kv::make_cpu_engine(target), draft, kv::make_cpu_engine(draft), k);
    kv::TraceOptions t;
    t.record = false;
    d.set_trace_options(t);
    return d;
}

// Runs rounds until n new tokens exist; returns them.
std::vector<int> speculative(kv::SpecDecoder& d, const std::vector<int>& prompt, int n) {
    d.set_prompt_ids(prompt);
    for (int made = 0; made < n;) made += int(d.round(n - made).counters.new_tokens);
    return {d.tokens().begin() + long(prompt.size()), d.tokens().end()};
}

// A plain engine fed `ids` one at a time: the cache rows a plain run holds for them.
std::unique_ptr<kv::KVCache> plain_cache(const kv::Model& m, const std::vector<int>& ids) {
    auto e = kv::make_cpu_engine(m);
    auto c = e->make_cache(kv::CachePolicy{});
    kv::ForwardRequest req;
    req.trace_opts.record = false;
    kv::StepTrace tr;
    for (int i = 0; i < int(ids.size()); ++i) {
        req.ids = std::span<const int>(ids.data() + i, 1);
        req.start_pos = i;
        req.n_known = i;
        e->forward(req, *c, tr);
    }
    return c;
}

// Worst |a - b| / (1 + |b|) over every layer and kv head of two caches of equal
// length (atol = rtol: a batched forward sums in another order than one row at a time).
float cache_diff(const kv::KVCache& a, const kv::KVCache& b) {
    REQUIRE(a.n_pos() == b.n_pos());
    const kv::ModelConfig& c = a.config();
    float d = 0;
    for (int l = 0; l < c.n_layer; ++l)
        for (int g = 0; g < c.n_kv_head; ++g) {
            kv::RowMat ka, va, kb, vb;
            REQUIRE(a.read_positions(l, g, ka, va));
            REQUIRE(b.read_positions(l, g, kb, vb));
            if (ka.rows() == 0) continue;
            const kv::RowMat dk = (ka - kb).cwiseAbs().array() / (1.f + kb.cwiseAbs().array());
            const kv::RowMat dv = (va - vb).cwiseAbs().array() / (1.f + vb.cwiseAbs().array());
            d = std::max({d, dk.maxCoeff(), dv.maxCoeff()});
        }
    return d;
}

// Random pairs: V 64, T 64, C 32, L 2, H 4. `never` is an untied target whose head row
// 0 is zero (logit 0 is always 0 while 63 random logits almost surely exceed it)
// with a draft whose final LayerNorm is zero (all logits 0: it always proposes 0).
struct RandomPair {
    std::unique_ptr<kv::Model> target, draft;
};
RandomPair never_agree_pair() {
    RandomPair p;
    p.target = kvtest::random_model(64, 64, 32, 2, 4, 4, 11, /*tied=*/false);
    p.target->weights.lm_head.row(0).setZero();
    p.draft = kvtest::random_model(64, 64, 16, 1, 2, 2, 12);
    p.draft->weights.ln_f_w.setZero();
    p.draft->weights.ln_f_b.setZero();
    return p;
}

}  // namespace

TEST_CASE("speculative: tiny-draft shares tiny-gpt's vocabulary, id for id") {
    const std::string a = read_file(kAssets + "/models/tiny-gpt/vocab.txt");
    const std::string b = read_file(kAssets + "/models/tiny-draft/vocab.txt");
    CHECK(a == b);
    // The trainer builds the vocabulary from the corpus, so retraining either keeps it.
    std::istringstream in(a);
    std::vector<std::string> words;
    for (std::string w; std::getline(in, w);) words.push_back(w);
    std::ifstream f(kAssets + "/corpus.txt");
    std::vector<std::string> lines;
    for (std::string s; std::getline(f, s);) lines.push_back(s);
    CHECK(kv::build_vocab(lines) == words);
    CHECK_NOTHROW(kv::check_same_vocabulary(tiny_gpt(), tiny_draft()));
    CHECK(tiny_draft().config.n_layer == 1);
    CHECK(tiny_draft().config.n_head == 2);
    CHECK(tiny_draft().config.n_embd == 32);
    CHECK(tiny_draft().config.n_ctx >= tiny_gpt().config.n_ctx);
}

TEST_CASE("speculative: a pair whose vocabularies differ is refused, naming both") {
    auto other = kvtest::random_model(tiny_gpt().config.vocab_size, 64, 16, 1, 2, 2, 3);
    other->name = "other";
    other->path = "/x/other";
    std::vector<std::string> words = {"<unk>"};
    while (int(words.size()) < tiny_gpt().config.vocab_size) words.push_back("w" + std::to_string(words.size()));
    other->tokenizer = std::make_unique<kv::WordTokenizer>(words);
    const std::string e = kvtest::error_of([&] { kv::check_same_vocabulary(tiny_gpt(), *other); });
    CAPTURE(e);
    CHECK(e.find("vocabularies differ") != std::string::npos);
    CHECK(e.find("/x/other") != std::string::npos);
    CHECK(e.find("tiny-gpt") != std::string::npos);
    auto small = kvtest::random_model(96, 64, 16, 1, 2, 2, 3);
    CHECK(kvtest::error_of([&] { kv::check_same_vocabulary(tiny_gpt(), *small); }).find("96") != std::string::npos);
    CHECK(kvtest::error_of([&] { make_pair(tiny_gpt(), tiny_draft(), 17); }).find("1..16") != std::string::npos);
    CHECK(kvtest::error_of([&] { make_pair(tiny_gpt(), tiny_draft(), 0); }).find("1..16") != std::string::npos);
}

TEST_CASE("speculative: tiny-draft's greedy next token agrees with tiny-gpt's on most corpus positions") {
    const kv::Model &t = tiny_gpt(), &d = tiny_draft();
    int64_t agree = 0, total = 0;
    for (const std::string& line : corpus_lines()) {
        const std::vector<int> ids = t.tokenizer->encode(line).ids;
        std::vector<float> lt, ld;
        kv::ForwardRequest req;
        req.ids = ids;
        req.all_logits = true;
        req.trace_opts.record = false;
        kv::StepTrace tr;
        auto et = kv::make_cpu_engine(t), ed = kv::make_cpu_engine(d);
        et->forward(req, *et->make_cache({}), tr, &lt);
        ed->forward(req, *ed->make_cache({}), tr, &ld);
        const int V = t.config.vocab_size;
        for (size_t i = 0; i < ids.size(); ++i) {
            const auto a = std::max_element(lt.begin() + long(i) * V, lt.begin() + long(i + 1) * V) - lt.begin();
            const auto b = std::max_element(ld.begin() + long(i) * V, ld.begin() + long(i + 1) * V) - ld.begin();
            agree += a == b;
            ++total;
        }
    }
    const double rate = double(agree) / double(total);
    MESSAGE("tiny-draft agrees with tiny-gpt's greedy next token at " << agree << " of " << total
                                                                      << " corpus positions (" << rate << ")");
    // Often, not always: a useful draft that still gets rejected.
    CHECK(rate > 0.5);
    CHECK(rate < 0.99);
}

TEST_CASE("speculative: greedy output equals the target's plain greedy output") {
    const std::vector<int> ks = {1, 2, 4, 8};
    SUBCASE("bundled pair, every tenth corpus sentence") {
        const kv::Model &t = tiny_gpt(), &d = tiny_draft();
        const auto lines = corpus_lines();
        int64_t accepted = 0, rejected = 0;
        for (size_t i = 0; i < lines.size(); i += 10) {
            const std::vector<int> prompt = t.tokenizer->encode(lines[i]).ids;
            const int n = std::min(12, t.config.n_ctx + 1 - int(prompt.size()));
            const std::vector<int> want = plain_greedy(t, prompt, n);
            for (int k : ks) {
                CAPTURE(lines[i]);
                CAPTURE(k);
                kv::SpecDecoder sd = make_pair(t, d, k);
                CHECK(speculative(sd, prompt, n) == want);
                accepted += sd.totals().accepted;
                rejected += sd.totals().rejected;
            }
        }
        CHECK(accepted > 0);  // both outcomes happen with this pair
        CHECK(rejected > 0);
    }
    SUBCASE("bundled Llama pair: tiny-llama and tiny-llama-draft, every tenth corpus sentence") {
        const auto t = kv::load_model_folder(kAssets + "/models/tiny-llama");
        const auto d = kv::load_model_folder(kAssets + "/models/tiny-llama-draft");
        REQUIRE(t->config.is_llama());
        REQUIRE(d->config.is_llama());
        const auto lines = corpus_lines();
        int64_t accepted = 0, rejected = 0;
        for (size_t i = 0; i < lines.size(); i += 10) {
            const std::vector<int> prompt = t->tokenizer->encode(lines[i]).ids;
            const int n = std::min(12, t->config.n_ctx + 1 - int(prompt.size()));
            const std::vector<int> want = plain_greedy(*t, prompt, n);
            for (int k : {2, 4}) {
                CAPTURE(lines[i]);
                CAPTURE(k);
                kv::SpecDecoder sd = make_pair(*t, *d, k);
                CHECK(speculative(sd, prompt, n) == want);
                accepted += sd.totals().accepted;
                rejected += sd.totals().rejected;
            }
        }
        CHECK(accepted > 0);
        CHECK(rejected > 0);
    }
    SUBCASE("random pair that never agrees") {
        RandomPair p = never_agree_pair();
        for (int salt = 0; salt < 5; ++salt) {
            const std::vector<int> prompt = kvtest::seq_ids(3 + salt, 64, salt);
            const std::vector<int> want = plain_greedy(*p.target, prompt, 20);
            for (int k : ks) {
                CAPTURE(salt);
                CAPTURE(k);
                kv::SpecDecoder sd = make_pair(*p.target, *p.draft, k);
                CHECK(speculative(sd, prompt, 20) == want);
                CHECK(sd.totals().accepted == 0);
                CHECK(sd.totals().target_forwards == 20);
            }
        }
    }
    SUBCASE("Llama family: a smaller draft of the same family, and the target as its own draft") {
        auto t = kvtest::random_llama(kv::ModelConfig::llama_tiny(), 70);
        kv::ModelConfig dc = kv::ModelConfig::llama_tiny();
        dc.n_layer = 1;
        auto d = kvtest::random_llama(dc, 71);
        for (int salt = 0; salt < 3; ++salt) {
            const std::vector<int> prompt = kvtest::seq_ids(3 + salt, 96, salt);
            const std::vector<int> want = plain_greedy(*t, prompt, 20);
            for (int k : ks) {
                CAPTURE(salt);
                CAPTURE(k);
                kv::SpecDecoder sd = make_pair(*t, *d, k);
                CHECK(speculative(sd, prompt, 20) == want);
                kv::SpecDecoder self = make_pair(*t, *t, k);
                CHECK(speculative(self, prompt, 20) == want);
                CHECK(self.totals().rejected == 0);
            }
        }
    }
    SUBCASE("random pair that always agrees (the draft is the target)") {
        auto m = kvtest::random_model(64, 64, 32, 2, 4, 2, 21);
        for (int salt = 0; salt < 5; ++salt) {
            const std::vector<int> prompt = kvtest::seq_ids(2 + salt, 64, salt);
            const std::vector<int> want = plain_greedy(*m, prompt, 24);
            for (int k : ks) {
                CAPTURE(salt);
                CAPTURE(k);
                kv::SpecDecoder sd = make_pair(*m, *m, k);
                CHECK(speculative(sd, prompt, 24) == want);
                CHECK(sd.totals().rejected == 0);
                // Each round makes k + 1 tokens (the last round only what is left).
                CHECK(sd.totals().rounds == (24 + k) / (k + 1));
            }
        }
    }
}

TEST_CASE("speculative: after every round both caches hold a plain run's rows") {
    const kv::Model &t = tiny_gpt(), &d = tiny_draft();
    RandomPair never = never_agree_pair();
    struct Case {
        const kv::Model *t, *d;
        std::vector<int> prompt;
    };
    const std::vector<Case> cases = {{&t, &d, t.tokenizer->encode("Python is a programming").ids},
                                     {&t, &d, t.tokenizer->encode("The cat").ids},
                                     {never.target.get(), never.draft.get(), kvtest::seq_ids(4, 64)}};
    for (const Case& c : cases)
        for (int k : {1, 3, 6}) {
            CAPTURE(k);
            kv::SpecDecoder sd = make_pair(*c.t, *c.d, k);
            sd.set_prompt_ids(c.prompt);
            for (int made = 0; made < 16;) {
                const kv::SpecRound& r = sd.round(16 - made);
                made += int(r.counters.new_tokens);
                CAPTURE(r.round);
                const std::vector<int>& tok = sd.tokens();
                REQUIRE(sd.target_cache().n_pos() == int(tok.size()) - 1);
                REQUIRE(sd.draft_cache().n_pos() <= int(tok.size()) - 1);
                auto pt = plain_cache(*c.t, {tok.begin(), tok.begin() + sd.target_cache().n_pos()});
                auto pd = plain_cache(*c.d, {tok.begin(), tok.begin() + sd.draft_cache().n_pos()});
                CHECK(cache_diff(sd.target_cache(), *pt) <= 1e-6f);
                CHECK(cache_diff(sd.draft_cache(), *pd) <= 1e-6f);
            }
        }
}

TEST_CASE("speculative: counters equal their formulas in every round") {
    const kv::Model &t = tiny_gpt(), &d = tiny_draft();
    const kv::ModelConfig &ct = t.config, &cd = d.config;
    for (int k : {1, 2, 4, 8}) {
        CAPTURE(k);
        kv::SpecDecoder sd = make_pair(t, d, k);
        const std::vector<int> prompt = t.tokenizer->encode("The cat sat on").ids;
        sd.set_prompt_ids(prompt);
        const int n = 30;
        kv::SpecCounters sum;
        for (int made = 0; made < n;) {
            const int T = int(sd.tokens().size());
            const kv::SpecRound& r = sd.round(n - made);
            made += int(r.counters.new_tokens);
            CAPTURE(r.round);
            const kv::SpecCounters& c = r.counters;
            const int64_t ke = int64_t(r.proposed.size()), a = r.accepted;
            CHECK(ke == std::min(k, n - (T - int(prompt.size())) - 1));
            CHECK(c.rounds == 1);
            CHECK(c.target_forwards == 1);
            CHECK(c.draft_forwards == ke);
            CHECK(c.proposed == ke);
            CHECK(c.accepted == a);
            CHECK(c.accepted + c.rejected == c.proposed);
            CHECK(c.new_tokens == a + 1);
            CHECK(c.target_rows_rolled_back == ke - a);
            CHECK(c.draft_rows_rolled_back == (ke == 0 ? 0 : std::max<int64_t>(0, ke - 1 - a)));
            CHECK(r.bonus == (ke > 0 && a == ke));
            CHECK(int(sd.tokens().size()) == T + a + 1);
            CHECK(r.target_rows_written == T + ke);
            CHECK(r.target_rows_after == T + a);
            // The engines' own counters: the target ran its missing tokens plus the drafts
            // in one pass; the draft caught up and fed k-1 drafts.
            CHECK(int(r.target_input.size()) == T - r.target_rows_before + ke);
            CHECK(r.target_work.tokens_processed == int64_t(r.target_input.size()));
            CHECK(r.target_work.kv_rows_computed == int64_t(ct.n_layer) * ct.n_kv_head * int64_t(r.target_input.size()));
            const int64_t draft_tokens = ke == 0 ? 0 : (T - r.draft_rows_before) + ke - 1;
            CHECK(r.draft_work.tokens_processed == draft_tokens);
            CHECK(r.draft_work.kv_rows_computed == int64_t(cd.n_layer) * cd.n_kv_head * draft_tokens);
            sum += c;
        }
        const kv::SpecCounters tot = sd.totals();
        CHECK(tot == sum);
        CHECK(tot.new_tokens == n);
        CHECK(tot.target_forwards == tot.rounds);
        CHECK(tot.acceptance_rate() == doctest::Approx(double(tot.accepted) / double(tot.proposed)));
        CHECK(tot.target_forwards_per_token() == doctest::Approx(double(tot.rounds) / n));
    }
}

TEST_CASE("speculative: back() undoes one round exactly") {
    const kv::Model &t = tiny_gpt(), &d = tiny_draft();
    kv::SpecDecoder sd = make_pair(t, d, 4);
    sd.set_prompt_ids(t.tokenizer->encode("Rust is a").ids);
    std::vector<std::vector<int>> tokens;
    for (int i = 0; i < 4; ++i) {
        tokens.push_back(sd.tokens());
        sd.round();
    }
    const std::vector<int> end = sd.tokens();
    for (int i = 3; i >= 0; --i) {
        REQUIRE(sd.back());
        CHECK(sd.tokens() == tokens[size_t(i)]);
        CHECK(sd.target_cache().n_pos() == (i == 0 ? 0 : int(tokens[size_t(i)].size()) - 1));
    }
    CHECK_FALSE(sd.back());
    for (int i = 0; i < 4; ++i) sd.round();
    CHECK(sd.tokens() == end);
}

namespace {

// Chi-square statistic of `counts` (n draws) against probabilities p, bins with an
// expected count under 5 pooled into one; returns {statistic, degrees of freedom}.
std::pair<double, int> chi_square(const std::map<int, int>& counts, const std::vector<double>& p, int n) {
    double stat = 0, pooled_e = 0, pooled_o = 0;
    int bins = 0;
    for (int id = 0; id < int(p.size()); ++id) {
        const double e = p[size_t(id)] * n;
        const auto it = counts.find(id);
        const double o = it == counts.end() ? 0 : it->second;
        if (e < 5) {
            pooled_e += e;
            pooled_o += o;
            continue;
        }
        stat += (o - e) * (o - e) / e;
        ++bins;
    }
    if (pooled_e > 0) {
        stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / std::max(pooled_e, 1e-9);
        ++bins;
    }
    return {stat, bins - 1};
}

// The chi-square critical value at significance 0.001 for 1..12 degrees of freedom.
double chi_critical_001(int df) {
    static const double v[] = {10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91};
    REQUIRE(df >= 1);
    REQUIRE(df <= 12);
    return v[df - 1];
}

double total_variation(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
    return s / 2;
}

}  // namespace

TEST_CASE("speculative: sampled first tokens follow the target's softmax") {
    const kv::Model &t = tiny_gpt(), &d = tiny_draft();
    const std::vector<int> prompt = t.tokenizer->encode("The").ids;
    const kv::SamplingOptions opt{1.0f, 8, 0, 5};
    // The distributions at the prompt's last position, as the decoder uses them.
    auto last_logits = [&](const kv::Model& m) {
        kv::ForwardRequest req;
        req.ids = prompt;
        req.trace_opts.record = false;
        kv::StepTrace tr;
        auto e = kv::make_cpu_engine(m);
        e->forward(req, *e->make_cache({}), tr);
        return tr.logits;
    };
    const std::vector<double> p = kv::token_probs(last_logits(t), opt);
    const std::vector<double> q = kv::token_probs(last_logits(d), opt);
    const double tv = total_variation(p, q);
    MESSAGE("target and draft at \"The\" differ by total variation " << tv);
    REQUIRE(tv > 0.2);  // far enough apart that accepting every draft would show

    const int n = 3000;
    auto first_tokens = [&](const std::function<int(uint64_t seed)>& one) {
        std::map<int, int> counts;
        for (uint64_t seed = 0; seed < uint64_t(n); ++seed) ++counts[one(seed)];
        return chi_square(counts, p, n);
    };
    auto speculative_first = [&](const kv::AcceptanceRule& rule) {
        kv::SpecDecoder sd = make_pair(t, d, 2);
        sd.set_threads(1);  // thousands of tiny rounds: no thread hand-offs
        sd.set_rule(rule);
        return first_tokens([&](uint64_t seed) {
            kv::SamplingOptions o = opt;
            o.seed = seed;
            sd.set_sampling(o);
            sd.set_prompt_ids(prompt);
            sd.round();
            return sd.tokens()[prompt.size()];
        });
    };
    SUBCASE("the plain sampler passes") {
        const std::vector<float> lt = last_logits(t);
        const auto [stat, df] = first_tokens([&](uint64_t seed) {
            kv::SamplingOptions o = opt;
            o.seed = seed;
            return kv::sample_token(lt, o, 0);
        });
        MESSAGE("plain sampler: chi-square " << stat << " with " << df << " degrees of freedom");
        CHECK(stat < chi_critical_001(df));
    }
    SUBCASE("speculative sampling passes") {
        const auto [stat, df] = speculative_first(kv::standard_acceptance());
        MESSAGE("speculative: chi-square " << stat << " with " << df << " degrees of freedom");
        CHECK(stat < chi_critical_001(df));
    }
    SUBCASE("accepting every draft fails") {
        kv::AcceptanceRule wrong = kv::standard_acceptance();
        wrong.accept_prob = [](double, double) { return 1.0; };
        const auto [stat, df] = speculative_first(wrong);
        MESSAGE("always accept: chi-square " << stat << " with " << df << " degrees of freedom");
        CHECK(stat > chi_critical_001(df));
    }
    SUBCASE("resampling from p instead of max(0, p - q) fails") {
        kv::AcceptanceRule wrong = kv::standard_acceptance();
        wrong.residual = [](const std::vector<double>& pp, const std::vector<double>&) { return pp; };
        const auto [stat, df] = speculative_first(wrong);
        MESSAGE("residual from p: chi-square " << stat << " with " << df << " degrees of freedom");
        CHECK(stat > chi_critical_001(df));
    }
}

TEST_CASE("speculative: a seed gives the same tokens every time, whatever the round boundaries") {
    const kv::Model &t = tiny_gpt(), &d = tiny_draft();
    const std::vector<int> prompt = t.tokenizer->encode("Python is").ids;
    kv::SpecDecoder a = make_pair(t, d, 4), b = make_pair(t, d, 4);
    const kv::SamplingOptions opt{0.8f, 0, 42, 5};
    a.set_sampling(opt);
    b.set_sampling(opt);
    const std::vector<int> x = speculative(a, prompt, 20);
    CHECK(speculative(b, prompt, 20) == x);
    // Back then forward again replays the same rounds.
    a.back();
    a.back();
    for (int made = int(a.tokens().size() - prompt.size()); made < 20;) made += int(a.round(20 - made).counters.new_tokens);
    CHECK(std::vector<int>(a.tokens().begin() + long(prompt.size()), a.tokens().end()) == x);
}
