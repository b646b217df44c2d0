// Trainer tests: the hand-written backward pass against finite differences for
// every parameter tensor of both families and for each Llama kernel on its own
// (RMSNorm, RoPE, SwiGLU, grouped-query attention, nn.Linear products), the kernels'
// forward against the formulas of transformers' modeling_llama.py written out here,
// agreement of the trainer's forward with the CPU engine, determinism for a seed,
// that loss falls, the Llama folder it writes, the bundled tiny-llama read back, and
// the corpus/vocabulary plumbing.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <random>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/model/model_io.h"
#include <nlohmann/json.hpp>

#include "core/model/safetensors.h"
#include "core/text/tokenizer.h"
#include "core/train/train.h"
#include "core/train/train_internal.h"
#include "core/model/weights.h"
#include "test_helpers.h"

namespace fs = std::filesystem;

namespace {

kv::ModelConfig micro_config(int n_kv_head, kv::ModelFamily family = kv::ModelFamily::gpt2) {
    kv::ModelConfig c;
    c.family = family;
    c.vocab_size = 11;
    c.n_ctx = 5;
    c.n_embd = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = n_kv_head;
    if (c.is_llama()) {
        c.n_ff = 12;
        c.rope.theta = 10.0;  // a small base, so that every pair turns a visible angle over 5 positions
    }
    return c;
}

std::string read_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

fs::path temp_dir(const std::string& name) {
    // The process id keeps concurrent runs (parallel ctest, other build folders) apart.
    fs::path d = fs::temp_directory_path() / ("kvscope_test_train_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::vector<double> randn(size_t n, uint64_t seed, double scale = 1.0) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd(0.0, scale);
    std::vector<double> v(n);
    for (double& x : v) x = nd(rng);
    return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

// One kernel's gradient check: `loss` computes sum(dout * f(...)) from the current
// values of `p`; central differences over every value of p (h = 1e-5, double) against
// `analytic`, |analytic - numeric| <= 1e-7 + 1e-5 |numeric| (the whole-model test's
// tolerance), worst index reported. The gradient must not be trivially zero.
void check_gradient(const std::string& what, std::vector<double>& p, const std::vector<double>& analytic,
                    const std::function<double()>& loss) {
    const double h = 1e-5, atol = 1e-7, rtol = 1e-5;
    REQUIRE(p.size() == analytic.size());
    double worst = 0, norm = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        const double saved = p[i];
        p[i] = saved + h;
        const double lp = loss();
        p[i] = saved - h;
        const double lm = loss();
        p[i] = saved;
        const double numeric = (lp - lm) / (2 * h);
        const double excess = std::abs(analytic[i] - numeric) - (atol + rtol * std::abs(numeric));
        if (i == 0 || excess > worst) worst = excess, worst_i = i;
        norm += numeric * numeric;
    }
    CAPTURE(what);
    CAPTURE(worst_i);
    CHECK(worst <= 0.0);
    CHECK(norm > 1e-12);
}

// The RoPE tables a Trainer builds, (T, hd/2): cos and sin of pos * inv_freq[i].
void rope_tables(int T, int hd, double theta, std::vector<double>& cos_t, std::vector<double>& sin_t) {
    kv::RopeConfig rope;
    rope.theta = theta;
    const std::vector<float> inv = kv::rope_inv_freq(hd, rope);
    cos_t.assign(size_t(T) * hd / 2, 0);
    sin_t.assign(size_t(T) * hd / 2, 0);
    for (int p = 0; p < T; ++p)
        for (int i = 0; i < hd / 2; ++i) {
            cos_t[size_t(p) * hd / 2 + i] = std::cos(double(float(p) * inv[size_t(i)]));
            sin_t[size_t(p) * hd / 2 + i] = std::sin(double(float(p) * inv[size_t(i)]));
        }
}

// The trainer's own forward (not the engine's) over a model folder it wrote: the
// greedy continuation of `prompt`, n words, each step rerunning the whole sequence.
std::vector<std::string> trainer_greedy(const fs::path& dir, const std::string& prompt, int n) {
    const kv::ModelConfig cfg = kv::read_config_json((dir / "config.json").string());
    const auto tok = kv::WordTokenizer::load((dir / "vocab.txt").string());
    kv::Trainer<float> m(cfg, 1, cfg.n_ctx);
    m.read_safetensors((dir / "model.safetensors").string());
    std::vector<int> ids = tok->encode(prompt).ids;
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
        m.forward(ids, {}, 1, int(ids.size()));
        const auto logits = m.logits();
        const float* last = logits.data() + (ids.size() - 1) * size_t(cfg.vocab_size);
        ids.push_back(int(std::max_element(last, last + cfg.vocab_size) - last));
        out.push_back(tok->token_text(ids.back()));
    }
    return out;
}

const char* kTinyCorpus =
    "the cat sat on the mat .\n"
    "the dog sat on the rug .\n"
    "a cat is a small animal .\n"
    "a dog is a loyal animal .\n"
    "the cat sat on the mat .\n";

}  // namespace

namespace {

// Every element of every parameter tensor: the backward pass against central
// differences in double. h = 1e-5 has truncation error O(h^2) ~ 1e-10 and rounding
// ~ 1e-11, so the stated tolerance is |analytic - numeric| <= 1e-7 + 1e-5 * |numeric|.
void check_model_gradients(const kv::ModelConfig& cfg, size_t n_tensors) {
    const double h = 1e-5, atol = 1e-7, rtol = 1e-5;
    const int B = 2, T = cfg.n_ctx;
    kv::Trainer<double> m(cfg, B, T);
    m.init_random(7);
    // Move every parameter off its init (norm weights 1, biases 0) so no
    // gradient is trivially zero by symmetry.
    std::mt19937_64 rng(42);
    std::normal_distribution<double> nd(0.0, 0.3);
    for (double& p : m.params()) p += nd(rng);
    const std::vector<int> inputs = {1, 4, 4, 9, 0, 10, 2, 7, 3, 1};
    const std::vector<int> targets = {4, 4, 9, 0, 5, 2, 7, 3, 1, 6};
    m.forward(inputs, targets, B, T);
    m.backward();
    const kv::TrainBuf<double> analytic = m.grads();

    REQUIRE(m.layout().size() == n_tensors);
    for (const auto& pt : m.layout()) {
        CAPTURE(pt.name);
        double worst = 0, grad_norm = 0;
        int64_t worst_i = -1;
        for (int64_t i = pt.offset; i < pt.offset + pt.size(); ++i) {
            const double saved = m.params()[i];
            m.params()[i] = saved + h;
            const double lp = m.forward(inputs, targets, B, T);
            m.params()[i] = saved - h;
            const double lm = m.forward(inputs, targets, B, T);
            m.params()[i] = saved;
            const double numeric = (lp - lm) / (2 * h);
            const double excess = std::abs(analytic[i] - numeric) - (atol + rtol * std::abs(numeric));
            if (worst_i < 0 || excess > worst) {
                worst = excess;
                worst_i = i - pt.offset;
            }
            grad_norm += numeric * numeric;
        }
        CAPTURE(worst_i);
        CHECK(worst <= 0.0);
        // Every tensor takes part in the loss (wte twice: embedding and head).
        CHECK(grad_norm > 1e-12);
    }
}

// A micro MLA (DeepseekV3 attention on the Llama micro model), every width distinct so
// that a mixed-up index shows: d_c 6, d_R 4, d_n 3, d_v 5, 2 heads, C 8; queries
// through a latent of d_q (q_a_proj, q_a_layernorm, q_b_proj) when it is not 0.
kv::ModelConfig micro_mla_config(bool rope_interleave, int q_lora_rank = 0) {
    kv::ModelConfig c = micro_config(1, kv::ModelFamily::llama);
    c.mla.q_lora_rank = q_lora_rank;
    c.mla.kv_lora_rank = 6;
    c.mla.qk_rope_head_dim = 4;
    c.mla.qk_nope_head_dim = 3;
    c.mla.v_head_dim = 5;
    c.mla.rope_interleave = rope_interleave;
    return c;
}

}  // namespace

TEST_CASE("trainer gradients match central finite differences for every parameter tensor of both families") {
    for (auto [family, n_kv_head] : {std::pair{kv::ModelFamily::gpt2, 2}, std::pair{kv::ModelFamily::gpt2, 1},
                                     std::pair{kv::ModelFamily::llama, 2}, std::pair{kv::ModelFamily::llama, 1}}) {
        const kv::ModelConfig cfg = micro_config(n_kv_head, family);
        CAPTURE(cfg.is_llama());
        CAPTURE(n_kv_head);
        check_model_gradients(cfg, cfg.is_llama() ? size_t(1 + 9 * cfg.n_layer + 1) : size_t(2 + 12 * cfg.n_layer + 2));
    }
}

TEST_CASE("trainer MLA gradients match central finite differences for every parameter tensor") {
    // 10 tensors a layer: input_layernorm, q_proj, kv_a_proj_with_mqa,
    // kv_a_layernorm, kv_b_proj, o_proj, post_attention_layernorm, gate, up, down; 12
    // with a query latent (q_a_proj for q_proj, q_a_layernorm, q_b_proj).
    for (auto [interleave, dq] : {std::pair{true, 0}, std::pair{false, 0}, std::pair{true, 7}}) {
        CAPTURE(interleave);
        CAPTURE(dq);
        const kv::ModelConfig cfg = micro_mla_config(interleave, dq);
        check_model_gradients(cfg, size_t(1 + (dq > 0 ? 12 : 10) * cfg.n_layer + 1));
    }
}

namespace {

// The worst |trainer - engine| over every logit of a prefill of ids from position 0,
// the CPU engine run on `model` with a cache of `policy`, the trainer's logits from
// its last forward over the same ids.
float worst_against_engine(const kv::Trainer<float>& tr, const kv::Model& model, const std::vector<int>& ids,
                           const kv::CachePolicy& policy = {}) {
    auto engine = kv::make_cpu_engine(model);
    kv::ForwardRequest req;
    req.ids = ids;
    req.start_pos = 0;
    req.all_logits = true;
    req.trace_opts.record = false;
    kv::StepTrace trace;
    std::vector<float> theirs;
    engine->forward(req, *engine->make_cache(policy), trace, &theirs);
    const auto ours = tr.logits();
    REQUIRE(theirs.size() == ours.size());
    float worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
        const float d = std::abs(ours[i] - theirs[i]);
        if (d > worst) worst = d, worst_i = i;
    }
    CAPTURE(worst_i);
    return worst;
}

}  // namespace

TEST_CASE("trainer forward gives the CPU engine's logits") {
    kv::ModelConfig cfg = micro_config(2);
    cfg.vocab_size = 13;
    cfg.n_ctx = 9;
    auto model = kv::make_random_model(cfg, 3, "random:micro");
    kv::Trainer<float> tr(cfg, 1, cfg.n_ctx);
    tr.set_weights(model->weights);
    const std::vector<int> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5};
    tr.forward(ids, {}, 1, int(ids.size()));
    CHECK(worst_against_engine(tr, *model, ids) <= 1e-4f);
}

TEST_CASE("weights round-trip through the flat parameter buffer") {
    const kv::ModelConfig cfg = micro_config(2);
    const kv::Weights w = kv::random_weights(cfg, 5);
    kv::Trainer<float> tr(cfg, 1, 2);
    tr.set_weights(w);
    const kv::Weights back = tr.weights();
    CHECK(back.wte == w.wte);
    CHECK(back.wpe == w.wpe);
    CHECK(back.layers[1].attn_w == w.layers[1].attn_w);
    CHECK(back.layers[1].mlp_proj_b == w.layers[1].mlp_proj_b);
    CHECK(back.ln_f_w == w.ln_f_w);
    const auto layout = kv::param_layout(cfg);
    CHECK(layout.front().name == "wte.weight");
    CHECK(layout[2 + 2].name == "h.0.attn.c_attn.weight");
    CHECK(layout.back().name == "ln_f.bias");
    CHECK(layout.back().offset + layout.back().size() == cfg.n_params());
}

TEST_CASE("training lowers the loss on a tiny batch") {
    const kv::ModelConfig cfg = micro_config(2);
    kv::Trainer<float> tr(cfg, 2, cfg.n_ctx);
    tr.set_weights(kv::random_weights(cfg, 1));
    const std::vector<int> inputs = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    const std::vector<int> targets = {2, 3, 4, 5, 6, 7, 8, 9, 10, 1};
    kv::AdamW opt;
    const float first = tr.forward(inputs, targets, 2, cfg.n_ctx);
    float last = first;
    for (int step = 0; step < 60; ++step) {
        last = tr.forward(inputs, targets, 2, cfg.n_ctx);
        tr.backward();
        opt.update(tr.params(), tr.grads(), tr.layout(), 1e-2f);
    }
    CAPTURE(first);
    CAPTURE(last);
    CHECK(first == doctest::Approx(std::log(11.0)).epsilon(0.05));
    CHECK(last < 0.25f * first);
}

TEST_CASE("train_model is deterministic for a seed and writes a loadable model folder") {
    const fs::path dir = temp_dir("det");
    {
        std::ofstream(dir / "corpus.txt") << kTinyCorpus;
    }
    kv::TrainOptions opt;
    opt.corpus = (dir / "corpus.txt").string();
    opt.steps = 4;
    opt.quiet = true;
    opt.seed = 11;
    opt.out_dir = (dir / "a").string();
    const kv::TrainReport ra = kv::train_model(opt);
    opt.out_dir = (dir / "b").string();
    const kv::TrainReport rb = kv::train_model(opt);
    opt.seed = 12;
    opt.out_dir = (dir / "c").string();
    kv::train_model(opt);

    CHECK(ra.train_loss == rb.train_loss);
    CHECK(ra.val_loss == rb.val_loss);
    const std::string wa = read_bytes(dir / "a" / "model.safetensors");
    REQUIRE(!wa.empty());
    CHECK(wa == read_bytes(dir / "b" / "model.safetensors"));
    CHECK(wa != read_bytes(dir / "c" / "model.safetensors"));

    auto model = kv::load_model_folder((dir / "a").string());
    REQUIRE(model->tokenizer);
    CHECK(model->config.vocab_size == ra.vocab_size);
    CHECK(model->config.n_params() == ra.n_params);
    CHECK(model->tokenizer->token_text(0) == "<unk>");
    CHECK(model->tokenizer->token_text(1) == "<eos>");
    fs::remove_all(dir);
}

TEST_CASE("build_vocab orders words by count, then alphabetically, after <unk> and <eos>") {
    const std::vector<std::string> lines = {"b a c .", "a c .", "c ."};
    const std::vector<std::string> expect = {"<unk>", "<eos>", ".", "c", "a", "b"};
    CHECK(kv::build_vocab(lines) == expect);
}

TEST_CASE("lr_schedule warms up linearly and decays to its floor") {
    CHECK(kv::lr_schedule(0, 100, 1.f, 10, 0.1f) == doctest::Approx(0.1));
    CHECK(kv::lr_schedule(9, 100, 1.f, 10, 0.1f) == doctest::Approx(1.0));
    CHECK(kv::lr_schedule(10, 100, 1.f, 10, 0.1f) == doctest::Approx(1.0));
    CHECK(kv::lr_schedule(100, 100, 1.f, 10, 0.1f) == doctest::Approx(0.1));
    CHECK(kv::lr_schedule(55, 100, 1.f, 10, 0.1f) == doctest::Approx(0.55));
}

TEST_CASE("train_model rejects bad input with a kv::Error naming it") {
    const fs::path dir = temp_dir("bad");
    kv::TrainOptions opt;
    opt.quiet = true;
    opt.steps = 1;
    opt.out_dir = (dir / "out").string();
    SUBCASE("missing corpus") {
        opt.corpus = (dir / "nope.txt").string();
        CHECK_THROWS_WITH_AS(kv::train_model(opt), doctest::Contains("nope.txt"), kv::Error);
    }
    SUBCASE("empty corpus") {
        std::ofstream(dir / "empty.txt") << "\n  \n";
        opt.corpus = (dir / "empty.txt").string();
        CHECK_THROWS_WITH_AS(kv::train_model(opt), doctest::Contains("empty.txt"), kv::Error);
    }
    SUBCASE("zero steps") {
        std::ofstream(dir / "c.txt") << kTinyCorpus;
        opt.corpus = (dir / "c.txt").string();
        opt.steps = 0;
        CHECK_THROWS_WITH_AS(kv::train_model(opt), doctest::Contains("steps"), kv::Error);
    }
    SUBCASE("an MLP width for GPT-2") {
        std::ofstream(dir / "c.txt") << kTinyCorpus;
        opt.corpus = (dir / "c.txt").string();
        opt.n_ff = 100;
        CHECK_THROWS_WITH_AS(kv::train_model(opt), doctest::Contains("--ff"), kv::Error);
    }
    SUBCASE("an odd head size for RoPE") {
        std::ofstream(dir / "c.txt") << kTinyCorpus;
        opt.corpus = (dir / "c.txt").string();
        opt.family = kv::ModelFamily::llama;
        opt.n_embd = 12;
        opt.n_head = 4;
        CHECK_THROWS_WITH_AS(kv::train_model(opt), doctest::Contains("even for RoPE"), kv::Error);
    }
    fs::remove_all(dir);
}

// ---- The Llama block's kernels, one at a time ------------------------------------

TEST_CASE("RMSNorm kernel: forward is LlamaRMSNorm and backward matches finite differences") {
    namespace td = kv::train_detail;
    const int N = 3, C = 8;
    const double eps = 1e-5;
    std::vector<double> x = randn(N * C, 1), w = randn(C, 2), dout = randn(N * C, 3);
    for (double& v : w) v += 1.0;
    std::vector<double> out(N * C), rstd(N);
    auto loss = [&] {
        td::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
        return dot(dout, out);
    };
    loss();
    // transformers: hidden * rsqrt(mean(hidden^2) + eps), times weight.
    for (int n = 0; n < N; ++n) {
        double ms = 0;
        for (int c = 0; c < C; ++c) ms += x[n * C + c] * x[n * C + c] / C;
        for (int c = 0; c < C; ++c) {
            CAPTURE(n);
            CAPTURE(c);
            CHECK(out[n * C + c] == doctest::Approx(w[c] * x[n * C + c] / std::sqrt(ms + eps)).epsilon(1e-12));
        }
    }
    std::vector<double> dx(N * C, 0.0), dw(C, 0.0);
    td::rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
    check_gradient("x", x, dx, loss);
    check_gradient("weight", w, dw, loss);
}

TEST_CASE("RoPE kernel: forward is apply_rotary_pos_emb with rotate_half and backward matches finite differences") {
    namespace td = kv::train_detail;
    const int b = 2, t = 5, H = 2, Hkv = 1, hd = 8, half = hd / 2, Q = (H + 2 * Hkv) * hd;
    std::vector<double> cos_t, sin_t;
    rope_tables(t, hd, 10.0, cos_t, sin_t);
    const std::vector<double> x0 = randn(size_t(b) * t * Q, 4);
    std::vector<double> x = x0, y, dout = randn(x.size(), 5);
    auto loss = [&] {
        y = x;
        td::rope_forward(y.data(), cos_t.data(), sin_t.data(), b, t, Q, H + Hkv, hd);
        return dot(dout, y);
    };
    loss();
    // transformers: emb = cat(freqs, freqs); x * cos(emb) + cat(-x2, x1) * sin(emb), on
    // the q and k heads; v untouched.
    for (int r = 0; r < b * t; ++r) {
        const int pos = r % t;
        for (int head = 0; head < H + 2 * Hkv; ++head) {
            const double* in = &x0[size_t(r) * Q + size_t(head) * hd];
            const double* got = &y[size_t(r) * Q + size_t(head) * hd];
            for (int c = 0; c < hd; ++c) {
                const double emb_cos = cos_t[size_t(pos) * half + c % half], emb_sin = sin_t[size_t(pos) * half + c % half];
                const double rotated_half = c < half ? -in[c + half] : in[c - half];
                const double want = head < H + Hkv ? in[c] * emb_cos + rotated_half * emb_sin : in[c];
                CAPTURE(r);
                CAPTURE(head);
                CAPTURE(c);
                CHECK(got[c] == doctest::Approx(want).epsilon(1e-12));
            }
        }
    }
    // The backward pass: the inverse rotation of the output's gradient.
    std::vector<double> dx = dout;
    td::rope_forward(dx.data(), cos_t.data(), sin_t.data(), b, t, Q, H + Hkv, hd, true);
    check_gradient("qkv", x, dx, loss);
}

TEST_CASE("RoPE kernel: a rotated query and key score depends on their distance alone") {
    namespace td = kv::train_detail;
    // One row per position, a single head of 8: q.k after rotation at (m, n) equals
    // q.k after rotation at (m + s, n + s) for every shift s (to the float rounding of
    // the angles, pos * inv_freq in f32 as transformers computes them).
    const int T = 12, hd = 8;
    std::vector<double> cos_t, sin_t;
    rope_tables(T, hd, 10000.0, cos_t, sin_t);
    const std::vector<double> q = randn(hd, 6), k = randn(hd, 7);
    auto rotated = [&](const std::vector<double>& v, int pos) {
        std::vector<double> rows(size_t(T) * hd, 0.0);
        std::copy(v.begin(), v.end(), rows.begin() + pos * hd);
        td::rope_forward(rows.data(), cos_t.data(), sin_t.data(), 1, T, hd, 1, hd);
        return std::vector<double>(rows.begin() + pos * hd, rows.begin() + (pos + 1) * hd);
    };
    const double base = dot(rotated(q, 5), rotated(k, 2));
    CHECK(base != doctest::Approx(dot(q, k)).epsilon(1e-6));  // the rotation did change the score
    for (int s = 1; s <= 6; ++s) {
        CAPTURE(s);
        CHECK(dot(rotated(q, 5 + s), rotated(k, 2 + s)) == doctest::Approx(base).epsilon(1e-5));
    }
}

TEST_CASE("SwiGLU kernel: forward is silu(gate) * up and backward matches finite differences") {
    namespace td = kv::train_detail;
    const int N = 3, F = 5;
    std::vector<double> fch = randn(size_t(N) * 2 * F, 8, 2.0), dout = randn(size_t(N) * F, 9), out(size_t(N) * F);
    auto loss = [&] {
        td::swiglu_forward(out.data(), fch.data(), N, F);
        return dot(dout, out);
    };
    loss();
    for (int n = 0; n < N; ++n)
        for (int f = 0; f < F; ++f) {
            const double g = fch[size_t(n) * 2 * F + f], u = fch[size_t(n) * 2 * F + F + f];
            CHECK(out[size_t(n) * F + f] == doctest::Approx(g / (1 + std::exp(-g)) * u).epsilon(1e-12));
        }
    std::vector<double> dfch(fch.size(), 0.0);
    td::swiglu_backward(dfch.data(), fch.data(), dout.data(), N, F);
    check_gradient("[gate | up]", fch, dfch, loss);
}

TEST_CASE("grouped-query attention kernel: backward matches finite differences") {
    namespace td = kv::train_detail;
    // 4 query heads on 2 kv heads, head size 6 (so Dq = 24 need not be C); values 6
    // wide, or 4 (MLA's d_v apart from the q.k width).
    for (const int hdv : {6, 4}) {
        CAPTURE(hdv);
        const int b = 2, t = 4, H = 4, Hkv = 2, hd = 6, Q = (H + Hkv) * hd + Hkv * hdv;
        std::vector<double> qkv = randn(size_t(b) * t * Q, 10), dout = randn(size_t(b) * t * H * hdv, 11);
        std::vector<double> out(dout.size()), att(size_t(b) * H * t * t);
        auto loss = [&] {
            td::attention_forward(out.data(), att.data(), qkv.data(), b, t, hd, H, Hkv, hdv);
            return dot(dout, out);
        };
        loss();
        std::vector<double> dqkv(qkv.size(), 0.0), scratch(t);
        td::attention_backward(dqkv.data(), scratch.data(), dout.data(), qkv.data(), att.data(), b, t, hd, H, Hkv,
                               hdv);
        check_gradient("qkv", qkv, dqkv, loss);
    }
}

TEST_CASE("MLA RoPE kernel: forward is apply_rotary_pos_emb_interleave and backward matches finite differences") {
    namespace td = kv::train_detail;
    const int T = 5, d = 8, half = d / 2;
    std::vector<double> cos_t, sin_t;
    rope_tables(T, d, 10.0, cos_t, sin_t);
    for (bool interleaved : {true, false}) {
        CAPTURE(interleaved);
        for (int pos = 0; pos < T; ++pos) {
            CAPTURE(pos);
            const double* cs = &cos_t[size_t(pos) * half];
            const double* sn = &sin_t[size_t(pos) * half];
            std::vector<double> x = randn(d, 20 + uint64_t(pos)), y;
            const std::vector<double> dout = randn(d, 30 + uint64_t(pos));
            auto loss = [&] {
                y = x;
                td::rope_part(y.data(), cs, sn, d, interleaved, false);
                return dot(dout, y);
            };
            loss();
            // transformers (modeling_deepseek_v3.py): x.view(d/2, 2).transpose(-1, -2).reshape(d),
            // then x * cos(emb) + cat(-x2, x1) * sin(emb) with emb = cat(freqs, freqs).
            std::vector<double> xin(d);
            for (int c = 0; c < d; ++c) xin[size_t(c)] = interleaved ? x[size_t(c % half * 2 + c / half)] : x[size_t(c)];
            for (int c = 0; c < d; ++c) {
                const double rotated_half = c < half ? -xin[size_t(c + half)] : xin[size_t(c - half)];
                CAPTURE(c);
                CHECK(y[size_t(c)] == doctest::Approx(xin[size_t(c)] * cs[c % half] + rotated_half * sn[c % half]).epsilon(1e-12));
            }
            std::vector<double> dx = dout;
            td::rope_part(dx.data(), cs, sn, d, interleaved, true);
            check_gradient("x", x, dx, loss);
        }
    }
}

TEST_CASE("nn.Linear product kernel: y = x W^T and backward matches finite differences") {
    namespace td = kv::train_detail;
    const int N = 3, IC = 5, OC = 4;
    std::vector<double> x = randn(N * IC, 12), w = randn(OC * IC, 13), dout = randn(N * OC, 14), out(N * OC);
    auto loss = [&] {
        td::matmul_forward(out.data(), x.data(), w.data(), static_cast<const double*>(nullptr), N, IC, OC, true);
        return dot(dout, out);
    };
    loss();
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < OC; ++o) {
            double want = 0;
            for (int i = 0; i < IC; ++i) want += x[n * IC + i] * w[o * IC + i];  // w is (out, in)
            CHECK(out[n * OC + o] == doctest::Approx(want).epsilon(1e-12));
        }
    std::vector<double> dx(x.size(), 0.0), dw(w.size(), 0.0);
    td::matmul_backward(dx.data(), dw.data(), static_cast<double*>(nullptr), dout.data(), x.data(), w.data(), N, IC,
                        OC, true);
    check_gradient("x", x, dx, loss);
    check_gradient("weight", w, dw, loss);
}

// ---- The Llama folder the trainer writes ------------------------------------------

TEST_CASE("llama_config_json writes what parse_llama_config reads back to the same shape") {
    kv::TrainOptions opt;
    opt.family = kv::ModelFamily::llama;
    opt.n_kv_head = 2;
    const kv::ModelConfig cfg = kv::train_config(opt, 1058);
    const std::string text = kv::llama_config_json("config.json", cfg, kv::WeightType::f32, 1, 1);
    CHECK(kv::parse_llama_config(text, "config.json") == cfg);
    CHECK(text.find("\"architectures\": [\n    \"LlamaForCausalLM\"\n  ]") != std::string::npos);
    CHECK(text.find("\"rms_norm_eps\": 1e-05") != std::string::npos);
    CHECK(text.find("\"tie_word_embeddings\": true") != std::string::npos);
    CHECK(cfg.n_ff == 176);
    CHECK(cfg.head_dim() == 16);
    CHECK(text.find("\"bos_token_id\": 1") != std::string::npos);
    CHECK(text.find("\"eos_token_id\": 1") != std::string::npos);
    kv::ModelConfig qwen = cfg;
    qwen.qkv_bias = true;  // q/k/v biases without o_proj's: a Qwen2
    const std::string qtext = kv::llama_config_json("config.json", qwen);
    CHECK(qtext.find("Qwen2ForCausalLM") != std::string::npos);
    CHECK(kv::parse_llama_config(qtext, "config.json") == qwen);
}

TEST_CASE("train_model writes a Llama folder that reads back into the trainer, deterministically") {
    const fs::path dir = temp_dir("llama");
    std::ofstream(dir / "corpus.txt") << kTinyCorpus;
    kv::TrainOptions opt;
    opt.corpus = (dir / "corpus.txt").string();
    opt.steps = 4;
    opt.quiet = true;
    opt.family = kv::ModelFamily::llama;
    opt.n_kv_head = 2;
    opt.out_dir = (dir / "a").string();
    const kv::TrainReport ra = kv::train_model(opt);
    opt.out_dir = (dir / "b").string();
    kv::train_model(opt);
    CHECK(read_bytes(dir / "a" / "model.safetensors") == read_bytes(dir / "b" / "model.safetensors"));

    const kv::ModelConfig cfg = kv::read_config_json((dir / "a" / "config.json").string());
    CHECK(cfg.is_llama());
    CHECK(cfg.n_kv_head == 2);
    CHECK(cfg.n_params() == ra.n_params);
    kv::Trainer<float> m(cfg, 1, cfg.n_ctx);
    m.read_safetensors((dir / "a" / "model.safetensors").string());
    kv::Trainer<float> again(cfg, 1, cfg.n_ctx);
    again.read_safetensors((dir / "b" / "model.safetensors").string());
    CHECK(std::equal(m.params().begin(), m.params().end(), again.params().begin()));
    CHECK(kv::WordTokenizer::load((dir / "a" / "vocab.txt").string())->token_text(1) == "<eos>");
    fs::remove_all(dir);
}

TEST_CASE("a Llama trainer refuses GPT-2 Weights and a safetensors file of another shape") {
    const kv::ModelConfig cfg = micro_config(2, kv::ModelFamily::llama);
    kv::Trainer<float> m(cfg, 1, cfg.n_ctx);
    CHECK_THROWS_WITH_AS(m.set_weights(kv::random_weights(micro_config(2), 1)), doctest::Contains("GPT-2"), kv::Error);
    const fs::path dir = temp_dir("llama_shape");
    kv::ModelConfig wider = cfg;
    wider.n_ff = 16;
    kv::Trainer<float> other(wider, 1, 1);
    other.init_random(1);
    other.write_safetensors((dir / "w.safetensors").string());
    CHECK_THROWS_WITH_AS(m.read_safetensors((dir / "w.safetensors").string()),
                         doctest::Contains("model.layers.0.mlp.gate_proj.weight has shape [16, 8], expected [12, 8]"),
                         kv::Error);
    fs::remove_all(dir);
}

TEST_CASE("bundled tiny-llama: the trainer's own forward continues \"Python is a programming\" with \"language\"") {
    const fs::path dir = fs::path(KVSCOPE_SOURCE_DIR) / "assets/models/tiny-llama";
    CHECK(trainer_greedy(dir, "Python is a programming", 1) == std::vector<std::string>{"language"});
    std::string words;
    for (const auto& w : trainer_greedy(dir, "Python", 4)) words += (words.empty() ? "" : " ") + w;
    CHECK(words == "is a programming language");
}

// ---- The trainer's Llama forward against an independent one ----------------------

namespace {

// The worst |trainer - reference| - (1e-4 + 1e-4 |reference|) over every logit of every
// position of ids, the reference being `script` run on the same folder: `python3
// llama_pure.py` (plain Python, float64, written from modeling_llama.py) or NumPy's
// python with mla_numpy.py (written from DeepSeek-V2's equations and
// modeling_deepseek_v3.py); either prints {"logits": [...]}.
double worst_against_reference(const fs::path& dir, const std::vector<int>& ids, const std::string& script) {
    const kv::ModelConfig cfg = kv::read_config_json((dir / "config.json").string());
    kv::Trainer<float> m(cfg, 1, cfg.n_ctx);
    m.read_safetensors((dir / "model.safetensors").string());
    m.forward(ids, {}, 1, int(ids.size()));
    std::string list;
    for (int id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
    const kvtest::Run r = kvtest::run_shell(script + " '" + dir.string() + "' " + list);
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    const auto ref = nlohmann::json::parse(r.out).at("logits");
    REQUIRE(ref.size() == ids.size());
    const auto ours = m.logits();
    double worst = -1;
    size_t worst_i = 0;
    for (size_t p = 0; p < ids.size(); ++p) {
        REQUIRE(ref[p].size() == size_t(cfg.vocab_size));
        for (int v = 0; v < cfg.vocab_size; ++v) {
            const double want = ref[p][size_t(v)].get<double>(), got = ours[p * size_t(cfg.vocab_size) + size_t(v)];
            const double excess = std::abs(got - want) - (1e-4 + 1e-4 * std::abs(want));
            if (excess > worst || worst < -0.5) worst = excess, worst_i = p * size_t(cfg.vocab_size) + size_t(v);
        }
    }
    CAPTURE(worst_i);
    return worst;
}

double worst_against_pure_python(const fs::path& dir, const std::vector<int>& ids) {
    return worst_against_reference(dir, ids, "python3 '" KVSCOPE_SOURCE_DIR "/tests/reference/llama_pure.py'");
}

bool have_python3() { return std::system("python3 -c 'import json, struct' >/dev/null 2>&1") == 0; }

// A trainer of cfg with its parameters moved off the init (norm weights 1, small
// matrices), so that every part shows in the logits, written as a Hugging Face folder
// dir/m with a made-up vocabulary.
fs::path write_random_folder(const kv::ModelConfig& cfg, const fs::path& dir, uint64_t seed) {
    kv::Trainer<float> m(cfg, 1, cfg.n_ctx);
    m.init_random(seed);
    std::mt19937 rng(unsigned(seed) + 4);
    std::normal_distribution<float> nd(0.f, 0.5f);
    for (float& p : m.params()) p += nd(rng);
    std::vector<std::string> vocab = {"<unk>", "<eos>"};
    while (int(vocab.size()) < cfg.vocab_size) vocab.push_back("w" + std::to_string(vocab.size()));
    kv::write_llama_folder((dir / "m").string(), m, vocab);
    return dir / "m";
}

}  // namespace

TEST_CASE("trainer Llama forward equals an independent plain-Python forward on the bundled tiny-llama") {
    KVTEST_SKIP_UNLESS(have_python3(), "python3 not found");
    const fs::path dir = fs::path(KVSCOPE_SOURCE_DIR) / "assets/models/tiny-llama";
    const auto tok = kv::WordTokenizer::load((dir / "vocab.txt").string());
    const std::vector<int> ids = tok->encode("Python is a programming language used for the web").ids;
    CHECK(worst_against_pure_python(dir, ids) <= 0.0);
}

TEST_CASE("trainer Llama forward equals an independent plain-Python forward with head_dim apart from C/H and one kv head") {
    KVTEST_SKIP_UNLESS(have_python3(), "python3 not found");
    kv::ModelConfig cfg = micro_config(1, kv::ModelFamily::llama);
    cfg.n_ctx = 9;
    cfg.explicit_head_dim = 6;  // Dq = 12 beside C = 8
    cfg.rope.theta = 10000.0;
    const fs::path dir = temp_dir("pure");
    CHECK(worst_against_pure_python(write_random_folder(cfg, dir, 5), {3, 1, 4, 1, 5, 9, 2, 6, 5}) <= 0.0);
    fs::remove_all(dir);
}

// ---- MLA: the DeepseekV3 folder and the forward against an independent one ---------

TEST_CASE("train_config with mla gives ModelConfig::mla_tiny's shape and its config.json reads back the same") {
    kv::TrainOptions opt;
    opt.family = kv::ModelFamily::llama;
    opt.mla = true;
    const kv::ModelConfig cfg = kv::train_config(opt, 1058);
    kv::ModelConfig want = kv::ModelConfig::mla_tiny();
    want.vocab_size = 1058;  // the corpus's
    CHECK(cfg == want);
    CHECK(cfg.head_dim() == 24);
    const std::string text = kv::llama_config_json("config.json", cfg, kv::WeightType::f32, 1, 1);
    CHECK(kv::parse_llama_config(text, "config.json") == cfg);
    CHECK(text.find("\"model_type\": \"deepseek_v3\"") != std::string::npos);
}

TEST_CASE("train_config refuses MLA with GPT-2 blocks or several kv heads") {
    kv::TrainOptions opt;
    opt.mla = true;
    CHECK_THROWS_WITH_AS(kv::train_config(opt, 100), doctest::Contains("--family mla"), kv::Error);
    opt.family = kv::ModelFamily::llama;
    opt.n_kv_head = 2;
    CHECK_THROWS_WITH_AS(kv::train_config(opt, 100), doctest::Contains("--n-kv-head 2"), kv::Error);
}

TEST_CASE("trainer MLA forward equals mla_numpy.py on a DeepseekV3 folder it writes") {
    std::string why;
    const std::string py = kvtest::numpy_python(&why);
    KVTEST_SKIP_UNLESS(!py.empty(), why);
    for (auto [interleave, dq] : {std::pair{true, 0}, std::pair{false, 0}, std::pair{true, 7}}) {
        CAPTURE(interleave);
        CAPTURE(dq);
        kv::ModelConfig cfg = micro_mla_config(interleave, dq);
        cfg.n_ctx = 9;
        cfg.rope.theta = 10000.0;
        const fs::path dir = temp_dir("mla_numpy");
        const fs::path m = write_random_folder(cfg, dir, 6);
        CHECK(kv::read_config_json((m / "config.json").string()) == cfg);
        CHECK(worst_against_reference(m, {3, 1, 4, 1, 5, 9, 2, 6, 5},
                                      py + " '" KVSCOPE_SOURCE_DIR "/tests/reference/mla_numpy.py'") <= 0.0);
        fs::remove_all(dir);
    }
}

TEST_CASE("kvscope-cli train --family mla writes a DeepseekV3 folder") {
    const fs::path dir = temp_dir("mla_cli");
    std::ofstream(dir / "corpus.txt") << kTinyCorpus;
    const kvtest::Run r = kvtest::run_cli("train --corpus '" + (dir / "corpus.txt").string() + "' --out '" +
                                          (dir / "m").string() + "' --steps 2 --family mla");
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    const kv::ModelConfig cfg = kv::read_config_json((dir / "m" / "config.json").string());
    CHECK(cfg.is_mla());
    CHECK(cfg.mla == kv::ModelConfig::mla_tiny().mla);
    fs::remove_all(dir);
}

TEST_CASE("train_model writes an MLA folder that reads back into the trainer, deterministically") {
    const fs::path dir = temp_dir("mla");
    std::ofstream(dir / "corpus.txt") << kTinyCorpus;
    kv::TrainOptions opt;
    opt.corpus = (dir / "corpus.txt").string();
    opt.steps = 4;
    opt.quiet = true;
    opt.family = kv::ModelFamily::llama;
    opt.mla = true;
    opt.out_dir = (dir / "a").string();
    const kv::TrainReport ra = kv::train_model(opt);
    opt.out_dir = (dir / "b").string();
    kv::train_model(opt);
    CHECK(read_bytes(dir / "a" / "model.safetensors") == read_bytes(dir / "b" / "model.safetensors"));
    const kv::ModelConfig cfg = kv::read_config_json((dir / "a" / "config.json").string());
    CHECK(cfg.is_mla());
    CHECK(cfg.n_params() == ra.n_params);
    kv::Trainer<float> m(cfg, 1, cfg.n_ctx);
    m.read_safetensors((dir / "a" / "model.safetensors").string());
    const auto header = kv::read_safetensors_header((dir / "a" / "model.safetensors").string());
    CHECK(header.at("model.layers.1.self_attn.kv_b_proj.weight").shape == std::vector<int64_t>{4 * (16 + 16), 24});
    CHECK(header.at("model.layers.1.self_attn.kv_a_proj_with_mqa.weight").shape == std::vector<int64_t>{24 + 8, 64});
    fs::remove_all(dir);
}

TEST_CASE("bundled tiny-mla: the trainer's own forward says \"language\" and equals mla_numpy.py") {
    const fs::path dir = fs::path(KVSCOPE_SOURCE_DIR) / "assets/models/tiny-mla";
    CHECK(trainer_greedy(dir, "Python is a programming", 1) == std::vector<std::string>{"language"});
    std::string why;
    const std::string py = kvtest::numpy_python(&why);
    KVTEST_SKIP_UNLESS(!py.empty(), why);
    const auto tok = kv::WordTokenizer::load((dir / "vocab.txt").string());
    const std::vector<int> ids = tok->encode("Python is a programming language used for the web").ids;
    CHECK(worst_against_reference(dir, ids, py + " '" KVSCOPE_SOURCE_DIR "/tests/reference/mla_numpy.py'") <= 0.0);
}

TEST_CASE("trainer MLA forward gives the CPU engine's logits on the folder it writes, expanded and absorbed") {
    // The engine (written apart, core/engine/engine_cpu.cpp) reads the folder the
    // trainer wrote; its latent cache read both ways.
    const fs::path root = temp_dir("mla_engine");
    kv::ModelConfig micro = micro_mla_config(false), micro_q = micro_mla_config(true, 7);
    micro.n_ctx = micro_q.n_ctx = 9;
    const std::pair<std::string, fs::path> cases[] = {
        {"micro, no rope_interleave", write_random_folder(micro, root / "micro", 8)},
        {"micro, a query latent", write_random_folder(micro_q, root / "micro_q", 9)},
        {"bundled tiny-mla", fs::path(KVSCOPE_SOURCE_DIR) / "assets/models/tiny-mla"}};
    for (const auto& [what, dir] : cases) {
        CAPTURE(what);
        auto model = kv::load_model_folder(dir.string());
        REQUIRE(model->config.is_mla());
        kv::Trainer<float> tr(model->config, 1, model->config.n_ctx);
        tr.read_safetensors((dir / "model.safetensors").string());
        const std::vector<int> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5};
        tr.forward(ids, {}, 1, int(ids.size()));
        for (auto mode : {kv::MlaRead::expand, kv::MlaRead::absorbed}) {
            CAPTURE(kv::mla_read_name(mode));
            kv::CachePolicy policy;
            policy.mla = mode;
            CHECK(worst_against_engine(tr, *model, ids, policy) <= 1e-4f);
        }
    }
    fs::remove_all(root);
}
