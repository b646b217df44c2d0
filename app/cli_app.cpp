// kvscope-cli: headless tools over the same core the window uses (docs/design.md,
// "The command line and JSON"). JSON goes to stdout, human text to stderr. Exit codes:
// 0 ok, 2 usage (bad or missing arguments), 1 anything else, always with one line
// that names the file or argument and what is wrong.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/model/model_io.h"
#include "core/session/step_reference.h"
#include "core/session/session.h"
#include "core/train/train.h"
#include "app/cli_commands.h"
#include "app/cli_common.h"

using nlohmann::json;
using namespace cli;

namespace {

// ---- generate ----
int run_generate(const GenerateArgs& a, CLI::App& cmd) {
    if (cmd.count("--draft-k") && !cmd.count("--draft")) throw UsageError("--draft-k: needs --draft SPEC");
    if (a.temperature < 0.f || !std::isfinite(a.temperature)) throw UsageError("--temperature: must be >= 0");
    if (a.top_k < 0) throw UsageError("--top-k: must be >= 0");
    if (cmd.count("--draft")) {
        if (a.no_cache) throw UsageError("--draft: speculative decoding needs the cache (drop --no-cache)");
        refuse_with_draft(cmd);
        return cli::run_generate_speculative(a);
    }
    auto m = open_model(a.model, a.weights);
    const auto ids = prompt_ids(*m, a.prompt, a.ids, a.have_prompt, a.have_ids);
    check_new(*m, int(ids.size()), a.n_new);
    PolicyArgs pa = a.policy;
    const kv::CachePolicy policy = policy_of(pa, cmd);

    kv::Session s = make_session(*m, a.backend, policy);
    s.set_cache(!a.no_cache);
    s.set_sampling({a.temperature, a.top_k, a.seed, 5});
    s.set_prompt_ids(ids);
    json steps = json::array();
    double ms_total = 0;
    if (m->tokenizer) std::cerr << m->tokenizer->decode(ids);
    for (int i = 0; i < a.n_new; ++i) {
        const kv::StepTrace& t = s.step();
        ms_total += t.ms;
        steps.push_back({{"step", t.step},
                         {"phase", kv::phase_name(t.phase)},
                         {"input_ids", t.input_ids},
                         {"start_pos", t.start_pos},
                         {"next_id", t.next_id},
                         {"next_token", token_bytes(*m, t.next_id)},
                         {"counters", counters_json(t.counters, pa.given)},
                         {"ms", t.ms}});
        std::cerr << (m->tokenizer ? " " + token_text(*m, t.next_id) : " " + std::to_string(t.next_id));
    }
    std::cerr << "\n";
    const kv::Counters tot = s.totals();
    std::cerr << a.n_new << " new tokens, cache " << (a.no_cache ? "off" : "on") << ": " << tot.kv_rows_computed
              << " K/V rows computed (" << tot.kv_rows_recomputed << " recomputed), " << tot.attn_scores
              << " attention scores, cache " << tot.cache_bytes << " bytes, " << ms_total << " ms\n";
    if (a.as_json) {
        json totals = counters_json(tot, pa.given);
        totals["ms"] = ms_total;
        json out = {{"model", model_json(*m)}, {"prompt_ids", ids}, {"cache", !a.no_cache},
                    {"steps", steps},          {"totals", totals}};
        if (pa.given) out["cache_policy"] = policy_json(policy, m->config);
        std::vector<int> gen(s.tokens().begin() + ids.size(), s.tokens().end());
        out["new_ids"] = gen;
        if (m->tokenizer) out["text"] = m->tokenizer->decode(s.tokens());
        print_json(out, 1);
    }
    return 0;
}

// ---- compare ----
// What a variant costs in accuracy (kv::StepReference): a reference cache on a
// reference engine is fed the inputs of the compared session's cached step, and its
// logits are set against the step's. vs_full: the same weights with a full-attention
// f32 cache (the price of a cache policy); vs_f32: f32 weights with the same cache
// policy (the price of f16/bf16 weights).
json diff_json(const kv::LogitDiff& r) {
    return {{"max_abs_logit_diff", r.max_abs_logit_diff}, {"same_top1", r.same_top1}};
}
json totals_json(const kv::StepReference& r) {
    return {{"max_abs_logit_diff", r.worst()}, {"same_top1_steps", r.same_top1_steps()}};
}

int run_compare(const GenerateArgs& a, CLI::App& cmd) {
    auto m = open_model(a.model, a.weights);
    const auto ids = prompt_ids(*m, a.prompt, a.ids, a.have_prompt, a.have_ids);
    check_new(*m, int(ids.size()), a.n_new);
    PolicyArgs pa = a.policy;
    const kv::CachePolicy policy = policy_of(pa, cmd);
    // One engine (the weights, once) serves every cache of the comparison.
    const std::shared_ptr<kv::Engine> engine = kv::make_engine(*m, a.backend);
    kv::Session cached = make_session(*m, engine, policy);
    kv::Session uncached = make_session(*m, engine, policy);
    uncached.set_cache(false);
    // With a policy: a full-attention f32 cache fed the policy session's tokens.
    kv::StepReference full(*engine);
    // With 16-bit weights: the same model with f32 weights, the same policy, fed the same tokens.
    const bool half = m->weights.type != kv::WeightType::f32;
    std::unique_ptr<kv::Model> m32 = half ? open_model(a.model, "f32") : nullptr;
    const std::unique_ptr<kv::Engine> engine32 = half ? kv::make_engine(*m32, a.backend) : nullptr;
    std::optional<kv::StepReference> f32ref;
    if (half) f32ref.emplace(*engine32, policy);
    cached.set_prompt_ids(ids);
    uncached.set_prompt_ids(ids);
    json steps = json::array();
    float worst = 0;
    bool same_tokens = true;
    double ms_c = 0, ms_u = 0;
    std::fprintf(stderr, "%4s %-8s %-14s %12s %12s %12s %12s %10s\n", "step", "phase", "token", "rows cached",
                 "rows uncache", "scores cach", "scores uncac", "max|diff|");
    for (int i = 0; i < a.n_new; ++i) {
        const kv::StepTrace& tc = cached.step();
        const kv::StepTrace& tu = uncached.step();
        float d = 0;
        for (size_t j = 0; j < tc.logits.size(); ++j) d = std::max(d, std::abs(tc.logits[j] - tu.logits[j]));
        if (tc.logits.size() != tu.logits.size() || std::isnan(d)) d = INFINITY;
        worst = std::max(worst, d);
        same_tokens = same_tokens && tc.next_id == tu.next_id;
        ms_c += tc.ms;
        ms_u += tu.ms;
        steps.push_back({{"step", tc.step},
                         {"phase", kv::phase_name(tc.phase)},
                         {"max_abs_logit_diff", d},
                         {"cached",
                          {{"next_id", tc.next_id}, {"counters", counters_json(tc.counters, pa.given)}, {"ms", tc.ms}}},
                         {"uncached",
                          {{"next_id", tu.next_id}, {"counters", counters_json(tu.counters, pa.given)}, {"ms", tu.ms}}}});
        if (pa.given) steps.back()["vs_full"] = diff_json(full.compare(tc));
        if (f32ref) steps.back()["vs_f32"] = diff_json(f32ref->compare(tc));
        std::fprintf(stderr, "%4d %-8s %-14s %12lld %12lld %12lld %12lld %10.2e\n", tc.step, kv::phase_name(tc.phase),
                     token_text(*m, tc.next_id).substr(0, 14).c_str(), (long long)tc.counters.kv_rows_computed,
                     (long long)tu.counters.kv_rows_computed, (long long)tc.counters.attn_scores,
                     (long long)tu.counters.attn_scores, d);
    }
    const kv::Counters c = cached.totals(), u = uncached.totals();
    std::fprintf(stderr,
                 "totals: K/V rows computed %lld cached vs %lld uncached (%.1fx less work); attention scores %lld vs "
                 "%lld; %.2f ms vs %.2f ms; worst logit difference %.2e%s\n",
                 (long long)c.kv_rows_computed, (long long)u.kv_rows_computed,
                 double(u.kv_rows_computed) / double(std::max<int64_t>(1, c.kv_rows_computed)),
                 (long long)c.attn_scores, (long long)u.attn_scores, ms_c, ms_u, worst,
                 same_tokens ? "" : " (the modes chose different tokens)");
    if (f32ref)
        std::fprintf(stderr, "%s weights against f32 weights fed the same tokens: worst logit difference %.2e, "
                             "same top token at %d of %d steps\n",
                     kv::weight_type_name(m->weights.type), f32ref->worst(), f32ref->same_top1_steps(), a.n_new);
    if (a.as_json) {
        json tc = counters_json(c, pa.given), tu = counters_json(u, pa.given);
        tc["ms"] = ms_c;
        tu["ms"] = ms_u;
        json out = {{"model", model_json(*m)},
                    {"prompt_ids", ids},
                    {"steps", steps},
                    {"max_abs_logit_diff", worst},
                    {"same_tokens", same_tokens},
                    {"totals", {{"cached", tc}, {"uncached", tu}}}};
        if (pa.given) {
            out["cache"] = policy_json(policy, m->config);
            out["vs_full"] = totals_json(full);
        }
        if (f32ref) out["vs_f32"] = totals_json(*f32ref);
        print_json(out, 1);
    }
    return 0;
}

// ---- logits ----
int run_logits(const std::string& model, const std::string& ids_text, bool no_cache, bool all_positions,
               const std::string& backend, const kv::CachePolicy& policy, const std::string& weights) {
    auto m = open_model(model, weights);
    const auto ids = ids_arg(ids_text);
    for (int id : ids)
        if (id >= m->config.vocab_size)
            throw UsageError("--ids: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(m->config.vocab_size) + ")");
    if (int(ids.size()) > m->config.n_ctx)
        throw UsageError("--ids: " + std::to_string(ids.size()) + " tokens exceed the context of " +
                         std::to_string(m->config.n_ctx));
    auto engine = kv::make_engine(*m, backend);
    auto cache = engine->make_cache(policy);
    const int V = m->config.vocab_size, n = int(ids.size());
    std::vector<std::vector<float>> rows;
    kv::ForwardRequest req;
    req.trace_opts.record = false;
    kv::StepTrace tr;
    if (no_cache) {
        // One pass over the whole sequence.
        std::vector<float> all;
        req.ids = ids;
        req.all_logits = true;
        engine->forward(req, *cache, tr, &all);
        for (int i = 0; i < n; ++i) rows.emplace_back(all.begin() + size_t(i) * V, all.begin() + size_t(i + 1) * V);
    } else {
        // Token by token through the cache: each position sees earlier ones only via cached K/V.
        for (int i = 0; i < n; ++i) {
            req.ids = std::span<const int>(ids.data() + i, 1);
            req.start_pos = i;
            req.n_known = i;
            engine->forward(req, *cache, tr);
            rows.push_back(tr.logits);
        }
    }
    json out;
    if (all_positions)
        out["logits"] = rows;
    else
        out["logits"] = rows.back();
    print_json(out);
    return 0;
}

// ---- tokenize ----
int run_tokenize(const std::string& model, const std::string& text) {
    // The tokenizer alone: the weights are never read.
    const kv::ModelText m = kv::load_model_text(model);
    if (!m.tokenizer) throw UsageError("--model: '" + m.name + "' has no tokenizer");
    const kv::Encoding enc = m.tokenizer->encode(text);
    if (!enc.unknown.empty()) {
        std::string list;
        for (const auto& w : enc.unknown) list += (list.empty() ? "'" : ", '") + w + "'";
        std::cerr << "note: not in the vocabulary, read as <unk>: " << list << "\n";
    }
    json out = {{"ids", enc.ids}, {"tokens", enc.pieces}};
    if (!enc.unknown.empty()) out["unknown"] = enc.unknown;
    print_json(out);
    return 0;
}

// ---- export ----
// A model folder written with the project's own writer: config.json, model.safetensors
// with the matrices in the held type (--weights), and the tokenizer files when the
// model has them (vocab.txt written; vocab.json + merges.txt and tokenizer.json copied
// from its folder).
int run_export(const std::string& model, const std::string& weights, const std::string& out) {
    namespace fs = std::filesystem;
    auto m = open_model(model, weights);
    std::error_code ec;
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) throw UsageError("--out: '" + out + "' is a file, not a folder");
    if (fs::exists(fs::path(out) / "model.safetensors", ec))
        throw UsageError("--out: '" + out + "' already holds a model.safetensors; choose an empty folder");
    kv::save_model_folder(out, m->config, m->weights, m->tokenizer.get());
    if (m->tokenizer && !m->path.empty() && !fs::exists(fs::path(out) / "vocab.txt", ec))
        for (const char* f : {"vocab.json", "merges.txt", "tokenizer.json"})
            if (fs::exists(fs::path(m->path) / f, ec)) {
                fs::copy_file(fs::path(m->path) / f, fs::path(out) / f, fs::copy_options::overwrite_existing, ec);
                if (ec) throw kv::Error(out + "/" + f + ": cannot write (" + ec.message() + ")");
            }
    std::fprintf(stderr, "wrote %s: %s, %s weights, %.1f MB held\n", out.c_str(), m->name.c_str(),
                 kv::weight_type_name(m->weights.type), double(m->weights.bytes()) / 1e6);
    return 0;
}

// a with have_prompt / have_ids from the parsed command.
GenerateArgs with_prompt_given(GenerateArgs a, const CLI::App& cmd) {
    a.have_prompt = cmd.count("--prompt") > 0;
    a.have_ids = cmd.count("--ids") > 0;
    return a;
}

void add_prompt_options(CLI::App* c, GenerateArgs& a) {
    c->add_option("--model", a.model, "model folder, or random:tiny / random:gpt2-124m[:SEED] (default: bundled)");
    c->add_option("--prompt", a.prompt, "prompt text (needs a model with a tokenizer)");
    c->add_option("--ids", a.ids, "prompt as token ids, e.g. 5,9,3,7");
    c->add_option("--new", a.n_new, "number of new tokens (steps)")->required();
    c->add_option("--backend", a.backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    c->add_flag("--json", a.as_json, "print a JSON record to stdout");
    add_weights_option(c, a.weights);
}

}  // namespace

int cli::main(int argc, char** argv, bool parse_only) {
    CLI::App app{"kvscope-cli: headless tools for kvscope, the KV cache visualizer"};
    app.require_subcommand(1);

    GenerateArgs gen;
    auto* c_gen = app.add_subcommand("generate", "generate tokens, one record per step");
    add_prompt_options(c_gen, gen);
    add_policy_options(c_gen, gen.policy);
    c_gen->add_flag("--no-cache", gen.no_cache, "recompute every token at every step");
    c_gen->add_option("--temperature", gen.temperature, "0 = greedy (default)");
    c_gen->add_option("--top-k", gen.top_k, "sample among the k most likely (0 = all)");
    c_gen->add_option("--seed", gen.seed, "sampling seed");
    c_gen->add_option("--draft", gen.draft, "speculative decoding: the draft model (folder or random:SPEC)");
    c_gen->add_option("--draft-k", gen.draft_k, "tokens the draft proposes per round, 1..16 (default 4)");

    GenerateArgs cmp;
    auto* c_cmp = app.add_subcommand("compare", "run cached and uncached in lockstep and compare");
    add_prompt_options(c_cmp, cmp);
    add_policy_options(c_cmp, cmp.policy);

    std::string lg_model, lg_ids, lg_backend = "cpu", lg_weights;
    bool lg_no_cache = false, lg_all = false;
    auto* c_lg = app.add_subcommand("logits", "print the logits for a sequence of ids");
    c_lg->add_option("--model", lg_model, "model folder or random:SPEC");
    c_lg->add_option("--ids", lg_ids, "token ids, e.g. 1,2,3")->required();
    c_lg->add_flag("--no-cache", lg_no_cache, "one pass over the whole sequence (default: token by token via the cache)");
    c_lg->add_flag("--all-positions", lg_all, "print logits for every position");
    c_lg->add_option("--backend", lg_backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    PolicyArgs lg_policy;
    add_policy_options(c_lg, lg_policy);
    add_weights_option(c_lg, lg_weights);

    std::string tk_model, tk_text;
    auto* c_tk = app.add_subcommand("tokenize", "split text into tokens");
    c_tk->add_option("--model", tk_model, "model folder (default: bundled)");
    c_tk->add_option("--text", tk_text, "text to tokenize")->required();

    auto run_bench = cli::add_bench_command(app);
    auto run_serve = cli::add_serve_command(app);

    std::string ex_model, ex_weights, ex_out;
    auto* c_ex = app.add_subcommand("export", "write a model folder (e.g. a random model in bf16) for other tools");
    c_ex->add_option("--model", ex_model, "model folder or random:SPEC (default: bundled)");
    c_ex->add_option("--out", ex_out, "the folder to write")->required();
    add_weights_option(c_ex, ex_weights);

    kv::TrainOptions topt;
    std::string tr_family = "gpt2";
    auto* c_tr = app.add_subcommand("train", "train a tiny word-level GPT-2, Llama or MLA model on a corpus");
    c_tr->add_option("--corpus", topt.corpus, "text file, one sentence per line")->required();
    c_tr->add_option("--out", topt.out_dir, "model folder to write")->required();
    c_tr->add_option("--steps", topt.steps, "optimizer steps");
    c_tr->add_option("--seed", topt.seed, "seed");
    c_tr->add_option("--n-kv-head", topt.n_kv_head, "K/V heads shared by the 4 query heads: 4, 2 (grouped-query) or 1 (multi-query)");
    c_tr->add_option("--layers", topt.n_layer, "transformer blocks (default 2)");
    c_tr->add_option("--heads", topt.n_head, "attention heads (default 4)");
    c_tr->add_option("--embd", topt.n_embd, "embedding width, a multiple of --heads (default 64)");
    c_tr->add_option("--family", tr_family,
                     "gpt2 (GPT2LMHeadModel folder), llama (LlamaForCausalLM folder) or mla (Llama's blocks with "
                     "DeepSeek's latent attention: a DeepseekV3ForCausalLM folder)")
        ->check(CLI::IsMember({"gpt2", "llama", "mla"}));
    c_tr->add_option("--ff", topt.n_ff, "llama: the SwiGLU MLP's width (default 8 * --embd / 3, rounded up to 16)");

    std::string names;
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) {
        names += (names.empty() ? "" : ", ") + sub->get_name();
        known = known || (argc >= 2 && sub->get_name() == argv[1]);
    }
    if (argc >= 2 && argv[1][0] != '-' && !known) {
        std::cerr << "kvscope-cli: '" << argv[1] << "' is not a command (commands: " << names << ")\n";
        return 2;
    }
    // CLI11 reads "--ids=" (an empty value) as a flag without a value and then blames
    // a later required option; say what is wrong instead.
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--ids=") {
            std::cerr << "kvscope-cli: --ids: the id list is empty (example: --ids 5,9,3,7)\n";
            return 2;
        }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "kvscope-cli: " << e.what() << " (see --help)\n";
        return 2;
    }

    if (parse_only) return 0;
    try {
        if (*c_gen) return run_generate(with_prompt_given(gen, *c_gen), *c_gen);
        if (*c_cmp) return run_compare(with_prompt_given(cmp, *c_cmp), *c_cmp);
        if (*c_lg)
            return run_logits(lg_model, lg_ids, lg_no_cache, lg_all, lg_backend, policy_of(lg_policy, *c_lg), lg_weights);
        if (*c_tk) return run_tokenize(tk_model, tk_text);
        if (*c_ex) return run_export(ex_model, ex_weights, ex_out);
        if (int rc = run_bench(); rc >= 0) return rc;
        if (int rc = run_serve(); rc >= 0) return rc;
        if (*c_tr) {
            topt.family = tr_family == "gpt2" ? kv::ModelFamily::gpt2 : kv::ModelFamily::llama;
            topt.mla = tr_family == "mla";
            const kv::TrainReport r = kv::train_model(topt);
            std::fprintf(stderr, "trained %d steps in %.1f s: train loss %.4f, held-out loss %.4f, %lld parameters, "
                                 "vocabulary %d; wrote %s\n",
                         r.steps, r.seconds, r.train_loss, r.val_loss, (long long)r.n_params, r.vocab_size,
                         topt.out_dir.c_str());
            return 0;
        }
    } catch (const cli::UsageError& e) {
        std::cerr << "kvscope-cli: " << e.what() << "\n";
        return 2;
    } catch (const kv::Error& e) {
        std::cerr << "kvscope-cli: " << e.what() << "\n";
        return 1;
    } catch (const std::bad_alloc&) {
        std::cerr << "kvscope-cli: out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "kvscope-cli: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
