// Trainer for both families kvscope runs (config.h): GPT-2 (learned positions,
// LayerNorm, GELU) and Llama (RoPE, RMSNorm, SwiGLU, no biases), the latter also with
// DeepSeek's multi-head latent attention (MLA): one forward with saved
// activations whose blocks the config chooses, a backward pass written out by hand
// (llm.c style), AdamW with gradient clipping. Single-threaded, so a seed gives
// bit-identical weights on every run. Used by `kvscope-cli train` to build the
// bundled tiny models from assets/corpus.txt (tiny-gpt, tiny-gqa, tiny-draft: GPT-2;
// tiny-llama: Llama, written as a Hugging Face LlamaForCausalLM folder; tiny-mla:
// MLA, a DeepseekV3ForCausalLM folder with dense MLPs).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "core/model/config.h"
#include "core/model/weights.h"

namespace kv {

struct TrainOptions {
    std::string corpus;      // text file, one sentence per line
    std::string out_dir;     // model folder to write (config.json, model.safetensors, vocab.txt)
    int steps = 3000;
    uint64_t seed = 1;
    int n_kv_head = 0;       // kv heads of the 4 query heads: 4, 2 or 1 (0 = 4, plain multi-head)
    // The model's shape (the bundled tiny-gpt: 2 x 4 x 64; tiny-draft: 1 x 2 x 32).
    // The vocabulary always comes from the corpus (build_vocab), so two models
    // trained on one corpus share token ids.
    int n_layer = 2, n_head = 4, n_embd = 64;
    ModelFamily family = ModelFamily::gpt2;
    int n_ff = 0;            // Llama: the SwiGLU width (0: 8C/3 rounded up to a multiple of 16, 176 for C = 64)
    bool mla = false;        // Llama family with MLA attention, ModelConfig::mla_tiny()'s ranks (one latent kv head)
    bool quiet = false;      // no progress on stderr
};

struct TrainReport {
    int steps = 0;
    double seconds = 0;
    float train_loss = 0;    // mean over the last steps
    float val_loss = 0;      // held-out slice of the corpus
    int vocab_size = 0;
    int64_t n_params = 0;
};

// Throws kv::Error for an unreadable or empty corpus or an unwritable out_dir.
TrainReport train_model(const TrainOptions& opt);

// ---- Trainer internals, exposed for tests/test_train.cpp ------------------------
// Notation: B batch rows, T sequence length, C n_embd, V vocab, L layers, H heads,
// Hkv kv heads, hd head size, Dq = H*hd, kvd = Hkv*hd, Q = Dq + 2*kvd (the q|k|v
// width), F n_ff, N = B*T. MLA: d_c kv_lora_rank, d_R qk_rope_head_dim, d_n
// qk_nope_head_dim, d_v v_head_dim, d_q q_lora_rank (0: q_proj), hd = d_n + d_R,
// Q = (Dq, or d_q) + d_c + d_R.

// One parameter tensor inside the flat parameter buffer, named and shaped as the
// family's safetensors file stores it. Only tied heads are trained.
//   GPT-2 (Conv1D matrices, (in, out)): wte, wpe, then per layer ln_1.{weight,bias},
//     attn.c_attn.{weight,bias}, attn.c_proj.{weight,bias}, ln_2.{weight,bias},
//     mlp.c_fc.{weight,bias}, mlp.c_proj.{weight,bias}, then ln_f.{weight,bias}.
//   Llama (nn.Linear matrices, (out, in)): model.embed_tokens.weight, then per layer
//     model.layers.N. input_layernorm, self_attn.{q,k,v,o}_proj,
//     post_attention_layernorm, mlp.{gate,up,down}_proj (all .weight), then
//     model.norm.weight. q, k, v lie back to back, so they are one (Q, C) matrix
//     [q; k; v]; gate and up likewise one (2F, C) matrix [gate; up].
//   MLA (DeepseekV3ForCausalLM's names): as Llama, with the attention's tensors
//     self_attn.q_proj (Dq, C) or, with d_q, q_a_proj (d_q, C), then
//     self_attn.kv_a_proj_with_mqa (d_c + d_R, C) back to back with it as one (Q, C)
//     matrix, [q_a_layernorm (d_q), q_b_proj (Dq, d_q),] self_attn.kv_a_layernorm
//     (d_c), self_attn.kv_b_proj (H*(d_n + d_v), d_c), self_attn.o_proj (C, H*d_v).
struct ParamTensor {
    std::string name;     // e.g. "h.1.attn.c_attn.weight", "model.layers.1.mlp.up_proj.weight"
    int64_t offset = 0;   // into the flat buffer
    int rows = 0, cols = 0;  // row-major; vectors are (1, n)
    bool decay = false;   // weight decay applies (matrices only)
    int64_t size() const { return int64_t(rows) * cols; }
};
std::vector<ParamTensor> param_layout(const ModelConfig& cfg);

// The shape of a model train_model() makes: the corpus's vocabulary size, n_ctx 64,
// the options' width, depth, heads and family (Llama: rope_theta 10000, rms_norm_eps
// 1e-5, no biases, tied head; with opt.mla, ModelConfig::mla_tiny()'s MLA ranks).
// Throws kv::Error naming the option that is wrong.
ModelConfig train_config(const TrainOptions& opt, int vocab_size);

// The word-level vocabulary the trainer builds from corpus lines: "<unk>", "<eos>",
// then every word of WordTokenizer::split_words by descending count, ties
// alphabetical.
std::vector<std::string> build_vocab(const std::vector<std::string>& lines);

// Buffers of the trainer. Aligned so that Eigen's vectorised loops split their work
// the same way on every run (an unaligned start changes the summation order).
template <class R>
using TrainBuf = std::vector<R, Eigen::aligned_allocator<R>>;

// A model of either family with its gradients and saved activations, for B x T
// batches. R is float for training and double for the gradient check. forward() may
// run a smaller (b <= B, t <= T) batch; backward() differentiates the last forward.
template <class R>
class Trainer {
public:
    // Throws kv::Error (untied head, T > n_ctx, attention biases on a Llama).
    Trainer(const ModelConfig& cfg, int B, int T);
    ~Trainer();
    Trainer(Trainer&&) noexcept;
    Trainer& operator=(Trainer&&) noexcept;

    // The initial weights for a seed. GPT-2: random_weights() (weights.h). Llama and
    // MLA: the same N(0, 0.02) matrices with o_proj and down_proj scaled by
    // 1/sqrt(2L), norm weights 1.
    void init_random(uint64_t seed);
    // GPT-2 family only (the engine's Weights hold GPT-2 tensors); throws kv::Error for a Llama.
    void set_weights(const Weights& w);   // shapes must match cfg
    Weights weights() const;              // a float copy in the engine's layout
    // Every layout tensor from / to a safetensors file by its name (vectors stored as
    // [n]); reading throws kv::Error naming the file and tensor when one is missing
    // or shaped otherwise. Writing stores F32, in layout order.
    void read_safetensors(const std::string& path);
    void write_safetensors(const std::string& path) const;

    const ModelConfig& config() const { return cfg_; }
    const std::vector<ParamTensor>& layout() const { return layout_; }
    TrainBuf<R>& params() { return params_; }
    const TrainBuf<R>& params() const { return params_; }
    const TrainBuf<R>& grads() const { return grads_; }

    // inputs and targets are (b, t) row-major token ids; targets may be empty (no
    // loss, logits only). Returns the mean cross-entropy over the b*t targets.
    R forward(std::span<const int> inputs, std::span<const int> targets, int b, int t);
    // Sets grads() to d(mean loss)/d(params) of the last forward with targets.
    void backward();
    // (b, t, V) logits of the last forward.
    std::span<const R> logits() const;

private:
    struct Acts;
    void allocate_mla(Acts& a, int64_t N);
    // MLA, layer l of the last forward: from the [q | kv_a] (or [q_a | kv_a]) product to
    // the heads the attention kernel reads (train_forward.cpp), and their gradients
    // back into that product's (train_backward.cpp).
    void mla_heads_forward(int l);
    void mla_heads_backward(int l);
    ModelConfig cfg_;
    int B_ = 0, T_ = 0;
    std::vector<ParamTensor> layout_;
    TrainBuf<R> params_, grads_;
    std::unique_ptr<Acts> acts_;
};

extern template class Trainer<float>;
extern template class Trainer<double>;

// A Hugging Face LlamaForCausalLM folder from a trained Llama-family model (a
// DeepseekV3ForCausalLM folder for MLA):
// config.json (llama_config_json, model_io.h; bos and eos are <eos>, id 1),
// model.safetensors (Trainer::write_safetensors: no lm_head.weight, the head is tied,
// as save_pretrained writes it) and vocab.txt. Throws kv::Error naming the file.
void write_llama_folder(const std::string& dir, const Trainer<float>& model, const std::vector<std::string>& vocab);

// The learning rate at `step` (0-based) of `steps`: linear warmup then cosine decay
// to min_frac * lr_max.
float lr_schedule(int step, int steps, float lr_max, int warmup, float min_frac);

// AdamW (decoupled weight decay on ParamTensor::decay tensors) after clipping the
// global gradient norm to max_norm. Returns the norm before clipping.
struct AdamW {
    float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f, max_norm = 1.0f;
    std::vector<float> m, v;
    int t = 0;
    float update(std::span<float> params, std::span<const float> grads,
                 const std::vector<ParamTensor>& layout, float lr);
};

}  // namespace kv
