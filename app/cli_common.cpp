#include "app/cli_common.h"

#include <CLI/CLI.hpp>

#include <iostream>

#include "core/text/utf8.h"

namespace cli {

using nlohmann::json;

std::vector<int> ids_arg(const std::string& text) {
    try {
        return kv::parse_token_ids(text);
    } catch (const kv::Error& e) {
        throw UsageError(std::string("--ids: ") + e.what());
    }
}

std::unique_ptr<kv::Model> open_model(const std::string& spec, const std::string& weights) {
    std::optional<kv::WeightType> wt;
    if (!weights.empty()) {
        wt = kv::parse_weight_type(weights);
        if (!wt) throw UsageError("--weights: '" + weights + "' is not a weight type (use f32, f16 or bf16)");
    }
    if (!spec.empty()) return kv::load_model(spec, wt);
    const std::string dir = kv::default_model_dir();
    if (dir.empty())
        throw kv::Error("--model: not given, and the bundled model (assets/models/tiny-gpt) was not found "
                        "next to the executable or in the source tree; set KVSCOPE_MODEL_DIR or pass --model");
    return kv::load_model_folder(dir, wt);
}

void add_weights_option(CLI::App* c, std::string& weights) {
    c->add_option("--weights", weights, "hold the weight matrices in f32, f16 or bf16 (default: as stored)")
        ->check(CLI::IsMember({"f32", "f16", "bf16"}));
}

void refuse_with_draft(const CLI::App& cmd) {
    for (const char* opt : {"--window", "--sinks", "--kv-dtype", "--weights", "--vs-f32"})
        if (const CLI::Option* o = cmd.get_option_no_throw(opt); o && o->count() > 0)
            throw UsageError(std::string("--draft: speculative decoding runs the full f32 cache and the weights as "
                                         "stored; ") + opt + " is not supported with it (drop " + opt + ")");
}

// The prompt as ids, from --ids or --prompt (tokenized, unknown words reported).
std::vector<int> prompt_ids(const kv::Model& m, const std::string& prompt, const std::string& ids, bool have_prompt,
                            bool have_ids) {
    if (have_prompt == have_ids) throw UsageError("give exactly one of --prompt TEXT or --ids 1,2,3");
    std::vector<int> out;
    if (have_ids) {
        out = ids_arg(ids);
    } else {
        if (!m.tokenizer)
            throw UsageError("--prompt: model '" + m.name + "' has no tokenizer (" +
                             (m.path.empty() ? std::string("random models take --ids 1,2,3")
                                             : "its folder has no vocab.txt, or vocab.json + merges.txt; use --ids 1,2,3") +
                             ")");
        const kv::Encoding enc = m.tokenizer->encode(prompt);
        if (enc.ids.empty()) throw UsageError("--prompt: empty; type at least one word");
        if (!enc.unknown.empty()) {
            std::string list;
            for (const auto& w : enc.unknown) list += (list.empty() ? "'" : ", '") + w + "'";
            std::cerr << "note: not in the vocabulary of " << m.name << ", read as <unk>: " << list << "\n";
        }
        out = enc.ids;
    }
    for (int id : out)
        if (id >= m.config.vocab_size)
            throw UsageError("--ids: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(m.config.vocab_size) + ") of " + m.name);
    if (int(out.size()) > m.config.n_ctx)
        throw UsageError("prompt: " + std::to_string(out.size()) + " tokens, but " + m.name + "'s context holds " +
                         std::to_string(m.config.n_ctx));
    return out;
}

void check_new(const kv::Model& m, int p, int n_new) {
    if (n_new < 1) throw UsageError("--new: must be at least 1");
    if (p + n_new - 1 > m.config.n_ctx)
        throw UsageError("--new: " + std::to_string(n_new) + " new tokens after a " + std::to_string(p) +
                         "-token prompt need " + std::to_string(p + n_new - 1) + " positions; " + m.name +
                         "'s context holds " + std::to_string(m.config.n_ctx));
}

json model_json(const kv::Model& m) {
    const auto& c = m.config;
    json j = {{"name", m.name},         {"path", m.path},         {"n_layer", c.n_layer}, {"n_head", c.n_head},
            {"n_kv_head", c.n_kv_head}, {"n_embd", c.n_embd},  {"n_ctx", c.n_ctx},
            {"vocab_size", c.vocab_size}, {"weights", kv::weight_type_name(m.weights.type)},
            {"weight_bytes", m.weights.bytes()}};
    if (c.is_mla())
        j["mla"] = {{"kv_lora_rank", c.mla.kv_lora_rank}, {"q_lora_rank", c.mla.q_lora_rank},
                    {"qk_rope_head_dim", c.mla.qk_rope_head_dim}, {"qk_nope_head_dim", c.mla.qk_nope_head_dim},
                    {"v_head_dim", c.mla.v_head_dim}};
    return j;
}

json counters_json(const kv::Counters& c, bool with_evicted) {
    json j = {{"tokens_processed", c.tokens_processed},
              {"kv_rows_computed", c.kv_rows_computed},
              {"kv_rows_reused", c.kv_rows_reused},
              {"kv_rows_recomputed", c.kv_rows_recomputed},
              {"attn_scores", c.attn_scores},
              {"cache_rows", c.cache_rows},
              {"cache_bytes", c.cache_bytes},
              {"flops", c.flops}};
    if (with_evicted) j["kv_rows_evicted"] = c.kv_rows_evicted;
    return j;
}

void add_policy_options(CLI::App* c, PolicyArgs& a) {
    c->add_option("--window", a.window, "attend to the last W positions only (0 = unlimited)");
    c->add_option("--sinks", a.sinks, "with --window: the first S positions are always attended to");
    c->add_option("--kv-dtype", a.dtype, "how the cache stores K/V: f32, f16 or int8");
    c->add_option("--mla", a.mla, "MLA models: read the cached latents by expanding them to K and V (expand) "
                                  "or with the up-projections absorbed (absorbed)");
}

kv::CachePolicy policy_of(PolicyArgs& a, const CLI::App& cmd) {
    a.given = cmd.count("--window") + cmd.count("--sinks") + cmd.count("--kv-dtype") + cmd.count("--mla") > 0;
    if (a.window < 0) throw UsageError("--window: " + std::to_string(a.window) + " is negative (0 = unlimited)");
    if (a.sinks < 0) throw UsageError("--sinks: " + std::to_string(a.sinks) + " is negative");
    if (a.window > 0 && a.sinks > a.window)
        throw UsageError("--sinks: " + std::to_string(a.sinks) + " exceeds --window " + std::to_string(a.window));
    kv::CachePolicy p;
    p.window = a.window;
    p.sinks = a.sinks;
    try {
        p.dtype = kv::parse_dtype(a.dtype, "--kv-dtype");
        p.mla = kv::parse_mla_read(a.mla, "--mla");
    } catch (const kv::Error& e) {
        throw UsageError(e.what());
    }
    return p;
}

json policy_json(const kv::CachePolicy& p, const kv::ModelConfig& c) {
    json j = {{"window", p.window}, {"sinks", p.sinks}, {"kv_dtype", kv::dtype_name(p.dtype)}};
    if (c.is_mla()) j["mla"] = kv::mla_read_name(p.mla);
    return j;
}

std::string token_text(const kv::Model& m, int id) {
    return m.tokenizer ? m.tokenizer->token_text(id) : "<" + std::to_string(id) + ">";
}

std::string token_bytes(const kv::Model& m, int id) {
    return m.tokenizer ? m.tokenizer->token_bytes(id) : "<" + std::to_string(id) + ">";
}

namespace {

// Fixes the text in v in place; returns what goes under "KEY_bytes" for it (null when
// v holds no invalid text, or when v is an object, which takes its own "_bytes" keys).
json fix_text(json& v) {
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        if (kv::is_valid_utf8(s)) return nullptr;
        json bytes = json::array();
        for (unsigned char c : s) bytes.push_back(int(c));
        v = kv::display_bytes(s);
        return bytes;
    }
    if (v.is_array()) {
        json shadow = json::array();
        bool any = false;
        for (json& e : v) {
            json b = fix_text(e);
            any = any || !b.is_null();
            shadow.push_back(std::move(b));
        }
        return any ? shadow : json();
    }
    if (v.is_object()) {
        std::vector<std::pair<std::string, json>> added;
        for (auto it = v.begin(); it != v.end(); ++it)
            if (json b = fix_text(it.value()); !b.is_null()) added.emplace_back(it.key() + "_bytes", std::move(b));
        for (auto& [k, b] : added) v[k] = std::move(b);
    }
    return nullptr;
}

}  // namespace

void make_text_json_safe(json& j) {
    if (json b = fix_text(j); !b.is_null()) j = {{"value", j}, {"value_bytes", b}};  // a bare string or list
}

void print_json(const json& j, int indent) {
    json safe = j;
    make_text_json_safe(safe);
    // Keys are ours (ASCII); the replace handler only guards against a future mistake.
    std::cout << safe.dump(indent, ' ', false, json::error_handler_t::replace) << "\n";
}

kv::Session make_session(const kv::Model& m, const std::string& backend, const kv::CachePolicy& policy) {
    return make_session(m, std::shared_ptr<kv::Engine>(kv::make_engine(m, backend)), policy);
}

void check_mla_flag(const kv::Model& m, const kv::CachePolicy& policy) {
    try {
        kv::check_mla_read(m.config, policy, m.name);
    } catch (const kv::Error& e) {
        throw UsageError(e.what());
    }
}

kv::Session make_session(const kv::Model& m, std::shared_ptr<kv::Engine> engine, const kv::CachePolicy& policy) {
    check_mla_flag(m, policy);
    kv::Session s(m, std::move(engine), policy);
    kv::TraceOptions t = s.trace_options();
    t.record = false;  // the CLI prints counters and tokens, not per-head detail
    s.set_trace_options(t);
    return s;
}

}  // namespace cli
