// Subcommands of kvscope-cli that live in their own files. Each add_* registers its
// options on the app and returns a runner: it returns the exit code when its
// subcommand was chosen, -1 otherwise. Errors are thrown (cli::UsageError, kv::Error).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "app/cli_common.h"

namespace CLI {
class App;
}

namespace cli {

std::function<int()> add_bench_command(CLI::App& app);
std::function<int()> add_serve_command(CLI::App& app);  // cli_serve.cpp

// generate's and compare's options (parsed in cli_app.cpp).
struct GenerateArgs {
    std::string model, prompt, ids, backend = "cpu", weights;
    bool have_prompt = false, have_ids = false;  // --prompt / --ids were given
    int n_new = 0;
    bool no_cache = false, as_json = false;
    float temperature = 0.f;
    int top_k = 0;
    uint64_t seed = 0;
    PolicyArgs policy;
    std::string draft;  // generate --draft SPEC --draft-k K: speculative decoding
    int draft_k = 4;
};
// generate --draft SPEC --draft-k K (cli_speculative.cpp).
int run_generate_speculative(const GenerateArgs& a);

// bench's options (parsed in cli_bench.cpp).
struct BenchArgs {
    std::string model, backend = "cpu", weights;
    int prompt_len = 4, n_new = 32, threads = 0, warmup = 2, runs = 1;
    bool no_cache = false, as_json = false;
    uint64_t seed = 0;
    // --sweep
    bool sweep = false, stream = false, ceiling = false;
    bool vs_f32 = false;  // --vs-f32: the same runs on an f32 copy, interleaved
    int max_pos = 0, stride = 1, repeats = 1;
    std::string sweep_mode = "both", csv;
    PolicyArgs policy_args;
    kv::CachePolicy policy;  // from policy_args once parsed
    // --draft: speculative decoding next to plain decoding
    std::string draft, prompt;
    bool have_prompt = false;  // --prompt was given
    int draft_k = 4;
    // --batch 1,2,4,8: batched decode through the paged pool
    std::string batch;
};
// bench --draft SPEC --draft-k K [--prompt TEXT] (cli_speculative.cpp).
int run_bench_speculative(const BenchArgs& a);

// The whole of kvscope-cli: parses argv and runs the chosen command, returning the
// exit code. With parse_only, stops after parsing (the argument fuzzer uses this).
int main(int argc, char** argv, bool parse_only = false);

}  // namespace cli
