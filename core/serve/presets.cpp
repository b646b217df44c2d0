// The serving view's presets: see presets.h.
#include "core/serve/presets.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace kv {

namespace {

ServePreset make(std::string name, std::string title, std::vector<PresetRequest> reqs, int pool_blocks) {
    ServePreset p;
    p.name = std::move(name);
    p.title = std::move(title);
    p.requests = std::move(reqs);
    p.sched.block_size = 4;
    p.sched.pool_blocks = pool_blocks;
    p.sched.max_batch = 8;
    return p;
}

std::vector<ServePreset> make_presets() {
    std::vector<ServePreset> v;
    // Five share the full first block "Python is a programming"; "Python is a simple"
    // shares three words but not a whole block, so it shares nothing.
    v.push_back(make("class", "a class asks",
                     {{"Python is a programming language", 4, 0, 1},
                      {"Python is a programming language used for web", 4, 0, 1},
                      {"Python is a programming language for students", 4, 1, 1},
                      {"Python is a programming language used for data", 4, 1, 1},
                      {"Python is a simple language", 4, 2, 1},
                      {"Python is a programming language used for code", 4, 2, 1}},
                     16));
    ServePreset forks = make("forks", "one prompt, 4 samples", {{"Python is a programming language", 6, 0, 4}}, 12);
    forks.sampling.temperature = 1.f;
    forks.sampling.seed = 7;
    v.push_back(forks);
    // 3 blocks each (p + N - 1 = 11 positions), 9 in all, in a pool of 7.
    v.push_back(make("small-pool", "pool too small",
                     {{"The cat sat on the mat", 6, 0, 1},
                      {"Rust is a fast language", 7, 0, 1},
                      {"Java is used for web", 7, 1, 1}},
                     7));
    return v;
}

}  // namespace

const std::vector<ServePreset>& serve_presets() {
    static const std::vector<ServePreset> presets = make_presets();
    return presets;
}

std::string serve_preset_names() {
    std::string s;
    for (const ServePreset& p : serve_presets()) s += (s.empty() ? "" : ", ") + p.name;
    return s;
}

std::string requests_jsonl(const std::vector<PresetRequest>& reqs) {
    std::string s;
    for (const PresetRequest& r : reqs) {
        const nlohmann::json line = {{"prompt", r.prompt}, {"new", r.new_tokens}, {"arrive", r.arrive}, {"fork", r.fork}};
        s += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    return s;
}

const ServePreset& serve_preset(const std::string& name) {
    for (const ServePreset& p : serve_presets())
        if (p.name == name) return p;
    throw Error("--preset: '" + name + "' is not a preset (" + serve_preset_names() + ")");
}

}  // namespace kv
