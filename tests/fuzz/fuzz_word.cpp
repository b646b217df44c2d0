// Fuzzes the word-level tokenizer (core/text/tokenizer.h): encode/decode with the bundled
// vocabulary (assets/models/tiny-gpt/vocab.txt, else a small inline one), and
// WordTokenizer::load on the input itself as a vocab.txt.
// Checks: one piece per id, ids in range, the pieces are the input's non-space bytes
// in order, unknown words are exactly the pieces that became <unk> (and are not
// "<unk>" itself), a vocabulary that loads maps each line back to its id.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/text/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

using namespace kvfuzz;

namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

const kv::WordTokenizer& bundled() {
    static const std::unique_ptr<kv::WordTokenizer> tok = [] {
        const std::string path = std::string(KVSCOPE_SOURCE_DIR) + "/assets/models/tiny-gpt/vocab.txt";
        std::error_code ec;
        if (fs::exists(path, ec)) {
            std::fprintf(stderr, "fuzz_word: vocabulary %s\n", path.c_str());
            return kv::WordTokenizer::load(path);
        }
        std::fprintf(stderr, "fuzz_word: no %s; inline vocabulary\n", path.c_str());
        return std::make_unique<kv::WordTokenizer>(std::vector<std::string>{
            "<unk>", ".", ",", "(", ")", "?", "!", "'", "-", "the", "The", "python", "Python", "is", "a",
            "programming", "language", "don't", "well-known", "café", "1", "42", "_"});
    }();
    return *tok;
}

void check_encode(const kv::WordTokenizer& tok, std::string_view text) {
    const kv::Encoding e = tok.encode(text);
    KVFUZZ_CHECK(e.ids.size() == e.pieces.size());
    std::string joined, expected;
    size_t unk = 0;
    for (size_t i = 0; i < e.ids.size(); ++i) {
        KVFUZZ_CHECK(e.ids[i] >= 0 && e.ids[i] < tok.vocab_size());
        KVFUZZ_CHECK(!e.pieces[i].empty());
        joined += e.pieces[i];
        if (e.ids[i] == tok.unk_id() && e.pieces[i] != "<unk>") {
            KVFUZZ_CHECK(unk < e.unknown.size() && e.unknown[unk] == e.pieces[i]);
            ++unk;
        }
        (void)tok.token_text(e.ids[i]);
    }
    KVFUZZ_CHECK(unk == e.unknown.size());
    for (char c : text)
        if (!is_space(static_cast<unsigned char>(c))) expected += c;
    KVFUZZ_CHECK(joined == expected);
    (void)tok.decode(e.ids);
    // Ids outside the vocabulary decode to a marker.
    const std::vector<int> bad = {-1, tok.vocab_size(), 1 << 30};
    (void)tok.decode(bad);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_encode(bundled(), text);

    // The input as a vocab.txt.
    const std::string path = (scratch_dir() / "vocab.txt").string();
    write_file(path, text);
    try {
        auto tok = kv::WordTokenizer::load(path);
        const auto& v = tok->vocab();
        KVFUZZ_CHECK(!v.empty() && v[0] == "<unk>");
        for (size_t i = 0; i < v.size(); ++i) KVFUZZ_CHECK(tok->id_of(v[i]) == int(i));
        check_encode(*tok, text);
    } catch (const kv::Error&) {
    }
    // And straight from lines (the constructor checks the same rules).
    try {
        std::vector<std::string> lines;
        size_t pos = 0;
        while (pos <= text.size()) {
            size_t nl = text.find('\n', pos);
            if (nl == std::string_view::npos) nl = text.size();
            lines.emplace_back(text.substr(pos, nl - pos));
            pos = nl + 1;
        }
        kv::WordTokenizer tok(std::move(lines));
        check_encode(tok, text);
    } catch (const kv::Error&) {
    }
    return 0;
}
