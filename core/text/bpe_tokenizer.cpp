// GPT-2 byte-level BPE, as OpenAI's gpt-2 src/encoder.py does it:
//   text --pre-tokenizer regex--> words --UTF-8 bytes--> one token per byte
//        --merge the adjacent pair of lowest rank, all its occurrences, repeat--> ids
// Tokens are kept by id; a merge is (left id, right id) -> (rank, result id).
// vocab.json spells bytes in the printable alphabet of bytes_to_unicode() (space is
// 'Ġ', newline 'Ċ'); bytes_[id] holds the raw bytes each token stands for.
#include "core/text/bpe_tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/text/utf8.h"

#if defined(KVSCOPE_HAVE_PCRE2)
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#if defined(KVSCOPE_HAVE_ICU)
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/utypes.h>
#endif

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define KVSCOPE_BPE_HAVE_JSON 1
#endif

namespace kv {

namespace {

// Words longer than this are not cached (a long run of letters is rarely repeated).
constexpr std::size_t kMaxCachedWordBytes = 256;
constexpr std::size_t kMaxCacheEntries = 1 << 16;

// A token or merge part quoted for an error message (kept to one short line).
std::string quote_token(std::string_view s) {
    std::string d = display_bytes(s);
    std::string out;
    for (char c : d) {
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else out += c;
    }
    if (out.size() > 80) out = out.substr(0, 77) + "...";
    return "'" + out + "'";
}

// Inverse of bytes_to_unicode: code point -> byte, -1 for code points it never yields.
struct UnicodeToByte {
    int table[324];
    UnicodeToByte() {
        std::fill(std::begin(table), std::end(table), -1);
        for (int b = 0; b < 256; ++b) table[Gpt2BpeTokenizer::byte_to_unicode(static_cast<std::uint8_t>(b))] = b;
    }
};

// vocab.json key -> the raw bytes it spells. A key with a character outside the byte
// alphabet (an added token of some other vocabulary) stands for its own UTF-8 text.
std::string key_to_bytes(const std::string& key) {
    static const UnicodeToByte u2b;
    std::string bytes;
    for (std::size_t i = 0; i < key.size();) {
        char32_t cp = 0;
        const std::size_t n = utf8_char_len(key, i, &cp);
        if (n == 0 || cp >= 324 || u2b.table[cp] < 0) return key;
        bytes += static_cast<char>(u2b.table[cp]);
        i += n;
    }
    return bytes;
}

std::uint64_t pair_key(int a, int b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
}

std::string read_file(const std::string& path, const char* what) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        throw Error(path + ": no such file (byte-level BPE needs " + what + ")");
    if (std::filesystem::is_directory(path, ec)) throw Error(path + ": is a directory, expected " + what);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(path + ": read error");
    return ss.str();
}

// The GPT-2 pattern with \s spelled out as Unicode White_Space, which is what \s means
// in Python's `regex` module (PCRE2's \s under UCP leaves out U+0085).
#define KV_WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" KV_WS "\\p{L}\\p{N}]+|[" KV_WS "]+(?![^" KV_WS
    "])|[" KV_WS "]+";
constexpr const char* kWhiteSpace = KV_WS;
#undef KV_WS

}  // namespace

char32_t Gpt2BpeTokenizer::byte_to_unicode(std::uint8_t b) {
    // Printable Latin-1 bytes stand for themselves; the other 68 bytes, in order, get
    // 256, 257, ... (so ' ' = 0x20 -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
    const auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
    if (printable(b)) return b;
    int n = 0;
    for (int c = 0; c < b; ++c) n += printable(c) ? 0 : 1;
    return static_cast<char32_t>(256 + n);
}

const char* gpt2_split_pattern() { return kGpt2Pattern; }
const char* white_space_class() { return kWhiteSpace; }
std::string read_tokenizer_file(const std::string& path, const char* what) { return read_file(path, what); }

#if defined(KVSCOPE_HAVE_PCRE2)
// One compiled pattern per pre-tokenizer step (null for a prefix-space step).
struct Gpt2BpeTokenizer::Regex {
    std::vector<pcre2_code*> codes;
    Regex(const std::vector<BpeTextRules::Step>& steps, const std::string& source) {
        for (const auto& step : steps) {
            codes.push_back(nullptr);
            if (step.prefix_space) continue;
            int err = 0;
            PCRE2_SIZE off = 0;
            const uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
            codes.back() = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(step.pattern.data()), step.pattern.size(), opts,
                                         &err, &off, nullptr);
            if (!codes.back()) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(err, msg, sizeof msg);
                throw Error(source + ": pre-tokenizer pattern " + quote_token(step.pattern) +
                            " does not compile with PCRE2 at offset " + std::to_string(off) + ": " +
                            reinterpret_cast<const char*>(msg));
            }
            pcre2_jit_compile(codes.back(), PCRE2_JIT_COMPLETE);  // slower without, same result
        }
    }
    ~Regex() {
        for (pcre2_code* c : codes) pcre2_code_free(c);
    }
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;
};
#else
// Without PCRE2 the files still load and ids still decode; pre_tokenize() says why
// text cannot be split.
struct Gpt2BpeTokenizer::Regex {
    Regex(const std::vector<BpeTextRules::Step>&, const std::string&) {}
};
#endif

Gpt2BpeTokenizer::Gpt2BpeTokenizer(const std::unordered_map<std::string, int>& vocab,
                                   const std::vector<BpeMerge>& merges, const std::string& vocab_name,
                                   const std::string& merges_name, BpeTextRules rules)
    : rules_(std::move(rules)), vocab_name_(vocab_name), vocab_(vocab) {
    regex_ = std::make_unique<Regex>(rules_.steps, vocab_name);
    index_vocab();
    index_merges(merges, merges_name);
}

// bytes_, special_, byte_id_ and added_first_ from vocab_ and rules_.added.
void Gpt2BpeTokenizer::index_vocab() {
    const std::string& name = vocab_name_;
    int max_id = -1;
    for (const auto& [key, id] : vocab_) {
        if (id < 0 || id > (1 << 24))
            throw Error(name + ": token " + quote_token(key) + " has id " + std::to_string(id) +
                        ", expected 0 .. 16777216");
        max_id = std::max(max_id, id);
    }
    for (const AddedToken& a : rules_.added) {
        if (a.id < 0 || a.id > (1 << 24))
            throw Error(name + ": added token " + quote_token(a.content) + " has id " + std::to_string(a.id) +
                        ", expected 0 .. 16777216");
        if (a.content.empty()) throw Error(name + ": added token " + std::to_string(a.id) + " has no content");
        max_id = std::max(max_id, a.id);
    }
    std::vector<const std::string*> owner(static_cast<std::size_t>(max_id + 1), nullptr);
    bytes_.resize(static_cast<std::size_t>(max_id + 1));
    special_.assign(bytes_.size(), false);
    for (const auto& [key, id] : vocab_) {
        if (owner[id])
            throw Error(name + ": id " + std::to_string(id) + " is given to both " + quote_token(*owner[id]) +
                        " and " + quote_token(key));
        owner[id] = &key;
        bytes_[id] = key_to_bytes(key);
    }
    // An added token stands for its own text, also where the vocabulary has its id.
    for (std::size_t i = 0; i < rules_.added.size(); ++i) {
        const AddedToken& a = rules_.added[i];
        bytes_[a.id] = a.content;
        special_[a.id] = a.special;
        added_first_[static_cast<unsigned char>(a.content[0])].push_back(static_cast<int>(i));
    }
    for (auto& list : added_first_)  // longest first: the longest match at a position wins
        std::stable_sort(list.begin(), list.end(), [&](int x, int y) {
            return rules_.added[x].content.size() > rules_.added[y].content.size();
        });
    for (int b = 0; b < 256; ++b) {
        const std::string key = utf8_encode(byte_to_unicode(static_cast<std::uint8_t>(b)));
        const auto it = vocab_.find(key);
        if (it == vocab_.end()) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "0x%02X", b);
            throw Error(name + ": missing the token " + quote_token(key) + " for byte " + hex +
                        "; a GPT-2 byte-level vocabulary has one token for each of the 256 bytes");
        }
        byte_id_[b] = it->second;
    }
}

void Gpt2BpeTokenizer::index_merges(const std::vector<BpeMerge>& merges, const std::string& merges_name) {
    const std::string& vocab_name = vocab_name_;
    const auto where = [&](const BpeMerge& m) {
        return "merge '" + display_bytes(m.left) + " " + display_bytes(m.right) + "' at " + merges_name +
               (m.line > 0 ? " " + rules_.merge_unit + " " + std::to_string(m.line) : "");
    };
    const std::string disagree = vocab_name + " and " + merges_name + " disagree: ";
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
        const BpeMerge& m = merges[rank];
        const auto l = vocab_.find(m.left);
        if (l == vocab_.end())
            throw Error(disagree + where(m) + " uses " + quote_token(m.left) + ", which is not in " + vocab_name);
        const auto r = vocab_.find(m.right);
        if (r == vocab_.end())
            throw Error(disagree + where(m) + " uses " + quote_token(m.right) + ", which is not in " + vocab_name);
        const auto res = vocab_.find(m.left + m.right);
        if (res == vocab_.end())
            throw Error(disagree + where(m) + " produces " + quote_token(m.left + m.right) + ", which is not in " +
                        vocab_name);
        // A repeated merge takes its later rank, as dict(zip(merges, range(n))) does.
        merges_.insert_or_assign(pair_key(l->second, r->second),
                                 std::pair<int, int>{static_cast<int>(rank), res->second});
    }
}

Gpt2BpeTokenizer::~Gpt2BpeTokenizer() = default;

std::unique_ptr<Gpt2BpeTokenizer> Gpt2BpeTokenizer::load(const std::string& vocab_json,
                                                         const std::string& merges_txt) {
#if defined(KVSCOPE_BPE_HAVE_JSON)
    std::unordered_map<std::string, int> vocab;
    {
        const std::string text = read_file(vocab_json, "vocab.json, the token -> id map");
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            throw Error(vocab_json + ": not valid JSON (" + e.what() + ")");
        }
        if (!j.is_object())
            throw Error(vocab_json + ": expected a JSON object mapping each token to its id, got a " +
                        std::string(j.type_name()));
        vocab.reserve(j.size());
        for (const auto& [key, value] : j.items()) {
            if (!value.is_number_integer())
                throw Error(vocab_json + ": token " + quote_token(key) + " maps to " + value.dump() +
                            ", expected an integer id");
            const auto id = value.get<long long>();
            if (id < 0 || id > (1 << 24))
                throw Error(vocab_json + ": token " + quote_token(key) + " has id " + std::to_string(id) +
                            ", expected 0 .. 16777216");
            vocab.emplace(key, static_cast<int>(id));
        }
    }
    std::vector<BpeMerge> merges;
    {
        const std::string text = read_file(merges_txt, "merges.txt, the ranked merges");
        std::size_t pos = 0;
        int line_no = 0;
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            std::string line = text.substr(pos, end - pos);
            pos = end + 1;
            ++line_no;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
            if (line.empty()) continue;
            const std::size_t sp = line.find(' ');
            if (sp == 0 || sp == std::string::npos || sp + 1 == line.size() ||
                line.find(' ', sp + 1) != std::string::npos)
                throw Error(merges_txt + " line " + std::to_string(line_no) +
                            ": expected two tokens separated by one space, got " + quote_token(line));
            merges.push_back({line.substr(0, sp), line.substr(sp + 1), line_no});
        }
    }
    return std::make_unique<Gpt2BpeTokenizer>(vocab, merges, vocab_json, merges_txt);
#else
    throw Error(vocab_json + ": this build has no JSON reader (nlohmann-json), so it cannot load GPT-2 BPE (" +
                merges_txt + ")");
#endif
}

std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::string& vocab_json, const std::string& merges_txt) {
    return Gpt2BpeTokenizer::load(vocab_json, merges_txt);
}

namespace {

#if defined(KVSCOPE_HAVE_PCRE2)
// Splits `text` at the matches of `code` as Hugging Face's Split "Isolated" does: each
// match and each gap between matches becomes a word; an empty match splits nothing.
// Invalid UTF-8 matches nothing (PCRE2_MATCH_INVALID_UTF), so it lands in a gap.
void split_isolated(const pcre2_code* code, pcre2_match_data* md, std::string_view text,
                    std::vector<std::string>& out) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t gap = 0, from = 0;
    while (from < text.size()) {
        if (pcre2_match(code, subject, text.size(), from, 0, md, nullptr) < 0) break;  // no match, or an error
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const std::size_t start = ov[0], end = ov[1];
        if (end <= start) {  // empty: look again one character further on
            const std::size_t n = utf8_char_len(text, start);
            from = start + (n ? n : 1);
            continue;
        }
        if (start > gap) out.emplace_back(text.substr(gap, start - gap));
        out.emplace_back(text.substr(start, end - start));
        gap = from = end;
    }
    if (gap < text.size()) out.emplace_back(text.substr(gap));
}
#endif

#if defined(KVSCOPE_HAVE_ICU)
std::string nfc_valid_utf8(std::string_view s, const std::string& source) {
    UErrorCode st = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(st);
    const icu::StringPiece in(s.data(), static_cast<int32_t>(s.size()));
    if (U_SUCCESS(st) && n->isNormalizedUTF8(in, st) && U_SUCCESS(st)) return std::string(s);
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    if (U_SUCCESS(st)) n->normalizeUTF8(0, in, sink, nullptr, st);
    if (U_FAILURE(st)) throw Error(source + ": NFC normalization failed (ICU: " + u_errorName(st) + ")");
    return out;
}
#endif

// Unicode NFC of s; runs of bytes that are not valid UTF-8 are kept as they are.
std::string to_nfc(std::string_view s, const std::string& source) {
    const bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii) return std::string(s);  // ASCII text is always in NFC
#if defined(KVSCOPE_HAVE_ICU)
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t j = i;
        while (j < s.size() && utf8_char_len(s, j) > 0) j += utf8_char_len(s, j);
        out += nfc_valid_utf8(s.substr(i, j - i), source);
        for (i = j; i < s.size() && utf8_char_len(s, i) == 0; ++i) out += s[i];
    }
    return out;
#else
    throw Error(source + ": this tokenizer puts text in Unicode NFC, and this build has no ICU to do it, so only "
                "ASCII text can be tokenized; install libicu-dev and rebuild, or give token ids (--ids)");
#endif
}

}  // namespace

std::vector<std::string> Gpt2BpeTokenizer::pre_tokenize(std::string_view text) const {
    std::vector<std::string> words;
    if (text.empty()) return words;
    words.emplace_back(rules_.nfc ? to_nfc(text, vocab_name_) : std::string(text));
#if defined(KVSCOPE_HAVE_PCRE2)
    const std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(pcre2_match_data_create(8, nullptr),
                                                                        pcre2_match_data_free);
    if (!md) throw Error("GPT-2 pre-tokenizer: out of memory for PCRE2 match data");
    std::vector<std::string> next;
    for (std::size_t k = 0; k < rules_.steps.size(); ++k) {
        next.clear();
        for (std::string& w : words) {
            if (rules_.steps[k].prefix_space) next.push_back(w.starts_with(' ') ? std::move(w) : " " + w);
            else split_isolated(regex_->codes[k], md.get(), w, next);
        }
        words.swap(next);
    }
#else
    throw Error(vocab_name_ + ": this build has no PCRE2, which byte-level BPE needs to split text into words; "
                "give token ids instead (--ids), or install libpcre2-dev and rebuild");
#endif
    return words;
}

std::vector<int> Gpt2BpeTokenizer::bpe_word(std::string_view word) const {
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
        std::lock_guard lock(cache_mutex_);
        const auto it = cache_.find(std::string(word));
        if (it != cache_.end()) return it->second;
    }
    std::vector<int> w;
    if (rules_.ignore_merges) {  // a word that is a whole token is that token
        std::string key;
        for (char c : word) key += utf8_encode(byte_to_unicode(static_cast<std::uint8_t>(c)));
        if (const auto it = vocab_.find(key); it != vocab_.end()) w.push_back(it->second);
    }
    if (w.empty())
        for (char c : word) w.push_back(byte_id_[static_cast<unsigned char>(c)]);
    std::vector<int> next;
    next.reserve(w.size());
    while (w.size() > 1) {
        // The adjacent pair of lowest rank...
        int best_rank = INT_MAX, left = -1, right = -1, merged = -1;
        for (std::size_t i = 0; i + 1 < w.size(); ++i) {
            const auto it = merges_.find(pair_key(w[i], w[i + 1]));
            if (it != merges_.end() && it->second.first < best_rank) {
                best_rank = it->second.first;
                left = w[i], right = w[i + 1], merged = it->second.second;
            }
        }
        if (merged < 0) break;
        // ...merged at every occurrence, left to right, without overlap.
        next.clear();
        for (std::size_t i = 0; i < w.size();) {
            if (i + 1 < w.size() && w[i] == left && w[i + 1] == right) {
                next.push_back(merged);
                i += 2;
            } else {
                next.push_back(w[i]);
                i += 1;
            }
        }
        w.swap(next);
    }
    if (cacheable) {
        std::lock_guard lock(cache_mutex_);
        if (cache_.size() >= kMaxCacheEntries) cache_.clear();
        cache_.emplace(std::string(word), w);
    }
    return w;
}

void Gpt2BpeTokenizer::encode_span(std::string_view text, Encoding& enc) const {
    for (const std::string& word : pre_tokenize(text)) {
        for (int id : bpe_word(word)) {
            enc.ids.push_back(id);
            enc.pieces.push_back(bytes_[id]);
        }
    }
}

// Added tokens first (the longest at the leftmost position, as Hugging Face's
// Aho-Corasick "leftmost longest" does), then the text between them word by word.
Encoding Gpt2BpeTokenizer::encode(std::string_view text) const {
    Encoding enc;
    std::size_t span = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        for (int a : added_first_[static_cast<unsigned char>(text[i])]) {
            const AddedToken& t = rules_.added[a];
            if (text.compare(i, t.content.size(), t.content) != 0) continue;
            encode_span(text.substr(span, i - span), enc);
            enc.ids.push_back(t.id);
            enc.pieces.push_back(t.content);
            span = i + t.content.size();
            i = span - 1;
            break;
        }
    }
    encode_span(text.substr(span), enc);
    return enc;
}

bool Gpt2BpeTokenizer::is_special(int id) const {
    return id >= 0 && id < static_cast<int>(special_.size()) && special_[id];
}

std::string Gpt2BpeTokenizer::token_bytes(int id) const {
    if (id < 0 || id >= vocab_size()) return {};
    return bytes_[id];
}

std::string Gpt2BpeTokenizer::token_text(int id) const {
    if (id < 0 || id >= vocab_size()) return "<id " + std::to_string(id) + ">";
    return display_bytes(bytes_[id]);
}

std::string Gpt2BpeTokenizer::decode(std::span<const int> ids) const {
    std::string out;
    for (int id : ids) {
        if (id < 0 || id >= vocab_size()) out += "<id " + std::to_string(id) + ">";
        else out += bytes_[id];
    }
    return out;
}

int Gpt2BpeTokenizer::id_of(const std::string& vocab_key) const {
    const auto it = vocab_.find(vocab_key);
    return it == vocab_.end() ? -1 : it->second;
}

}  // namespace kv
