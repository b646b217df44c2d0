// Subcommands of kvscope-cli that live in their own files. Each add_* registers its
// options on the app and returns a runner: it returns the exit code when its
// subcommand was chosen, -1 otherwise. Errors are thrown (cli::UsageError, kv::Error).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace cli {

std::function<int()> add_bench_command(CLI::App& app);

// generate --draft SPEC --draft-k K (cli_speculative.cpp).
struct SpecArgs {
    std::string model, draft, prompt, ids, backend = "cpu";
    bool have_prompt = false, have_ids = false, as_json = false;
    int n_new = 0, draft_k = 4, top_k = 0;
    float temperature = 0.f;
    uint64_t seed = 0;
};
int run_generate_speculative(const SpecArgs& a);

// bench --draft SPEC --draft-k K [--prompt TEXT] (cli_speculative.cpp).
struct SpecBenchArgs {
    std::string model, draft, prompt, backend = "cpu";
    bool have_prompt = false, as_json = false;
    int prompt_len = 4, n_new = 32, draft_k = 4, threads = 0, runs = 1;
    uint64_t seed = 0;
};
int run_bench_speculative(const SpecBenchArgs& a);

// The whole of kvscope-cli: parses argv and runs the chosen command, returning the
// exit code. With parse_only, stops after parsing (the argument fuzzer uses this).
int main(int argc, char** argv, bool parse_only = false);

}  // namespace cli
