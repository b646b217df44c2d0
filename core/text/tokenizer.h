// Tokenizer interface and the word-level tokenizer of the bundled tiny model.
// A tokenizer turns text into ids and reports what it could not represent, by
// name, so the caller can show it ("'quantum' is not in the vocabulary").
#pragma once
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kv {

struct Encoding {
    std::vector<int> ids;
    std::vector<std::string> pieces;   // exact input bytes of each token (for GPT-2 BPE
                                       // often part of a UTF-8 character; see text/utf8.h)
    std::vector<std::string> unknown;  // input words mapped to <unk> (word-level only)
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    virtual Encoding encode(std::string_view text) const = 0;
    // Text of one token, as it should be shown on a token chip (for BPE: with its
    // leading space; for words: the word).
    virtual std::string token_text(int id) const = 0;
    // Exact bytes of one token ("" for an id outside the vocabulary): for BPE possibly
    // part of a UTF-8 character, for words the word.
    virtual std::string token_bytes(int id) const = 0;
    // Text of a run of ids, spaced as the tokenizer would write it.
    virtual std::string decode(std::span<const int> ids) const = 0;
    virtual int vocab_size() const = 0;
    virtual std::string kind() const = 0;  // "word" or "gpt2-bpe"
};

// Word-level tokenizer over vocab.txt: one token per line, line number = id.
// Line 0 must be "<unk>". Text is split into words (letters, digits, '_', inner
// apostrophes and hyphens) and single punctuation characters. An unknown word
// tries its lower-case and capitalised forms before falling back to <unk>.
class WordTokenizer : public Tokenizer {
public:
    explicit WordTokenizer(std::vector<std::string> vocab);
    static std::unique_ptr<WordTokenizer> load(const std::string& path);  // throws kv::Error
    void save(const std::string& path) const;

    Encoding encode(std::string_view text) const override;
    std::string token_text(int id) const override;
    std::string token_bytes(int id) const override;
    std::string decode(std::span<const int> ids) const override;
    int vocab_size() const override { return static_cast<int>(vocab_.size()); }
    std::string kind() const override { return "word"; }

    int unk_id() const { return 0; }
    int id_of(const std::string& word) const;  // -1 if absent
    const std::vector<std::string>& vocab() const { return vocab_; }

    // Splits text the way encode does (shared with the trainer's vocabulary builder).
    static std::vector<std::string> split_words(std::string_view text);

private:
    std::vector<std::string> vocab_;
    std::unordered_map<std::string, int> index_;
};

// Token ids typed by a person: "5,9,3,7", "5 9 3 7" or "5, 9,3 7" -> {5, 9, 3, 7}.
// Commas and whitespace separate; a comma needs an id on each side; ids are at most
// 100000000. Throws kv::Error naming the bad piece ("'x' is not a token id (a
// non-negative integer)"), an empty item ("1,,2") or an empty list ("the id list is
// empty"); callers prefix the argument ("--ids: ", "prompt: ") and check the vocabulary.
std::vector<int> parse_token_ids(std::string_view text);

}  // namespace kv
