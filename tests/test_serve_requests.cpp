// The requests of `kvscope-cli serve` (core/serve/requests.h): the JSON Lines file of
// --requests in its ids and prompt forms, with arrivals, forks and blank lines; every
// bad line as one kv::Error naming the file and its exact line; the --prompts shorthand;
// and parsed requests running through the scheduler.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/serve/requests.h"
#include "core/serve/scheduler.h"

using kv::RequestRules;
using kv::ServeRequest;

namespace {

// A fake tokenizer: each space-separated word becomes its length; "boom" throws as a
// tokenizer may, "huge" becomes an id outside the vocabulary.
std::vector<int> fake_tokenize(const std::string& text) {
    std::vector<int> ids;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t sp = text.find(' ', pos);
        if (sp == std::string::npos) sp = text.size();
        const std::string w = text.substr(pos, sp - pos);
        if (w == "boom") throw kv::Error("'boom' is not in the vocabulary");
        if (!w.empty()) ids.push_back(w == "huge" ? 1000 : int(w.size()));
        pos = sp + 1;
    }
    return ids;
}

RequestRules rules(int fork = 1) {
    RequestRules r;
    r.vocab_size = 50;
    r.n_ctx = 16;
    r.fork = fork;
    r.tokenize = fake_tokenize;
    return r;
}

std::string error_of(const std::string& text, const RequestRules& r = rules()) {
    try {
        kv::parse_requests(text, "reqs.jsonl", r);
    } catch (const kv::Error& e) {
        return e.what();
    }
    return "(no error)";
}

// The message starts with "reqs.jsonl:LINE: ", holds `what` and is one line.
void check_error(const std::string& text, int line, const std::string& what, const RequestRules& r = rules()) {
    const std::string msg = error_of(text, r);
    CAPTURE(msg);
    CHECK(msg.rfind("reqs.jsonl:" + std::to_string(line) + ": ", 0) == 0);
    CHECK(msg.find(what) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
}

}  // namespace

TEST_CASE("requests file: ids and prompt lines, arrivals, forks and blank lines") {
    const std::string text =
        "{\"ids\": [5, 9, 3], \"new\": 4}\n"
        "\n"
        "   \t\r\n"
        "{\"prompt\": \"the cat sat\", \"new\": 2, \"arrive\": 3}\r\n"
        "{\"arrive\": 1, \"fork\": 3, \"new\": 1, \"ids\": [0, 49]}\n"
        "\n";
    const std::vector<ServeRequest> q = kv::parse_requests(text, "reqs.jsonl", rules());
    REQUIRE(q.size() == 3);
    CHECK(q[0].prompt == std::vector<int>{5, 9, 3});
    CHECK(q[0].new_tokens == 4);
    CHECK(q[0].arrive == 0);
    CHECK(q[0].fork == 1);
    CHECK(q[1].prompt == std::vector<int>{3, 3, 3});
    CHECK(q[1].new_tokens == 2);
    CHECK(q[1].arrive == 3);
    CHECK(q[2].prompt == std::vector<int>{0, 49});
    CHECK(q[2].new_tokens == 1);
    CHECK(q[2].arrive == 1);
    CHECK(q[2].fork == 3);
}

TEST_CASE("requests file: a line without fork takes the rules' fork, a line with one keeps it") {
    const auto q = kv::parse_requests("{\"ids\": [1], \"new\": 2}\n{\"ids\": [1], \"new\": 2, \"fork\": 1}", "r", rules(4));
    REQUIRE(q.size() == 2);
    CHECK(q[0].fork == 4);
    CHECK(q[1].fork == 1);
}

TEST_CASE("requests file: a request may fill the context exactly, as generate allows") {
    // 10 prompt tokens + 7 new hold 16 positions (the last new token is never fed).
    const auto q = kv::parse_requests("{\"ids\": [1,2,3,4,5,6,7,8,9,10], \"new\": 7}", "r", rules());
    REQUIRE(q.size() == 1);
    CHECK(q[0].new_tokens == 7);
    check_error("{\"ids\": [1,2,3,4,5,6,7,8,9,10], \"new\": 8}", 1,
                "longer than the context: 10 prompt tokens + 8 new need 17 positions; the context holds 16");
}

TEST_CASE("requests file: each bad line names the file, its line number and what is wrong") {
    // Two good lines and a blank one before it: the bad line is line 4.
    const std::string before = "{\"ids\": [1, 2], \"new\": 2}\n\n{\"prompt\": \"a b\", \"new\": 1}\n";
    const std::string after = "\n{\"ids\": [3], \"new\": 1}\n";
    struct Case {
        const char* line;
        const char* what;
    };
    const Case cases[] = {
        {"{\"ids\": [1, 2], \"new\": 2", "not valid JSON (column"},
        {"ids: [1], new: 2", "not valid JSON (column 1"},
        {"{\"ids\": [1], \"new\": 2} {}", "not valid JSON"},
        {"[1, 2, 3]", "expected one JSON object like {\"ids\": [1, 2], \"new\": 4}, got an array"},
        {"42", "expected one JSON object"},
        {"{\"ids\": [1], \"prompt\": \"a\", \"new\": 2}", "both \"prompt\" and \"ids\"; give one of them"},
        {"{\"new\": 2}", "neither \"prompt\" nor \"ids\"; give one of them"},
        {"{\"ids\": [1, 2.5], \"new\": 2}", "\"ids\"[1] is 2.5, not an integer token id"},
        {"{\"ids\": [\"3\"], \"new\": 2}", "\"ids\"[0] is \"3\", not an integer token id"},
        {"{\"ids\": [true], \"new\": 2}", "\"ids\"[0] is true, not an integer token id"},
        {"{\"ids\": [[1]], \"new\": 2}", "\"ids\"[0] is an array, not an integer token id"},
        {"{\"ids\": [1, -1], \"new\": 2}", "\"ids\"[1]: token id -1 is outside the vocabulary [0, 50)"},
        {"{\"ids\": [50], \"new\": 2}", "\"ids\"[0]: token id 50 is outside the vocabulary [0, 50)"},
        {"{\"ids\": [18446744073709551615], \"new\": 2}", "token id 18446744073709551615 is outside the vocabulary"},
        {"{\"ids\": [], \"new\": 2}", "\"ids\" must be a non-empty array of token ids, got []"},
        {"{\"ids\": \"1,2\", \"new\": 2}", "\"ids\" must be a non-empty array of token ids, got \"1,2\""},
        {"{\"prompt\": 7, \"new\": 2}", "\"prompt\" must be a string, got 7"},
        {"{\"prompt\": \"   \", \"new\": 2}", "\"prompt\": gives no tokens"},
        {"{\"prompt\": \"a huge b\", \"new\": 2}", "\"prompt\" (tokenized): token id 1000 (at index 1) is outside the vocabulary [0, 50)"},
        {"{\"prompt\": \"a boom\", \"new\": 2}", "'boom' is not in the vocabulary"},
        {"{\"ids\": [1]}", "no \"new\" (the number of tokens to generate, at least 1)"},
        {"{\"ids\": [1], \"new\": 0}", "\"new\" is 0; it must be at least 1"},
        {"{\"ids\": [1], \"new\": -3}", "\"new\" is -3; it must be at least 1"},
        {"{\"ids\": [1], \"new\": 2.0}", "\"new\" must be an integer, got 2.0"},
        {"{\"ids\": [1], \"new\": null}", "\"new\" must be an integer, got null"},
        {"{\"ids\": [1], \"new\": 99999999999999999999}", "\"new\" must be an integer, got 1e+20"},  // past uint64: a float
        {"{\"ids\": [1], \"new\": 9223372036854775807}", "longer than the context: 1 prompt tokens + 9223372036854775807 new"},
        {"{\"ids\": [1, 2, 3], \"new\": 15}", "longer than the context: 3 prompt tokens + 15 new need 17 positions"},
        {"{\"ids\": [1], \"new\": 2, \"arrive\": -1}", "\"arrive\" is -1; an arrival step is at least 0"},
        {"{\"ids\": [1], \"new\": 2, \"arrive\": 3000000000}", "\"arrive\" is 3000000000; at most 2147483647"},
        {"{\"ids\": [1], \"new\": 2, \"arrive\": \"now\"}", "\"arrive\" must be an integer, got \"now\""},
        {"{\"ids\": [1], \"new\": 2, \"fork\": 0}", "\"fork\" is 0; it must be at least 1"},
        {"{\"ids\": [1], \"new\": 2, \"max_tokens\": 5}",
         "unknown key \"max_tokens\" (a request takes \"prompt\" or \"ids\", \"new\", \"arrive\", \"fork\")"},
        {"{\"ids\": [1], \"new\": 2, \"a\\nb\": 5}", "unknown key \"a\\nb\""},
        {"{\"ids\": [1], \"new\": 2, \"new\": 3}", "key \"new\" appears twice"},
    };
    for (const Case& c : cases) {
        const std::string line = c.line;
        CAPTURE(line);
        check_error(before + line + after, 4, c.what);
    }
    SUBCASE("a bad first line is line 1, a bad last line without a newline keeps its number") {
        check_error("{\"ids\": [1], \"new\": 0}\n{\"ids\": [1], \"new\": 1}", 1, "\"new\" is 0");
        check_error(before + "\n\n{\"ids\": [1], \"new\": 0}", 6, "\"new\" is 0");
    }
    SUBCASE("a model without a tokenizer refuses text prompts") {
        RequestRules r = rules();
        r.tokenize = nullptr;
        check_error(before, 3, "\"prompt\": this model has no tokenizer; give token ids instead", r);
    }
}

TEST_CASE("requests file: a file of no requests is refused") {
    for (const char* text : {"", "\n", "  \n\t\r\n\n"}) {
        CAPTURE(text);
        CHECK(error_of(text) == "reqs.jsonl: no requests (write one JSON object a line, like {\"ids\": [1, 2], \"new\": 4})");
    }
}

TEST_CASE("read_requests reads a file and names one it cannot open") {
    const std::filesystem::path dir = std::filesystem::temp_directory_path();
    const std::string path = (dir / "kvscope_test_serve_requests.jsonl").string();
    {
        std::ofstream out(path, std::ios::binary);
        out << "{\"ids\": [7], \"new\": 3, \"arrive\": 2}\n\n{\"ids\": [1], \"new\": 0}\n";
    }
    try {
        kv::read_requests(path, rules());
        FAIL("no error");
    } catch (const kv::Error& e) {
        CHECK(std::string(e.what()) == path + ":3: \"new\" is 0; it must be at least 1");
    }
    {
        std::ofstream out(path, std::ios::binary);
        out << "{\"ids\": [7], \"new\": 3, \"arrive\": 2}\n";
    }
    const auto q = kv::read_requests(path, rules());
    REQUIRE(q.size() == 1);
    CHECK(q[0].arrive == 2);
    std::remove(path.c_str());
    CHECK_THROWS_WITH_AS(kv::read_requests(path, rules()), (path + ": cannot open the requests file").c_str(), kv::Error);
}

TEST_CASE("parse_prompts: one request per prompt, all at step 0, with the rules' fork") {
    const auto q = kv::parse_prompts({"the cat", "a"}, 3, rules(2));
    REQUIRE(q.size() == 2);
    CHECK(q[0].prompt == std::vector<int>{3, 3});
    CHECK(q[1].prompt == std::vector<int>{1});
    for (const ServeRequest& r : q) {
        CHECK(r.new_tokens == 3);
        CHECK(r.arrive == 0);
        CHECK(r.fork == 2);
    }
    CHECK_THROWS_WITH_AS(kv::parse_prompts({"a"}, 0, rules()), "--new: must be at least 1", kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_prompts({}, 2, rules()), "--prompts: give at least one prompt", kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_prompts({"a", " "}, 2, rules()), "--prompts: prompt 2: gives no tokens; type at least one word",
                         kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_prompts({"a", "b boom"}, 2, rules()),
                         "--prompts: prompt 2: 'boom' is not in the vocabulary", kv::Error);
    CHECK_THROWS_WITH_AS(kv::parse_prompts({"a b c"}, 15, rules()),
                         "--prompts: prompt 1: longer than the context: 3 prompt tokens + 15 new need 17 positions; "
                         "the context holds 16",
                         kv::Error);
}

TEST_CASE("parsed requests run through the scheduler to the end") {
    const auto q = kv::parse_requests(
        "{\"ids\": [1, 2, 3, 4, 5], \"new\": 3}\n{\"ids\": [1, 2, 3, 4, 6], \"new\": 2, \"arrive\": 2, \"fork\": 2}\n",
        "r", rules());
    kv::SchedulerConfig cfg;
    cfg.block_size = 4;
    cfg.pool_blocks = 8;
    kv::Scheduler s(cfg, q);
    REQUIRE(s.sequences().size() == 3);  // the second request's fork is a sequence
    int steps = 0;
    while (!s.done() && steps < 50) {
        s.step([](const kv::Sequence&) { return 7; });
        s.check_invariants();
        ++steps;
    }
    CHECK(s.done());
    for (const kv::Sequence& seq : s.sequences()) CHECK(seq.generated() == q[size_t(seq.request)].new_tokens);
    CHECK(s.sequences()[1].finished_step >= 2);  // it arrived at step 2
}
