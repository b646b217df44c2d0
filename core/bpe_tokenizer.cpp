// GPT-2 byte-level BPE (stub; full implementation follows).
#include "core/bpe_tokenizer.h"

#include "core/error.h"

namespace kv {

std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::string& vocab_json, const std::string& merges_txt) {
    throw Error("load_gpt2_bpe(" + vocab_json + ", " + merges_txt + "): not implemented yet");
}

}  // namespace kv
