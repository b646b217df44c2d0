// Prompts in many scripts for the text tests (issue 17), and how a test reads back the
// exact bytes of a string from kvscope-cli's JSON (app/cli_common.h, print_json).
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace kvtest {

struct TextCase {
    const char* name;
    std::string text;  // no single quote: the tests pass it inside '...' to /bin/sh
};

inline const std::vector<TextCase>& text_cases() {
    static const std::vector<TextCase> cases = {
        {"Latin with accents", "café naïve façade"},
        {"Japanese", "日本語のテキスト"},
        {"Greek", "Ελληνικά"},
        {"Cyrillic", "привет"},
        {"Devanagari", "नमस्ते"},
        {"Chinese", "你好，世界"},
        {"Korean", "안녕하세요"},
        {"Arabic", "مرحبا"},
        {"emoji", "emoji 🙂 test"},
        {"invalid UTF-8", "caf\xC3 \xFF\xFE x\xE6\x97"},
    };
    return cases;
}

// The exact bytes of the string at obj[key] (or obj[key][i]): from "KEY_bytes" when
// the writer put them there, else the string itself.
inline std::string json_text_bytes(const nlohmann::json& obj, const std::string& key, int i = -1) {
    const nlohmann::json& v = i < 0 ? obj.at(key) : obj.at(key).at(size_t(i));
    if (const auto it = obj.find(key + "_bytes"); it != obj.end()) {
        const nlohmann::json& b = i < 0 ? *it : it->at(size_t(i));
        if (!b.is_null()) {
            std::string s;
            for (const nlohmann::json& c : b) s += char(c.get<int>());
            return s;
        }
    }
    return v.get<std::string>();
}

}  // namespace kvtest
