// Trainer for the GPT-2 family: forward with saved activations, a backward pass
// written out by hand (llm.c style), AdamW with gradient clipping. Deterministic
// for a given seed and thread count. Used by `kvscope-cli train` to build the
// bundled tiny model from assets/corpus.txt.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "core/config.h"

namespace kv {

struct TrainOptions {
    std::string corpus;      // text file, one sentence per line
    std::string out_dir;     // model folder to write (config.json, model.safetensors, vocab.txt)
    int steps = 3000;
    uint64_t seed = 1;
    int threads = 0;         // 0 = hardware concurrency
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

}  // namespace kv
