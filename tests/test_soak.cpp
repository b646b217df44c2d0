// Soak: 10,000 random step / back / toggle / reset operations through a Session.
// Every step's logits must equal a fresh full forward over the same tokens (so no
// cache row is ever stale), the same operation sequence replayed gives identical
// results, and resident memory stays flat.
#include <doctest/doctest.h>

#include <cstdio>
#include <random>
#include <unistd.h>

#include "core/engine/engine.h"
#include "core/session/session.h"
#include "test_helpers.h"

namespace {

long rss_kib() {
    long pages_total = 0, pages_rss = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages_total, &pages_rss) != 2) pages_rss = 0;
        std::fclose(f);
    }
    return pages_rss * (::sysconf(_SC_PAGESIZE) / 1024);
}

struct SoakResult {
    std::vector<int> final_tokens;
    uint64_t digest = 1469598103934665603ULL;  // FNV-1a over every chosen token and counter
    int steps = 0, backs = 0, toggles = 0, resets = 0;
};

SoakResult soak(const kv::Model& m, int n_ops, uint64_t seed, bool verify, long* rss_after_warmup) {
    kv::Session s(m, kv::make_cpu_engine(m));
    auto reference = kv::make_cpu_engine(m);
    auto ref_cache = reference->make_cache({});
    s.set_sampling({0.8f, 5, seed, 5});
    std::mt19937_64 rng(seed);
    SoakResult r;
    auto mix = [&](uint64_t v) {
        r.digest ^= v;
        r.digest *= 1099511628211ULL;
    };
    s.set_prompt_ids(kvtest::seq_ids(3, m.config.vocab_size));
    for (int op = 0; op < n_ops; ++op) {
        if (op == 500 && rss_after_warmup) *rss_after_warmup = rss_kib();
        const int dice = int(rng() % 100);
        if (dice < 55 && s.can_step()) {
            const kv::StepTrace& t = s.step();
            ++r.steps;
            mix(uint64_t(t.next_id));
            mix(uint64_t(t.counters.kv_rows_computed));
            if (verify) {
                // A fresh full forward over the fed tokens must give the same logits.
                const int fed = s.n_fed();
                kv::ForwardRequest req;
                req.ids = std::span<const int>(s.tokens().data(), size_t(fed));
                req.trace_opts.record = false;
                kv::StepTrace ref;
                reference->forward(req, *ref_cache, ref);  // from position 0: a fresh cache
                REQUIRE(kvtest::max_abs_diff(t.logits, ref.logits) <= 1e-4f);
                REQUIRE(s.cache().n_used() == fed);
            }
        } else if (dice < 80) {
            r.backs += s.back();
            REQUIRE(s.cache().n_used() == s.n_fed());
        } else if (dice < 95) {
            s.set_cache(!s.cache_on());
            ++r.toggles;
        } else {
            if (rng() % 2) {
                s.reset();
            } else {
                const int p = 1 + int(rng() % 6);
                std::vector<int> ids(p);
                for (int& id : ids) id = int(rng() % m.config.vocab_size);
                s.set_prompt_ids(ids);
            }
            ++r.resets;
            REQUIRE(s.cache().n_used() == 0);
        }
    }
    r.final_tokens = s.tokens();
    return r;
}

}  // namespace

TEST_CASE("soak: 10,000 random operations stay correct, deterministic and flat in memory") {
    auto m = kvtest::random_model(50, 24, 32, 2, 4, 2, 2024);
    long rss_warm = 0;
    const long rss_start = rss_kib();
    const SoakResult a = soak(*m, 10000, 99, true, &rss_warm);
    const long rss_end = rss_kib();
    const SoakResult b = soak(*m, 10000, 99, false, nullptr);
    MESSAGE("soak: " << a.steps << " steps, " << a.backs << " backs, " << a.toggles << " toggles, " << a.resets
                     << " resets; RSS " << rss_start << " KiB at start, " << rss_warm << " KiB after 500 ops, "
                     << rss_end << " KiB after 10,000");
    CHECK(a.steps > 3000);
    CHECK(a.backs > 1000);
    CHECK(a.digest == b.digest);
    CHECK(a.final_tokens == b.final_tokens);
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer quarantines freed memory, so RSS grows without a leak; its
    // leak checker covers this build instead.
    MESSAGE("RSS check not applied under AddressSanitizer");
#else
    CHECK(rss_end - rss_warm < 2048);  // KiB: no growth beyond noise
#endif
}
