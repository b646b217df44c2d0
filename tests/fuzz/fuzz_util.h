// Helpers shared by the fuzz targets: a scratch folder per process in /dev/shm
// (removed at exit) and whole-file writes. A check that fails calls __builtin_trap,
// which libFuzzer reports as a crash with the input that caused it.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace kvfuzz {

namespace fs = std::filesystem;

inline void fuzz_check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz check failed: %s\n", what);
        __builtin_trap();
    }
}
#define KVFUZZ_CHECK(cond) ::kvfuzz::fuzz_check((cond), #cond)

inline const fs::path& scratch_dir() {
    static const fs::path dir = [] {
        std::error_code ec;
        fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path d = base / ("kvscope-fuzz-" + std::to_string(::getpid()));
        fs::remove_all(d, ec);
        fs::create_directories(d);
        std::atexit([] {
            std::error_code e;
            fs::remove_all(scratch_dir(), e);
        });
        return d;
    }();
    return dir;
}

inline void write_file(const fs::path& p, std::string_view bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace kvfuzz
