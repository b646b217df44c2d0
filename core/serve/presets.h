// The serving view's presets (`kvscope --serve --preset NAME`, `kvscope-cli serve
// --preset NAME`): small request sets that teach paging on the bundled tiny model, with
// blocks of B = 4 slots so each block stays visible, and pools of at most 16 blocks.
//   class       "a class asks": 6 prompts that begin "Python is a programming", arriving
//               over three steps; their first block is stored once and shared.
//   forks       "one prompt, 4 samples": one prompt forked 4 ways (sampled at temperature
//               1, seed 7); the forks share its blocks and copy the partial one on write.
//   small-pool  "pool too small": 3 prompts whose positions need 9 blocks in a pool of 7;
//               the newest is preempted, waits, and is computed again.
// Prompts are text, for a model with a tokenizer (the bundled ones).
#pragma once
#include <string>
#include <vector>

#include "core/serve/scheduler.h"
#include "core/session/session.h"

namespace kv {

struct PresetRequest {
    std::string prompt;  // text
    int new_tokens = 1, arrive = 0, fork = 1;
};

struct ServePreset {
    std::string name, title;            // "class", "a class asks"
    std::vector<PresetRequest> requests;
    SchedulerConfig sched;              // B, P, max batch, prefix caching
    SamplingOptions sampling;
};

const std::vector<ServePreset>& serve_presets();
// The preset of that name; throws kv::Error listing the names when there is none.
const ServePreset& serve_preset(const std::string& name);
// "class, forks, small-pool": for messages and --help.
std::string serve_preset_names();

// The requests as a requests file's text (JSON Lines, core/serve/requests.h), one line
// each: {"prompt", "new", "arrive", "fork"}. kv::parse_requests turns them into
// ServeRequests with its checks, so an edited list is checked as a file is.
std::string requests_jsonl(const std::vector<PresetRequest>& reqs);

}  // namespace kv
