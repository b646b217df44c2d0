#include "core/model/config.h"

#include "core/error.h"

namespace kv {

int64_t ModelConfig::n_params_nonembedding() const {
    const int64_t C = n_embd, Q = qkv_dim();
    const int64_t per_layer = 2 * C                 // ln_1
                              + C * Q + Q           // c_attn
                              + C * C + C           // attn c_proj
                              + 2 * C               // ln_2
                              + C * 4 * C + 4 * C   // c_fc
                              + 4 * C * C + C;      // mlp c_proj
    return per_layer * n_layer + 2 * C;             // + ln_f
}

int64_t ModelConfig::n_params() const {
    const int64_t emb = int64_t(vocab_size) * n_embd + int64_t(n_ctx) * n_embd;
    const int64_t head = tied_head ? 0 : int64_t(vocab_size) * n_embd;
    return emb + head + n_params_nonembedding();
}

void ModelConfig::validate(const std::string& where) const {
    auto fail = [&](const std::string& what) { throw Error(where + ": " + what); };
    if (vocab_size <= 0) fail("vocab_size must be positive (got " + std::to_string(vocab_size) + ")");
    if (n_ctx <= 0) fail("n_positions must be positive (got " + std::to_string(n_ctx) + ")");
    if (n_embd <= 0) fail("n_embd must be positive (got " + std::to_string(n_embd) + ")");
    if (n_layer <= 0) fail("n_layer must be positive (got " + std::to_string(n_layer) + ")");
    if (n_head <= 0) fail("n_head must be positive (got " + std::to_string(n_head) + ")");
    if (n_embd % n_head != 0)
        fail("n_embd " + std::to_string(n_embd) + " is not a multiple of n_head " + std::to_string(n_head));
    if (n_kv_head <= 0 || n_kv_head > n_head || n_head % n_kv_head != 0)
        fail("n_kv_head " + std::to_string(n_kv_head) + " must divide n_head " + std::to_string(n_head));
    // Bounds that keep every size in int range and the app responsive.
    if (vocab_size > 1'000'000) fail("vocab_size " + std::to_string(vocab_size) + " is too large");
    if (n_ctx > 1'000'000) fail("n_positions " + std::to_string(n_ctx) + " is too large");
    if (n_embd > 65536) fail("n_embd " + std::to_string(n_embd) + " is too large");
    if (n_layer > 1000) fail("n_layer " + std::to_string(n_layer) + " is too large");
    // The CUDA attention kernel puts heads on gridDim.y, whose limit is 65535.
    if (n_head > 65535) fail("n_head " + std::to_string(n_head) + " is too large (at most 65535)");
    if (!(layer_norm_epsilon > 0.f && layer_norm_epsilon < 1.f))
        fail("layer_norm_epsilon must be in (0, 1)");
}

ModelConfig ModelConfig::tiny() {
    ModelConfig c;
    c.vocab_size = 96;
    c.n_ctx = 64;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 4;
    return c;
}

ModelConfig ModelConfig::gpt2_124m() {
    ModelConfig c;
    c.vocab_size = 50257;
    c.n_ctx = 1024;
    c.n_embd = 768;
    c.n_layer = 12;
    c.n_head = 12;
    c.n_kv_head = 12;
    return c;
}

ModelConfig ModelConfig::gpt2_355m() {
    ModelConfig c = gpt2_124m();
    c.n_embd = 1024;
    c.n_layer = 24;
    c.n_head = 16;
    c.n_kv_head = 16;
    return c;
}

}  // namespace kv
