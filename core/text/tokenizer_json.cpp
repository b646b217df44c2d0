// tokenizer.json -> Gpt2BpeTokenizer: each part of the file (model, normalizer,
// pre_tokenizer, added_tokens, decoder) is read by one function into BpeTextRules,
// vocab and merges; what kvscope cannot do the same way as `tokenizers` is refused.
#include "core/text/tokenizer_json.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define KVSCOPE_TOKJSON_HAVE_JSON 1
#endif

namespace kv {

std::string split_regex_for_pcre2(std::string_view p, const std::string& path) {
    const std::string ws = white_space_class();
    std::string out;
    bool in_class = false;
    for (std::size_t i = 0; i < p.size(); ++i) {
        const char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            const char e = p[++i];
            if (e == 's') out += in_class ? ws : "[" + ws + "]";
            else if (e == 'S' && !in_class) out += "[^" + ws + "]";
            else if (e == 'S')
                throw Error(path + ": pre-tokenizer regex uses \\S inside a character class, which kvscope "
                            "does not translate for PCRE2");
            else out += {c, e};
            continue;
        }
        if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:] stays as it is
            const std::size_t end = p.find(":]", i + 2);
            if (end != std::string_view::npos) {
                out += p.substr(i, end + 2 - i);
                i = end + 1;
                continue;
            }
        }
        if (!in_class && c == '[') {
            in_class = true;
            out += c;
            if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
            if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ']' is literal
            continue;
        }
        if (in_class && c == ']') in_class = false;
        out += c;
    }
    return out;
}

#if defined(KVSCOPE_TOKJSON_HAVE_JSON)

namespace {

using json = nlohmann::json;

// One short printable quote of a JSON value for a message.
std::string shown(const json& v) {
    std::string s = v.is_string() ? v.get<std::string>() : v.dump();
    if (s.size() > 60) {
        std::size_t cut = 57;  // not inside a UTF-8 character
        while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
        s = s.substr(0, cut) + "...";
    }
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return v.is_string() ? "\"" + s + "\"" : s;
}

// The "type" of a component object ("" when absent or not a string).
std::string type_of(const json& j) {
    const auto it = j.find("type");
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// The "type" (or any other key) of a component for a message: "(none)" when absent.
std::string shown_key(const json& j, const char* key = "type") {
    const auto it = j.is_object() ? j.find(key) : j.end();
    return it == j.end() ? "(none)" : shown(*it);
}

bool flag(const json& j, const char* key, bool fallback, const std::string& where) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) throw Error(where + " \"" + key + "\" must be true or false, found " + shown(*it));
    return it->get<bool>();
}

// The field must be absent, null or one of `allowed` (compared as JSON values).
void require_plain(const json& j, const char* key, std::initializer_list<json> allowed, const std::string& path,
                   const std::string& what) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return;
    if (std::find(allowed.begin(), allowed.end(), *it) != allowed.end()) return;
    throw Error(path + ": model \"" + key + "\" " + shown(*it) + " is not supported (" + what + ")");
}

void read_vocab(const json& v, const std::string& path, std::unordered_map<std::string, int>& vocab) {
    if (!v.is_object()) throw Error(path + ": model \"vocab\" must be an object mapping tokens to ids");
    vocab.reserve(v.size());
    for (const auto& [key, id] : v.items()) {
        if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > (1 << 24))
            throw Error(path + ": model \"vocab\" gives token " + shown(key) + " the id " + shown(id) +
                        ", expected an integer 0 .. 16777216");
        vocab.emplace(key, static_cast<int>(id.get<long long>()));
    }
}

// Merges as "left right" strings (tokenizers before 0.20) or ["left", "right"] pairs.
void read_merges(const json& m, const std::string& path, std::vector<BpeMerge>& merges) {
    if (!m.is_array()) throw Error(path + ": model \"merges\" must be an array");
    merges.reserve(m.size());
    for (std::size_t i = 0; i < m.size(); ++i) {
        const json& e = m[i];
        const int entry = static_cast<int>(i) + 1;
        const auto bad = [&] { return path + ": model \"merges\" entry " + std::to_string(entry) + " is " + shown(e); };
        if (e.is_string()) {
            const std::string s = e.get<std::string>();
            const std::size_t sp = s.find(' ');
            if (sp == 0 || sp == std::string::npos || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
                throw Error(bad() + ", expected two tokens separated by one space");
            merges.push_back({s.substr(0, sp), s.substr(sp + 1), entry});
        } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
            merges.push_back({e[0].get<std::string>(), e[1].get<std::string>(), entry});
        } else {
            throw Error(bad() + ", expected \"left right\" or [\"left\", \"right\"]");
        }
    }
}

void read_model(const json& j, const std::string& path, std::unordered_map<std::string, int>& vocab,
                std::vector<BpeMerge>& merges, BpeTextRules& rules) {
    const auto it = j.find("model");
    if (it == j.end() || !it->is_object()) throw Error(path + ": no \"model\" object (is this a tokenizer.json?)");
    const json& m = *it;
    if (type_of(m) != "BPE")
        throw Error(path + ": model type " + shown_key(m) +
                    " is not supported (kvscope reads byte-level BPE, model type \"BPE\")");
    require_plain(m, "dropout", {0, 0.0}, path, "BPE dropout changes ids from run to run");
    require_plain(m, "byte_fallback", {false}, path, "byte fallback is SentencePiece-style BPE");
    require_plain(m, "continuing_subword_prefix", {""}, path, "byte-level BPE has no subword prefix");
    require_plain(m, "end_of_word_suffix", {""}, path, "byte-level BPE has no end-of-word suffix");
    rules.ignore_merges = flag(m, "ignore_merges", false, path + ": model");
    const auto v = m.find("vocab"), mg = m.find("merges");
    if (v == m.end()) throw Error(path + ": model has no \"vocab\"");
    if (mg == m.end()) throw Error(path + ": model has no \"merges\"");
    read_vocab(*v, path, vocab);
    read_merges(*mg, path, merges);
}

// NFC (alone or in a Sequence) is the one normalizer that byte-level BPE models ship.
void read_normalizer(const json& j, const std::string& path, BpeTextRules& rules) {
    const auto it = j.find("normalizer");
    if (it == j.end() || it->is_null()) return;
    std::vector<const json*> parts{&*it};
    if (type_of(*it) == "Sequence") {
        parts.clear();
        const auto list = it->find("normalizers");
        if (list == it->end() || !list->is_array()) throw Error(path + ": normalizer Sequence has no \"normalizers\" list");
        for (const json& n : *list) parts.push_back(&n);
    }
    for (const json* n : parts) {
        if (type_of(*n) != "NFC")
            throw Error(path + ": normalizer " + shown_key(*n) +
                        " is not supported (kvscope applies NFC only)");
        rules.nfc = true;
    }
}

// A PCRE2 pattern matching `text` itself: every ASCII character but letters and digits
// escaped (PCRE2_LITERAL cannot be combined with the UTF options).
std::string regex_for_text(const std::string& text) {
    std::string out;
    for (char c : text) {
        const unsigned char u = static_cast<unsigned char>(c);
        if (u < 0x80 && !std::isalnum(u)) out += '\\';
        out += c;
    }
    return out;
}

// One pre-tokenizer of the Sequence, appended to rules.steps; true for ByteLevel.
bool read_pre_tokenizer_step(const json& p, const std::string& path, BpeTextRules& rules) {
    if (!p.is_object()) throw Error(path + ": pre_tokenizer " + shown(p) + " is not an object");
    const std::string type = type_of(p);
    if (type == "ByteLevel") {
        if (flag(p, "add_prefix_space", false, path + ": ByteLevel")) rules.steps.push_back({"", true});
        if (flag(p, "use_regex", true, path + ": ByteLevel")) rules.steps.push_back({gpt2_split_pattern()});
        return true;
    }
    if (type == "Digits") {
        rules.steps.push_back({flag(p, "individual_digits", false, path + ": Digits") ? "\\p{N}" : "\\p{N}+"});
        return false;
    }
    if (type != "Split")
        throw Error(path + ": pre_tokenizer " + shown_key(p) +
                    " is not supported (kvscope reads Split, Digits and ByteLevel)");
    if (!p.contains("behavior") || p["behavior"] != "Isolated")
        throw Error(path + ": Split behavior " + shown_key(p, "behavior") +
                    " is not supported (kvscope reads \"Isolated\")");
    if (flag(p, "invert", false, path + ": Split")) throw Error(path + ": Split with \"invert\": true is not supported");
    const json pat = p.contains("pattern") ? p["pattern"] : json::object();
    if (pat.contains("Regex") && pat["Regex"].is_string())
        rules.steps.push_back({split_regex_for_pcre2(pat["Regex"].get<std::string>(), path)});
    else if (pat.contains("String") && pat["String"].is_string())
        rules.steps.push_back({regex_for_text(pat["String"].get<std::string>())});
    else
        throw Error(path + ": Split pattern " + shown(pat) + " is neither {\"Regex\": ...} nor {\"String\": ...}");
    return false;
}

void read_pre_tokenizer(const json& j, const std::string& path, BpeTextRules& rules) {
    const auto it = j.find("pre_tokenizer");
    const std::string need = " (kvscope reads byte-level BPE, whose pre_tokenizer ends with ByteLevel)";
    if (it == j.end() || it->is_null()) throw Error(path + ": no pre_tokenizer" + need);
    std::vector<const json*> parts{&*it};
    if (type_of(*it) == "Sequence") {
        parts.clear();
        const auto list = it->find("pretokenizers");
        if (list == it->end() || !list->is_array())
            throw Error(path + ": pre_tokenizer Sequence has no \"pretokenizers\" list");
        for (const json& p : *list) parts.push_back(&p);
    }
    rules.steps.clear();
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const bool byte_level = read_pre_tokenizer_step(*parts[i], path, rules);
        if (byte_level != (i + 1 == parts.size()))
            throw Error(path + ": ByteLevel must be the last pre_tokenizer" + need);
    }
    if (parts.empty()) throw Error(path + ": the pre_tokenizer Sequence is empty" + need);
}

void read_added_tokens(const json& j, const std::string& path, BpeTextRules& rules) {
    const auto it = j.find("added_tokens");
    if (it == j.end() || it->is_null()) return;
    if (!it->is_array()) throw Error(path + ": \"added_tokens\" must be an array");
    for (const json& t : *it) {
        if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
            !t["content"].is_string())
            throw Error(path + ": added token " + shown(t) + " needs an integer \"id\" and a string \"content\"");
        const std::string where = path + ": added token " + shown(t["content"]);
        for (const char* k : {"single_word", "lstrip", "rstrip"})
            if (flag(t, k, false, where)) throw Error(where + " has \"" + k + "\": true, which kvscope does not support");
        const long long id = t["id"].get<long long>();
        if (id < 0 || id > (1 << 24)) throw Error(where + " has id " + std::to_string(id) + ", expected 0 .. 16777216");
        rules.added.push_back({t["content"].get<std::string>(), static_cast<int>(id), flag(t, "special", false, where)});
    }
}

// The special tokens TemplateProcessing's "single" template puts before the text ($A),
// alone or in a Sequence of post-processors; the other post-processors change no ids.
void read_post_processor(const json& j, const std::string& path, BpeTextRules& rules) {
    const auto it = j.find("post_processor");
    if (it == j.end() || !it->is_object()) return;
    std::vector<const json*> parts{&*it};
    if (type_of(*it) == "Sequence" && it->contains("processors") && (*it)["processors"].is_array()) {
        parts.clear();
        for (const json& p : (*it)["processors"]) parts.push_back(&p);
    }
    for (const json* p : parts) {
        if (type_of(*p) != "TemplateProcessing" || !p->contains("single")) continue;
        const json& specials = p->contains("special_tokens") ? (*p)["special_tokens"] : json::object();
        for (const json& item : (*p)["single"]) {
            if (item.contains("Sequence")) break;
            if (!item.contains("SpecialToken")) continue;
            const json& name = item.at("SpecialToken").at("id");
            const auto s = specials.find(name.get<std::string>());
            if (s == specials.end() || !s->contains("ids"))
                throw Error(path + ": post_processor uses the special token " + shown(name) + " without its ids");
            for (const json& id : (*s)["ids"]) {
                if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > (1 << 24))
                    throw Error(path + ": post_processor gives " + shown(name) + " the id " + shown(id));
                rules.prefix_ids.push_back(static_cast<int>(id.get<long long>()));
            }
        }
    }
}

void check_decoder(const json& j, const std::string& path) {
    const auto it = j.find("decoder");
    if (it == j.end() || it->is_null() || type_of(*it) == "ByteLevel") return;
    throw Error(path + ": decoder " + shown_key(*it) +
                " is not supported (kvscope decodes byte-level BPE: decoder \"ByteLevel\")");
}

}  // namespace

std::unique_ptr<Gpt2BpeTokenizer> parse_tokenizer_json(std::string_view text, const std::string& path) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        std::string what = e.what();
        if (what.size() > 160) what = what.substr(0, 157) + "...";
        throw Error(path + ": not valid JSON (" + what + ")");
    }
    if (!j.is_object()) throw Error(path + ": expected a JSON object, got " + std::string(j.type_name()));
    std::unordered_map<std::string, int> vocab;
    std::vector<BpeMerge> merges;
    BpeTextRules rules;
    rules.merge_unit = "entry";
    try {
        read_model(j, path, vocab, merges, rules);
        read_normalizer(j, path, rules);
        read_pre_tokenizer(j, path, rules);
        read_added_tokens(j, path, rules);
        read_post_processor(j, path, rules);
        check_decoder(j, path);
    } catch (const json::exception& e) {  // a value of an unexpected JSON type the reads above missed
        throw Error(path + ": unexpected content (" + std::string(e.what()).substr(0, 160) + ")");
    }
    return std::make_unique<Gpt2BpeTokenizer>(vocab, merges, path, path + " model.merges", std::move(rules));
}

#else

std::unique_ptr<Gpt2BpeTokenizer> parse_tokenizer_json(std::string_view, const std::string& path) {
    throw Error(path + ": this build has no JSON reader (nlohmann-json), so it cannot load tokenizer.json");
}

#endif

std::unique_ptr<Gpt2BpeTokenizer> load_tokenizer_json(const std::string& path) {
    return parse_tokenizer_json(read_tokenizer_file(path, "tokenizer.json"), path);
}

}  // namespace kv
