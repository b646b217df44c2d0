// WordTokenizer: the word-level tokenizer of the bundled tiny model. vocab.txt holds
// one token per line (id = line index, line 0 is "<unk>"). Text splits into words
// (ASCII letters, digits, '_', any non-ASCII UTF-8 sequence, with inner apostrophes
// and hyphens) and single punctuation characters; whitespace only separates.
#include "core/text/tokenizer.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace kv {

namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

bool is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

// Length of the UTF-8 sequence starting at s[i] (1 for ASCII and for stray bytes);
// never runs past the end and never stops inside a well-formed code point.
size_t utf8_len(std::string_view s, size_t i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = 1;
    if (c >= 0xf0 && c < 0xf8) n = 4;
    else if (c >= 0xe0) n = c < 0xf0 ? 3 : 1;
    else if (c >= 0xc0) n = 2;
    if (i + n > s.size()) return 1;
    for (size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 1;
    return n;
}

std::string ascii_lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return s;
}

std::string capitalised(const std::string& s) {
    std::string out = ascii_lower(s);
    if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = char(out[0] - 'a' + 'A');
    return out;
}

// Quoted for error messages: bounded and printable.
std::string quoted(const std::string& s) {
    std::string out = "'";
    for (char c : s.substr(0, 60)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    return out + (s.size() > 60 ? "...'" : "'");
}

// Checks a vocabulary. Messages read "<prefix><unit> <n>: ...", n = index + first.
void check_vocab(const std::vector<std::string>& vocab, const std::string& prefix, const std::string& unit,
                 size_t first) {
    auto at = [&](size_t i) { return unit + " " + std::to_string(i + first); };
    if (vocab.empty()) throw Error(prefix + "vocabulary is empty (" + at(0) + " must be <unk>)");
    if (vocab[0] != "<unk>") throw Error(prefix + at(0) + ": first token must be <unk>, found " + quoted(vocab[0]));
    std::unordered_map<std::string, size_t> seen;
    for (size_t i = 0; i < vocab.size(); ++i) {
        const std::string& t = vocab[i];
        if (t.empty()) throw Error(prefix + at(i) + ": empty token");
        for (char c : t)
            if (is_space(static_cast<unsigned char>(c)))
                throw Error(prefix + at(i) + ": token " + quoted(t) + " contains whitespace");
        const auto [it, fresh] = seen.emplace(t, i);
        if (!fresh) throw Error(prefix + at(i) + ": token " + quoted(t) + " repeats " + at(it->second));
    }
}

}  // namespace

WordTokenizer::WordTokenizer(std::vector<std::string> vocab) : vocab_(std::move(vocab)) {
    check_vocab(vocab_, "vocabulary: ", "entry", 0);
    index_.reserve(vocab_.size());
    for (size_t i = 0; i < vocab_.size(); ++i) index_.emplace(vocab_[i], int(i));
}

std::unique_ptr<WordTokenizer> WordTokenizer::load(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw Error(path + ": is a directory, expected vocab.txt");
    if (!std::filesystem::exists(path, ec)) throw Error(path + ": no such file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open (" + std::string(std::strerror(errno)) + ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    if (text.empty()) throw Error(path + ": is empty (line 1 must be <unk>)");
    std::vector<std::string> vocab;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
        vocab.push_back(std::move(line));
        pos = nl + 1;
    }
    if (vocab.size() > 10'000'000) throw Error(path + ": has more than 10 million lines");
    // Line numbers are 1-based for people; ids are 0-based.
    check_vocab(vocab, path + ": ", "line", 1);
    return std::make_unique<WordTokenizer>(std::move(vocab));
}

void WordTokenizer::save(const std::string& path) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot write (" + std::string(std::strerror(errno)) + ")");
    for (const auto& t : vocab_) out << t << '\n';
    out.flush();
    if (!out) throw Error(path + ": write failed");
}

int WordTokenizer::id_of(const std::string& word) const {
    const auto it = index_.find(word);
    return it == index_.end() ? -1 : it->second;
}

std::vector<std::string> WordTokenizer::split_words(std::string_view text) {
    std::vector<std::string> out;
    size_t i = 0;
    const size_t n = text.size();
    while (i < n) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (is_space(c)) {
            ++i;
        } else if (is_word_byte(c)) {
            const size_t start = i;
            while (i < n) {
                const unsigned char d = static_cast<unsigned char>(text[i]);
                if (is_word_byte(d)) {
                    i += utf8_len(text, i);
                } else if ((d == '\'' || d == '-') && i + 1 < n && is_word_byte(static_cast<unsigned char>(text[i + 1]))) {
                    ++i;  // inner apostrophe or hyphen: "don't", "well-known"
                } else {
                    break;
                }
            }
            out.emplace_back(text.substr(start, i - start));
        } else {
            out.emplace_back(1, char(c));  // one ASCII punctuation character
            ++i;
        }
    }
    return out;
}

Encoding WordTokenizer::encode(std::string_view text) const {
    Encoding e;
    for (auto& w : split_words(text)) {
        int id = id_of(w);
        if (id < 0) id = id_of(ascii_lower(w));
        if (id < 0) id = id_of(capitalised(w));
        if (id < 0) {
            id = unk_id();
            e.unknown.push_back(w);
        }
        e.ids.push_back(id);
        e.pieces.push_back(std::move(w));
    }
    return e;
}

std::string WordTokenizer::token_text(int id) const {
    if (id < 0 || id >= vocab_size()) return "<id " + std::to_string(id) + ">";
    return vocab_[size_t(id)];
}

std::string WordTokenizer::token_bytes(int id) const {
    if (id < 0 || id >= vocab_size()) return {};
    return vocab_[size_t(id)];
}

std::string WordTokenizer::decode(std::span<const int> ids) const {
    auto no_space_before = [](const std::string& t) {
        return t.size() == 1 && std::strchr(".,!?;:)", t[0]) != nullptr;
    };
    std::string out;
    bool after_open = false;  // the previous token was "("
    for (size_t k = 0; k < ids.size(); ++k) {
        const std::string t = token_text(ids[k]);
        if (k > 0 && !after_open && !no_space_before(t)) out += ' ';
        out += t;
        after_open = t == "(";
    }
    return out;
}

std::vector<int> parse_token_ids(std::string_view text) {
    const auto empty_item = [&] { return Error("empty item in '" + std::string(text) + "'"); };
    std::vector<int> ids;
    bool need_item = false;  // after a comma: an id must come before the next comma or the end
    size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (std::isspace(static_cast<unsigned char>(c))) {
            ++i;
        } else if (c == ',') {
            if (need_item || ids.empty()) throw empty_item();
            need_item = true;
            ++i;
        } else {
            size_t j = i;
            while (j < text.size() && text[j] != ',' && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
            const std::string piece(text.substr(i, j - i));
            i = j;
            const size_t first = piece.find_first_not_of('0');
            const std::string digits = first == std::string::npos ? "0" : piece.substr(first);
            const bool all_digits = piece.find_first_not_of("0123456789") == std::string::npos;
            if (!all_digits || digits.size() > 9 || std::stoll(digits) > 100'000'000)
                throw Error("'" + piece + "' is not a token id (a non-negative integer)");
            ids.push_back(static_cast<int>(std::stoll(digits)));
            need_item = false;
        }
    }
    if (need_item) throw empty_item();
    if (ids.empty()) throw Error("the id list is empty (example: 5,9,3,7)");
    return ids;
}

}  // namespace kv
