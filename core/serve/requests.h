// The requests of `kvscope-cli serve` (issue 23): the JSON Lines file of --requests and
// the --prompts shorthand, checked and turned into the scheduler's ServeRequest.
//
// One request a line, blank lines skipped:
//   {"ids": [5, 9, 3], "new": 8, "arrive": 2, "fork": 2}   or   {"prompt": "text", "new": 8}
// Exactly one of "prompt" (text, through the model's tokenizer) and "ids" (a non-empty
// array of integers in [0, V)); "new" N >= 1; "arrive" step >= 0 (default 0); "fork"
// F >= 1 (default: the rules' fork, serve --fork). Any other key is refused. A request
// must fit the context as `generate` does: its p prompt tokens and N new tokens need
// p + N - 1 positions <= n_ctx (the last new token is never fed).
//
// Each bad line throws one kv::Error "FILE:LINE: what is wrong" (a one-line message).
// Pool-dependent checks (a prompt needs more blocks than the pool has, F > max batch)
// stay with the Scheduler, which names the request by its index in the returned list.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/serve/scheduler.h"

namespace kv {

struct Model;

// Text -> token ids (the model's tokenizer); may throw kv::Error, which gets the line's
// prefix. Takes no model so the parser needs none.
using TokenizeFn = std::function<std::vector<int>(const std::string& text)>;

struct RequestRules {
    int vocab_size = 0;   // V: ids must lie in [0, V)
    int n_ctx = 0;        // context positions: p + N - 1 <= n_ctx
    int fork = 1;         // F of a line without "fork" (and of --prompts)
    TokenizeFn tokenize;  // for "prompt"; empty: text prompts are refused (use "ids")
};

// The rules of a loaded model: its vocabulary and context, and its tokenizer (a word
// it does not know is an error, "'zebra' is not in the vocabulary"); none without one.
RequestRules model_request_rules(const Model& m, int fork = 1);

// Parses the text of a requests file; `file` names it in the messages. Throws kv::Error
// for the first bad line, or when the file holds no request.
std::vector<ServeRequest> parse_requests(std::string_view text, const std::string& file, const RequestRules& rules);

// Reads and parses the file at `path` (kv::Error when it cannot be read).
std::vector<ServeRequest> read_requests(const std::string& path, const RequestRules& rules);

// `--prompts "a" "b" --new N`: one request per prompt, all arriving at step 0, with the
// rules' fork. Errors name "--prompts: prompt K" (1-based) or "--new".
std::vector<ServeRequest> parse_prompts(const std::vector<std::string>& prompts, int new_tokens,
                                        const RequestRules& rules);

}  // namespace kv
