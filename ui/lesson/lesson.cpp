// Lesson mode's model: chapters, their setup as Commands, keys, and each chapter's
// text from the numbers on screen (see ui/lesson/lesson.h).
#include "ui/lesson/lesson.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/engine/formulas.h"
#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/lesson/lesson_text.h"
#include "ui/panels/panels.h"

namespace kvui {

namespace {

// GLFW key codes (GLFW/glfw3.h), kept here so kvui needs no GLFW headers.
constexpr int KEY_SPACE = 32, KEY_0 = 48, KEY_9 = 57, KEY_L = 76, KEY_ESCAPE = 256,
              KEY_BACKSPACE = 259, KEY_RIGHT = 262, KEY_LEFT = 263, KEY_PAGE_UP = 266, KEY_PAGE_DOWN = 267,
              KEY_HOME = 268, KEY_END = 269;

std::vector<Chapter> make_chapters() {
    using P = LessonPanel;
    namespace T = lesson_text;
    std::vector<Chapter> v;
    // Chapters in order; each names the function that writes its text. A new chapter is
    // one add() where it belongs: numbers, keys and pictures follow the order.
    auto add = [&](std::string title, std::string look, ChapterSetup s, std::vector<P> panels,
                   LessonArrangement a, float share, std::string (*text)(const AppState&)) {
        Chapter c;
        c.text = text;
        c.number = static_cast<int>(v.size()) + 1;
        c.title = std::move(title);
        c.look_at = std::move(look);
        c.setup = std::move(s);
        c.panels = std::move(panels);
        c.arrangement = a;
        c.focus_share = share;
        v.push_back(std::move(c));
    };
    ChapterSetup s;
    s.steps = 1;
    add("Text becomes tokens; the model predicts one token at a time",
        "the tokens: the prompt's pieces, then each generated token", s, {P::tokens, P::next_token},
        LessonArrangement::rows, 0.42f, T::text_tokens);
    add("Prefill: the whole prompt in one pass fills the cache",
        "the cache: one K row and one V row per prompt token, all computed now", s, {P::cache, P::tokens, P::qkv},
        LessonArrangement::columns, 0.6f, T::text_prefill);
    s.steps = 3;
    add("Decode with the cache: only the new token enters",
        "q, k, v of the newest token: q is used and dropped, k and v become a cache row", s,
        {P::qkv, P::cache, P::tokens}, LessonArrangement::rows, 0.4f, T::text_decode);
    s.mode.cache_on = false;
    s.steps = 6;
    add("Cache off: every earlier token goes through again",
        "the badges under the tokens: how many times each token's K and V were computed", s,
        {P::tokens, P::cache, P::qkv}, LessonArrangement::rows, 0.34f, T::text_cache_off);
    s.mode.cache_on = true;
    s.mode.compare = true;
    s.steps = 10;
    s.metric = WorkMetric::attn_scores;
    add("Work: linear with the cache, quadratic without",
        "the work chart: measured counts with (blue) and without (magenta) the cache", s, {P::work, P::tokens},
        LessonArrangement::columns, 0.62f, T::text_work);
    s.steps = 16;
    s.sweep = true;
    s.metric = WorkMetric::flops;
    add("Time, measured: ms per step both ways",
        "the measured time per step at every position, with and without the cache", s, {P::scaling, P::work},
        LessonArrangement::columns, 0.58f, T::text_time);
    s = ChapterSetup{};
    s.steps = 8;
    add("Memory: bytes per token, and the cache grows linearly",
        "the memory formula for this model, GPT-2 and a grouped-query Llama", s, {P::memory, P::cache},
        LessonArrangement::columns, 0.55f, T::text_memory);
    s = ChapterSetup{};
    s.prompt_text = "The cat sat on the";
    s.prompt_ids = "11,2,8";
    s.steps = 5;
    s.stale_demo = true;
    s.first_steps = 6;
    add("Forgetting to reset the cache (a bug, shown on purpose)",
        "the same prompt twice: after a reset, and on top of the previous prompt's stale cache", s,
        {P::stale, P::next_token}, LessonArrangement::rows, 0.62f, T::text_stale);
    s = ChapterSetup{};
    s.steps = 10;
    s.mode.policy.window = 6;
    s.mode.policy.sinks = 2;
    add("Sliding window + attention sinks: a cache that stops growing",
        "the cache: 2 sink rows, the last rows of the window, the evicted rows between them", s,
        {P::cache, P::memory}, LessonArrangement::columns, 0.6f, T::text_window);
    s = ChapterSetup{};
    s.steps = 8;
    s.mode.policy.dtype = kv::KvDtype::int8;
    s.mode.compare = true;
    s.mode.other_policy = kv::CachePolicy{};
    s.mode.other_policy->dtype = kv::KvDtype::f16;
    add("Storing the cache in int8 or f16: fewer bytes, a measured error",
        "the same rows stored in int8 (left) and f16 (right); hover a cell for its f32 value", s,
        {P::cache, P::memory}, LessonArrangement::rows, 0.64f, T::text_storage);
    s = ChapterSetup{};
    s.steps = 8;
    s.mode.model_spec = "tiny-gqa";
    add("Grouped-query attention: query heads share kv heads",
        "the memory formula with Hkv = 2 kv heads for 4 query heads", s, {P::memory, P::cache},
        LessonArrangement::columns, 0.5f, T::text_gqa);
    s = ChapterSetup{};
    s.steps = 4;
    s.mode.speculative = true;
    add("Speculative decoding: a small model drafts, the big one checks",
        "each round's drafts: accepted (green), rejected (red, their rows rolled back)", s,
        {P::spec_tokens, P::spec_cache, P::spec_work}, LessonArrangement::rows, 0.33f, T::text_spec);
    s = ChapterSetup{};
    s.steps = 8;
    s.serve_preset = "class";
    s.serve_steps = 3;
    add("Paged cache: many requests in one pool of blocks",
        "the pool: each request's positions in blocks of 4 slots, wherever a block was free", s,
        {P::serve_pool, P::serve_strip, P::serve_counters}, LessonArrangement::rows, 0.56f, T::text_paged);
    s.serve_preset = "forks";
    s.serve_steps = 2;
    add("Prefix sharing and copy-on-write: a block stored once, copied on the first write",
        "the shared blocks (framed, xN tables) and the blocks just copied (green frames)", s,
        {P::serve_pool, P::serve_table, P::serve_counters}, LessonArrangement::rows, 0.56f, T::text_prefix);
    s.serve_preset = "class";
    s.serve_steps = 3;
    s.serve_large = true;
    add("Batching: one read of the weights for many tokens",
        "measured tokens per second: one sequence alone vs the batch on screen", s,
        {P::serve_batch, P::serve_pool}, LessonArrangement::columns, 0.5f, T::text_batching);
    s = ChapterSetup{};
    s.steps = 1;
    s.mode.model_spec = "tiny-llama";
    s.rope_shift = true;
    add("RoPE: the cache keeps rotated keys",
        "k as k_proj made it (k0) and turned for its position (k): the cache keeps the turned one", s,
        {P::qkv, P::cache}, LessonArrangement::rows, 0.62f, T::text_rope);
    s = ChapterSetup{};
    s.steps = 8;
    s.mode.model_spec = "tiny-mla";
    s.mode.compare = true;  // the same cache read two ways: expanded (left) and absorbed (right)
    s.mode.other_policy = kv::CachePolicy{};
    s.mode.other_policy->mla = kv::MlaRead::absorbed;
    s.cache_shapes = true;
    add("MLA: cache a latent",
        "bytes per token of MHA, GQA and MLA caches, and the measured FLOPs of the two ways to read a latent", s,
        {P::mla, P::cache, P::qkv}, LessonArrangement::columns, 0.55f, T::text_mla);
    s = ChapterSetup{};
    s.steps = 8;
    add("Where caches go next", "the variants, the chapter that shows each, and what each saves for this model", s,
        {P::next_steps, P::memory}, LessonArrangement::columns, 0.68f, T::text_next);
    return v;
}


}  // namespace

const char* lesson_panel_title(LessonPanel p) {
    switch (p) {
    case LessonPanel::tokens: return "Tokens  (badge: times its K/V were computed)";
    case LessonPanel::qkv: return "Q, K, V of the newest token";
    case LessonPanel::cache: return "KV cache  (rows = positions)  +  attention weights";
    case LessonPanel::work: return "Work: with vs without cache (counted)";
    case LessonPanel::scaling: return "Time: measured ms per step vs position";
    case LessonPanel::next_token: return "Next token";
    case LessonPanel::memory: return "Cache memory = 2 x L x Hkv x hd x tokens x bytes";
    case LessonPanel::narration: return "What just happened";
    case LessonPanel::timeline: return "Timeline";
    case LessonPanel::stale: return "Same prompt: clean cache vs stale cache (the bug)";
    case LessonPanel::next_steps: return "Where caches go next";
    case LessonPanel::spec_tokens: return "Tokens: drafted, accepted, rejected";
    case LessonPanel::spec_cache: return "KV caches of the target and the draft  (rows = positions)";
    case LessonPanel::spec_work: return "Target passes per token: plain vs speculative";
    case LessonPanel::serve_pool: return "The pool: blocks of slots, coloured by request";
    case LessonPanel::serve_strip: return "Contiguous reservation vs paged blocks";
    case LessonPanel::serve_counters: return "Counters of this step";
    case LessonPanel::serve_table: return "Block table of the selected sequence (logical -> physical)";
    case LessonPanel::serve_batch: return "Decode speed, measured: one sequence vs a batch";
    case LessonPanel::mla: return "Bytes per token; FLOPs of the two reads";
    }
    return "";
}

const std::vector<Chapter>& lesson_chapters() {
    static const std::vector<Chapter> chapters = make_chapters();
    return chapters;
}

int lesson_chapter_count() { return static_cast<int>(lesson_chapters().size()); }

const Chapter& lesson_chapter(int number) {
    const auto& v = lesson_chapters();
    return v[std::clamp(number, 1, static_cast<int>(v.size())) - 1];
}

std::string lesson_model_spec(const LessonMode& m, const AppState& app) {
    if (m.model_spec.empty()) {
        const std::string& saved = app.vs.lesson.saved.model_spec;
        return saved.empty() ? app.model_spec : saved;
    }
    for (const BundledModel& b : bundled_models())
        if (b.name == m.model_spec) return b.dir;
    // Not a bundled name: a folder path or random:... (the normal layout's model), as it is.
    return m.model_spec.find_first_of("/:\\") != std::string::npos ? m.model_spec : "";
}

bool same_model(const std::string& a, const std::string& b) {
    if (a == b) return true;
    if (a.empty() || b.empty()) return false;
    std::error_code ec;
    return std::filesystem::equivalent(a, b, ec) && !ec;
}

namespace {

Command flag_command(CommandKind k, bool flag) {
    Command c{k};
    c.flag = flag;
    return c;
}

// Compare as the mode wants it: off first when it is on in another form (the other
// cache mode vs its own policy, or another own policy), then on in the wanted form.
void compare_commands(const LessonMode& m, const AppState& app, bool& compare_on, std::vector<Command>& cmds) {
    const bool own = m.other_policy.has_value();
    const bool same = app.compare && m.compare && app.other_own_policy == own &&
                      (!own || (app.other.valid && app.other.policy == *m.other_policy));
    if (compare_on && !same) {
        cmds.push_back(flag_command(CommandKind::set_compare, false));
        compare_on = false;
    }
    if (!m.compare || compare_on) return;
    if (own) {
        Command c = flag_command(CommandKind::set_other_policy, true);
        c.policy = *m.other_policy;
        cmds.push_back(c);
    } else {
        cmds.push_back(flag_command(CommandKind::set_compare, true));
    }
    compare_on = true;
}

}  // namespace

std::vector<Command> mode_commands(const LessonMode& m, const AppState& app) {
    std::vector<Command> cmds;
    // Off first: speculative rounds run one target on full f32 caches, and the stale
    // demonstration holds the second session.
    if (app.spec.on) cmds.push_back(flag_command(CommandKind::set_speculative, false));
    if (app.stale_demo) cmds.push_back(flag_command(CommandKind::set_stale_demo, false));
    bool compare_on = app.compare && !app.spec.on;  // speculative mode had turned compare off
    if (!(app.main.policy == m.policy)) {
        Command c{CommandKind::set_policy};
        c.policy = m.policy;
        cmds.push_back(c);
    }
    compare_commands(m, app, compare_on, cmds);
    cmds.push_back(flag_command(CommandKind::set_cache, m.cache_on));
    return cmds;
}

std::vector<Command> chapter_commands(const Chapter& ch, const AppState& app) {
    const ChapterSetup& s = ch.setup;
    const bool text = app.model && app.model->tokenizer;
    std::vector<Command> cmds = mode_commands(s.mode, app);
    Command prompt{CommandKind::set_prompt};
    prompt.text = text ? s.prompt_text : s.prompt_ids;
    cmds.push_back(prompt);
    if (s.stale_demo) {
        Command c = flag_command(CommandKind::set_stale_demo, true);
        c.text = text ? s.first_text : s.first_ids;
        c.n = s.first_steps;
        cmds.push_back(c);
    }
    if (s.mode.speculative) {  // from main's prompt, set above
        Command c = flag_command(CommandKind::set_speculative, true);
        c.text = s.mode.draft;
        c.n = s.mode.draft_k;
        cmds.push_back(c);
    }
    for (int i = 0; i < s.steps; ++i) cmds.push_back(Command{CommandKind::step});
    if (!s.serve_preset.empty()) {
        Command c = serve_command(kv::serve_preset(s.serve_preset), s.serve_steps);
        c.flag = s.serve_large;
        cmds.push_back(c);
    }
    return cmds;
}

namespace {

// The setup's Commands once the model is right: the chapter's, or the saved mode's.
void push_setup(AppState& app, int setup) {
    LessonState& l = app.vs.lesson;
    if (setup == LessonState::kRestore) {
        std::vector<Command> cmds = mode_commands(l.saved, app);
        if (l.saved.speculative) {
            Command c = flag_command(CommandKind::set_speculative, true);
            c.text = l.saved.draft;
            c.n = l.saved.draft_k;
            cmds.push_back(c);
        }
        for (Command& c : cmds) app.push(std::move(c));
        app.vs.policy_edit = l.saved.policy;
        return;
    }
    const Chapter& ch = lesson_chapter(setup);
    for (Command& c : chapter_commands(ch, app)) {
        if (c.kind == CommandKind::set_prompt) app.vs.prompt_text = c.text;
        app.push(std::move(c));
    }
    if (ch.setup.sweep && app.scaling.state != SweepState::done && app.scaling.state != SweepState::running)
        app.sweep_request = SweepRequest::start;
}

}  // namespace

namespace {

// The tokens the main session has fed the model so far (prompt and generated).
std::vector<int> processed_ids(const SessionView& v) {
    const kv::StepTrace* t = v.last();
    if (!t) return {};
    const size_t n = std::min(v.tokens.size(), static_cast<size_t>(t->start_pos) + t->input_ids.size());
    return std::vector<int>(v.tokens.begin(), v.tokens.begin() + static_cast<std::ptrdiff_t>(n));
}

// Refreshes the RoPE chapter's measurement when its tokens or model changed: two
// short forwards of a small RoPE model on this thread (larger models are not measured).
void update_rope_shift(AppState& app) {
    LessonState& l = app.vs.lesson;
    if (!l.on || !lesson_chapter(l.chapter).setup.rope_shift || app.busy || !app.model) return;
    if (!app.model->config.is_llama() || app.model->config.n_params() > 50'000'000) return;
    std::vector<int> ids = processed_ids(app.main);
    if (ids.size() < 2 || (l.rope.model == app.model && l.rope.ids == ids)) return;
    l.rope.r = kv::rope_shift_demo(*app.model, ids, 1);
    l.rope.model = app.model;
    l.rope.ids = std::move(ids);
}

// Reads the shapes of the bundled models the MLA chapter compares, once (their config.json).
void update_bundled_shapes(AppState& app) {
    LessonState& l = app.vs.lesson;
    if (!l.on || !lesson_chapter(l.chapter).setup.cache_shapes || !l.bundled_shapes.empty()) return;
    const std::vector<BundledModel> bundled = bundled_models();
    for (const std::string& name : compared_models())
        for (const BundledModel& b : bundled)
            if (b.name == name) {
                try {
                    l.bundled_shapes.emplace_back(name, kv::read_config_json(b.dir + "/config.json"));
                } catch (const std::exception&) {  // a broken folder: not in the table (its load says why)
                }
            }
}

}  // namespace

const std::vector<std::string>& compared_models() {
    static const std::vector<std::string> names = {"tiny-gpt", "tiny-llama", "tiny-mla"};
    return names;
}

const char* attention_kind(const kv::ModelConfig& c) {
    return c.is_mla() ? "MLA" : c.n_kv_head == c.n_head ? "MHA" : "GQA";
}

std::vector<CacheShape> cache_shapes(const AppState& app) {
    std::vector<CacheShape> out;
    auto add = [&](const std::string& name, const kv::ModelConfig& c, bool bundled) {
        out.push_back({name, attention_kind(c), c, bundled, kv::cache_bytes_for(c, kv::KvDtype::f32, 1),
                       kv::cache_bytes_for(c, kv::KvDtype::f16, 1)});
    };
    bool loaded_listed = !app.model;
    for (const auto& [name, c] : app.vs.lesson.bundled_shapes) {
        add(name, c, true);
        loaded_listed = loaded_listed || name == app.model_name;
    }
    if (!loaded_listed) add(app.model_name, app.model->config, false);
    add("GPT-2 124M", kv::ModelConfig::gpt2_124m(), false);
    add("Llama-3-8B", kv::ModelConfig::llama3_8b(), false);
    add("DeepSeek-V3", kv::ModelConfig::deepseek_v3(), false);
    return out;
}

bool mla_reads(const AppState& app, MlaReads& out) {
    out = {};
    if (!app.model || !app.model->config.is_mla() || !app.compare || !app.other.valid) return false;
    const SessionView& e = app.main.policy.mla == kv::MlaRead::expand ? app.main : app.other;
    const SessionView& a = app.main.policy.mla == kv::MlaRead::expand ? app.other : app.main;
    if (e.policy.mla == a.policy.mla || !e.cache_on || !a.cache_on) return false;
    for (const auto& t : e.history) out.expand.push_back(t->counters.flops);
    for (const auto& t : a.history) out.absorbed.push_back(t->counters.flops);
    return true;
}

void lesson_tick(AppState& app) {
    update_rope_shift(app);
    update_bundled_shapes(app);
    LessonState& l = app.vs.lesson;
    if (l.setup == 0 || app.busy || !app.pending.empty()) return;
    if (!app.model) {  // nothing to set up (no model loaded)
        l.setup = 0;
        return;
    }
    const LessonMode& m = l.setup == LessonState::kRestore ? l.saved : lesson_chapter(l.setup).setup.mode;
    const std::string want = lesson_model_spec(m, app);
    if (want.empty()) {
        app.error = "lesson: the model '" + m.model_spec + "' is not bundled with this build";
        l.setup = 0;
        return;
    }
    if (!same_model(app.model_spec, want)) {
        if (l.load_asked) {  // not loaded: still loading (no error yet), or failed (error shown)
            if (!app.error.empty()) l.setup = 0, l.load_asked = false;
            return;
        }
        app.error.clear();
        Command c{CommandKind::load_model};
        c.text = want;
        app.push(c);
        l.load_asked = true;
        return;
    }
    const int setup = l.setup;
    l.setup = 0;
    l.load_asked = false;
    push_setup(app, setup);
}

void goto_chapter(AppState& app, int chapter) {
    const Chapter& ch = lesson_chapter(chapter);
    LessonState& l = app.vs.lesson;
    l.chapter = ch.number;
    app.vs.playing = false;
    app.vs.metric = ch.setup.metric;
    if (!app.model) return;
    l.setup = ch.number;
    l.load_asked = false;
    lesson_tick(app);
}

void enter_lesson(AppState& app, int chapter) {
    LessonState& l = app.vs.lesson;
    if (!l.on && l.setup != LessonState::kRestore) {  // (while a restore waits, its saved mode stands)
        LessonMode& m = l.saved;
        m.model_spec = app.model_spec;
        m.policy = app.main.valid ? app.main.policy : kv::CachePolicy{};
        m.compare = app.compare;
        m.other_policy = app.compare && app.other_own_policy && app.other.valid
                             ? std::optional<kv::CachePolicy>(app.other.policy)
                             : std::nullopt;
        m.cache_on = app.main.valid ? app.main.cache_on : true;
        m.speculative = app.spec.on;
        m.draft = app.vs.spec.draft_text;
        m.draft_k = app.spec.on ? app.spec.k : app.vs.spec.k;
        l.saved_scaling = app.vs.show_scaling;
        l.saved_metric = app.vs.metric;
    }
    l.on = true;
    app.vs.show_help = false;
    goto_chapter(app, chapter);
}

void leave_lesson(AppState& app) {
    LessonState& l = app.vs.lesson;
    if (!l.on) return;
    l.on = false;
    l.setup = LessonState::kRestore;
    l.load_asked = false;
    app.vs.show_scaling = l.saved_scaling;
    app.vs.select_tab = true;
    app.vs.metric = l.saved_metric;
    lesson_tick(app);
}

bool serve_shown(const AppState& app) {
    if (app.vs.lesson.on) return !lesson_chapter(app.vs.lesson.chapter).setup.serve_preset.empty();
    return app.serve.on;
}

const char* lesson_keys_text() {
    return "Space step, Backspace back, 1-9 and 0 (=10), End: chapter";
}

bool lesson_key(AppState& app, int key, bool ctrl) {
    if (!app.vs.lesson.on || ctrl) return false;
    const int ch = app.vs.lesson.chapter, n = lesson_chapter_count();
    switch (key) {
    case KEY_RIGHT:
    case KEY_PAGE_DOWN:
        if (ch < n) goto_chapter(app, ch + 1);
        return true;
    case KEY_LEFT:
    case KEY_PAGE_UP:
        if (ch > 1) goto_chapter(app, ch - 1);
        return true;
    case KEY_HOME: goto_chapter(app, ch); return true;
    case KEY_END: goto_chapter(app, n); return true;
    case KEY_ESCAPE:
    case KEY_L: leave_lesson(app); return true;
    case KEY_SPACE: apply_key_action(app, KeyAction::step); return true;
    case KEY_BACKSPACE: apply_key_action(app, KeyAction::back); return true;
    default: break;
    }
    const int digit = key == KEY_0 ? 10 : key - KEY_0;
    if (key >= KEY_0 && key <= KEY_9 && digit <= n) {
        goto_chapter(app, digit);
        return true;
    }
    return false;
}


std::string chapter_text(const Chapter& ch, const AppState& app) {
    if (!app.model) return "No model is loaded.";
    return ch.text ? ch.text(app) : "";
}

std::string join_tokens(const AppState& app, const std::vector<int>& ids, size_t from, size_t max_n, const char* sep) {
    std::string s;
    for (size_t i = from; i < ids.size() && i < from + max_n; ++i) s += (i > from ? sep : "") + app.token_text(ids[i]);
    if (ids.size() > from + max_n) s += " ...";
    if (std::string(sep) == "] [") s = "[" + s + "]";
    return s;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size() || a.empty()) return -1.f;
    float d = 0.f;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
    return d;
}

float max_recompute_diff(const kv::StepTrace& t) {
    float d = -1.f;
    for (const kv::HeadTrace& h : t.heads) d = std::max(d, h.recompute_max_diff);
    return d;
}

std::string fmt_diff(float d) {
    char b[32];
    if (d == 0.f) return "0";
    std::snprintf(b, sizeof b, "%.2g", d);
    return b;
}

}  // namespace kvui
