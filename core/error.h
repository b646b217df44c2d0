// kv::Error: the one exception type core/ throws for bad input (files, arguments,
// shapes). Its message is a single line a person can act on: it names the file,
// tensor or argument and says what is wrong. `assert` stays for programmer errors.
#pragma once
#include <stdexcept>
#include <string>

namespace kv {

struct Error : std::runtime_error {
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace kv
