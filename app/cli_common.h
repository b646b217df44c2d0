// Helpers shared by kvscope-cli's subcommands: argument checks with messages that
// name the argument, model opening, JSON for models and counters.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model/model_io.h"
#include "core/session/session.h"

namespace CLI {
class App;
}

namespace cli {

// A usage error: exit code 2.
struct UsageError : kv::Error {
    using kv::Error::Error;
};

// --ids TEXT as token ids (kv::parse_token_ids); errors are usage errors naming --ids.
std::vector<int> ids_arg(const std::string& text);
// SPEC, or the bundled model when spec is empty; weights: "f32", "f16", "bf16" or
// "" (as stored; f32 for random models).
std::unique_ptr<kv::Model> open_model(const std::string& spec, const std::string& weights = "");
// Adds --weights f32|f16|bf16 to a command.
void add_weights_option(CLI::App* c, std::string& weights);
// Speculative decoding runs the full cache in f32 and the weights as stored: a
// cache-policy or weights option given with --draft is refused by name, never ignored.
void refuse_with_draft(const CLI::App& cmd);
// The prompt as ids from exactly one of --prompt / --ids; unknown words reported on stderr.
std::vector<int> prompt_ids(const kv::Model& m, const std::string& prompt, const std::string& ids, bool have_prompt,
                            bool have_ids);
// N new tokens after p prompt tokens must fit the context.
void check_new(const kv::Model& m, int p, int n_new);
nlohmann::json model_json(const kv::Model& m);
// with_evicted: add kv_rows_evicted (runs with a cache policy flag; without one the
// output stays as it was before policies existed).
nlohmann::json counters_json(const kv::Counters& c, bool with_evicted = false);
// A token as shown on stderr ("<0xE6>" for a partial character; "<5>" without a tokenizer).
std::string token_text(const kv::Model& m, int id);
// A token's exact bytes for JSON (print_json makes them safe); "<5>" without a tokenizer.
std::string token_bytes(const kv::Model& m, int id);

// Text in JSON (README "JSON output", docs/design.md "Text in JSON"): every JSON writer
// prints through print_json, which never throws on text. A string that is valid UTF-8
// is written unchanged. One that is not (a GPT-2 token holding part of a character, a
// prompt with stray bytes) is written as kv::display_bytes ("<0xE6>" for each byte that
// is not part of a valid character), and its exact bytes go next to it: under
// "KEY_bytes" for the string at KEY of an object, and for an array at KEY whose
// elements include such strings, "KEY_bytes" is an array of the same length holding
// null for valid elements and the byte list for the others. Example:
//   {"tokens":["日","<0xE6><0x9C>","<0xAC>"],"tokens_bytes":[null,[230,156],[172]]}
void make_text_json_safe(nlohmann::json& j);
// make_text_json_safe on a copy, then one dump to stdout (indent as json::dump).
void print_json(const nlohmann::json& j, int indent = -1);
// A session that records counters and logits only (no per-head detail).
kv::Session make_session(const kv::Model& m, const std::string& backend, const kv::CachePolicy& policy = {});
kv::Session make_session(const kv::Model& m, std::shared_ptr<kv::Engine> engine, const kv::CachePolicy& policy = {});

// --window W --sinks S --kv-dtype f32|f16|int8 --mla expand|absorbed (docs/design.md,
// "The command line and JSON").
struct PolicyArgs {
    int window = 0, sinks = 0;
    std::string dtype = "f32";
    std::string mla = "expand";
    bool given = false;  // any of the four flags was on the command line
};
void add_policy_options(CLI::App* c, PolicyArgs& a);
// The policy, or a UsageError naming the flag; sets a.given from the parsed command.
kv::CachePolicy policy_of(PolicyArgs& a, const CLI::App& cmd);
// A UsageError naming --mla when the policy reads absorbed but the model is not MLA.
void check_mla_flag(const kv::Model& m, const kv::CachePolicy& policy);
// {"window","sinks","kv_dtype","mla"}
nlohmann::json policy_json(const kv::CachePolicy& p);

}  // namespace cli
