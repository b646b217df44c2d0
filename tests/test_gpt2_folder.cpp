// A folder in the layout of a Hugging Face GPT-2 download (config.json,
// model.safetensors, vocab.json, merges.txt; GPT-2's real vocabulary, random small
// weights) opens unchanged: kvscope-cli tokenize, logits and generate work on it,
// and its logits match the NumPy reference.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <sys/wait.h>

#include "core/model/model_io.h"
#include "test_helpers.h"
#include "text_cases.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string sh(const std::string& cmd, int* rc) {
    const kvtest::Run r = kvtest::run_shell(cmd);
    *rc = r.rc;
    return r.out;
}

// Builds the folder once: GPT-2's vocabulary and a 2-layer, 64-wide random model.
std::string gpt2_folder(std::string* why) {
    static std::string reason;
    static const std::string dir = [] {
        const std::string vocab = kvtest::gpt2_vocab_dir(&reason);
        if (vocab.empty()) return std::string();
        // One folder per process: ctest runs these cases as parallel processes.
        static const kvtest::TempDir tmp("kvscope_gpt2_layout");
        const fs::path d = tmp.path;
        auto m = kvtest::random_model(50257, 64, 64, 2, 4, 4, 77);
        m->weights.wte *= 20.0f;  // logits of a useful size
        kv::save_model_folder(d.string(), m->config, m->weights, nullptr);
        fs::copy_file(vocab + "/vocab.json", d / "vocab.json", fs::copy_options::overwrite_existing);
        fs::copy_file(vocab + "/merges.txt", d / "merges.txt", fs::copy_options::overwrite_existing);
        return d.string();
    }();
    *why = reason;
    return dir;
}

#define REQUIRE_FOLDER(dir)                                                                 \
    std::string why;                                                                        \
    const std::string dir = gpt2_folder(&why);                                              \
    if (dir.empty()) {                                                                      \
        KVTEST_SKIP_UNLESS(false, "GPT-2 vocabulary unavailable: " + why);                  \
    }

const std::string cli = std::string("'") + KVSCOPE_CLI + "' ";

}  // namespace

TEST_CASE("tokenize on a GPT-2-layout folder gives GPT-2's ids") {
    REQUIRE_FOLDER(dir);
    int rc = 0;
    const json out = json::parse(sh(cli + "tokenize --model '" + dir + "' --text 'Hello world'", &rc));
    REQUIRE(rc == 0);
    CHECK(out["ids"] == json::array({15496, 995}));
    CHECK(out["tokens"] == json::array({"Hello", " world"}));
}

TEST_CASE("the loader picks the BPE tokenizer and the GPT-2 shape") {
    REQUIRE_FOLDER(dir);
    auto m = kv::load_model_folder(dir);
    REQUIRE(m->tokenizer);
    CHECK(m->tokenizer->kind() == "gpt2-bpe");
    CHECK(m->tokenizer->vocab_size() == 50257);
    CHECK(m->config.vocab_size == 50257);
}

TEST_CASE("logits on a GPT-2-layout folder: cache and no cache agree with the NumPy reference") {
    REQUIRE_FOLDER(dir);
    const std::string ids = "15496,995,11,314,716,257";
    int rc = 0;
    const json a = json::parse(sh(cli + "logits --model '" + dir + "' --ids " + ids + " --all-positions", &rc))["logits"];
    REQUIRE(rc == 0);
    const json b =
        json::parse(sh(cli + "logits --model '" + dir + "' --ids " + ids + " --all-positions --no-cache", &rc))["logits"];
    REQUIRE(rc == 0);
    REQUIRE(a.size() == 6);
    REQUIRE(a[5].size() == 50257);
    double worst_ab = 0;
    for (size_t i = 0; i < 6; ++i)
        for (size_t j = 0; j < 50257; ++j)
            worst_ab = std::max(worst_ab, std::abs(a[i][j].get<double>() - b[i][j].get<double>()));
    CHECK(worst_ab <= 1e-4);

    std::string no_numpy;
    const std::string py = kvtest::numpy_python(&no_numpy);
    KVTEST_SKIP_UNLESS(!py.empty(), "NumPy comparison: " + no_numpy);
    const json ref = json::parse(sh(py + " '" KVSCOPE_SOURCE_DIR "/tests/reference/gpt2_numpy.py' '" + dir +
                                        "' " + ids,
                                    &rc))["logits"];
    REQUIRE(rc == 0);
    double worst = 0, largest = 0;
    for (size_t i = 0; i < 6; ++i)
        for (size_t j = 0; j < 50257; ++j) {
            const double r = ref[i][j].get<double>();
            largest = std::max(largest, std::abs(r));
            worst = std::max(worst, std::abs(r - b[i][j].get<double>()));
        }
    MESSAGE("GPT-2 layout: worst |engine - numpy| = " << worst << " (largest |logit| " << largest << ")");
    CHECK(largest > 1.0);
    CHECK(worst <= 1e-4);
}

TEST_CASE("generate with a text prompt on a GPT-2-layout folder") {
    REQUIRE_FOLDER(dir);
    int rc = 0;
    const json out =
        json::parse(sh(cli + "generate --model '" + dir + "' --prompt 'The KV cache' --new 3 --json 2>/dev/null", &rc));
    REQUIRE(rc == 0);
    const json tok = json::parse(sh(cli + "tokenize --model '" + dir + "' --text 'The KV cache'", &rc));
    REQUIRE(rc == 0);
    CHECK(out["prompt_ids"] == tok["ids"]);
    CHECK(tok["tokens"] == json::array({"The", " K", "V", " cache"}));
    REQUIRE(out["steps"].size() == 3);
    CHECK(out["steps"][0]["next_token"].is_string());
}

// Issue 17: GPT-2's byte-level tokens often hold part of a UTF-8 character. Every
// command's JSON must parse, and the exact bytes of the pieces must give back the text.
namespace {

json tokenize_json(const std::string& dir, const std::string& text) {
    const kvtest::Run tk = kvtest::run_cli("tokenize --model '" + dir + "' --text '" + text + "'");
    REQUIRE(tk.rc == 0);
    return json::parse(tk.out);
}

}  // namespace

TEST_CASE("GPT-2 folder: tokenize JSON in many scripts and invalid UTF-8 gives back the text's bytes") {
    REQUIRE_FOLDER(dir);
    for (const kvtest::TextCase& c : kvtest::text_cases()) {
        CAPTURE(c.name);
        const json t = tokenize_json(dir, c.text);
        REQUIRE(t["tokens"].size() == t["ids"].size());
        std::string joined;
        for (int i = 0; i < int(t["tokens"].size()); ++i) joined += kvtest::json_text_bytes(t, "tokens", i);
        CHECK(joined == c.text);
    }
    // logits take ids, not text: one run over the ids of a prompt of partial characters
    const json t = tokenize_json(dir, "日本語");
    std::string ids;
    for (const json& id : t["ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(id.get<int>());
    const kvtest::Run lg = kvtest::run_cli("logits --model '" + dir + "' --ids " + ids);
    REQUIRE(lg.rc == 0);
    CHECK(json::parse(lg.out)["logits"].size() == 50257);
}

TEST_CASE("GPT-2 folder: generate --json in many scripts: prompt and tokens' bytes give back its text") {
    REQUIRE_FOLDER(dir);
    for (const kvtest::TextCase& c : kvtest::text_cases()) {
        CAPTURE(c.name);
        const kvtest::Run g =
            kvtest::run_cli("generate --model '" + dir + "' --prompt '" + c.text + "' --new 4 --json");
        REQUIRE(g.rc == 0);
        const json gj = json::parse(g.out);
        REQUIRE(gj["steps"].size() == 4);
        REQUIRE(gj["new_ids"].size() == 4);
        std::string text = c.text;  // the prompt, then each step's token
        for (int k = 0; k < 4; ++k) {
            CHECK(gj["steps"][k]["next_id"] == gj["new_ids"][k]);
            text += kvtest::json_text_bytes(gj["steps"][k], "next_token");
        }
        CHECK(kvtest::json_text_bytes(gj, "text") == text);
    }
}

TEST_CASE("GPT-2 folder: compare --json in many scripts") {
    REQUIRE_FOLDER(dir);
    for (const kvtest::TextCase& c : kvtest::text_cases()) {
        CAPTURE(c.name);
        const kvtest::Run cmp =
            kvtest::run_cli("compare --model '" + dir + "' --prompt '" + c.text + "' --new 2 --json");
        REQUIRE(cmp.rc == 0);
        const json cj = json::parse(cmp.out);
        CHECK(cj["prompt_ids"] == tokenize_json(dir, c.text)["ids"]);
        CHECK(cj["steps"].size() == 2);
        CHECK(cj["same_tokens"] == true);
    }
}
