// Why a RoPE cache cannot move: the stale-position demonstration of the lesson's RoPE
// chapter. A RoPE model (the Llama family) stores each key turned by its position's
// angles (pos x inv_freq[i] for pair i), so a score q_m . k_n depends on m - n only.
// When the cached keys of a sequence are reused after every position moved by `shift`
// (a token inserted in front, a prefix reused at another offset), the stored keys
// still carry their old angles: the new token's query, at its new position, sees each
// of them `shift` positions too far away. This measures what that does to the next
// token, on the engine, against the correct step.
//
// The stale step is built by turning every cached key back by `shift` positions in
// place (kv::rope_rotate at -shift: the angles add), which leaves the same distances as
// keys never turned again under a query `shift` positions later. tests check it against
// an independent NumPy forward whose last token sits `shift` positions after the
// prompt (tests/reference/llama_numpy.py --positions).
#pragma once
#include <span>
#include <vector>

#include "core/model/model_io.h"

namespace kv {

struct RopeShiftResult {
    int shift = 0;
    std::vector<float> correct;  // (V) next-token logits of the last id, every key turned for its position
    std::vector<float> stale;    // (V) the same step, the cached keys `shift` positions out of date
    float max_abs_diff = 0.f;    // max |stale - correct|
    int top_correct = -1, top_stale = -1;  // their greedy tokens
    float p_correct_top = 0.f;   // softmax probability of top_correct, correct and stale
    float p_stale_of_correct_top = 0.f;
};

// ids: a prompt of at least two tokens. The first n - 1 are the prefill (positions
// 0..n-2, the cache), the last is the decode step at position n - 1 whose next-token
// logits are compared. Full f32 cache on the CPU engine. Throws kv::Error for a model
// without RoPE (GPT-2 adds learned positions to the input: nothing to turn) or fewer
// than two ids.
RopeShiftResult rope_shift_demo(const Model& model, std::span<const int> ids, int shift);

}  // namespace kv
