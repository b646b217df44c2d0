// The trainer's data and loop: the word-level vocabulary built from the corpus, the
// corpus split into training sentences and a held-out tenth, and train_model(), which
// fills each batch row with randomly drawn training sentences (each closed by <eos>),
// runs forward, backward and AdamW for the given steps, reports progress and the
// held-out loss, and writes the model folder (GPT-2 through save_model_folder, a
// Llama through write_llama_folder, here). The model's shape is train_config()'s;
// the model itself is in train_params.cpp, train_forward.cpp and train_backward.cpp,
// the optimiser in train_optimizer.cpp. Single-threaded, buffers aligned: a seed gives bit-identical
// weights on every run.
// Notation: B batch rows, T sequence length (n_ctx).
#include "core/train/train.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>

#include "core/error.h"
#include "core/rng.h"
#include "core/model/model_io.h"
#include "core/text/tokenizer.h"

namespace kv {

std::vector<std::string> build_vocab(const std::vector<std::string>& lines) {
    std::map<std::string, int64_t> counts;  // ordered: ties stay alphabetical
    for (const auto& line : lines)
        for (auto& w : WordTokenizer::split_words(line)) ++counts[w];
    counts.erase("<unk>");
    counts.erase("<eos>");
    std::vector<std::pair<std::string, int64_t>> words(counts.begin(), counts.end());
    std::stable_sort(words.begin(), words.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    std::vector<std::string> vocab = {"<unk>", "<eos>"};
    for (auto& [w, n] : words) vocab.push_back(w);
    return vocab;
}

namespace {

std::vector<std::string> read_corpus(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw Error("train: cannot open corpus " + path);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(f, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        lines.push_back(line);
    }
    if (lines.empty()) throw Error("train: corpus " + path + " holds no sentences");
    return lines;
}

// Mean loss of predicting every token after the first of each sentence, and its
// closing <eos>, each sentence run alone from position 0 (as a prompt would be).
float sentence_loss(Trainer<float>& m, const std::vector<std::vector<int>>& sents, int eos) {
    double sum = 0;
    int64_t count = 0;
    const int T = m.config().n_ctx;
    for (const auto& s : sents) {
        const int t = std::min<int>(int(s.size()), T);
        if (t < 1) continue;
        std::vector<int> in(s.begin(), s.begin() + t), tg(t);
        for (int i = 0; i < t; ++i) tg[i] = i + 1 < int(s.size()) ? s[i + 1] : eos;
        sum += double(m.forward(in, tg, 1, t)) * t;
        count += t;
    }
    return count ? float(sum / count) : 0.f;
}


// MLA on a Llama-family shape: ModelConfig::mla_tiny()'s ranks, one latent kv head,
// head_dim left to the ranks (d_n + d_R), as parse_llama_config reads a DeepseekV3 config.
void set_mla(ModelConfig& cfg, const TrainOptions& opt) {
    if (!cfg.is_llama()) throw Error("train: MLA needs the Llama family's blocks (--family mla)");
    if (opt.n_kv_head > 1)
        throw Error("train: --n-kv-head " + std::to_string(opt.n_kv_head) +
                    " with MLA: its one latent row per token serves every head (leave it out)");
    cfg.mla = ModelConfig::mla_tiny().mla;
    cfg.n_kv_head = 1;
    cfg.explicit_head_dim = 0;
}

}  // namespace

ModelConfig train_config(const TrainOptions& opt, int vocab_size) {
    if (opt.n_layer < 1 || opt.n_head < 1 || opt.n_embd < 1 || opt.n_embd % opt.n_head != 0)
        throw Error("train: --layers, --heads and --embd must be positive, and --embd a multiple of --heads (got " +
                    std::to_string(opt.n_layer) + ", " + std::to_string(opt.n_head) + ", " +
                    std::to_string(opt.n_embd) + ")");
    ModelConfig cfg;
    cfg.family = opt.family;
    cfg.vocab_size = vocab_size;
    cfg.n_ctx = 64;
    cfg.n_embd = opt.n_embd;
    cfg.n_layer = opt.n_layer;
    cfg.n_head = opt.n_head;
    cfg.n_kv_head = opt.n_kv_head == 0 ? cfg.n_head : opt.n_kv_head;
    cfg.tied_head = true;
    if (cfg.n_kv_head < 0 || cfg.n_kv_head > cfg.n_head || cfg.n_head % cfg.n_kv_head != 0)
        throw Error("train: --n-kv-head " + std::to_string(opt.n_kv_head) + " must divide the " +
                    std::to_string(cfg.n_head) + " query heads");
    if (cfg.is_llama()) {
        // Llama's MLP is 8C/3 wide (three matrices instead of two) rounded up; 176 for C = 64.
        cfg.n_ff = opt.n_ff > 0 ? opt.n_ff : (8 * cfg.n_embd / 3 + 15) / 16 * 16;
        if (cfg.head_dim() % 2 != 0)
            throw Error("train: --embd / --heads must be even for RoPE (got " + std::to_string(cfg.head_dim()) + ")");
        cfg.explicit_head_dim = cfg.head_dim();  // config.json says head_dim, so the parsed config equals this one
        cfg.rope.theta = 10000.0;
        cfg.layer_norm_epsilon = 1e-5f;  // rms_norm_eps
    } else if (opt.n_ff != 0) {
        throw Error("train: --ff sets the Llama family's MLP width (GPT-2's is 4 * --embd)");
    }
    if (opt.mla) set_mla(cfg, opt);
    cfg.validate("train config");
    return cfg;
}

TrainReport train_model(const TrainOptions& opt) {
    namespace fs = std::filesystem;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    if (opt.steps <= 0) throw Error("train: --steps must be positive (got " + std::to_string(opt.steps) + ")");
    if (opt.out_dir.empty()) throw Error("train: --out must name a folder");

    const auto lines = read_corpus(opt.corpus);
    const auto vocab = build_vocab(lines);
    std::unordered_map<std::string, int> index;
    for (int i = 0; i < int(vocab.size()); ++i) index.emplace(vocab[i], i);
    const int eos = 1;

    // Every 10th sentence (index 9, 19, ...) is held out for validation.
    std::vector<std::vector<int>> train_sents, val_sents;
    for (size_t i = 0; i < lines.size(); ++i) {
        std::vector<int> ids;
        for (auto& w : WordTokenizer::split_words(lines[i])) ids.push_back(index.at(w));
        if (ids.empty()) continue;
        ((i % 10 == 9 && lines.size() >= 10) ? val_sents : train_sents).push_back(std::move(ids));
    }
    int n_train_tokens = 0;
    for (auto& s : train_sents) n_train_tokens += int(s.size()) + 1;
    const ModelConfig cfg = train_config(opt, int(vocab.size()));

    // Fail before training, not after, when the output folder cannot be written.
    std::error_code ec;
    fs::create_directories(opt.out_dir, ec);
    if (ec || !fs::is_directory(opt.out_dir))
        throw Error("train: cannot create output folder " + opt.out_dir + (ec ? ": " + ec.message() : ""));

    const int B = 16, T = cfg.n_ctx;
    const float lr_max = 3e-3f, min_frac = 0.1f;
    const int warmup = std::max(1, std::min(100, opt.steps / 10));
    Trainer<float> model(cfg, B, T);
    model.init_random(opt.seed);
    AdamW adam;
    SplitMix64 rng{opt.seed * 0x9E3779B97F4A7C15ULL + 0xB47C0FFEEULL};

    std::vector<int> inputs(B * T), targets(B * T), row;
    const int every = std::max(1, opt.steps / 20);
    const int tail = std::max(1, std::min(50, opt.steps / 10));
    double tail_sum = 0;
    const auto t_train = clock::now();
    if (!opt.quiet)
        std::fprintf(stderr, "train: %zu sentences (%zu held out), %d training tokens, vocab %d, %lld parameters\n",
                     train_sents.size() + val_sents.size(), val_sents.size(), n_train_tokens, cfg.vocab_size,
                     (long long)cfg.n_params());
    for (int step = 0; step < opt.steps; ++step) {
        // Each row: sentences drawn at random, each closed by <eos>, cut to T+1 tokens.
        for (int i = 0; i < B; ++i) {
            row.clear();
            while (int(row.size()) < T + 1) {
                const auto& s = train_sents[rng.next() % train_sents.size()];
                row.insert(row.end(), s.begin(), s.end());
                row.push_back(eos);
            }
            std::copy(row.begin(), row.begin() + T, inputs.begin() + i * T);
            std::copy(row.begin() + 1, row.begin() + T + 1, targets.begin() + i * T);
        }
        const float loss = model.forward(inputs, targets, B, T);
        model.backward();
        const float lr = lr_schedule(step, opt.steps, lr_max, warmup, min_frac);
        adam.update(model.params(), model.grads(), model.layout(), lr);
        if (step >= opt.steps - tail) tail_sum += loss;
        if (!opt.quiet && ((step + 1) % every == 0 || step == 0 || step + 1 == opt.steps)) {
            const double el = std::chrono::duration<double>(clock::now() - t_train).count();
            const double tok_s = double(step + 1) * B * T / std::max(el, 1e-9);
            const double left = el / (step + 1) * (opt.steps - step - 1);
            const float val = val_sents.empty() ? 0.f : sentence_loss(model, val_sents, eos);
            std::fprintf(stderr, "step %5d/%d  loss %.4f  held-out %.4f  lr %.2e  %7.0f tok/s  %4.0fs left\n",
                         step + 1, opt.steps, loss, val, lr, tok_s, left);
        }
    }

    TrainReport rep;
    rep.steps = opt.steps;
    rep.train_loss = float(tail_sum / tail);
    rep.val_loss = val_sents.empty() ? 0.f : sentence_loss(model, val_sents, eos);
    rep.vocab_size = cfg.vocab_size;
    rep.n_params = cfg.n_params();
    if (!opt.quiet)
        std::fprintf(stderr, "train: sentence loss train %.4f, held-out %.4f\n",
                     sentence_loss(model, train_sents, eos), rep.val_loss);

    if (cfg.is_llama()) {
        write_llama_folder(opt.out_dir, model, vocab);
    } else {
        WordTokenizer tok(vocab);
        save_model_folder(opt.out_dir, cfg, model.weights(), &tok);
    }
    rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return rep;
}

void write_llama_folder(const std::string& dir, const Trainer<float>& model, const std::vector<std::string>& vocab) {
    namespace fs = std::filesystem;
    const ModelConfig& cfg = model.config();
    if (!cfg.is_llama()) throw Error("write_llama_folder: " + dir + ": the model is not of the Llama family");
    if (int(vocab.size()) != cfg.vocab_size)
        throw Error("write_llama_folder: " + dir + ": " + std::to_string(vocab.size()) + " words for vocab_size " +
                    std::to_string(cfg.vocab_size));
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error("write_llama_folder: cannot create " + dir + ": " + ec.message());
    const fs::path d(dir);
    const int eos = 1;  // build_vocab's <eos>: it closes each sentence and so also opens the next
    {
        const std::string path = (d / "config.json").string();
        std::ofstream out(path, std::ios::trunc);
        out << llama_config_json(path, cfg, WeightType::f32, eos, eos);
        out.flush();
        if (!out) throw Error(path + ": cannot write");
    }
    model.write_safetensors((d / "model.safetensors").string());
    WordTokenizer(vocab).save((d / "vocab.txt").string());
}

}  // namespace kv
