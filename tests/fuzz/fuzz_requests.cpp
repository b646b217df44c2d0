// Fuzzes the requests of `kvscope-cli serve` (core/serve/requests.h): the input as a
// --requests file, its lines as --prompts, and what parses through a small Scheduler.
// A fake tokenizer makes one token per non-space byte (byte % 70, so some ids fall
// outside the vocabulary of 64) and throws kv::Error on '!'.
// Checks: a bad file throws one kv::Error "fuzz.jsonl:LINE: ..." (or "fuzz.jsonl: no
// requests") on one line, LINE within the file and not blank; what parses keeps every
// rule (ids in [0, V), N >= 1, p + N - 1 <= n_ctx, arrival >= 0, fork >= 1), writing it
// back as JSON Lines parses to the same requests, and the scheduler either refuses it
// with kv::Error or keeps its invariants for 64 steps.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/serve/requests.h"
#include "core/serve/scheduler.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr int kVocab = 64, kCtx = 32;

std::vector<int> fake_tokenize(const std::string& text) {
    std::vector<int> ids;
    for (char c : text) {
        if (c == '!') throw kv::Error("'!' is not in the vocabulary");
        if (c != ' ' && c != '\t') ids.push_back(int(static_cast<unsigned char>(c) % 70));
    }
    return ids;
}

kv::RequestRules rules() {
    kv::RequestRules r;
    r.vocab_size = kVocab;
    r.n_ctx = kCtx;
    r.fork = 1;
    r.tokenize = fake_tokenize;
    return r;
}

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        lines.push_back(text.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return lines;
}

void check_request(const kv::ServeRequest& q) {
    KVFUZZ_CHECK(!q.prompt.empty());
    for (int id : q.prompt) KVFUZZ_CHECK(id >= 0 && id < kVocab);
    KVFUZZ_CHECK(q.new_tokens >= 1);
    KVFUZZ_CHECK(int64_t(q.prompt.size()) + q.new_tokens - 1 <= kCtx);
    KVFUZZ_CHECK(q.arrive >= 0);
    KVFUZZ_CHECK(q.fork >= 1);
}

void check_error(const std::string& msg, const std::vector<std::string_view>& lines) {
    KVFUZZ_CHECK(msg.find('\n') == std::string::npos);
    const std::string file = "fuzz.jsonl:";
    if (msg.rfind("fuzz.jsonl: no requests", 0) == 0) return;
    KVFUZZ_CHECK(msg.rfind(file, 0) == 0);
    size_t n = 0, i = file.size();
    for (; i < msg.size() && msg[i] >= '0' && msg[i] <= '9' && n < 1'000'000'000; ++i) n = n * 10 + size_t(msg[i] - '0');
    KVFUZZ_CHECK(i < msg.size() && msg[i] == ':');
    KVFUZZ_CHECK(n >= 1 && n <= lines.size());
    KVFUZZ_CHECK(lines[n - 1].find_first_not_of(" \t\r") != std::string_view::npos);
}

void run_scheduler(const std::vector<kv::ServeRequest>& qs) {
    kv::SchedulerConfig cfg;
    cfg.block_size = 4;
    cfg.pool_blocks = 12;
    cfg.max_batch = 6;
    try {
        kv::Scheduler s(cfg, qs);
        for (int step = 0; step < 64 && !s.done(); ++step) {
            s.step([](const kv::Sequence& seq) { return int(seq.tokens.size() % kVocab); });
            s.check_invariants();
        }
    } catch (const kv::Error& e) {
        // Only the constructor may refuse (pool or max batch too small); a failed
        // invariant is a bug.
        KVFUZZ_CHECK(std::string(e.what()).rfind("request ", 0) == 0);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::vector<std::string_view> lines = lines_of(text);
    std::vector<kv::ServeRequest> qs;
    try {
        qs = kv::parse_requests(text, "fuzz.jsonl", rules());
    } catch (const kv::Error& e) {
        check_error(e.what(), lines);
    }
    if (!qs.empty()) {
        std::string again;
        for (const kv::ServeRequest& q : qs) {
            check_request(q);
            again += nlohmann::json{{"ids", q.prompt}, {"new", q.new_tokens}, {"arrive", q.arrive}, {"fork", q.fork}}
                         .dump() + "\n";
        }
        const std::vector<kv::ServeRequest> back = kv::parse_requests(again, "again", rules());
        KVFUZZ_CHECK(back.size() == qs.size());
        for (size_t i = 0; i < qs.size(); ++i)
            KVFUZZ_CHECK(back[i].prompt == qs[i].prompt && back[i].new_tokens == qs[i].new_tokens &&
                         back[i].arrive == qs[i].arrive && back[i].fork == qs[i].fork);
        run_scheduler(qs);
    }

    // Its lines as --prompts, with N from the first byte.
    const int n_new = size > 0 ? int(data[0] % 40) - 2 : 1;
    std::vector<std::string> prompts(lines.begin(), lines.end());
    try {
        for (const kv::ServeRequest& q : kv::parse_prompts(prompts, n_new, rules())) {
            check_request(q);
            KVFUZZ_CHECK(q.arrive == 0 && q.new_tokens == n_new);
        }
    } catch (const kv::Error& e) {
        const std::string m = e.what();
        KVFUZZ_CHECK(m.find('\n') == std::string::npos);
        KVFUZZ_CHECK(m.rfind("--prompts: ", 0) == 0 || m.rfind("--new: ", 0) == 0);
    }
    return 0;
}
