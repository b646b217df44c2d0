// Trainer tests: the hand-written backward pass against finite differences for
// every parameter tensor, agreement of the trainer's forward with the CPU engine,
// determinism for a seed, that loss falls, and the corpus/vocabulary plumbing.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/model/model_io.h"
#include "core/train/train.h"
#include "core/model/weights.h"

namespace fs = std::filesystem;

namespace {

kv::ModelConfig micro_config(int n_kv_head) {
    kv::ModelConfig c;
    c.vocab_size = 11;
    c.n_ctx = 5;
    c.n_embd = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_kv_head = n_kv_head;
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

const char* kTinyCorpus =
    "the cat sat on the mat .\n"
    "the dog sat on the rug .\n"
    "a cat is a small animal .\n"
    "a dog is a loyal animal .\n"
    "the cat sat on the mat .\n";

}  // namespace

TEST_CASE("trainer gradients match central finite differences for every parameter tensor") {
    // Double precision, every element of every tensor. Central differences with
    // h = 1e-5 have truncation error O(h^2) ~ 1e-10 and rounding ~ 1e-11, so the
    // stated tolerance is |analytic - numeric| <= 1e-7 + 1e-5 * |numeric|.
    const double h = 1e-5, atol = 1e-7, rtol = 1e-5;
    for (int n_kv_head : {2, 1}) {
        CAPTURE(n_kv_head);
        const kv::ModelConfig cfg = micro_config(n_kv_head);
        const int B = 2, T = cfg.n_ctx;
        kv::GptTrainer<double> m(cfg, B, T);
        m.set_weights(kv::random_weights(cfg, 7));
        // Move every parameter off its init (LayerNorm weights 1, biases 0) so no
        // gradient is trivially zero by symmetry.
        std::mt19937_64 rng(42);
        std::normal_distribution<double> nd(0.0, 0.3);
        for (double& p : m.params()) p += nd(rng);
        const std::vector<int> inputs = {1, 4, 4, 9, 0, 10, 2, 7, 3, 1};
        const std::vector<int> targets = {4, 4, 9, 0, 5, 2, 7, 3, 1, 6};
        m.forward(inputs, targets, B, T);
        m.backward();
        const kv::TrainBuf<double> analytic = m.grads();

        REQUIRE(m.layout().size() == size_t(2 + 12 * cfg.n_layer + 2));
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
}

TEST_CASE("trainer forward gives the CPU engine's logits") {
    kv::ModelConfig cfg = micro_config(2);
    cfg.vocab_size = 13;
    cfg.n_ctx = 9;
    auto model = kv::make_random_model(cfg, 3, "random:micro");
    kv::GptTrainer<float> tr(cfg, 1, cfg.n_ctx);
    tr.set_weights(model->weights);
    const std::vector<int> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5};
    tr.forward(ids, {}, 1, int(ids.size()));
    const auto ours = tr.logits();

    auto engine = kv::make_cpu_engine(*model);
    kv::ForwardRequest req;
    req.ids = ids;
    req.start_pos = 0;
    req.all_logits = true;
    req.trace_opts.record = false;
    kv::StepTrace trace;
    std::vector<float> theirs;
    engine->forward(req, *engine->make_cache({}), trace, &theirs);
    REQUIRE(theirs.size() == ours.size());
    float worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
        const float d = std::abs(ours[i] - theirs[i]);
        if (d > worst) worst = d, worst_i = i;
    }
    CAPTURE(worst_i);
    CHECK(worst <= 1e-4f);
}

TEST_CASE("weights round-trip through the flat parameter buffer") {
    const kv::ModelConfig cfg = micro_config(2);
    const kv::Weights w = kv::random_weights(cfg, 5);
    kv::GptTrainer<float> tr(cfg, 1, 2);
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
    kv::GptTrainer<float> tr(cfg, 2, cfg.n_ctx);
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
    fs::remove_all(dir);
}
