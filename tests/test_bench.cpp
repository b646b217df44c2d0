// The sweep API behind `kvscope-cli bench --sweep` and the Scaling panel: which
// positions it measures, that it measures each mode asked for, progress, cancel and
// argument errors. Behaviour only: no timing thresholds.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/session/bench.h"
#include "core/engine/engine.h"
#include "core/error.h"
#include "test_helpers.h"

namespace {

// kvscope-cli with `args`: exit code and stdout (stderr discarded).
std::pair<int, std::string> cli(const std::string& args) {
    const std::string cmd = std::string("'") + KVSCOPE_CLI + "' " + args + " 2>/dev/null";
    FILE* f = ::popen(cmd.c_str(), "r");
    REQUIRE(f != nullptr);
    std::string out;
    std::array<char, 4096> buf{};
    size_t k;
    while ((k = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), k);
    const int status = ::pclose(f);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::unique_ptr<kv::Model> small_model() { return kvtest::random_model(40, 24, 16, 2, 2, 2, 7); }

}  // namespace

TEST_CASE("a sweep returns one point per position, in order, for both modes") {
    auto m = small_model();
    SUBCASE("every position") {
        kv::SweepOptions o;
        const auto pts = kv::run_sweep(*m, o);
        REQUIRE(pts.size() == size_t(m->config.n_ctx));
        for (size_t i = 0; i < pts.size(); ++i) {
            CAPTURE(i);
            CHECK(pts[i].pos == int(i));
            CHECK(pts[i].ms_cached >= 0.0);
            CHECK(pts[i].ms_uncached >= 0.0);
        }
    }
    SUBCASE("stride and max_pos keep the last position") {
        kv::SweepOptions o;
        o.max_pos = 10;
        o.stride = 4;
        const auto pts = kv::run_sweep(*m, o);
        REQUIRE(pts.size() == 4);
        CHECK(pts[0].pos == 0);
        CHECK(pts[1].pos == 4);
        CHECK(pts[2].pos == 8);
        CHECK(pts[3].pos == 9);
        CHECK(kv::sweep_positions(m->config, o) == std::vector<int>{0, 4, 8, 9});
    }
    SUBCASE("threads and repeats do not change the points") {
        kv::SweepOptions o;
        o.max_pos = 6;
        o.threads = 3;
        o.repeats = 2;
        const auto pts = kv::run_sweep(*m, o);
        REQUIRE(pts.size() == 6);
        for (const auto& p : pts) CHECK(p.ms_uncached >= 0.0);
    }
}

TEST_CASE("a sweep measures only the modes asked for") {
    auto m = small_model();
    kv::SweepOptions o;
    o.max_pos = 8;
    SUBCASE("cached only") {
        o.uncached = false;
        const auto pts = kv::run_sweep(*m, o);
        REQUIRE(pts.size() == 8);
        for (const auto& p : pts) {
            CHECK(p.ms_cached >= 0.0);
            CHECK(p.ms_uncached == -1.0);
        }
    }
    SUBCASE("uncached only") {
        o.cached = false;
        const auto pts = kv::run_sweep(*m, o);
        REQUIRE(pts.size() == 8);
        for (const auto& p : pts) {
            CHECK(p.ms_cached == -1.0);
            CHECK(p.ms_uncached >= 0.0);
        }
    }
}

TEST_CASE("sweep progress rises to 1 and cancelling stops the sweep early") {
    auto m = small_model();
    kv::SweepOptions o;
    SUBCASE("progress is monotonic and ends at 1") {
        std::vector<float> seen;
        const auto pts = kv::run_sweep(*m, o, [&](float p) {
            seen.push_back(p);
            return true;
        });
        REQUIRE(pts.size() == size_t(m->config.n_ctx));
        REQUIRE(!seen.empty());
        for (size_t i = 1; i < seen.size(); ++i) {
            CAPTURE(i);
            CHECK(seen[i] >= seen[i - 1]);
        }
        CHECK(seen.front() > 0.0f);
        CHECK(seen.back() == 1.0f);
    }
    SUBCASE("returning false at the first report stops after it") {
        int calls = 0;
        const auto pts = kv::run_sweep(*m, o, [&](float) { return ++calls < 1; });
        CHECK(calls == 1);
        CHECK(pts.empty());  // no point has both modes
    }
    SUBCASE("cancelling during the uncached pass keeps the finished points") {
        int calls = 0;
        const int n = m->config.n_ctx;
        // n cached reports, then 3 uncached ones: cancel at the third.
        const auto pts = kv::run_sweep(*m, o, [&](float) { return ++calls < n + 3; });
        CHECK(calls == n + 3);
        REQUIRE(pts.size() == 2);
        CHECK(pts[1].pos == 1);
        CHECK(pts[1].ms_uncached >= 0.0);
    }
}

TEST_CASE("sweep options out of range are errors that name the option") {
    auto m = small_model();
    kv::SweepOptions o;
    auto message = [&] {
        try {
            kv::run_sweep(*m, o);
        } catch (const kv::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    SUBCASE("max_pos beyond the context") {
        o.max_pos = m->config.n_ctx + 1;
        CHECK(message().find("--max-pos") != std::string::npos);
    }
    SUBCASE("stride 0") {
        o.stride = 0;
        CHECK(message().find("--stride") != std::string::npos);
    }
    SUBCASE("no mode") {
        o.cached = o.uncached = false;
        CHECK(message().find("neither mode") != std::string::npos);
    }
    SUBCASE("unknown backend") {
        o.backend = "tpu";
        CHECK(message().find("tpu") != std::string::npos);
    }
}

TEST_CASE("decode_weight_bytes counts the layers, ln_f and the head") {
    const kv::ModelConfig c = kv::ModelConfig::gpt2_124m();
    // 85,056,000 non-embedding parameters + the 50257 x 768 head, 4 bytes each.
    CHECK(kv::decode_weight_bytes(c) == (85056000LL + 50257LL * 768) * 4);
}

TEST_CASE("engine results agree across thread counts") {
    // Splits differ with the thread count, so sums may round differently: compare
    // with a tolerance; a race or a wrong split would be far off.
    auto m = kvtest::random_model(300, 40, 64, 2, 4, 2, 11);
    const auto ids = kv::bench_ids(m->config, 33, 5);
    std::vector<float> ref;
    for (int threads : {1, 2, 3, 8}) {
        CAPTURE(threads);
        auto e = kv::make_cpu_engine(*m);
        auto cache = e->make_cache({});
        e->set_threads(threads);
        kv::ForwardRequest req;
        req.trace_opts.record = false;
        req.ids = std::span<const int>(ids.data(), ids.size());
        std::vector<float> all;
        req.all_logits = true;
        kv::StepTrace tr;
        e->forward(req, *cache, tr, &all);
        // and one cached decode step on top
        req.all_logits = false;
        req.start_pos = int(ids.size()) - 1;
        req.ids = std::span<const int>(ids.data() + ids.size() - 1, 1);
        e->forward(req, *cache, tr);
        all.insert(all.end(), tr.logits.begin(), tr.logits.end());
        if (ref.empty())
            ref = all;
        else {
            REQUIRE(all.size() == ref.size());
            float worst = 0;
            for (size_t i = 0; i < all.size(); ++i)
                worst = std::max(worst, std::abs(all[i] - ref[i]) / (1e-3f + std::abs(ref[i])));
            CHECK(worst <= 1e-4f);
        }
    }
}

TEST_CASE("measure_read_bandwidth returns a positive rate and rejects tiny buffers") {
    CHECK(kv::measure_read_bandwidth(2, int64_t(4) << 20, 2) > 0.0);
    CHECK_THROWS_AS(kv::measure_read_bandwidth(1, 1000, 1), kv::Error);
}

TEST_CASE("kvscope-cli bench prints the documented record, and --sweep one row per position") {
    SUBCASE("bench --json, median of runs") {
        const auto [rc, out] = cli("bench --model random:tiny --prompt-len 3 --new 4 --runs 3 --threads 2 --json");
        REQUIRE(rc == 0);
        const auto j = nlohmann::json::parse(out);
        for (const char* key : {"mode", "tokens_per_s", "ms_per_token", "prefill_ms", "new_tokens", "threads", "backend"}) {
            CAPTURE(key);
            CHECK(j.contains(key));
        }
        CHECK(j["mode"] == "cached");
        CHECK(j["threads"] == 2);
        CHECK(j["new_tokens"] == 4);
        CHECK(j["runs"].size() == 3);
    }
    SUBCASE("bench --vs-f32: the same runs on an f32 copy, one ratio per run pair") {
        const auto [rc, out] =
            cli("bench --model random:tiny --prompt-len 3 --new 4 --runs 3 --threads 2 --weights bf16 --vs-f32 --json");
        REQUIRE(rc == 0);
        const auto j = nlohmann::json::parse(out);
        CHECK(j["weights"] == "bf16");
        REQUIRE(j.contains("vs_f32"));
        const auto& v = j["vs_f32"];
        REQUIRE(v["runs"].size() == 3);
        REQUIRE(v["decode_ratios"].size() == 3);
        std::vector<double> ratios;
        for (size_t i = 0; i < 3; ++i) {
            CAPTURE(i);
            const double r = j["runs"][i]["tokens_per_s"].get<double>() / v["runs"][i]["tokens_per_s"].get<double>();
            CHECK(v["decode_ratios"][i].get<double>() == doctest::Approx(r));
            ratios.push_back(r);
        }
        std::sort(ratios.begin(), ratios.end());
        CHECK(v["decode_ratio"].get<double>() == doctest::Approx(ratios[1]));  // the median
        CHECK(v["tokens_per_s"].get<double>() > 0);
        CHECK(cli("bench --model random:tiny --new 2 --vs-f32").first == 2);  // already f32
        CHECK(cli("bench --model random:tiny --weights f16 --vs-f32 --sweep").first == 2);
    }
    SUBCASE("bench --no-cache") {
        const auto [rc, out] = cli("bench --model random:tiny --prompt-len 3 --new 4 --no-cache --json");
        REQUIRE(rc == 0);
        CHECK(nlohmann::json::parse(out)["mode"] == "uncached");
    }
    SUBCASE("sweep as JSON") {
        const auto [rc, out] = cli("bench --model random:tiny --sweep --max-pos 5 --json");
        REQUIRE(rc == 0);
        const auto pts = nlohmann::json::parse(out)["points"];
        REQUIRE(pts.size() == 5);
        for (int i = 0; i < 5; ++i) {
            CAPTURE(i);
            CHECK(pts[i]["pos"] == i);
            CHECK(pts[i]["ms_cached"].is_number());
            CHECK(pts[i]["ms_uncached"].is_number());
        }
    }
    SUBCASE("sweep as CSV, cached only") {
        const std::string path = std::string(KVSCOPE_BINARY_DIR) + "/test_bench_sweep_" + std::to_string(::getpid()) + ".csv";
        const auto [rc, out] = cli("bench --model random:tiny --sweep --max-pos 4 --mode cached --csv '" + path + "'");
        REQUIRE(rc == 0);
        CHECK(out.empty());
        std::ifstream f(path);
        std::string line;
        std::vector<std::string> lines;
        while (std::getline(f, line)) lines.push_back(line);
        std::remove(path.c_str());
        REQUIRE(lines.size() == 5);
        CHECK(lines[0] == "pos,ms_cached,ms_uncached");
        CHECK(lines[4].rfind("3,", 0) == 0);
        CHECK(lines[4].back() == ',');  // no uncached figure
    }
    SUBCASE("bad sweep arguments are usage errors") {
        CHECK(cli("bench --model random:tiny --sweep --max-pos 65").first == 2);
        CHECK(cli("bench --model random:tiny --sweep --stride 0").first == 2);
        CHECK(cli("bench --model random:tiny --sweep --mode sideways").first == 2);
    }
}
