// Lesson mode on screen: the chapter's text across the top (title, plain words with
// the engine's numbers, what to look at, the keys), then the chapter's two or three
// panels large, the one to look at framed. Two panels only the lesson has live here
// too: the stale-cache comparison (chapter 8) and where caches go next (chapter 13).
// The framed panel's fit (its content extents against its visible region, itself
// and its child windows) is recorded in app.fits every frame for the tests.
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/engine/formulas.h"
#include "core/engine/kv_cache.h"
#include "core/model/model_io.h"
#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/lesson/lesson.h"
#include "ui/panels/panels.h"
#include "ui/state/spec_view.h"
#include "ui/look/theme.h"

namespace kvui {

LessonLayout compute_lesson_layout(float W, float H, float font_px, float text_h, const Chapter& ch) {
    LessonLayout L;
    W = std::max(W, 200.f);
    H = std::max(H, 200.f);
    const float gap = 4.f;
    const float line = font_px * 1.45f;
    float th = text_h > 0 ? text_h : 7 * line;
    th = std::clamp(th, std::min(3 * line, H * 0.45f), H * 0.45f);
    L.text = {gap, gap, W - 2 * gap, th};
    const float y0 = gap + th + gap;
    const float A = std::max(line, H - y0 - gap);
    // Few lines on screen (a big font on a small window): only the framed panel,
    // full size, rather than every panel too small to read.
    const bool compact = H / font_px < 30.f || W / font_px < 48.f;
    const int n = compact ? 1 : static_cast<int>(ch.panels.size());
    if (n <= 1) {
        L.panels.push_back({gap, y0, W - 2 * gap, A});
        return L;
    }
    if (ch.arrangement == LessonArrangement::columns) {
        const float fw = std::floor((W - 3 * gap) * ch.focus_share);
        L.panels.push_back({gap, y0, fw, A});
        const float x = 2 * gap + fw, w = W - 3 * gap - fw;
        const float h = (A - (n - 2) * gap) / (n - 1);
        for (int i = 1; i < n; ++i) L.panels.push_back({x, y0 + (i - 1) * (h + gap), w, h});
    } else {
        const float fh = std::floor((A - gap) * ch.focus_share);
        L.panels.push_back({gap, y0, W - 2 * gap, fh});
        const float y = y0 + fh + gap, h = A - fh - gap;
        const float w = (W - 2 * gap - (n - 2) * gap) / (n - 1);
        for (int i = 1; i < n; ++i) L.panels.push_back({gap + (i - 1) * (w + gap), y, w, h});
    }
    return L;
}

namespace {

constexpr ImGuiWindowFlags kFlags = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse |
                                    ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;

void draw_stale_column(const AppState& app, const SessionView& v, bool bug) {
    const Palette& pal = palette();
    const int p = static_cast<int>(v.prompt_ids.size());
    const int z = static_cast<int>(v.stale_ids.size());
    ImGui::PushFont(big_font());
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(bug ? pal.bad : pal.good));
    text_wrapped("%s", bug ? "BUG: the stale cache kept" : "Clean: cache reset first");
    ImGui::PopStyleColor();
    ImGui::PopFont();
    if (bug) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.bad));
        text_wrapped("cache rows 0-%d: stale, from '%s'", z - 1, join_tokens(app, v.stale_ids, 0, 10).c_str());
        ImGui::PopStyleColor();
    } else {
        ImGui::TextColored(to_vec4(pal.text_dim), "cache: empty before the prompt");
    }
    text_wrapped("prompt at positions %d-%d: '%s'", z, z + p - 1, join_tokens(app, v.prompt_ids).c_str());
    ImGui::PushFont(big_font());
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(bug ? pal.bad : pal.accent));
    text_wrapped("-> %s", v.tokens.size() > static_cast<size_t>(p) ? join_tokens(app, v.tokens, p).c_str() : "(step)");
    ImGui::PopStyleColor();
    ImGui::PopFont();
    if (const kv::StepTrace* t = v.history.empty() ? nullptr : v.history.front().get()) {
        float prob = 0.f;
        for (const kv::TopToken& tt : t->top)
            if (tt.id == t->next_id) prob = tt.prob;
        text_wrapped("first guess '%s' (%.0f%%); cache %lld rows", app.token_text(t->next_id).c_str(), prob * 100.f,
                           static_cast<long long>(v.cache_rows));
    }
}

void draw_stale_panel(AppState& app) {
    if (!app.stale_demo || !app.other.valid) {
        text_wrapped("The demonstration is not set up: press Home.");
        return;
    }
    if (!ImGui::BeginTable("##stale", 2, ImGuiTableFlags_BordersInnerV)) return;
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    draw_stale_column(app, app.main, false);
    ImGui::TableNextColumn();
    draw_stale_column(app, app.other, true);
    ImGui::EndTable();
}

// The paged cache's row: the class preset's contiguous reservation against the
// paged peak, when it has run (chapter 13 or the serving view).
std::string paged_row(const AppState& app) {
    const ServeRun* r = app.serve.run.get();
    if (!r || r->setup.name != "class") return "a shared prompt stored once (chapter 13)";
    return "6 requests: contiguous " + human_bytes(double(r->result.contiguous.reserved_bytes)) + ", paged peak " +
           human_bytes(double(r->result.peak_bytes));
}

// The batching chapter's picture: measured decode speed of one sequence and of the
// run's largest batch, as bars, for the lesson's model and (when measured) a model of
// GPT-2's shape; each pair on its own scale.
void draw_batch_pair(const char* model, const kv::BatchPoint& one, const kv::BatchPoint& many, int64_t weight_bytes) {
    const Palette& pal = palette();
    const float f = ImGui::GetFontSize(), w = ImGui::GetContentRegionAvail().x;
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.accent));
    text_wrapped("%s: %s of weights a step", model, human_bytes(double(weight_bytes)).c_str());
    ImGui::PopStyleColor();
    const double top = std::max(one.tokens_per_s, many.tokens_per_s);
    for (const kv::BatchPoint* p : {&one, &many}) {
        text_wrapped("batch %d: %.0f tokens/s, %s ms a step", p->size, p->tokens_per_s, ms_text(p->ms_per_step).c_str());
        const ImVec2 o = ImGui::GetCursorScreenPos();
        const float bw = top > 0 ? float(p->tokens_per_s / top) * w : 0.f;
        ImGui::GetWindowDrawList()->AddRectFilled(o, ImVec2(o.x + bw, o.y + f * 0.6f), p == &one ? pal.text_dim : pal.accent);
        ImGui::Dummy(ImVec2(w, f * 0.6f));
    }
}

void draw_next_steps_panel(AppState& app) {
    if (!app.model) return;
    const Palette& pal = palette();
    const kv::ModelConfig& c = app.model->config;
    const int64_t bpt = kv::cache_bytes_for(c, kv::KvDtype::f32, 1);
    const int64_t f16 = kv::cache_bytes_for(c, kv::KvDtype::f16, 1), int8 = kv::cache_bytes_for(c, kv::KvDtype::int8, 1);
    kv::ModelConfig halved = c;  // half the kv heads (grouped-query attention)
    halved.n_kv_head = std::max(1, c.n_kv_head / 2);
    const int64_t grouped = kv::cache_bytes_for(halved, kv::KvDtype::f32, 1);
    const kv::CachePolicy& win = lesson_chapter(9).setup.mode.policy;  // the policy chapter 9 runs
    const int kept = static_cast<int>(kv::rows_kept(win, c.n_ctx));
    struct Row {
        std::string name, idea, here;
    };
    const std::vector<Row> rows = {
        {"9  Sliding window + sinks", "keep the last W rows and the first S 'sink' rows",
         "W " + std::to_string(win.window) + " + S " + std::to_string(win.sinks) + ": at most " + std::to_string(kept) +
             " rows, " + human_bytes(static_cast<double>(bpt) * kept) + " instead of " +
             human_bytes(static_cast<double>(bpt) * c.n_ctx) + " at n_ctx"},
        {"10  f16 / int8 storage", "store each value in 2 bytes, or 1 byte plus a scale per row",
         std::to_string(f16) + " / " + std::to_string(int8) + " bytes per token (f32: " +
             std::to_string(bpt) + ")"},
        {"11  Grouped-query attention", "several query heads share one kv head",
         "half the kv heads: " + std::to_string(grouped) + " bytes per token"},
        {"12  Speculative decoding", "a small model drafts k tokens, the big one checks them in one pass, "
                                     "rejected rows roll back",
         "same cache, fewer passes of the big model"},
        {"13-15  Paged cache", "blocks of one pool; shared prefixes; batches", paged_row(app)},
        {"16  RoPE", "keys kept turned for their position", c.is_llama() ? "yes" : "no (GPT-2)"},
    };
    if (!ImGui::BeginTable("##next", 3, ImGuiTableFlags_BordersInnerH | ImGuiTableFlags_RowBg)) return;
    ImGui::TableSetupColumn("chapter  idea", ImGuiTableColumnFlags_WidthStretch, 1.f);
    ImGui::TableSetupColumn("what it does", ImGuiTableColumnFlags_WidthStretch, 1.5f);
    ImGui::TableSetupColumn("for this model", ImGuiTableColumnFlags_WidthStretch, 1.3f);
    ImGui::TableHeadersRow();
    for (const Row& r : rows) {
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.accent));
        text_wrapped("%s", r.name.c_str());
        ImGui::PopStyleColor();
        ImGui::TableNextColumn();
        text_wrapped("%s", r.idea.c_str());
        ImGui::TableNextColumn();
        text_wrapped("%s", r.here.c_str());
    }
    ImGui::EndTable();
}

// The MLA chapter's table: each cache's kind and bytes per token, f32 and 16-bit.
void draw_cache_shapes(const AppState& app) {
    const Palette& pal = palette();
    const std::vector<CacheShape> rows = cache_shapes(app);
    if (!ImGui::BeginTable("##shapes", 4, ImGuiTableFlags_BordersInnerH | ImGuiTableFlags_RowBg)) return;
    ImGui::TableSetupColumn("model", ImGuiTableColumnFlags_WidthStretch, 1.6f);
    ImGui::TableSetupColumn("cache", ImGuiTableColumnFlags_WidthStretch, 0.9f);
    ImGui::TableSetupColumn("f32 / token", ImGuiTableColumnFlags_WidthStretch, 1.2f);
    ImGui::TableSetupColumn("16-bit", ImGuiTableColumnFlags_WidthStretch, 1.f);
    ImGui::TableHeadersRow();
    for (const CacheShape& r : rows) {
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(r.config.is_mla() ? pal.accent : pal.text));
        text_wrapped("%s", r.name.c_str());
        ImGui::PopStyleColor();
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("%s a token: %s", r.name.c_str(), cache_formula_text(r.config, 1, kv::KvDtype::f16).c_str());
        ImGui::TableNextColumn();
        text_wrapped("%s", r.kind.c_str());
        ImGui::TableNextColumn();
        text_wrapped("%s", human_bytes(double(r.bytes_f32)).c_str());
        ImGui::TableNextColumn();
        text_wrapped("%s", human_bytes(double(r.bytes_16)).c_str());
    }
    ImGui::EndTable();
}

// Measured FLOPs of each decode step, expanded and absorbed side by side, on one scale.
void draw_read_flops(const MlaReads& m, float h) {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize(), W = ImGui::GetContentRegionAvail().x;
    const size_t n = std::min(m.expand.size(), m.absorbed.size());
    double top = 1;
    for (size_t s = 1; s < n; ++s) top = std::max({top, double(m.expand[s]), double(m.absorbed[s])});
    const ImVec2 o = ImGui::GetCursorScreenPos();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float slot = n > 1 ? W / float(n - 1) : W, bw = std::max(1.f, slot * 0.36f);
    for (size_t s = 1; s < n; ++s) {
        const float x = o.x + float(s - 1) * slot + slot * 0.1f;
        const float he = float(double(m.expand[s]) / top) * h, ha = float(double(m.absorbed[s]) / top) * h;
        dl->AddRectFilled(ImVec2(x, o.y + h - he), ImVec2(x + bw, o.y + h), pal.uncached_line);
        dl->AddRectFilled(ImVec2(x + bw, o.y + h - ha), ImVec2(x + 2 * bw, o.y + h), pal.cached_line);
    }
    dl->AddText(ImVec2(o.x, o.y), pal.text_dim, (human_count(top) + " FLOPs").c_str());
    ImGui::Dummy(ImVec2(W, h + fs * 0.2f));
    color_key(pal.uncached_line, "expand");
    ImGui::SameLine();
    color_key(pal.cached_line, "absorbed");
    ImGui::SameLine();
    ImGui::TextColored(to_vec4(pal.text_dim), "decode steps 1-%d", int(n) - 1);
}

// The bars' caption, the bars in the height left, their key.
void draw_reads_block(const MlaReads& m) {
    text_wrapped("Measured FLOPs per step, the same cache read two ways:");
    const float key_h = ImGui::GetFrameHeightWithSpacing();
    draw_read_flops(m, std::max(ImGui::GetFontSize() * 2.5f, ImGui::GetContentRegionAvail().y - key_h - 4.f));
}

// The table, then the bars under it; side by side when the panel is 40 fonts wide (a
// projector's font, where the lesson shows this panel alone).
void draw_mla_panel(AppState& app) {
    if (!app.model) return;
    MlaReads m;
    const bool reads = mla_reads(app, m) && std::min(m.expand.size(), m.absorbed.size()) >= 2;
    const float fs = ImGui::GetFontSize(), W = ImGui::GetContentRegionAvail().x;
    if (reads && W >= fs * 40) {
        ImGui::BeginChild("shapes", ImVec2(std::floor(W * 0.55f), 0), false);
        draw_cache_shapes(app);
        ImGui::EndChild();
        ImGui::SameLine();
        ImGui::BeginChild("reads", ImVec2(0, 0), false);
        draw_reads_block(m);
        ImGui::EndChild();
        return;
    }
    draw_cache_shapes(app);
    if (reads) draw_reads_block(m);
}

void draw_serve_batch(AppState& app) {
    if (!app.serve.run) {
        text_wrapped("Not measured yet: press Home.");
        return;
    }
    const ServeRun& r = *app.serve.run;
    draw_batch_pair("This model", r.single, r.batch, r.weight_bytes);
    if (r.large_single.size > 0) draw_batch_pair("GPT-2's shape", r.large_single, r.large_batch,
                                                 r.large_weight_bytes);
}

void draw_panel(AppState& app, LessonPanel p) {
    switch (p) {
    case LessonPanel::tokens: draw_tokens_panel(app); break;
    case LessonPanel::qkv: draw_qkv_panel(app); break;
    case LessonPanel::cache: draw_cache_panel(app); break;
    case LessonPanel::work: draw_work_panel(app); break;
    case LessonPanel::scaling: draw_scaling_panel(app); break;
    case LessonPanel::next_token: draw_next_token_panel(app); break;
    case LessonPanel::memory: draw_memory_panel(app); break;
    case LessonPanel::narration: draw_narration_panel(app); break;
    case LessonPanel::timeline: draw_timeline_panel(app); break;
    case LessonPanel::stale: draw_stale_panel(app); break;
    case LessonPanel::next_steps: draw_next_steps_panel(app); break;
    case LessonPanel::spec_tokens: draw_spec_tokens_panel(app); break;
    case LessonPanel::spec_cache: draw_spec_cache_panel(app); break;
    case LessonPanel::spec_work: draw_spec_work(app); break;
    case LessonPanel::serve_pool: draw_serve_pool(app, true); break;
    case LessonPanel::serve_strip: draw_serve_strip(app); break;
    case LessonPanel::serve_counters: draw_serve_counters(app); break;
    case LessonPanel::serve_table: draw_serve_table(app); break;
    case LessonPanel::serve_batch: draw_serve_batch(app); break;
    case LessonPanel::mla: draw_mla_panel(app); break;
    }
}

bool nav_button(const char* label, bool enabled) {
    ImGui::BeginDisabled(!enabled);
    const bool pressed = ImGui::Button(label);
    ImGui::EndDisabled();
    return pressed;
}

void draw_text(AppState& app, const Chapter& ch, bool compact) {
    const Palette& pal = palette();
    const int n = lesson_chapter_count();
    ImGui::BeginDisabled(app.busy);
    if (nav_button("< Back (PgUp)", ch.number > 1)) goto_chapter(app, ch.number - 1);
    ImGui::SameLine();
    if (nav_button("Next (PgDn) >", ch.number < n)) goto_chapter(app, ch.number + 1);
    ImGui::SameLine();
    if (ImGui::Button("Again (Home)")) goto_chapter(app, ch.number);
    ImGui::EndDisabled();
    ImGui::SameLine();
    if (ImGui::Button("Leave (Esc)")) leave_lesson(app);
    // The keys beside the buttons when they fit on the line (Help, F1, lists them all).
    ImGui::SameLine();
    const float room = ImGui::GetContentRegionAvail().x;
    const char* keys = lesson_keys_text();
    if (ImGui::CalcTextSize(keys).x > room) keys = "Space: step";
    if (ImGui::CalcTextSize(keys).x > room) keys = "";
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.text_dim));
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted(keys);
    ImGui::PopStyleColor();
    ImGui::PushFont(big_font());
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.accent));
    text_wrapped("%d/%d  %s", ch.number, n, ch.title.c_str());
    ImGui::PopStyleColor();
    ImGui::PopFont();
    text_wrapped("%s", chapter_text(ch, app).c_str());
    if (!compact) {  // compact: the framed panel is the only one, its title says LOOK HERE
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.accent));
        text_wrapped("Look at the framed panel: %s.", ch.look_at.c_str());
        ImGui::PopStyleColor();
    }
    if (!app.error.empty()) ImGui::TextColored(to_vec4(pal.bad), "Error: %s", app.error.c_str());
}

}  // namespace

void draw_lesson(AppState& app) {
    const Chapter& ch = lesson_chapter(app.vs.lesson.chapter);
    const ImGuiIO& io = ImGui::GetIO();
    const ImGuiStyle& st = ImGui::GetStyle();
    const LessonLayout L = compute_lesson_layout(io.DisplaySize.x, io.DisplaySize.y, ImGui::GetFontSize(),
                                                 app.vs.lesson.text_h, ch);
    ImGui::SetNextWindowPos(ImVec2(L.text.x, L.text.y));
    ImGui::SetNextWindowSize(ImVec2(L.text.w, L.text.h));
    if (ImGui::Begin("##lesson_text", nullptr, kFlags | ImGuiWindowFlags_NoTitleBar)) {
        draw_text(app, ch, L.panels.size() < ch.panels.size());
        app.vs.lesson.text_h = ImGui::GetCursorPosY() - ImGui::GetScrollY() + st.WindowPadding.y;
    }
    ImGui::End();
    app.fits.clear();
    app.cache_drawn.clear();
    for (size_t i = 0; i < ch.panels.size() && i < L.panels.size(); ++i) {
        const Rect& r = L.panels[i];
        const bool focus = i == 0;
        char title[160];
        std::snprintf(title, sizeof title, "%s%s###lesson_panel%zu", focus ? "LOOK HERE: " : "",
                      lesson_panel_title(ch.panels[i]), i);
        ImGui::SetNextWindowPos(ImVec2(r.x, r.y));
        ImGui::SetNextWindowSize(ImVec2(r.w, r.h));
        if (ImGui::Begin(title, nullptr, kFlags)) {
            draw_panel(app, ch.panels[i]);
            if (focus) record_fits(app.fits, ImGui::GetCurrentWindow(), ImGui::GetCurrentWindow()->Name, false);
        }
        ImGui::End();
        if (focus) {
            const float t = std::max(3.f, ImGui::GetFontSize() * 0.18f);
            ImGui::GetForegroundDrawList()->AddRect(ImVec2(r.x + t * 0.5f, r.y + t * 0.5f),
                                                    ImVec2(r.x + r.w - t * 0.5f, r.y + r.h - t * 0.5f),
                                                    palette().accent, st.WindowRounding, 0, t);
        }
    }
}

}  // namespace kvui
