// Fuzzes the GPT-2 byte-level BPE tokenizer (core/text/bpe_tokenizer.h).
// Tokenizers: a tiny vocabulary built here (256 byte tokens + merges, as in
// tests/test_bpe.cpp) and, when present, the real GPT-2 vocab.json + merges.txt
// ($KVSCOPE_GPT2_VOCAB_DIR, else <build-fuzz>/gpt2-vocab, fetched by scripts/fuzz).
// Checks: decode(encode(x)) == x for any bytes, ids in range, one piece per id,
// pre_tokenize covers the text, token_text of every id. The input is also loaded as
// merges.txt against the tiny vocab.json (errors must be kv::Error).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/text/bpe_tokenizer.h"
#include "core/text/utf8.h"
#include "core/error.h"
#include "tests/fuzz/fuzz_util.h"

using namespace kvfuzz;

namespace {

std::string utf8(char32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += char(cp);
    } else {
        s += char(0xC0 | (cp >> 6));
        s += char(0x80 | (cp & 0x3F));
    }
    return s;
}

// The byte -> vocab key alphabet (bytes_to_unicode), keys as UTF-8.
std::string byte_key(int b) { return utf8(kv::Gpt2BpeTokenizer::byte_to_unicode(uint8_t(b))); }

struct Fixture {
    std::unique_ptr<kv::Gpt2BpeTokenizer> tiny, gpt2;
    std::string vocab_json_path;
    Fixture() {
        // Tiny vocabulary: id b for byte b, then merges (ASCII words, a space-led word,
        // and a two-byte UTF-8 character "é" = C3 A9 -> keys "Ã" "©").
        const std::vector<std::pair<std::string, std::string>> merges = {
            {"h", "e"}, {"l", "o"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"a", "a"},
            {byte_key(' '), "w"}, {byte_key(0xC3), byte_key(0xA9)}, {byte_key(' '), byte_key(' ')},
            {byte_key(' ') + "w", "o"}, {"t", "h"}, {"th", "e"}};
        std::unordered_map<std::string, int> vocab;
        nlohmann::json vj = nlohmann::json::object();
        for (int b = 0; b < 256; ++b) vocab[byte_key(b)] = b;
        std::vector<kv::BpeMerge> ms;
        int id = 256;
        std::string merges_txt = "#version: 0.2\n";
        for (const auto& [l, r] : merges) {
            if (!vocab.count(l + r)) vocab[l + r] = id++;
            ms.push_back({l, r, 0});
            merges_txt += l + " " + r + "\n";
        }
        for (const auto& [k, v] : vocab) vj[k] = v;
        tiny = std::make_unique<kv::Gpt2BpeTokenizer>(vocab, ms);
        vocab_json_path = (scratch_dir() / "tiny-vocab.json").string();
        write_file(vocab_json_path, vj.dump());

        std::string dir;
        if (const char* env = std::getenv("KVSCOPE_GPT2_VOCAB_DIR"); env && *env) dir = env;
        else dir = std::string(KVSCOPE_BINARY_DIR) + "/gpt2-vocab";
        std::error_code ec;
        if (fs::exists(dir + "/vocab.json", ec) && fs::exists(dir + "/merges.txt", ec)) {
            gpt2 = kv::Gpt2BpeTokenizer::load(dir + "/vocab.json", dir + "/merges.txt");
            std::fprintf(stderr, "fuzz_bpe: GPT-2 vocabulary from %s (%d tokens)\n", dir.c_str(), gpt2->vocab_size());
        } else {
            std::fprintf(stderr, "fuzz_bpe: no GPT-2 vocabulary in %s; tiny vocabulary only\n", dir.c_str());
        }
    }
};

const Fixture& fixture() {
    static const Fixture f;
    return f;
}

void check_round_trip(const kv::Gpt2BpeTokenizer& tok, std::string_view text) {
    std::string joined;
    for (const auto& w : tok.pre_tokenize(text)) {
        KVFUZZ_CHECK(!w.empty());
        joined += w;
    }
    KVFUZZ_CHECK(joined == text);
    const kv::Encoding e = tok.encode(text);
    KVFUZZ_CHECK(e.ids.size() == e.pieces.size());
    KVFUZZ_CHECK(e.unknown.empty());
    KVFUZZ_CHECK(e.ids.size() <= text.size());
    for (size_t i = 0; i < e.ids.size(); ++i) {
        KVFUZZ_CHECK(e.ids[i] >= 0 && e.ids[i] < tok.vocab_size());
        KVFUZZ_CHECK(!tok.token_bytes(e.ids[i]).empty());
        KVFUZZ_CHECK(tok.token_bytes(e.ids[i]) == e.pieces[i]);
        KVFUZZ_CHECK(tok.token_text(e.ids[i]) == kv::display_bytes(e.pieces[i]));
    }
    KVFUZZ_CHECK(tok.decode(e.ids) == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Fixture& f = fixture();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_round_trip(*f.tiny, text);
    if (f.gpt2) check_round_trip(*f.gpt2, text);

    // Out-of-range ids decode to a marker, never read past the table.
    if (size >= 4) {
        int id;
        std::memcpy(&id, data, 4);
        const std::vector<int> ids = {id};
        (void)f.tiny->decode(ids);
        (void)f.tiny->token_text(id);
    }

    // The input as merges.txt against the tiny vocab.json.
    if (size > 0 && data[0] == '#') {
        const std::string merges_path = (scratch_dir() / "merges.txt").string();
        write_file(merges_path, text);
        try {
            auto t = kv::Gpt2BpeTokenizer::load(f.vocab_json_path, merges_path);
            check_round_trip(*t, text);
        } catch (const kv::Error&) {
        }
    }
    return 0;
}
