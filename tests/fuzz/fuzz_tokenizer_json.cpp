// Fuzzes tokenizer.json parsing and the tokenizer it makes (core/text/tokenizer_json.h).
// The input is a tokenizer.json, optionally followed by "\n\x01" and a text to encode.
// Checks: every refusal is a kv::Error (anything else escapes and libFuzzer reports
// it); a tokenizer that loads encodes the text (or a fixed sample) into ids in range,
// one piece per id equal to the token's bytes, and, with no NFC and no prefix space,
// decodes back to the text.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/text/tokenizer_json.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void check_encoding(const kv::Gpt2BpeTokenizer& tok, std::string_view text) {
    kv::Encoding e;
    try {
        e = tok.encode(text);
    } catch (const kv::Error&) {  // NFC without ICU refuses non-ASCII text
        return;
    }
    KVFUZZ_CHECK(e.ids.size() == e.pieces.size());
    for (size_t i = 0; i < e.ids.size(); ++i) {
        KVFUZZ_CHECK(e.ids[i] >= 0 && e.ids[i] < tok.vocab_size());
        KVFUZZ_CHECK(tok.token_bytes(e.ids[i]) == e.pieces[i]);
    }
    bool prefix_space = false;
    for (const auto& s : tok.rules().steps) prefix_space = prefix_space || s.prefix_space;
    if (!tok.rules().nfc && !prefix_space) KVFUZZ_CHECK(tok.decode(e.ids) == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const size_t sep = input.find("\n\x01");
    const std::string_view json = input.substr(0, sep);
    const std::string_view text =
        sep == std::string_view::npos ? std::string_view("Hello world, it's 2026! <|eot|> caf\xC3\xA9") : input.substr(sep + 2);
    try {
        const auto tok = kv::parse_tokenizer_json(json, "fuzz/tokenizer.json");
        check_encoding(*tok, text);
    } catch (const kv::Error& e) {
        KVFUZZ_CHECK(std::string_view(e.what()).starts_with("fuzz/tokenizer.json"));
    }
    return 0;
}
