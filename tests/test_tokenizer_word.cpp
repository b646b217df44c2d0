// WordTokenizer: splitting, lookup with case fallback, unknown words reported by
// name, decode spacing, and the errors for malformed vocab.txt files.
#include <doctest/doctest.h>

#include "test_helpers.h"
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/text/tokenizer.h"

namespace fs = std::filesystem;
using kv::WordTokenizer;
using Words = std::vector<std::string>;

using kvtest::error_of;

namespace {

struct TempDir : kvtest::TempDir {
    TempDir() : kvtest::TempDir("kvscope_test_tokenizer_word") {}
};

WordTokenizer lesson_vocab() {
    return WordTokenizer({"<unk>", "Python", "is", "a", "programming", "language", ".", ",", "(", ")", "it",
                          "don't", "well-known", "!", "<eos>", "café", "?"});
}

}  // namespace

TEST_CASE("split_words: words, inner apostrophes and hyphens, single punctuation") {
    struct Case {
        std::string text;
        Words words;
    };
    const std::vector<Case> cases = {
        {"Python is a programming language.", {"Python", "is", "a", "programming", "language", "."}},
        {"don't stop", {"don't", "stop"}},
        {"a well-known fact", {"a", "well-known", "fact"}},
        {"'quoted' - dash -x y-", {"'", "quoted", "'", "-", "dash", "-", "x", "y", "-"}},
        {"rock'n'roll", {"rock'n'roll"}},
        {"snake_case x2 42", {"snake_case", "x2", "42"}},
        {"(hello, world)!?", {"(", "hello", ",", "world", ")", "!", "?"}},
        {"a;b:c\"d\"", {"a", ";", "b", ":", "c", "\"", "d", "\""}},
        {"  \t\n spaced \r\n out  ", {"spaced", "out"}},
        {"", {}},
        {"   ", {}},
        {"...", {".", ".", "."}},
        {"<eos>", {"<", "eos", ">"}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(WordTokenizer::split_words(c.text) == c.words);
    }
}

TEST_CASE("split_words keeps non-ASCII UTF-8 inside words and never splits a code point") {
    CHECK(WordTokenizer::split_words("café au lait") == Words{"café", "au", "lait"});
    CHECK(WordTokenizer::split_words("naïve, 日本語!") == Words{"naïve", ",", "日本語", "!"});
    CHECK(WordTokenizer::split_words("emoji 🙂.") == Words{"emoji", "🙂", "."});
    CHECK(WordTokenizer::split_words("l’école") == Words{"l’école"});
    // Truncated and stray bytes: kept, never split off mid-sequence, no crash.
    const std::string broken = std::string("ab\xe6\x97") + " c\x80" + "d \xff.";
    const Words w = WordTokenizer::split_words(broken);
    CHECK(w == Words{std::string("ab\xe6\x97"), std::string("c\x80") + "d", "\xff", "."});
    // Every byte of the input (but whitespace) lands in exactly one piece.
    size_t bytes = 0;
    for (const auto& s : w) bytes += s.size();
    CHECK(bytes == broken.size() - 2);
}

TEST_CASE("encode maps words to ids and keeps the input text as pieces") {
    const WordTokenizer tok = lesson_vocab();
    const kv::Encoding e = tok.encode("Python is a programming language.");
    CHECK(e.ids == std::vector<int>{1, 2, 3, 4, 5, 6});
    CHECK(e.pieces == Words{"Python", "is", "a", "programming", "language", "."});
    CHECK(e.unknown.empty());
    CHECK(tok.encode("").ids.empty());
    CHECK(tok.encode(" \n ").pieces.empty());
    CHECK(tok.encode("don't, well-known café").ids == std::vector<int>{11, 7, 12, 15});
}

TEST_CASE("encode falls back to lower case, then capitalised, then <unk>") {
    const WordTokenizer tok = lesson_vocab();
    SUBCASE("lower case") {
        const auto e = tok.encode("IS It");
        CHECK(e.ids == std::vector<int>{2, 10});
        CHECK(e.pieces == Words{"IS", "It"});  // pieces stay as typed
        CHECK(e.unknown.empty());
    }
    SUBCASE("capitalised") {
        const auto e = tok.encode("python PYTHON pYTHON");
        CHECK(e.ids == std::vector<int>{1, 1, 1});
        CHECK(e.unknown.empty());
    }
    SUBCASE("unknown words are reported by name, in order, repeats included") {
        const auto e = tok.encode("Python is quantum, quantum physics");
        CHECK(e.ids == std::vector<int>{1, 2, 0, 7, 0, 0});
        CHECK(e.pieces == Words{"Python", "is", "quantum", ",", "quantum", "physics"});
        CHECK(e.unknown == Words{"quantum", "quantum", "physics"});
    }
    SUBCASE("unknown punctuation") {
        const auto e = tok.encode("a#");
        CHECK(e.ids == std::vector<int>{3, 0});
        CHECK(e.unknown == Words{"#"});
    }
}

TEST_CASE("token_text and decode") {
    const WordTokenizer tok = lesson_vocab();
    CHECK(tok.token_text(1) == "Python");
    CHECK(tok.token_text(0) == "<unk>");
    CHECK(tok.token_text(-1) == "<id -1>");
    CHECK(tok.token_text(999) == "<id 999>");

    struct Case {
        std::vector<int> ids;
        std::string text;
    };
    const std::vector<Case> cases = {
        {{1, 2, 3, 4, 5, 6}, "Python is a programming language."},
        {{1, 7, 10, 2, 13, 16}, "Python, it is!?"},
        {{5, 8, 1, 9, 6}, "language (Python)."},
        {{8, 8, 2, 9, 9}, "((is))"},
        {{2, 14, 1}, "is <eos> Python"},  // special tokens decode as their text
        {{0, 999}, "<unk> <id 999>"},
        {{6}, "."},
        {{}, ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(tok.decode(c.ids) == c.text);
    }
    // decode(encode(x)) == x for text spaced the way decode writes it.
    const std::string s = "Python, it is a well-known language (don't it?)!";
    CHECK(tok.decode(tok.encode(s).ids) == s);
}

TEST_CASE("vocab.txt load, save and id_of") {
    TempDir d;
    const WordTokenizer tok = lesson_vocab();
    const std::string p = (d.path / "vocab.txt").string();
    tok.save(p);
    const auto loaded = WordTokenizer::load(p);
    CHECK(loaded->vocab() == tok.vocab());
    CHECK(loaded->vocab_size() == 17);
    CHECK(loaded->kind() == "word");
    CHECK(loaded->id_of("programming") == 4);
    CHECK(loaded->id_of("Programming") == -1);
    CHECK(loaded->unk_id() == 0);

    SUBCASE("no trailing newline") {
        const auto t = WordTokenizer::load(d.file("a.txt", "<unk>\nx\ny"));
        CHECK(t->vocab() == Words{"<unk>", "x", "y"});
    }
    SUBCASE("CRLF line ends") {
        const auto t = WordTokenizer::load(d.file("a.txt", "<unk>\r\nx\r\ny\r\n"));
        CHECK(t->vocab() == Words{"<unk>", "x", "y"});
    }
}

TEST_CASE("malformed vocab.txt files give one line naming the file and the line") {
    TempDir d;
    struct Case {
        std::string content;
        std::vector<std::string> parts;
    };
    const std::vector<Case> cases = {
        {"", {"empty"}},
        {"hello\n<unk>\n", {"line 1", "<unk>", "'hello'"}},
        {"<unk>\na\n\nb\n", {"line 3", "empty"}},
        {"<unk>\na\n\n", {"line 3", "empty"}},
        {"<unk>\na\nb\na\n", {"line 4", "'a'", "repeats line 2"}},
        {"<unk>\nhello world\n", {"line 2", "whitespace"}},
        {"<unk>\n<unk>\n", {"line 2", "repeats line 1"}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.content);
        const std::string p = d.file("vocab.txt", c.content);
        const std::string msg = error_of([&] { WordTokenizer::load(p); });
        CAPTURE(msg);
        CHECK(msg.find(p) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
        for (const auto& part : c.parts) {
            CAPTURE(part);
            CHECK(msg.find(part) != std::string::npos);
        }
    }
    SUBCASE("missing file") {
        const std::string p = (d.path / "nope.txt").string();
        const std::string msg = error_of([&] { WordTokenizer::load(p); });
        CHECK(msg == p + ": no such file");
    }
    SUBCASE("a directory") {
        const std::string msg = error_of([&] { WordTokenizer::load(d.path.string()); });
        CHECK(msg.find("directory") != std::string::npos);
    }
    SUBCASE("the constructor checks too") {
        CHECK_THROWS_AS(WordTokenizer({"a", "<unk>"}), kv::Error);
        CHECK_THROWS_AS(WordTokenizer({"<unk>", "a", "a"}), kv::Error);
        CHECK_THROWS_AS(WordTokenizer(Words{}), kv::Error);
    }
}

TEST_CASE("parse_token_ids: one reader of typed token ids for the CLI and the window") {
    CHECK(kv::parse_token_ids("5,9,3,7") == std::vector<int>{5, 9, 3, 7});
    CHECK(kv::parse_token_ids(" 5 9, 3 ") == std::vector<int>{5, 9, 3});
    CHECK(kv::parse_token_ids("007, 100000000") == std::vector<int>{7, 100'000'000});
    CHECK_THROWS_WITH_AS(kv::parse_token_ids("1,x"), "'x' is not a token id (a non-negative integer)",
                         kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_token_ids("-3"), doctest::Contains("'-3' is not a token id"), kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_token_ids("100000001"), doctest::Contains("'100000001' is not"), kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_token_ids("1,,2"), "empty item in '1,,2'", kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_token_ids(",1"), "empty item in ',1'", kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_token_ids("1,"), "empty item in '1,'", kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_token_ids(""), "the id list is empty (example: 5,9,3,7)", kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_token_ids("  "), "the id list is empty (example: 5,9,3,7)", kv::Error);
}
