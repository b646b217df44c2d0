// Fuzzes kvscope-cli's argument parsing (app/cli_commands.h cli::main with
// parse_only, so no model is loaded and nothing runs) and cli::ids_arg.
// Input: arguments separated by '\0' (argv[0] is added); the whole input is also
// given to ids_arg. Parse errors must come back as exit code 2, never escape.
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "app/cli_commands.h"
#include "app/cli_common.h"
#include "tests/fuzz/fuzz_util.h"

using namespace kvfuzz;

namespace {

// CLI11 and the CLI print help and errors on std::cout / std::cerr: silence them
// (sanitizer and libFuzzer reports write to fd 2 directly and still show).
struct Silence {
    std::ostringstream sink;
    Silence() {
        std::cout.rdbuf(sink.rdbuf());
        std::cerr.rdbuf(sink.rdbuf());
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Silence silence;
    silence.sink.str(std::string());
    const std::string in(reinterpret_cast<const char*>(data), size);

    std::vector<std::string> args = {"kvscope-cli"};
    size_t pos = 0;
    while (size > 0 && pos <= in.size() && args.size() < 64) {
        size_t z = in.find('\0', pos);
        if (z == std::string::npos) z = in.size();
        args.push_back(in.substr(pos, z - pos));
        pos = z + 1;
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = cli::main(int(args.size()), argv.data(), /*parse_only=*/true);
    KVFUZZ_CHECK(rc == 0 || rc == 1 || rc == 2);

    const std::string ids_text = in.substr(0, in.find('\0'));
    try {
        const std::vector<int> ids = cli::ids_arg(ids_text);
        KVFUZZ_CHECK(!ids.empty());
        for (int id : ids) KVFUZZ_CHECK(id >= 0 && id <= 100'000'000);
    } catch (const cli::UsageError& e) {
        KVFUZZ_CHECK(std::string(e.what()).rfind("--ids: ", 0) == 0);
    }
    return 0;
}
