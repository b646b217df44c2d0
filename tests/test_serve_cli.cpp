// kvscope-cli serve and bench --batch (../shared/DESIGN.md): a requests file with shared
// prefixes, a fork, late arrivals and a pool small enough to preempt finishes every
// request with its plain `generate` tokens and the pool's accounting at every step; the
// bundled model still says "language"; bad input gets one line and exit 2 or 1.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "tests/test_helpers.h"

using json = nlohmann::json;
using kvtest::run_cli;

namespace {

std::vector<int> generate_ids(const std::string& model, const std::vector<int>& prompt, int n) {
    std::string ids;
    for (int id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    const kvtest::Run r = run_cli("generate --model " + model + " --ids " + ids + " --new " + std::to_string(n) + " --json");
    REQUIRE(r.rc == 0);
    return json::parse(r.out)["new_ids"].get<std::vector<int>>();
}

}  // namespace

TEST_CASE("serve: shared prefixes, a fork, late arrivals and preemption give every request its generate tokens") {
    kvtest::TempDir dir;
    const std::string file = dir.file("reqs.jsonl",
                                      "{\"ids\": [1,2,3,4,5,6,7,8,9,10], \"new\": 12}\n"
                                      "{\"ids\": [1,2,3,4,5,6,7,8,9,11,12], \"new\": 10, \"arrive\": 1}\n"
                                      "\n"
                                      "{\"ids\": [20,21,22,23,24,25], \"new\": 9, \"arrive\": 2, \"fork\": 2}\n"
                                      "{\"ids\": [1,2,3,4,5,6,7,8,30], \"new\": 8, \"arrive\": 4}\n");
    const std::string model = "random:tiny:5";
    const kvtest::Run r = run_cli("serve --model " + model + " --requests " + file +
                                  " --block-size 4 --pool-blocks 12 --trace-tables --json");
    REQUIRE(r.rc == 0);
    const json d = json::parse(r.out);
    CHECK(d["pool"]["block_size"] == 4);
    CHECK(d["pool"]["blocks"] == 12);
    CHECK(d["totals"]["preemptions"].get<int>() > 0);
    CHECK(d["totals"]["prefix_hits"].get<int>() > 0);
    CHECK(d["totals"]["cow_copies"].get<int>() >= 1);
    for (const json& s : d["steps"]) {
        const json& b = s["blocks"];
        CHECK(b["used"].get<int>() + b["free"].get<int>() + b["cached"].get<int>() == 12);
        CHECK(s.contains("tables"));
    }
    const std::vector<int> news = {12, 10, 9, 9, 8};
    REQUIRE(d["requests"].size() == 5);  // request 2's two forks are sequences 2 and 3
    int generated = 0;
    for (size_t i = 0; i < 5; ++i) {
        const json& q = d["requests"][i];
        CAPTURE(i);
        const auto prompt = q["prompt_ids"].get<std::vector<int>>();
        const auto tokens = q["tokens"].get<std::vector<int>>();
        CHECK(int(tokens.size()) == news[i]);
        CHECK(tokens == generate_ids(model, prompt, news[i]));  // greedy: forks agree with generate too
        generated += int(tokens.size());
    }
    CHECK(d["totals"]["tokens_generated"] == generated);
    CHECK(d["totals"]["contiguous"]["reserved_bytes"].get<int64_t>() > d["totals"]["contiguous"]["used_bytes"].get<int64_t>());
}

TEST_CASE("serve: the bundled model's prompts share their prefix and still say language") {
    const kvtest::Run r = run_cli("serve --prompts 'Python is a programming' 'Python is a programming' --new 1 "
                                  "--block-size 2 --json");
    REQUIRE(r.rc == 0);
    const json d = json::parse(r.out);
    for (const json& q : d["requests"]) CHECK(q["text"][0].get<std::string>().find("language") != std::string::npos);
    CHECK(d["requests"][1]["prefix_blocks_hit"].get<int>() == 0);  // both arrive at step 0: same step, no hit
}

TEST_CASE("serve: bad input gets one line naming the argument or the file line") {
    kvtest::TempDir dir;
    const std::string good = dir.file("good.jsonl", "{\"ids\": [1,2,3], \"new\": 2}\n");
    const std::string bad = dir.file("bad.jsonl", "{\"ids\": [1,2,3], \"new\": 2}\n{\"ids\": [1,2\n");
    const std::string longer = dir.file("long.jsonl", "{\"ids\": [1,2,3], \"new\": 90}\n");
    struct Case {
        std::string args, want;
        int rc;
    };
    const std::vector<Case> cases = {
        {"--requests " + good + " --block-size 0", "--block-size", 2},
        {"--requests " + good + " --pool-blocks 0", "--pool-blocks", 2},
        {"--requests " + good + " --max-batch 0", "--max-batch", 2},
        {"--requests " + good + " --fork 0", "--fork", 2},
        {"--requests " + good + " --prompts a --new 2", "exactly one of", 2},
        {"--prompts 'Python is' ", "--new", 2},
        {"--requests " + bad, "bad.jsonl:2", 1},
        {"--requests " + longer, "long.jsonl:1", 1},
        {"--requests " + dir / "missing.jsonl", "missing.jsonl", 1},
        {"--requests " + good + " --block-size 1 --pool-blocks 2", "raise the pool blocks", 1},
        {"--requests " + good + " --pool-blocks 2000000000", "--pool-blocks", 2},
    };
    for (const Case& c : cases) {
        CAPTURE(c.args);
        const kvtest::Run r = run_cli("serve --model random:tiny " + c.args);
        CHECK(r.rc == c.rc);
        CHECK(r.err.find(c.want) != std::string::npos);
        CHECK(kvtest::count_lines(r.err) == 1);
    }
}

TEST_CASE("bench --batch: aggregate tokens per second for each batch size, in JSON") {
    const kvtest::Run r = run_cli("bench --model random:tiny --batch 1,2,4 --prompt-len 4 --new 4 --json");
    REQUIRE(r.rc == 0);
    const json d = json::parse(r.out);
    REQUIRE(d["batch"].size() == 3);
    for (size_t i = 0; i < 3; ++i) {
        CHECK(d["batch"][i]["size"] == std::vector<int>{1, 2, 4}[i]);
        CHECK(d["batch"][i]["tokens_per_s"].get<double>() > 0);
        CHECK(d["batch"][i]["ms_per_step"].get<double>() > 0);
    }
    for (const char* bad : {"--batch 0", "--batch x", "--batch 1,2 --sweep", "--batch 1 --prompt-len 60 --new 10"}) {
        CAPTURE(bad);
        const kvtest::Run b = run_cli(std::string("bench --model random:tiny ") + bad);
        CHECK(b.rc != 0);
        CHECK(b.err.find("--batch") != std::string::npos);
    }
}
