// Text beyond ASCII: the UTF-8 helpers of core/text/utf8.h, the grouping of byte
// pieces under the characters they form (the tokens panel draws it), and the one
// place that makes every JSON writer's text valid (app/cli_common.h print_json).
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "app/cli_common.h"
#include "core/text/utf8.h"
#include "test_helpers.h"
#include "text_cases.h"

using nlohmann::json;
using kvtest::json_text_bytes;
using Pieces = std::vector<std::string>;

namespace {

// (first, count, text) of every group, for compact checks.
std::vector<std::tuple<int, int, std::string>> groups_of(const Pieces& p) {
    std::vector<std::tuple<int, int, std::string>> out;
    for (const kv::PieceGroup& g : kv::group_pieces(p)) out.emplace_back(g.first, g.count, g.text);
    return out;
}

}  // namespace

TEST_CASE("utf8: valid and invalid sequences") {
    CHECK(kv::is_valid_utf8(""));
    CHECK(kv::is_valid_utf8("café 日本語 Ελληνικά привет नमस्ते 🙂"));
    CHECK_FALSE(kv::is_valid_utf8("\xE6\x97"));          // truncated
    CHECK_FALSE(kv::is_valid_utf8("\xA5"));              // stray continuation byte
    CHECK_FALSE(kv::is_valid_utf8("\xC0\xAF"));          // overlong '/'
    CHECK_FALSE(kv::is_valid_utf8("\xED\xA0\x80"));      // surrogate
    CHECK_FALSE(kv::is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
    CHECK(kv::utf8_code_points("a日🙂") == std::vector<char32_t>{U'a', U'日', U'🙂'});
    CHECK(kv::utf8_code_points("a\xFF") == std::vector<char32_t>{U'a', 0xFFFD});
    CHECK(kv::utf8_encode(U'日') == "日");
    CHECK(kv::utf8_encode(U'🙂') == "🙂");
}

TEST_CASE("display_bytes keeps characters and writes other bytes as <0xHH>") {
    CHECK(kv::display_bytes("café") == "café");
    CHECK(kv::display_bytes("\xE6\x97") == "<0xE6><0x97>");
    CHECK(kv::display_bytes("a\xFF日") == "a<0xFF>日");
    CHECK(kv::is_valid_utf8(kv::display_bytes("\xF0\x9F\x99")));
}

TEST_CASE("group_pieces joins the pieces of a character split between tokens") {
    SUBCASE("日 as three one-byte pieces") {
        CHECK(groups_of({"\xE6", "\x97", "\xA5"}) == std::vector<std::tuple<int, int, std::string>>{{0, 3, "日"}});
    }
    SUBCASE("whole pieces stay alone") {
        CHECK(groups_of({"Hello", " world", " café"}) ==
              std::vector<std::tuple<int, int, std::string>>{{0, 1, "Hello"}, {1, 1, " world"}, {2, 1, " café"}});
    }
    SUBCASE("a chain: each piece ends inside the next character") {
        // 日本 = E6 97 A5 | E6 9C AC, split as [E6 97] [A5 E6] [9C AC]
        CHECK(groups_of({"\xE6\x97", "\xA5\xE6", "\x9C\xAC", "!"}) ==
              std::vector<std::tuple<int, int, std::string>>{{0, 3, "日本"}, {3, 1, "!"}});
    }
    SUBCASE("a space and half an emoji, then its other half (GPT-2 splits 🙂 so)") {
        CHECK(groups_of({"x", " \xF0\x9F", "\x99\x82", " y"}) ==
              std::vector<std::tuple<int, int, std::string>>{{0, 1, "x"}, {1, 2, " 🙂"}, {3, 1, " y"}});
    }
    SUBCASE("bytes that never form a character are not joined") {
        CHECK(groups_of({"\xFF", "\xE6", "a"}) ==
              std::vector<std::tuple<int, int, std::string>>{{0, 1, "<0xFF>"}, {1, 1, "<0xE6>"}, {2, 1, "a"}});
    }
    SUBCASE("a character still incomplete at the end (generation not finished)") {
        CHECK(groups_of({"a", "\xE6", "\x97"}) ==
              std::vector<std::tuple<int, int, std::string>>{{0, 1, "a"}, {1, 1, "<0xE6>"}, {2, 1, "<0x97>"}});
    }
    SUBCASE("empty input and empty pieces") {
        CHECK(kv::group_pieces(Pieces{}).empty());
        CHECK(groups_of({"", "a"}) == std::vector<std::tuple<int, int, std::string>>{{0, 1, ""}, {1, 1, "a"}});
    }
}

TEST_CASE("JSON text: valid strings unchanged, others as <0xHH> text plus exact bytes") {
    json j = {{"next_token", "\xE6\x97"},
              {"text", "日本"},
              {"tokens", {"日", "\xE6\x9C", "\xAC"}},
              {"steps", {{{"next_token", "a\xFF"}}, {{"next_token", "b"}}}},
              {"nested", {{"x"}, {"\xC3"}}},
              {"ids", {1, 2}}};
    cli::make_text_json_safe(j);
    const std::string out = j.dump();  // would throw on invalid UTF-8
    CHECK(j["text"] == "日本");
    CHECK_FALSE(j.contains("text_bytes"));
    CHECK(j["next_token"] == "<0xE6><0x97>");
    CHECK(j["next_token_bytes"] == json::array({0xE6, 0x97}));
    CHECK(j["tokens"] == json::array({"日", "<0xE6><0x9C>", "<0xAC>"}));
    CHECK(j["tokens_bytes"] == json::parse("[null,[230,156],[172]]"));
    CHECK(j["steps"][0]["next_token_bytes"] == json::array({97, 0xFF}));
    CHECK_FALSE(j["steps"][1].contains("next_token_bytes"));
    CHECK(j["nested_bytes"] == json::parse("[null,[[195]]]"));
    CHECK_FALSE(j.contains("ids_bytes"));
    // lossless: a reader gets every original string back
    CHECK(json_text_bytes(j, "next_token") == "\xE6\x97");
    CHECK(json_text_bytes(j, "tokens", 1) == "\xE6\x9C");
    CHECK(json_text_bytes(j, "tokens", 0) == "日");
    CHECK(json_text_bytes(j["steps"][0], "next_token") == "a\xFF");
}

TEST_CASE("JSON text: a literal <0xE6> token stays distinguishable from the byte") {
    json j = {{"a", "<0xE6>"}, {"b", "\xE6"}};
    cli::make_text_json_safe(j);
    CHECK(j["a"] == j["b"]);  // the same text on screen ...
    CHECK_FALSE(j.contains("a_bytes"));
    CHECK(j["b_bytes"] == json::array({0xE6}));  // ... told apart by the bytes
}

TEST_CASE("JSON text: a bare string or list at the top is wrapped, never an exception") {
    json s = "\xFF";
    cli::make_text_json_safe(s);
    CHECK(s == json::parse(R"({"value":"<0xFF>","value_bytes":[255]})"));
    json ok = json::array({"a", 1});
    cli::make_text_json_safe(ok);
    CHECK(ok == json::array({"a", 1}));
}

// The bundled word-level model: tokens are the input's words, so their bytes joined
// give the text without its spaces; every command's JSON parses.
TEST_CASE("bundled model: tokenize, generate and compare JSON in many scripts, and invalid UTF-8") {
    for (const kvtest::TextCase& c : kvtest::text_cases()) {
        CAPTURE(c.name);
        const kvtest::Run tk = kvtest::run_cli("tokenize --text '" + c.text + "'");
        REQUIRE(tk.rc == 0);
        const json t = json::parse(tk.out);
        REQUIRE(t["tokens"].size() == t["ids"].size());
        std::string joined, spaceless;
        for (int i = 0; i < int(t["tokens"].size()); ++i) joined += json_text_bytes(t, "tokens", i);
        for (char ch : c.text)
            if (ch != ' ') spaceless += ch;
        CHECK(joined == spaceless);
        for (const char* cmd : {"generate", "compare"}) {
            CAPTURE(cmd);
            const kvtest::Run g = kvtest::run_cli(std::string(cmd) + " --prompt '" + c.text + "' --new 2 --json");
            REQUIRE(g.rc == 0);
            const json j = json::parse(g.out);
            CHECK(j["prompt_ids"] == t["ids"]);
            CHECK(j["steps"].size() == 2);
        }
    }
}

// One place writes JSON: a command added later that printed its own dump() would
// throw on the first byte piece again. Everything the CLI prints to stdout goes
// through cli::print_json (app/cli_common.cpp).
TEST_CASE("every CLI JSON writer goes through print_json") {
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(std::string(KVSCOPE_SOURCE_DIR) + "/app")) {
        const std::string name = e.path().filename().string();
        if (e.path().extension() != ".cpp" || name == "cli_common.cpp" || name == "gui_main.cpp") continue;
        CAPTURE(name);
        std::ifstream f(e.path());
        const std::string src((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        CHECK(src.find(".dump(") == std::string::npos);
        CHECK(src.find("std::cout") == std::string::npos);
        ++files;
    }
    CHECK(files >= 3);  // cli_app, cli_bench, cli_main at least
}
