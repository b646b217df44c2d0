// The lesson chapters' live text (ui/lesson/lesson_text.h): helpers that format the
// engine's numbers, then one function per chapter.
#include "ui/lesson/lesson_text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/engine/formulas.h"
#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "ui/lesson/lesson.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/panels/panels.h"

namespace kvui::lesson_text {

namespace {

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

// Bytes per cached token in f32: 2 x L x Hkv x hd x 4 (MLA: L x (d_c + d_R) x 4).
int64_t bytes_per_token(const kv::ModelConfig& c) { return kv::cache_bytes_for(c, kv::KvDtype::f32, 1); }

}  // namespace

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

namespace {

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

}  // namespace

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
    const int64_t gpt2 = kv::cache_bytes_for(kv::ModelConfig::gpt2_124m(), kv::KvDtype::f32, 1);
    const int64_t llama = kv::cache_bytes_for(kv::ModelConfig::llama3_8b(), kv::KvDtype::f16, 1);
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

namespace {

std::string g3(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3g", x);
    return b;
}

// Bytes of a full f32 cache (the textbook one) holding `rows` positions.

int64_t full_f32_bytes(const kv::ModelConfig& c, int64_t rows) { return kv::cache_bytes_for(c, kv::KvDtype::f32, rows); }

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

}  // namespace

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

namespace {

std::string storage_line(const AppState& app, const SessionView& v) {
    const kv::ModelConfig& c = app.model->config;
    const float e = rounding_error(v);
    std::string s = std::string(kv::dtype_name(v.policy.dtype)) + ": " + num(v.cache_bytes) + " bytes, " +
                    saved_text(v.cache_bytes, full_f32_bytes(c, v.cache_rows));
    if (e >= 0.f) s += ", values off by up to " + g3(e) + ";";
    return s + " " + price_text(app, v);
}

}  // namespace

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
    kv::ModelConfig one_per_head = c;  // the same model with a kv head per query head
    one_per_head.n_kv_head = H;
    const int64_t bpt = bytes_per_token(c), mha = bytes_per_token(one_per_head);
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

namespace {

// The serving chapters wait for their run (it is set up with the chapter).
const char* kNotRun = "The requests have not run yet: press Home.";

std::string bytes(int64_t b) { return human_bytes(double(b)); }

std::string pct0(double share) {
    char b[16];
    std::snprintf(b, sizeof b, "%.0f%%", share * 100.0);
    return b;
}

}  // namespace

std::string text_paged(const AppState& app) {
    const ServeView& v = app.serve;
    if (!v.step()) return kNotRun;
    const kv::ServeResult& r = v.run->result;
    const ContiguousStrip c = contiguous_strip(v);
    const ServeCounters k = serve_counters(v);
    return "After step " + num(v.shown) + " of " + num(v.n_steps()) + ": " + num(c.running) +
           " sequences in one pool of " + num(r.n_blocks) + " blocks of " + num(r.block_size) + " slots. Their " +
           num(v.step()->held_positions) + " positions take " + num(k.blocks.used) + " blocks (" + bytes(c.paged_bytes) +
           "), " + num(k.waste_slots) + " slots empty, at most " + num(r.block_size - 1) +
           " a sequence. Reserved contiguously (prompt + new tokens each, up front) they would take " +
           bytes(c.reserved_bytes) + ", " + bytes(c.used_bytes) + " used now (" + pct0(c.waste_share()) +
           " waste); the pool's " + bytes(c.pool_bytes) + " holds " + num(c.fit) + " of those reservations. Whole run: " +
           "paged peak " + bytes(r.peak_bytes) + ", contiguous " + bytes(r.contiguous.reserved_bytes) + ".";
}

std::string text_prefix(const AppState& app) {
    const ServeView& v = app.serve;
    const kv::PoolSnapshot* s = v.pool();
    if (!s) return kNotRun;
    const kv::PresetRequest& q = v.run->setup.requests.front();
    const int p = s->seqs.front().n_prompt, B = s->block_size;
    std::string shared, copied;
    int n_shared = 0, max_ref = 0;
    for (size_t b = 0; b < s->blocks.size(); ++b)
        if (s->blocks[b].ref_count > 1) {
            shared += (n_shared++ ? ", #" : "#") + num(int64_t(b));
            max_ref = std::max(max_ref, s->blocks[b].ref_count);
        }
    for (int b : s->copied) copied += (copied.empty() ? "#" : ", #") + num(b);
    const ServeCounters k = serve_counters(v);
    std::string t = quoted(q.prompt) + " (" + num(p) + " tokens), sampled " + num(q.fork) + " ways. After step " +
                    num(v.shown) + ", " + num(n_shared) + " block" + (n_shared == 1 ? "" : "s") + " (" + shared +
                    ") mapped by up to " + num(max_ref) + " tables: stored once. ";
    if (!copied.empty())
        t += "Each fork then wrote its first token into the shared, partial last block (" + num(p % B) + " of " +
             num(B) + " slots): " + num(k.copies) + " copies this step (" + copied +
             "), copy-on-write; the last writer kept the original. ";
    const int n_pos = s->seqs.front().n_pos;
    return t + "Blocks in use: " + num(k.blocks.used) + "; unshared, " + num(q.fork) + " x " + num(n_pos) +
           " positions would need " + num(int64_t(q.fork) * ((n_pos + B - 1) / B)) + ".";
}

namespace {

std::string per_s(double tokens_per_s) {
    char b[32];
    std::snprintf(b, sizeof b, "%.0f tokens/s", tokens_per_s);
    return b;
}

// "batch 1 27 tokens/s, batch 6 76 tokens/s: 2.8x"
std::string batch_pair(const kv::BatchPoint& one, const kv::BatchPoint& many) {
    return "batch 1 " + per_s(one.tokens_per_s) + ", batch " + num(many.size) + " " + per_s(many.tokens_per_s) + ": " +
           ratio(many.tokens_per_s, one.tokens_per_s);
}

}  // namespace

std::string text_batching(const AppState& app) {
    const ServeView& v = app.serve;
    if (!v.step()) return kNotRun;
    const ServeRun& r = *v.run;
    const ServeCounters k = serve_counters(v);
    std::string t = "Step " + num(v.shown) + " fed " + num(k.tokens) + " tokens of " + num(k.batch) +
                    " sequences in one forward (" + ms_text(k.ms) + " ms). A decode step reads every weight once, " +
                    "for 1 row or " + num(r.batch.size) + ". Measured, this model (" + bytes(r.weight_bytes) +
                    " of weights, in the processor's caches): " + batch_pair(r.single, r.batch) + ".";
    if (r.large_single.size > 0)
        t += " GPT-2's shape (" + bytes(r.large_weight_bytes) + " read from memory a step): " +
             batch_pair(r.large_single, r.large_batch) + ": decode there waits on memory, and the batch's rows " +
             "share the reads.";
    return t + " K and V are still read per sequence.";
}

namespace {

// The angle pair i of a RoPE head is turned by at position pos, in degrees mod 360
// (the engine's float product pos x inv_freq[i]).
std::string turn_degrees(int pos, float inv_freq) {
    const double a = std::fmod(static_cast<double>(static_cast<float>(pos) * inv_freq), 2.0 * M_PI);
    char b[32];
    std::snprintf(b, sizeof b, "%.1f deg", a * 180.0 / M_PI);
    return b;
}

// "logits move by up to 1.97, 'language' 87% -> 61%" (and the stale top token when it changed).
std::string shift_effect(const AppState& app, const kv::RopeShiftResult& r) {
    std::string t = "logits move by up to " + g3(r.max_abs_diff) + ", " + quoted(app.token_text(r.top_correct)) +
                    " " + pct(r.p_correct_top) + " -> " + pct(r.p_stale_of_correct_top);
    if (r.top_stale != r.top_correct) t += " and " + quoted(app.token_text(r.top_stale)) + " comes first";
    return t;
}

}  // namespace

std::string text_rope(const AppState& app) {
    const kv::ModelConfig& c = app.model->config;
    const kv::StepTrace* t = app.main.last();
    if (!c.is_llama() || !t) return "This chapter needs a RoPE model (the Llama family): press Home to load tiny-llama.";
    const int hd = c.head_dim(), half = hd / 2, pos = t->start_pos + static_cast<int>(t->input_ids.size()) - 1;
    const std::vector<float> inv = kv::rope_inv_freq(hd, c.rope);
    char theta[32];
    std::snprintf(theta, sizeof theta, "%g", c.rope.theta);
    std::string s = app.model_name + " has no position table: RoPE turns q and k by their position p, pair (i, i+" +
                    num(half) + ") by p x " + theta + "^(-2i/" + num(hd) + ") rad; " +
                    quoted(app.token_text(t->input_ids.back())) + " at position " + num(pos) + ": pair 0 turned " +
                    turn_degrees(pos, inv.front()) + ", pair " + num(half - 1) + " " + turn_degrees(pos, inv.back()) +
                    ". The cache keeps the turned k, so q.k depends only on how far apart two tokens are: a cached "
                    "key belongs to its position. ";
    const RopeShiftView& rv = app.vs.lesson.rope;
    if (rv.valid() && rv.model == app.model && static_cast<int>(rv.ids.size()) == pos + 1)
        s += "Measured: these " + num(pos) + " cached keys reused one position late, not turned again: " +
             shift_effect(app, rv.r) + ". ";
    return s + "Turned once more they are exact again (angles add). Per token: 2 x " + num(c.n_layer) + " x " +
           num(c.n_kv_head) + " x " + num(hd) + " x 4 = " + num(bytes_per_token(c)) + " bytes.";
}

namespace {

// "tiny-llama caches 2 kv heads x (K 16 + V 16) = 64: 0.50x" against the first bundled
// grouped-query model of the table.
std::string latent_ratio(const kv::ModelConfig& c, const std::vector<CacheShape>& rows) {
    for (const CacheShape& r : rows) {
        if (!r.bundled || r.config.is_mla() || r.config.n_kv_head == r.config.n_head) continue;
        const kv::ModelConfig& g = r.config;
        char b[32];
        std::snprintf(b, sizeof b, "%.2fx", double(c.cache_row_values()) / g.cache_row_values());
        return "; " + r.name + " " + num(g.n_kv_head) + " kv heads x (K " + num(g.head_dim()) + " + V " +
               num(g.head_dim()) + ") = " + num(g.cache_row_values()) + ": " + b;
    }
    return "";
}

// The measured FLOPs of the two reads at the latest step both ran, and what one more
// cached row adds to a step (the difference of the last two steps).
std::string reads_text(const AppState& app, const MlaReads& m) {
    const size_t n = std::min(m.expand.size(), m.absorbed.size()) - 1;
    std::string s = " The same cache, read expanded (left) and absorbed (right). Step " + num(int64_t(n)) + ": " +
                    num(m.expand[n]) + " FLOPs expanded, " + num(m.absorbed[n]) + " absorbed";
    if (n >= 2)
        s += "; one more cached row adds " + num(m.expand[n] - m.expand[n - 1]) + " a step expanded (each row " +
             "turned into " + num(app.model->config.n_head) + " heads' K and V again) and " +
             num(m.absorbed[n] - m.absorbed[n - 1]) + " absorbed";
    return s + ".";
}

}  // namespace

std::string text_mla(const AppState& app) {
    const kv::ModelConfig& c = app.model->config;
    if (!c.is_mla()) return "This chapter needs an MLA model: press Home to load tiny-mla.";
    const std::vector<CacheShape> rows = cache_shapes(app);
    std::string s = app.model_name + " caches one latent row per token and layer for all " + num(c.n_head) +
                    " heads: c_KV (" + num(c.mla.kv_lora_rank) + ") + rotated k_R (" + num(c.mla.qk_rope_head_dim) +
                    ") = " + num(c.cache_row_values()) + " values" + latent_ratio(c, rows) + " (the table: bytes per token).";
    MlaReads m;
    if (!mla_reads(app, m) || m.expand.empty() || m.absorbed.empty())
        return s + " Press Home: the chapter reads the cache both ways and steps.";
    s += reads_text(app, m);
    const SessionView& absorbed = app.main.policy.mla == kv::MlaRead::absorbed ? app.main : app.other;
    return s + " Absorbed vs expanded: " + price_text(app, absorbed) + ".";
}

std::string text_next(const AppState& app) {
    const kv::ModelConfig& c = app.model->config;
    const int64_t bpt = bytes_per_token(c);
    return "This model's cache: " + num(bpt) + " bytes per token, " + num(app.main.cache_bytes) + " for " +
           num(app.main.cache_rows) + " tokens. Chapters 9-12 shrank it or used it better, live, with bytes and "
           "measured error; 13-15 served many requests from one paged pool (prefixes stored once, copy on write, "
           "batches); 16 bound RoPE's keys to their positions.";
}

}  // namespace kvui::lesson_text
