// Lesson mode's model: chapters, their setup as Commands, keys, and each chapter's
// text from the numbers on screen (see ui/lesson.h).
#include "ui/lesson.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/engine/formulas.h"
#include "core/model/model_io.h"
#include "ui/cache_policy_view.h"
#include "ui/panels.h"

namespace kvui {

namespace {

// GLFW key codes (GLFW/glfw3.h), kept here so kvui needs no GLFW headers.
constexpr int KEY_SPACE = 32, KEY_0 = 48, KEY_9 = 57, KEY_L = 76, KEY_ESCAPE = 256,
              KEY_BACKSPACE = 259, KEY_RIGHT = 262, KEY_LEFT = 263, KEY_PAGE_UP = 266, KEY_PAGE_DOWN = 267,
              KEY_HOME = 268, KEY_END = 269;

std::vector<Chapter> make_chapters() {
    using P = LessonPanel;
    std::vector<Chapter> v;
    auto add = [&](std::string title, std::string look, ChapterSetup s, std::vector<P> panels,
                   LessonArrangement a, float share) {
        Chapter c;
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
        LessonArrangement::rows, 0.42f);
    add("Prefill: the whole prompt in one pass fills the cache",
        "the cache: one K row and one V row per prompt token, all computed now", s, {P::cache, P::tokens, P::qkv},
        LessonArrangement::columns, 0.6f);
    s.steps = 3;
    add("Decode with the cache: only the new token enters",
        "q, k, v of the newest token: q is used and dropped, k and v become a cache row", s,
        {P::qkv, P::cache, P::tokens}, LessonArrangement::rows, 0.4f);
    s.mode.cache_on = false;
    s.steps = 6;
    add("Cache off: every earlier token goes through again",
        "the badges under the tokens: how many times each token's K and V were computed", s,
        {P::tokens, P::cache, P::qkv}, LessonArrangement::rows, 0.34f);
    s.mode.cache_on = true;
    s.mode.compare = true;
    s.steps = 10;
    s.metric = WorkMetric::attn_scores;
    add("Work: linear with the cache, quadratic without",
        "the work chart: measured counts with (blue) and without (magenta) the cache", s, {P::work, P::tokens},
        LessonArrangement::columns, 0.62f);
    s.steps = 16;
    s.sweep = true;
    s.metric = WorkMetric::flops;
    add("Time, measured: ms per step both ways",
        "the measured time per step at every position, with and without the cache", s, {P::scaling, P::work},
        LessonArrangement::columns, 0.58f);
    s = ChapterSetup{};
    s.steps = 8;
    add("Memory: bytes per token, and the cache grows linearly",
        "the memory formula for this model, GPT-2 and a grouped-query Llama", s, {P::memory, P::cache},
        LessonArrangement::columns, 0.55f);
    s = ChapterSetup{};
    s.prompt_text = "The cat sat on the";
    s.prompt_ids = "11,2,8";
    s.steps = 5;
    s.stale_demo = true;
    s.first_steps = 6;
    add("Forgetting to reset the cache (a bug, shown on purpose)",
        "the same prompt twice: after a reset, and on top of the previous prompt's stale cache", s,
        {P::stale, P::next_token}, LessonArrangement::rows, 0.62f);
    s = ChapterSetup{};
    s.steps = 10;
    s.mode.policy.window = 6;
    s.mode.policy.sinks = 2;
    add("Sliding window + attention sinks: a cache that stops growing",
        "the cache: 2 sink rows, the last rows of the window, the evicted rows between them", s,
        {P::cache, P::memory}, LessonArrangement::columns, 0.6f);
    s = ChapterSetup{};
    s.steps = 8;
    s.mode.policy.dtype = kv::KvDtype::int8;
    s.mode.compare = true;
    s.mode.other_policy = kv::CachePolicy{};
    s.mode.other_policy->dtype = kv::KvDtype::f16;
    add("Storing the cache in int8 or f16: fewer bytes, a measured error",
        "the same rows stored in int8 (left) and f16 (right); hover a cell for its f32 value", s,
        {P::cache, P::memory}, LessonArrangement::rows, 0.64f);
    s = ChapterSetup{};
    s.steps = 8;
    s.mode.model_spec = "tiny-gqa";
    add("Grouped-query attention: query heads share kv heads",
        "the memory formula with Hkv = 2 kv heads for 4 query heads", s, {P::memory, P::cache},
        LessonArrangement::columns, 0.5f);
    s = ChapterSetup{};
    s.steps = 4;
    s.mode.speculative = true;
    add("Speculative decoding: a small model drafts, the big one checks",
        "each round's drafts: accepted (green), rejected (red, their rows rolled back)", s,
        {P::spec_tokens, P::spec_cache, P::spec_work}, LessonArrangement::rows, 0.33f);
    s = ChapterSetup{};
    s.steps = 8;
    add("Where caches go next", "the variants, the chapter that shows each, and what each saves for this model", s,
        {P::next_steps, P::memory}, LessonArrangement::columns, 0.6f);
    return v;
}

std::string num(int64_t x) { return std::to_string(x); }

std::string pct(float p) {
    char b[16];
    std::snprintf(b, sizeof b, "%.1f%%", p * 100.f);
    return b;
}

std::string ratio(double a, double b) {
    char r[32];
    std::snprintf(r, sizeof r, "%.1fx", b > 0 ? a / b : 0.0);
    return r;
}

std::string ms3(double ms) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3f ms", ms);
    return b;
}

std::string prob_of(const kv::StepTrace& t, int id) {
    for (const kv::TopToken& tt : t.top)
        if (tt.id == id) return pct(tt.prob);
    return "?";
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Bytes per cached token: 2 x L x Hkv x hd x 4 (f32).
int64_t bytes_per_token(const kv::ModelConfig& c) { return cache_bytes_formula(c.n_layer, c.n_kv_head, c.head_dim(), 1, 4); }

std::string text_tokens(const AppState& app) {
    const SessionView& v = app.main;
    const int p = static_cast<int>(v.prompt_ids.size());
    std::string s = "The prompt is cut into " + num(p) + " tokens: " + join_tokens(app, v.prompt_ids, 0, 12, "] [") +
                    ". The model sees only their ids (";
    for (int i = 0; i < p && i < 8; ++i) s += (i ? ", " : "") + num(v.prompt_ids[i]);
    s += p > 8 ? ", ...)." : ").";
    const kv::StepTrace* t = v.last();
    if (!t) return s + " Press Space: the model reads them and predicts the next token.";
    s += " From them it scores all " + num(app.model->config.vocab_size) + " tokens it knows for what comes next: ";
    for (size_t i = 0; i < t->top.size() && i < 3; ++i)
        s += (i ? ", " : "") + quoted(app.token_text(t->top[i].id)) + " " + pct(t->top[i].prob);
    s += ". It takes " + quoted(app.token_text(t->next_id)) + ", appends it and predicts again: one token at a time.";
    const int gen = static_cast<int>(v.tokens.size()) - p;
    if (gen > 1) s += " Generated so far: " + quoted(join_tokens(app, v.tokens, p)) + ".";
    return s + " Space: the next token.";
}

std::string text_prefill(const AppState& app) {
    const SessionView& v = app.main;
    const kv::ModelConfig& c = app.model->config;
    if (v.history.empty()) return "Press Space to run the prefill.";
    const kv::StepTrace& t = *v.history.front();
    const int p = static_cast<int>(t.input_ids.size());
    const kv::Counters& k = t.counters;
    std::string s = "Step 0, the prefill, ran all " + num(p) + " prompt tokens through the model in one pass. In each of " +
                    num(c.n_layer) + " layers and " + num(c.n_kv_head) + " kv heads every token got a key row and a value row: " +
                    num(c.n_layer) + " x " + num(c.n_kv_head) + " x " + num(p) + " = " + num(k.kv_rows_computed) +
                    " K/V rows, now cache rows 0-" + num(t.start_pos + p - 1) + " (" + num(k.cache_bytes) +
                    " bytes). Attention is a triangle: token i looks at tokens 0..i, " + num(k.attn_scores) +
                    " q.k scores in all.";
    if (v.n_steps() > 1) s += " (You have stepped on: the cache now holds " + num(v.cache_rows) + " rows.)";
    return s;
}

std::string text_decode(const AppState& app) {
    const SessionView& v = app.main;
    const kv::ModelConfig& c = app.model->config;
    const kv::StepTrace* t = v.last();
    if (!t || t->phase != kv::Phase::decode || !t->cache_on)
        return "Press Space (with the cache on) for a decode step: one new token enters the model.";
    const int pos = t->start_pos;
    const kv::Counters& k = t->counters;
    return "Step " + num(t->step) + ": only " + quoted(app.token_text(t->input_ids.front())) + " (position " + num(pos) +
           ") entered the model. Its q asked one question per head: " + num(k.attn_scores) + " q.k scores (" +
           num(c.n_layer) + " x " + num(c.n_head) + " x " + num(pos + 1) + " keys), then q was dropped. Its k and v became cache row " +
           num(pos) + ": " + num(k.kv_rows_computed) + " K/V rows computed. Rows 0-" + num(pos - 1) + " were read, not computed: " +
           num(k.kv_rows_reused) + " K/V rows reused. Next: " + quoted(app.token_text(t->next_id)) + ".";
}

std::string text_cache_off(const AppState& app) {
    const SessionView& v = app.main;
    const kv::StepTrace* t = v.last();
    if (!t) return "The cache is off. Press Space a few times and watch the badges under the tokens.";
    const int p = static_cast<int>(v.prompt_ids.size());
    const int first = v.compute_counts.empty() ? 0 : v.compute_counts.front();
    std::string s = "After " + num(v.n_steps()) + " steps with the cache " + (t->cache_on ? "on" : "off") + ", " +
                    "the K and V of " + quoted(app.token_text(v.tokens.front())) + " have been computed " + num(first) +
                    " times (x" + num(first) + " under it; with the cache: x1). This step ran all " +
                    num(t->counters.tokens_processed) + " tokens again and recomputed " + num(t->counters.kv_rows_recomputed) +
                    " K/V rows an earlier step already had.";
    const float d = max_recompute_diff(*t);
    if (d >= 0.f) s += " They come out the same: the largest difference from the cached rows, over all recorded heads, is " + fmt_diff(d) + ".";
    (void)p;
    return s;
}

std::string text_work(const AppState& app) {
    const SessionView& v = app.main;
    if (!app.compare || !app.other.valid || v.history.empty())
        return "Turn on compare (the chapter does) and step: both modes run side by side and count their work.";
    const SessionView& on = v.cache_on ? v : app.other;
    const SessionView& off = v.cache_on ? app.other : v;
    const kv::Counters& a = on.totals;
    const kv::Counters& b = off.totals;
    const kv::StepTrace& ta = *on.last();
    const kv::StepTrace& tb = *off.last();
    return "After " + num(v.n_steps()) + " steps, counted by the engine: K/V rows " + num(a.kv_rows_computed) +
           " with the cache, " + num(b.kv_rows_computed) + " without (" + ratio(b.kv_rows_computed, a.kv_rows_computed) +
           "); attention scores " + num(a.attn_scores) + " with, " + num(b.attn_scores) + " without (" +
           ratio(b.attn_scores, a.attn_scores) + "). This step alone: " + num(ta.counters.attn_scores) +
           " scores with the cache (grows by a row each step: linear), " + num(tb.counters.attn_scores) +
           " without (the whole triangle again: quadratic).";
}

// FLOPs of the decode steps only (the prefill is the same work in both modes).
double decode_flops(const SessionView& v) {
    double f = 0;
    for (const auto& t : v.history)
        if (t->phase == kv::Phase::decode) f += static_cast<double>(t->counters.flops);
    return f;
}

// Why the measured speed-up differs from the FLOPs saved, for the ratios on screen.
std::string why_time(double time_ratio, double flops_ratio) {
    if (time_ratio < flops_ratio)
        return "Less than the FLOPs saved: a one-token step still reads every weight for one row, a batched step "
               "reuses each weight for many rows; and fixed costs per step remain.";
    return "More than the FLOPs saved: on a model this small the arithmetic takes microseconds, and the costs that "
           "grow with every token processed (memory traffic, bookkeeping) weigh more than the multiplications.";
}

std::string text_time(const AppState& app) {
    const SessionView& v = app.main;
    std::string s, why;
    if (app.compare && app.other.valid && v.n_steps() > 1) {
        const SessionView& on = v.cache_on ? v : app.other;
        const SessionView& off = v.cache_on ? app.other : v;
        const double ma = decode_mean_ms(on), mb = decode_mean_ms(off);
        const double fa = decode_flops(on), fb = decode_flops(off);
        s = "Measured here over " + num(v.n_steps() - 1) + " decode steps (the window also records a trace of every "
            "token processed): " + ms3(ma) + " per step with the cache, " + ms3(mb) + " without (" + ratio(mb, ma) +
            " faster), for " + ratio(fb, fa) + " fewer FLOPs. ";
        why = why_time(ma > 0 ? mb / ma : 0, fa > 0 ? fb / fa : 0);
    } else {
        s = "Step with compare on to measure both modes. ";
    }
    const ScalingView& sv = app.scaling;
    const kv::SweepPoint* last = nullptr;
    for (const kv::SweepPoint& p : sv.points)
        if (p.ms_cached > 0 && p.ms_uncached > 0) last = &p;
    if (sv.state == SweepState::running) {
        s += "Sweep: measuring (" + pct(sv.progress) + ")... ";
    } else if (last) {  // one step at position pos: 1 token against pos cached rows, or pos + 1 tokens
        const kv::ModelConfig& c = app.model->config;
        const double fc = static_cast<double>(kv::formula_step(c, {}, last->pos, 1, true).flops);
        const double fu = static_cast<double>(kv::formula_step(c, {}, last->pos, 1, false).flops);
        s += "Sweep (no trace): at position " + num(last->pos) + " one step takes " + ms3(last->ms_cached) + " with, " +
             ms3(last->ms_uncached) + " without (" + ratio(last->ms_uncached, last->ms_cached) + "), for " +
             ratio(fu, fc) + " fewer FLOPs (formula). ";
        why = why_time(last->ms_uncached / last->ms_cached, fu / fc);
    }
    return s + why;
}

std::string text_memory(const AppState& app) {
    const SessionView& v = app.main;
    const kv::ModelConfig& c = app.model->config;
    const int64_t bpt = bytes_per_token(c);
    std::string s = "Each cached token stores a key and a value for every layer and kv head: 2 x " + num(c.n_layer) + " x " +
                    num(c.n_kv_head) + " x " + num(c.head_dim()) + " x 4 bytes = " + num(bpt) + " bytes per token. Now " +
                    num(v.cache_rows) + " rows: " + num(v.cache_bytes) + " bytes. After each step: ";
    for (size_t i = 0; i < v.history.size() && i < 10; ++i) s += (i ? ", " : "") + num(v.history[i]->counters.cache_bytes);
    if (v.history.size() > 10) s += ", ...";
    const int64_t gpt2 = cache_bytes_formula(12, 12, 64, 1, 4), llama = cache_bytes_formula(32, 8, 128, 1, 2);
    return s + " (linear). GPT-2 124M: " + num(gpt2) + " bytes per token; Llama-3-8B: " + num(llama) +
           " in fp16 with 8 kv heads shared by 32 query heads (grouped-query), 4x less than 32 kv heads.";
}

std::string text_stale(const AppState& app) {
    if (!app.stale_demo || !app.other.valid) return "Press Home to set up the demonstration again.";
    const SessionView& clean = app.main;
    const SessionView& dirty = app.other;
    const int p = static_cast<int>(clean.prompt_ids.size());
    const int z = static_cast<int>(dirty.stale_ids.size());
    std::string s = "A first prompt left " + num(z) + " rows in the cache. Then " + quoted(join_tokens(app, clean.prompt_ids)) +
                    " runs twice. After a reset it continues " + quoted(join_tokens(app, clean.tokens, p)) +
                    ". With the stale rows kept, its tokens sit at positions " + num(z) +
                    ".. and attend to the old rows: " + quoted(join_tokens(app, dirty.tokens, p)) + ".";
    if (!clean.history.empty() && !dirty.history.empty()) {
        const kv::StepTrace& a = *clean.history.front();
        const kv::StepTrace& b = *dirty.history.front();
        const float d = max_abs_diff(a.logits, b.logits);
        if (d >= 0.f) s += " Logits differ by up to " + fmt_diff(d) + ";";
        s += " the first guess is " + quoted(app.token_text(b.next_id)) + " " + prob_of(b, b.next_id) + " instead of " +
             quoted(app.token_text(a.next_id)) + " " + prob_of(a, a.next_id) + ".";
    }
    return s + " The fix: clear the cache between prompts.";
}

std::string g3(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3g", x);
    return b;
}

// Bytes of a full f32 cache (the textbook one) holding `rows` positions.
int64_t full_f32_bytes(const kv::ModelConfig& c, int64_t rows) {
    return cache_bytes_formula(c.n_layer, c.n_kv_head, c.head_dim(), rows, 4);
}

// "saves 6144 bytes (46.2%)" of `full`, or "costs ..." when the policy holds more.
std::string saved_text(int64_t bytes, int64_t full) {
    const int64_t d = full - bytes;
    return (d >= 0 ? "saves " : "costs ") + num(d >= 0 ? d : -d) + " bytes (" +
           pct(full > 0 ? static_cast<float>(d >= 0 ? d : -d) / static_cast<float>(full) : 0.f) + ")";
}

// The price of a policy, measured (StepTrace::vs_full: a full f32 cache fed the same
// tokens): the latest step's max logit difference and top token, and over all steps.
std::string price_text(const AppState& app, const SessionView& v) {
    const kv::StepTrace* t = v.last();
    if (!t || !t->vs_full.measured()) return "not measured (no step yet)";
    float worst = 0.f;
    int measured = 0, same = 0;
    for (const auto& h : v.history)
        if (h->vs_full.measured()) worst = std::max(worst, h->vs_full.max_abs_logit_diff), ++measured, same += h->vs_full.same_top1;
    std::string s = "max logit difference " + g3(t->vs_full.max_abs_logit_diff) + " this step, " +
                    (t->vs_full.same_top1 ? std::string("same top token")
                                          : "top token changed (full f32: " + quoted(app.token_text(t->vs_full.ref_top1)) + ")");
    return s + "; worst " + g3(worst) + " over " + num(measured) + " steps, same top token in " +
           (same == measured ? "all" : num(same) + " of " + num(measured));
}

int64_t evicted_total(const SessionView& v) {
    int64_t e = 0;
    for (const auto& t : v.history) e += t->counters.kv_rows_evicted;
    return e;
}

std::string text_window(const AppState& app) {
    const SessionView& v = app.main;
    const kv::ModelConfig& c = app.model->config;
    const kv::CachePolicy& pol = v.policy;
    if (!pol.windowed() || !v.last()) return "Press Home: the chapter sets a window of 6 with 2 sinks and steps.";
    const int n = v.cache_positions;
    const int64_t full = full_f32_bytes(c, n);
    return "W = " + num(pol.window) + ", S = " + num(pol.sinks) + ": each query reads the " + num(pol.sinks) +
           " sink positions and the last " + num(pol.window) + " (itself included); a row no later query reads is evicted. After " +
           num(v.n_steps()) + " steps, " + num(n) + " positions: the cache holds " + num(v.cache_rows) + " rows, " +
           num(v.cache_bytes) + " bytes; full f32 holds " + num(n) + " rows, " + num(full) + " bytes: " +
           saved_text(v.cache_bytes, full) + ", and never more than " + num(kv::rows_kept(pol, c.n_ctx)) +
           " rows. Evicted: " + num(evicted_total(v)) + " K/V rows. Against a full f32 cache on the same tokens: " +
           price_text(app, v) + ".";
}

std::string storage_line(const AppState& app, const SessionView& v) {
    const kv::ModelConfig& c = app.model->config;
    const float e = rounding_error(v);
    std::string s = std::string(kv::dtype_name(v.policy.dtype)) + ": " + num(v.cache_bytes) + " bytes, " +
                    saved_text(v.cache_bytes, full_f32_bytes(c, v.cache_rows));
    if (e >= 0.f) s += ", values off by up to " + g3(e) + ";";
    return s + " " + price_text(app, v);
}

std::string text_storage(const AppState& app) {
    const SessionView& v = app.main;
    const kv::ModelConfig& c = app.model->config;
    if (v.policy.dtype == kv::KvDtype::f32 || !v.last())
        return "Press Home: the chapter stores the cache in int8 beside a copy in f16.";
    std::string s = "Bytes per value: f32 4, f16 2, int8 1 (+ an f32 scale per row). " +
                    num(v.cache_rows) + " rows, full f32: " + num(full_f32_bytes(c, v.cache_rows)) + " bytes. " +
                    storage_line(app, v) + ".";
    if (app.compare && app.other_own_policy && app.other.valid && app.other.last())
        s += " " + storage_line(app, app.other) + ".";
    return s;
}

std::string text_gqa(const AppState& app) {
    const SessionView& v = app.main;
    const kv::ModelConfig& c = app.model->config;
    const kv::StepTrace* t = v.last();
    if (c.n_kv_head == c.n_head || !t)
        return "This model has one kv head per query head. Press Home: the chapter loads tiny-gqa.";
    const int H = c.n_head, Hkv = c.n_kv_head, g = H / Hkv;
    const int64_t bpt = bytes_per_token(c), mha = cache_bytes_formula(c.n_layer, H, c.head_dim(), 1, 4);
    std::string heads;
    for (int k = 0; k < Hkv && k < 3; ++k)
        heads += (k ? ", " : "") + std::string("heads ") + num(k * g) + "-" + num(k * g + g - 1) + " read kv head " + num(k);
    if (Hkv > 3) heads += ", ...";
    const int keys = t->start_pos + static_cast<int>(t->input_ids.size());
    return app.model_name + ": H = " + num(H) + " query heads share Hkv = " + num(Hkv) + " kv heads (" + heads +
           "). Per token: 2 x " + num(c.n_layer) + " x " + num(Hkv) + " x " + num(c.head_dim()) + " x 4 = " + num(bpt) +
           " bytes; one kv head per query head: " + num(mha) + " (" +
           ratio(static_cast<double>(mha), static_cast<double>(bpt)) + "). Now " + num(v.cache_rows) + " rows: " +
           num(v.cache_bytes) + " bytes counted by the engine (" + num(mha * v.cache_rows) + " with " + num(H) +
           " kv heads). This step computed " + num(t->counters.kv_rows_computed) + " K/V rows (L x Hkv) but " +
           num(t->counters.attn_scores) + " q.k scores (L x H x " + num(keys) +
           " keys): each query head keeps its attention; only K and V are shared. Nothing is rounded or dropped.";
}

std::string text_spec(const AppState& app) {
    const SpecView& sp = app.spec;
    if (!sp.on) return "Press Home: the chapter turns speculative mode on with the bundled draft model.";
    const kv::SpecCounters& k = sp.totals;
    const int p = static_cast<int>(sp.prompt_ids.size());
    const kv::ModelConfig& d = sp.draft_config;
    std::string s = "The draft " + sp.draft_name + " (" + num(d.n_layer) + " x " + num(d.n_head) + " heads) proposes k = " +
                    num(sp.k) + " tokens a round; the target " + app.model_name + " (" + num(app.model->config.n_layer) +
                    " x " + num(app.model->config.n_head) + ") checks them in one pass and keeps them up to the first "
                    "miss, plus its own token; rejected rows roll back in both caches.";
    if (k.rounds == 0) return s + " Press Space for a round.";
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", k.target_forwards_per_token());
    return s + " After " + num(k.rounds) + " rounds: " + num(k.accepted) + " of " + num(k.proposed) + " drafts accepted (" +
           pct(static_cast<float>(k.acceptance_rate())) + "); " + num(k.target_forwards) + " target passes for " +
           num(k.new_tokens) + " new tokens = " + b + " passes per token (plain: 1.00). Same text as the target "
           "alone: " + quoted(join_tokens(app, sp.tokens, p, 10)) + ".";
}

std::string text_next(const AppState& app) {
    const kv::ModelConfig& c = app.model->config;
    const int64_t bpt = bytes_per_token(c);
    return "This model's cache: " + num(bpt) + " bytes per token, " + num(app.main.cache_bytes) + " for " +
           num(app.main.cache_rows) + " tokens. Chapters 9-12 ran four ways to shrink it or use it better, live, with "
           "their bytes and measured error. Not in kvscope yet: paged caches (rows in blocks, a block table per request, "
           "a shared prompt prefix stored once).";
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

void lesson_tick(AppState& app) {
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
    switch (ch.number) {
    case 1: return text_tokens(app);
    case 2: return text_prefill(app);
    case 3: return text_decode(app);
    case 4: return text_cache_off(app);
    case 5: return text_work(app);
    case 6: return text_time(app);
    case 7: return text_memory(app);
    case 8: return text_stale(app);
    case 9: return text_window(app);
    case 10: return text_storage(app);
    case 11: return text_gqa(app);
    case 12: return text_spec(app);
    case 13: return text_next(app);
    default: return "";
    }
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
