// The requests of `kvscope-cli serve`: see requests.h and docs/design.md, "Serving".
#include "core/serve/requests.h"

#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/model_io.h"

namespace kv {

namespace {

using json = nlohmann::json;

constexpr int kIntMax = std::numeric_limits<int>::max();
constexpr const char* kKeys = "a request takes \"prompt\" or \"ids\", \"new\", \"arrive\", \"fork\"";

// A message stays one line: control bytes become '?'.
std::string one_line(std::string s) {
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s;
}

std::string json_quoted(const std::string& s) {
    return one_line(json(s).dump(-1, ' ', false, json::error_handler_t::replace));
}

// A value as a message shows it: scalars as written (at most 40 bytes), containers by kind.
std::string shown(const json& v) {
    if (v.is_object()) return "an object";
    if (v.is_array()) return "an array";
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return one_line(s);
}

// nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 5: ..." ->
// "column 5: ..." (each line is parsed alone, so its line is always 1).
std::string json_reason(const json::exception& e) {
    std::string s = e.what();
    if (size_t b = s.find("] "); !s.empty() && s[0] == '[' && b != std::string::npos) s = s.substr(b + 2);
    if (size_t at = s.find("at line 1, "); at != std::string::npos) s = s.substr(at + 11);
    return one_line(s);
}

// An integer field, saturated to the int64 range (its bounds are checked by the caller).
int64_t integer(const json& v, const std::string& key) {
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        return u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max() : int64_t(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    throw Error("\"" + key + "\" must be an integer, got " + shown(v));
}

void check_ids(const std::vector<int>& ids, const RequestRules& rules, const std::string& what) {
    for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] >= rules.vocab_size)
            throw Error(what + ": token id " + std::to_string(ids[i]) + " (at index " + std::to_string(i) +
                        ") is outside the vocabulary [0, " + std::to_string(rules.vocab_size) + ")");
}

std::vector<int> tokenize(const std::string& text, const RequestRules& rules, const std::string& what) {
    if (!rules.tokenize) throw Error(what + ": this model has no tokenizer; give token ids instead");
    std::vector<int> ids = rules.tokenize(text);
    if (ids.empty()) throw Error(what + ": gives no tokens; type at least one word");
    check_ids(ids, rules, what + " (tokenized)");
    return ids;
}

// p prompt tokens and N new ones hold p + N - 1 positions, as `generate` checks.
void check_context(size_t p, int64_t n_new, const RequestRules& rules) {
    const int64_t pp = int64_t(p);
    const int64_t positions = n_new > std::numeric_limits<int64_t>::max() - pp ? n_new : pp + n_new - 1;
    if (positions > rules.n_ctx)
        throw Error("longer than the context: " + std::to_string(p) + " prompt tokens + " + std::to_string(n_new) +
                    " new need " + std::to_string(positions) + " positions; the context holds " +
                    std::to_string(rules.n_ctx));
}

ServeRequest parse_line(std::string_view line, const RequestRules& rules) {
    // Duplicate keys: nlohmann keeps the last silently, so catch them while parsing.
    std::set<std::string> seen;
    std::string duplicate;
    const json::parser_callback_t note_keys = [&](int depth, json::parse_event_t event, json& parsed) {
        if (depth == 1 && event == json::parse_event_t::key && parsed.is_string() &&
            !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
            duplicate = parsed.get<std::string>();
        return true;
    };
    json j;
    try {
        j = json::parse(line.begin(), line.end(), note_keys);
    } catch (const json::exception& e) {
        throw Error("not valid JSON (" + json_reason(e) + ")");
    }
    if (!j.is_object())
        throw Error("expected one JSON object like {\"ids\": [1, 2], \"new\": 4}, got " + shown(j));
    if (!duplicate.empty()) throw Error("key " + json_quoted(duplicate) + " appears twice");
    for (const auto& [key, value] : j.items())
        if (key != "prompt" && key != "ids" && key != "new" && key != "arrive" && key != "fork")
            throw Error("unknown key " + json_quoted(key) + " (" + kKeys + ")");

    const bool has_prompt = j.contains("prompt"), has_ids = j.contains("ids");
    if (has_prompt == has_ids)
        throw Error(has_prompt ? "both \"prompt\" and \"ids\"; give one of them"
                               : "neither \"prompt\" nor \"ids\"; give one of them");
    ServeRequest q;
    if (has_prompt) {
        const json& v = j["prompt"];
        if (!v.is_string()) throw Error("\"prompt\" must be a string, got " + shown(v));
        q.prompt = tokenize(v.get<std::string>(), rules, "\"prompt\"");
    } else {
        const json& v = j["ids"];
        if (!v.is_array() || v.empty())
            throw Error("\"ids\" must be a non-empty array of token ids, got " +
                        (v.is_array() ? std::string("[]") : shown(v)));
        for (size_t i = 0; i < v.size(); ++i) {
            const json& e = v[i];
            if (!e.is_number_integer())
                throw Error("\"ids\"[" + std::to_string(i) + "] is " + shown(e) + ", not an integer token id");
            const int64_t id = integer(e, "ids");
            if (id < 0 || id >= rules.vocab_size)
                throw Error("\"ids\"[" + std::to_string(i) + "]: token id " + shown(e) +
                            " is outside the vocabulary [0, " + std::to_string(rules.vocab_size) + ")");
            q.prompt.push_back(int(id));
        }
    }

    if (!j.contains("new")) throw Error("no \"new\" (the number of tokens to generate, at least 1)");
    const int64_t n_new = integer(j["new"], "new");
    if (n_new < 1) throw Error("\"new\" is " + std::to_string(n_new) + "; it must be at least 1");
    check_context(q.prompt.size(), n_new, rules);
    q.new_tokens = int(n_new);  // <= n_ctx

    if (j.contains("arrive")) {
        const int64_t a = integer(j["arrive"], "arrive");
        if (a < 0) throw Error("\"arrive\" is " + std::to_string(a) + "; an arrival step is at least 0");
        if (a > kIntMax) throw Error("\"arrive\" is " + shown(j["arrive"]) + "; at most " + std::to_string(kIntMax));
        q.arrive = int(a);
    }
    q.fork = rules.fork;
    if (j.contains("fork")) {
        const int64_t f = integer(j["fork"], "fork");
        if (f < 1) throw Error("\"fork\" is " + std::to_string(f) + "; it must be at least 1");
        if (f > kIntMax) throw Error("\"fork\" is " + shown(j["fork"]) + "; at most " + std::to_string(kIntMax));
        q.fork = int(f);
    }
    return q;
}

bool blank(std::string_view line) {
    return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

std::vector<ServeRequest> parse_requests(std::string_view text, const std::string& file, const RequestRules& rules) {
    std::vector<ServeRequest> out;
    size_t pos = 0;
    for (int n = 1; pos < text.size(); ++n) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        const std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        if (blank(line)) continue;
        try {
            out.push_back(parse_line(line, rules));
        } catch (const Error& e) {
            throw Error(file + ":" + std::to_string(n) + ": " + one_line(e.what()));
        }
    }
    if (out.empty())
        throw Error(file + ": no requests (write one JSON object a line, like {\"ids\": [1, 2], \"new\": 4})");
    return out;
}

std::vector<ServeRequest> read_requests(const std::string& path, const RequestRules& rules) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the requests file");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw Error(path + ": cannot read the requests file");
    return parse_requests(text.str(), path, rules);
}

std::vector<ServeRequest> parse_prompts(const std::vector<std::string>& prompts, int new_tokens,
                                        const RequestRules& rules) {
    if (prompts.empty()) throw Error("--prompts: give at least one prompt");
    if (new_tokens < 1) throw Error("--new: must be at least 1");
    std::vector<ServeRequest> out;
    for (size_t k = 0; k < prompts.size(); ++k) {
        const std::string what = "--prompts: prompt " + std::to_string(k + 1);
        ServeRequest q;
        try {
            q.prompt = tokenize(prompts[k], rules, what);
            check_context(q.prompt.size(), new_tokens, rules);
        } catch (const Error& e) {
            const std::string m = e.what();
            throw Error(m.rfind(what, 0) == 0 ? m : what + ": " + one_line(m));
        }
        q.new_tokens = new_tokens;
        q.fork = rules.fork;
        out.push_back(std::move(q));
    }
    return out;
}

RequestRules model_request_rules(const Model& m, int fork) {
    RequestRules rules;
    rules.vocab_size = m.config.vocab_size;
    rules.n_ctx = m.config.n_ctx;
    rules.fork = fork;
    if (m.tokenizer)
        rules.tokenize = [&m](const std::string& text) {
            const Encoding enc = m.tokenizer->encode(text);
            if (!enc.unknown.empty()) throw Error("'" + enc.unknown[0] + "' is not in the vocabulary");
            return enc.ids;
        };
    return rules;
}

}  // namespace kv
