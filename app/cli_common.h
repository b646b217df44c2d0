// Helpers shared by kvscope-cli's subcommands: argument checks with messages that
// name the argument, model opening, JSON for models and counters.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model/model_io.h"
#include "core/session/session.h"

namespace cli {

// A usage error: exit code 2.
struct UsageError : kv::Error {
    using kv::Error::Error;
};

std::vector<int> parse_ids(const std::string& text);
// SPEC, or the bundled model when spec is empty.
std::unique_ptr<kv::Model> open_model(const std::string& spec);
// The prompt as ids from exactly one of --prompt / --ids; unknown words reported on stderr.
std::vector<int> prompt_ids(const kv::Model& m, const std::string& prompt, const std::string& ids, bool have_prompt,
                            bool have_ids);
// N new tokens after p prompt tokens must fit the context.
void check_new(const kv::Model& m, int p, int n_new);
nlohmann::json model_json(const kv::Model& m);
nlohmann::json counters_json(const kv::Counters& c);
std::string token_text(const kv::Model& m, int id);
// A session that records counters and logits only (no per-head detail).
kv::Session make_session(const kv::Model& m, const std::string& backend);

}  // namespace cli
