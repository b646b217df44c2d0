// Subcommands of kvscope-cli that live in their own files. Each add_* registers its
// options on the app and returns a runner: it returns the exit code when its
// subcommand was chosen, -1 otherwise. Errors are thrown (cli::UsageError, kv::Error).
#pragma once
#include <functional>

namespace CLI {
class App;
}

namespace cli {

std::function<int()> add_bench_command(CLI::App& app);

// The whole of kvscope-cli: parses argv and runs the chosen command, returning the
// exit code. With parse_only, stops after parsing (the argument fuzzer uses this).
int main(int argc, char** argv, bool parse_only = false);

}  // namespace cli
