// kvscope-cli end to end: JSON schema of docs/design.md, formulas in the totals, exit
// codes and one-line errors.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>

#include "test_helpers.h"

using nlohmann::json;

namespace {

using kvtest::Run;
using kvtest::run_cli;

using kvtest::count_lines;

}  // namespace

TEST_CASE("compare --json on random:tiny: logits agree and totals equal the formulas") {
    const Run r = run_cli("compare --model random:tiny --ids 5,9,3,7 --new 20 --json");
    REQUIRE(r.rc == 0);
    const json d = json::parse(r.out);
    const int L = d["model"]["n_layer"], H = d["model"]["n_head"], Hkv = d["model"]["n_kv_head"];
    const int p = 4, N = 20;
    REQUIRE(d["steps"].size() == size_t(N));
    for (int s = 0; s < N; ++s) {
        CAPTURE(s);
        const json& st = d["steps"][s];
        CHECK(st["step"] == s);
        CHECK(st["phase"] == (s == 0 ? "prefill" : "decode"));
        CHECK(st["max_abs_logit_diff"].get<double>() <= 1e-4);
        CHECK(st["cached"]["next_id"] == st["uncached"]["next_id"]);
        CHECK(st["cached"]["counters"]["kv_rows_computed"] == L * Hkv * (s == 0 ? p : 1));
        CHECK(st["uncached"]["counters"]["kv_rows_computed"] == L * Hkv * (p + s));
        CHECK(st["uncached"]["counters"]["attn_scores"] == L * H * (p + s) * (p + s + 1) / 2);
    }
    const json& tc = d["totals"]["cached"];
    const json& tu = d["totals"]["uncached"];
    CHECK(tc["kv_rows_computed"] == L * Hkv * (p + N - 1));
    CHECK(tu["kv_rows_computed"] == L * Hkv * (N * p + N * (N - 1) / 2));
    CHECK(tc["kv_rows_recomputed"] == 0);
    CHECK(tc["cache_rows"] == p + N - 1);
}

TEST_CASE("generate --json follows the documented schema") {
    const Run r = run_cli("generate --model random:tiny:3 --ids 1,2,3 --new 4 --no-cache --json");
    REQUIRE(r.rc == 0);
    const json d = json::parse(r.out);
    for (const char* k : {"n_layer", "n_head", "n_kv_head", "n_embd", "n_ctx", "vocab_size"}) {
        CAPTURE(k);
        CHECK(d["model"].contains(k));
    }
    CHECK(d["prompt_ids"] == json::array({1, 2, 3}));
    REQUIRE(d["steps"].size() == 4);
    const json& st = d["steps"][2];
    for (const char* k : {"step", "phase", "input_ids", "start_pos", "next_id", "next_token", "counters", "ms"}) {
        CAPTURE(k);
        CHECK(st.contains(k));
    }
    CHECK(st["input_ids"].size() == 5);  // without the cache, the whole sequence enters the model
    CHECK(st["start_pos"] == 0);
    CHECK(d["totals"].contains("kv_rows_computed"));
}

TEST_CASE("logits: token by token through the cache equals one pass without it") {
    const Run a = run_cli("logits --model random:tiny:1 --ids 4,8,15,16,23 --all-positions");
    const Run b = run_cli("logits --model random:tiny:1 --ids 4,8,15,16,23 --all-positions --no-cache");
    REQUIRE(a.rc == 0);
    REQUIRE(b.rc == 0);
    const json la = json::parse(a.out)["logits"], lb = json::parse(b.out)["logits"];
    REQUIRE(la.size() == 5);
    REQUIRE(lb.size() == 5);
    double worst = 0;
    for (size_t i = 0; i < 5; ++i)
        for (size_t j = 0; j < la[i].size(); ++j)
            worst = std::max(worst, std::abs(la[i][j].get<double>() - lb[i][j].get<double>()));
    CHECK(worst <= 1e-4);
    const Run last = run_cli("logits --model random:tiny:1 --ids 4,8,15,16,23");
    REQUIRE(last.rc == 0);
    CHECK(json::parse(last.out)["logits"].size() == 96);
}

TEST_CASE("errors: exit code and one line naming the argument") {
    struct Case { const char* args; int rc; const char* needle; };
    const Case cases[] = {
        {"generate --model random:tiny --prompt hello --new 3", 2, "--prompt"},
        {"generate --model random:tiny --ids 1,x --new 3", 2, "--ids"},
        {"generate --model random:tiny --ids 1,2 --new 0", 2, "--new"},
        {"generate --model random:tiny --ids 1,2 --new 64", 2, "--new"},
        {"generate --model random:tiny --ids 1,2,999 --new 2", 2, "999"},
        {"generate --model random:tiny --ids 1,2", 2, "--new"},
        {"generate --model /nonexistent/model --ids 1 --new 1", 1, "/nonexistent/model"},
        {"generate --model random:huge --ids 1 --new 1", 1, "random:huge"},
        {"logits --model random:tiny --ids 1 --backend tpu", 2, "--backend"},
        {"frobnicate", 2, "frobnicate"},
    };
    for (const auto& c : cases) {
        const std::string args = c.args;
        CAPTURE(args);
        const Run r = run_cli(c.args);
        CHECK(r.rc == c.rc);
        CHECK(r.err.find(c.needle) != std::string::npos);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.out.empty());
    }
}

TEST_CASE("compare --json under a window with sinks: a bounded cache, evictions, vs_full at every step") {
    const Run r = run_cli("compare --prompt 'Python is a programming' --new 20 --window 6 --sinks 2 --json");
    REQUIRE(r.rc == 0);
    const json d = json::parse(r.out);
    CHECK(d["cache"] == json{{"window", 6}, {"sinks", 2}, {"kv_dtype", "f32"}});
    REQUIRE(d["steps"].size() == 20);
    int64_t evicted = 0;
    for (const json& s : d["steps"]) {
        CAPTURE(s["step"].get<int>());
        CHECK(s["cached"]["counters"]["cache_rows"].get<int>() <= 8);
        CHECK(s["uncached"]["counters"]["cache_rows"] == s["cached"]["counters"]["cache_rows"]);
        CHECK(s["max_abs_logit_diff"].get<double>() <= 1e-4);
        REQUIRE(s.contains("vs_full"));
        CHECK(s["vs_full"].contains("max_abs_logit_diff"));
        CHECK(s["vs_full"]["same_top1"].is_boolean());
        evicted += s["cached"]["counters"]["kv_rows_evicted"].get<int64_t>();
    }
    CHECK(evicted > 0);
    CHECK(d["totals"]["cached"]["kv_rows_evicted"].get<int64_t>() == evicted);
}

TEST_CASE("compare --kv-dtype int8 on the bundled model: the f32 run's tokens at about a quarter of its bytes") {
    const Run f = run_cli("compare --prompt 'Python is a programming' --new 20 --json");
    const Run q = run_cli("compare --prompt 'Python is a programming' --new 20 --kv-dtype int8 --json");
    REQUIRE(f.rc == 0);
    REQUIRE(q.rc == 0);
    const json a = json::parse(f.out), b = json::parse(q.out);
    CHECK_FALSE(a.contains("cache"));  // no policy flag: the output has no policy fields
    CHECK_FALSE(a["steps"][0].contains("vs_full"));
    CHECK_FALSE(a["steps"][0]["cached"]["counters"].contains("kv_rows_evicted"));
    for (size_t i = 0; i < 20; ++i) CHECK(a["steps"][i]["cached"]["next_id"] == b["steps"][i]["cached"]["next_id"]);
    const double ratio = b["totals"]["cached"]["cache_bytes"].get<double>() / a["totals"]["cached"]["cache_bytes"].get<double>();
    CHECK(ratio == doctest::Approx(0.25 + 1.0 / 16));  // head_dim 16: the scales add 1/16
    CHECK(b["vs_full"]["same_top1_steps"] == 20);
}

namespace {

// The largest |a - b| over two logit lists printed by `logits`.
double max_abs_diff(const json& a, const json& b) {
    REQUIRE(a.size() == b.size());
    double d = 0;
    for (size_t j = 0; j < a.size(); ++j) d = std::max(d, std::abs(a[j].get<double>() - b[j].get<double>()));
    return d;
}

}  // namespace

TEST_CASE("compare --weights f16|bf16 --json: vs_f32 at every step, equal to the logits of an f32-weights run") {
    const std::string ids = "5,9,3,7";
    const Run l32 = run_cli("logits --model random:tiny:2 --ids " + ids + " --no-cache --weights f32");
    REQUIRE(l32.rc == 0);
    for (const char* t : {"f16", "bf16"}) {
        CAPTURE(t);
        const Run r = run_cli("compare --model random:tiny:2 --ids " + ids + " --new 8 --weights " + t + " --json");
        REQUIRE(r.rc == 0);
        const json d = json::parse(r.out);
        CHECK(d["model"]["weights"] == t);
        REQUIRE(d["steps"].size() == 8);
        double worst = 0;
        int same = 0;
        for (const json& s : d["steps"]) {
            CAPTURE(s["step"].get<int>());
            REQUIRE(s.contains("vs_f32"));
            const double diff = s["vs_f32"]["max_abs_logit_diff"].get<double>();
            CHECK(diff > 0);     // rounding the weights changes the logits...
            CHECK(diff < 0.05);  // ...by a little (tiny random model, logits of order 1)
            REQUIRE(s["vs_f32"]["same_top1"].is_boolean());
            same += s["vs_f32"]["same_top1"].get<bool>();
            worst = std::max(worst, diff);
        }
        CHECK(d["vs_f32"]["max_abs_logit_diff"].get<double>() == doctest::Approx(worst));
        CHECK(d["vs_f32"]["same_top1_steps"] == same);
        // The prefill's reference is an f32-weights forward of the prompt: the `logits`
        // command's difference between the two weight types, found independently.
        const Run lt = run_cli("logits --model random:tiny:2 --ids " + ids + " --no-cache --weights " + t);
        REQUIRE(lt.rc == 0);
        const double expected = max_abs_diff(json::parse(lt.out)["logits"], json::parse(l32.out)["logits"]);
        CHECK(d["steps"][0]["vs_f32"]["max_abs_logit_diff"].get<double>() ==
              doctest::Approx(expected).epsilon(1e-3));
    }
}

TEST_CASE("compare: vs_f32 only with 16-bit weights, beside vs_full under a cache policy") {
    const Run f = run_cli("compare --model random:tiny --ids 5,9,3,7 --new 3 --weights f32 --json");
    REQUIRE(f.rc == 0);
    const json a = json::parse(f.out);
    CHECK_FALSE(a.contains("vs_f32"));
    CHECK_FALSE(a["steps"][0].contains("vs_f32"));
    const Run p = run_cli("compare --model random:tiny --ids 5,9,3,7 --new 6 --weights bf16 --window 3 --json");
    REQUIRE(p.rc == 0);
    const json b = json::parse(p.out);
    for (const json& s : b["steps"]) {
        CAPTURE(s["step"].get<int>());
        CHECK(s.contains("vs_full"));
        CHECK(s.contains("vs_f32"));
    }
}

TEST_CASE("tokenize reads the tokenizer only: a folder whose weights are corrupt or absent still tokenizes") {
    const std::string bundled = kv::default_model_dir();
    REQUIRE_MESSAGE(!bundled.empty(), "the bundled model folder was not found");
    const Run ref = run_cli("tokenize --model '" + bundled + "' --text 'Python is a programming language'");
    REQUIRE(ref.rc == 0);
    kvtest::TempDir d("kvscope_tokenize_only");
    const std::filesystem::path m = d.path / "m";
    std::filesystem::create_directories(m);
    for (const char* f : {"config.json", "vocab.txt"})
        std::filesystem::copy_file(std::filesystem::path(bundled) / f, m / f);
    const std::string st = (m / "model.safetensors").string();
    SUBCASE("corrupt weights") {
        std::ofstream(st, std::ios::binary) << "this is not a safetensors file, and reading it fails";
        // The weights are really unreadable: a command that needs them says so.
        const Run g = run_cli("generate --model '" + m.string() + "' --ids 1,2 --new 1");
        CHECK(g.rc == 1);
        CHECK(g.err.find("model.safetensors") != std::string::npos);
    }
    SUBCASE("no weights file") {}
    const Run t = run_cli("tokenize --model '" + m.string() + "' --text 'Python is a programming language'");
    CAPTURE(t.err);
    CHECK(t.rc == 0);
    CHECK(t.out == ref.out);
}

TEST_CASE("export writes a folder in the held weight type that loads back to the same logits") {
    kvtest::TempDir d("kvscope_export");
    const std::string out = d / "m";
    const Run e = run_cli("export --model random:tiny:4 --weights bf16 --out '" + out + "'");
    CAPTURE(e.err);
    REQUIRE(e.rc == 0);
    const auto hdr = kv::read_safetensors_header(out + "/model.safetensors");
    CHECK(hdr.at("h.0.attn.c_attn.weight").dtype == "BF16");
    CHECK(hdr.at("h.0.attn.c_attn.bias").dtype == "F32");
    // Loaded as stored (bf16), the folder gives the random model's bf16 logits exactly.
    const Run a = run_cli("logits --model '" + out + "' --ids 3,1,4,1,5");
    const Run b = run_cli("logits --model random:tiny:4 --weights bf16 --ids 3,1,4,1,5");
    REQUIRE(a.rc == 0);
    REQUIRE(b.rc == 0);
    CHECK(a.out == b.out);
    CHECK(json::parse(run_cli("compare --model '" + out + "' --ids 3,1 --new 2 --json").out)["model"]["weights"] ==
          "bf16");
    // The bundled model keeps its tokenizer; an existing model is not overwritten.
    const std::string tiny = d / "tiny";
    REQUIRE(run_cli("export --out '" + tiny + "'").rc == 0);
    CHECK(run_cli("tokenize --model '" + tiny + "' --text 'Python is a programming language'").out ==
          run_cli("tokenize --text 'Python is a programming language'").out);
    const Run again = run_cli("export --model random:tiny --out '" + out + "'");
    CHECK(again.rc == 2);
    CHECK(again.err.find("--out") != std::string::npos);
}

TEST_CASE("the Llama family on the command line: generate, compare, logits and bench on random:llama-tiny") {
    const Run c = run_cli("compare --model random:llama-tiny --ids 5,9,3,7 --new 12 --window 6 --sinks 2 --json");
    REQUIRE(c.rc == 0);
    const json d = json::parse(c.out);
    const int L = d["model"]["n_layer"], Hkv = d["model"]["n_kv_head"];
    CHECK(Hkv == 2);
    REQUIRE(d["steps"].size() == 12);
    for (const json& st : d["steps"]) {
        CHECK(st["max_abs_logit_diff"].get<double>() <= 1e-4);
        CHECK(st["cached"]["next_id"] == st["uncached"]["next_id"]);
    }
    CHECK(d["totals"]["cached"]["kv_rows_computed"] == L * Hkv * (4 + 12 - 1));
    const Run a = run_cli("logits --model random:llama-tiny:2 --ids 4,8,15,16,23 --all-positions --weights bf16");
    const Run b = run_cli("logits --model random:llama-tiny:2 --ids 4,8,15,16,23 --all-positions --weights bf16 --no-cache");
    REQUIRE(a.rc == 0);
    REQUIRE(b.rc == 0);
    const json la = json::parse(a.out)["logits"], lb = json::parse(b.out)["logits"];
    REQUIRE(la.size() == 5);
    double worst = 0;
    for (size_t i = 0; i < 5; ++i)
        for (size_t j = 0; j < la[i].size(); ++j)
            worst = std::max(worst, std::abs(la[i][j].get<double>() - lb[i][j].get<double>()));
    CHECK(worst <= 1e-4);
    const Run g = run_cli("generate --model random:llama-tiny --ids 1,2,3 --new 4 --kv-dtype int8 --json");
    REQUIRE(g.rc == 0);
    CHECK(json::parse(g.out)["steps"].size() == 4);
    const Run bench = run_cli("bench --model random:llama-tiny --prompt-len 8 --new 8 --threads 1 --json");
    REQUIRE(bench.rc == 0);
    CHECK(json::parse(bench.out)["tokens_per_s"].get<double>() > 0);
    // The CUDA backend runs the family where a device is present, else says why not.
    const Run cuda = run_cli("logits --model random:llama-tiny --ids 1,2 --backend cuda");
    CHECK(cuda.rc == (kv::cuda_available(nullptr) ? 0 : 1));
    if (cuda.rc != 0) CHECK(cuda.err.find("cuda") != std::string::npos);
}
