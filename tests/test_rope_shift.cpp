// The RoPE chapter's stale-position demonstration (core/session/rope_shift.h) against
// an independent NumPy forward (tests/reference/llama_numpy.py --positions): the
// correct step is the prompt at positions 0..n-1; the stale step equals the prompt's
// first n-1 tokens at 0..n-2 and the last one `shift` positions later; and moving the
// whole sequence by `shift` (keys turned again) changes nothing. Skipped where python3
// has no NumPy, failed under CI.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <unistd.h>

#include "core/error.h"
#include "core/session/rope_shift.h"
#include "test_helpers.h"

namespace fs = std::filesystem;

namespace {

// The last position's logits of llama_numpy.py with token i at positions[i].
std::vector<float> numpy_last(const std::string& py, const std::string& dir, const std::vector<int>& ids,
                              const std::vector<int>& positions) {
    std::string id_list, pos_list;
    for (size_t i = 0; i < ids.size(); ++i) {
        id_list += (i ? "," : "") + std::to_string(ids[i]);
        pos_list += (i ? "," : "") + std::to_string(positions[i]);
    }
    const kvtest::Run r = kvtest::run_shell(py + " '" KVSCOPE_SOURCE_DIR "/tests/reference/llama_numpy.py' '" + dir +
                                            "' " + id_list + " --positions " + pos_list);
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    return nlohmann::json::parse(r.out)["logits"].back().get<std::vector<float>>();
}

std::vector<int> positions_from(int first, int n) {
    std::vector<int> p(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) p[size_t(i)] = first + i;
    return p;
}

}  // namespace

TEST_CASE("stale RoPE keys: the demonstration matches NumPy with the last token moved") {
    std::string why;
    const std::string py = kvtest::numpy_python(&why);
    KVTEST_SKIP_UNLESS(!py.empty(), why);
    const fs::path root = fs::temp_directory_path() / ("kvscope_rope_shift_" + std::to_string(::getpid()));
    int k = 0;
    for (const kv::ModelConfig& cfg : kvtest::llama_shapes()) {  // llama-tiny; Qwen2-like, head_dim 24
        CAPTURE(cfg.qkv_bias);
        const fs::path dir = root / std::to_string(k++);
        fs::create_directories(dir);
        auto m = kvtest::random_llama(cfg, 40 + k);
        kv::save_model_folder(dir.string(), m->config, m->weights, nullptr);
        const std::vector<int> ids = kvtest::seq_ids(12, cfg.vocab_size, k);
        const int n = int(ids.size());
        const std::vector<float> at_zero = numpy_last(py, dir.string(), ids, positions_from(0, n));
        for (int shift : {1, 3}) {
            CAPTURE(shift);
            const kv::RopeShiftResult r = kv::rope_shift_demo(*m, ids, shift);
            std::vector<int> moved = positions_from(0, n);
            moved.back() += shift;  // the prompt where it was cached, the new token later
            CHECK(kvtest::max_abs_diff(r.correct, at_zero) <= 1e-4);
            CHECK(kvtest::max_abs_diff(r.stale, numpy_last(py, dir.string(), ids, moved)) <= 1e-4);
            // Keys turned again for the moved sequence: the same logits as at 0 (angles add).
            CHECK(kvtest::max_abs_diff(numpy_last(py, dir.string(), ids, positions_from(shift, n)), at_zero) <= 1e-4);
            CHECK(r.max_abs_diff > 1e-2);  // stale keys are visibly wrong
            CHECK(r.max_abs_diff == doctest::Approx(kvtest::max_abs_diff(r.stale, r.correct)));
            MESSAGE("shift " << shift << ": max |stale - correct| = " << r.max_abs_diff);
        }
    }
    fs::remove_all(root);
}

TEST_CASE("stale RoPE keys: a shift of zero changes nothing, and the result's fields agree") {
    auto m = kvtest::random_llama(kv::ModelConfig::llama_tiny(), 3);
    const std::vector<int> ids = kvtest::seq_ids(9, m->config.vocab_size, 1);
    const kv::RopeShiftResult z = kv::rope_shift_demo(*m, ids, 0);
    CHECK(z.max_abs_diff == 0.f);
    CHECK(z.top_stale == z.top_correct);
    CHECK(z.p_stale_of_correct_top == doctest::Approx(z.p_correct_top));
    const kv::RopeShiftResult r = kv::rope_shift_demo(*m, ids, 2);
    REQUIRE(r.correct.size() == size_t(m->config.vocab_size));
    CHECK(r.shift == 2);
    CHECK(r.top_correct == int(std::max_element(r.correct.begin(), r.correct.end()) - r.correct.begin()));
    CHECK(r.top_stale == int(std::max_element(r.stale.begin(), r.stale.end()) - r.stale.begin()));
    CHECK(r.p_correct_top > 0.f);
    CHECK(r.p_correct_top <= 1.f);
}

TEST_CASE("stale RoPE keys: GPT-2 and a one-token prompt are refused with one line") {
    auto gpt2 = kv::load_model("random:tiny");
    const std::vector<int> ids = {1, 2, 3};
    CHECK_THROWS_WITH_AS(kv::rope_shift_demo(*gpt2, ids, 1), doctest::Contains("RoPE"), kv::Error);
    auto llama = kvtest::random_llama(kv::ModelConfig::llama_tiny(), 1);
    const std::vector<int> one = {4};
    CHECK_THROWS_WITH_AS(kv::rope_shift_demo(*llama, one, 1), doctest::Contains("two tokens"), kv::Error);
}
