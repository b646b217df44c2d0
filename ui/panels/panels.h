// The panels (one file each) and the pieces of view logic the tests check without a
// window: the layout, the keyboard map, the narration text and the work formulas.
// Each draw_*_panel draws the contents of the current ImGui window; draw_app makes
// the windows from compute_layout and calls them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/text/utf8.h"
#include "ui/state/app_state.h"
#include "ui/look/fonts.h"
#include "ui/state/layout.h"
#include "ui/state/spec_view.h"

struct ImFont;
typedef unsigned int ImU32;  // as imgui.h has it
struct ImGuiWindow;

namespace kvui {

// ---- layout (ui/state/layout.h: the rule, a pure function) ----------------------------
// Appends the fit (content against visible size, ImGui's own cursor extents) of w
// and of every child window drawn inside it this frame, children named name/child.
// The window's panels and the lesson's framed panel record theirs with it (tests).
void record_fits(std::vector<PanelFit>& out, const ImGuiWindow* w, const std::string& name, bool scrolls);
// The window's own: the heights its panels ask at a width (tokens and narration
// from their text, the others as measured when last drawn at that width).
PanelNeed panel_need(const AppState& app, PanelId p, float window_w);
// The tokens' chips and key, and the narration's text, at a content width (px).
float tokens_panel_height(const AppState& app, float content_w);
float narration_panel_height(const AppState& app, float content_w, bool big_font);
// Any narration (plain or speculative): its text and the line under it (may be empty),
// their height at a width, and drawn in the big font when all of it fits, else the
// regular one.
float narration_text_height(const std::string& text, const std::string& why, float content_w, bool big_font);
void draw_narration_text(const std::string& text, const std::string& why);
// The next-token panel's content with `bars` probability bars (and the "+ N more" line).
float next_token_panel_height(const AppState& app, int bars);

// ---- keyboard -------------------------------------------------------------
enum class KeyAction {
    none, step, back, toggle_cache, play, reset, font_up, font_down, help, screenshot, close, scaling, lesson,
    next_panel,     // Tab: bring the next panel forward (its tab, in a tabbed layout)
    prev_panel,     // Shift+Tab: the previous one
    show_panel_1,   // 1..6: bring that panel forward (show_panel_1 + n - 1)
    show_panel_6 = show_panel_1 + 5,
    focus_layout,   // F: the one-column focus layout on / off
    more_controls,  // M: all controls / the one-row controls
    serving,        // V: the serving view on / off
    mla_read        // A: an MLA model's read, expand <-> absorbed (set_mla_read)
};
// GLFW key code (GLFW_KEY_*) + Ctrl/Shift -> action. Plain keys only act without
// Ctrl; Shift only changes Tab.
KeyAction key_action(int glfw_key, bool ctrl, bool shift = false);
// The keys key_action knows, for polling with ImGui::IsKeyPressed(index).
const std::vector<int>& watched_keys();
// Applies one action to the app (pushes Commands, flips view flags).
void apply_key_action(AppState& app, KeyAction a);
// An MLA model's read of its latent rows (kv::MlaRead; key A, the policy control): the
// sessions get fresh caches of the main policy with that read, then run again the steps
// they had (the prompt is kept). Nothing when the model is not MLA or the read is the same.
void set_mla_read(AppState& app, kv::MlaRead m);
// Brings a panel forward: a tab group shows the member picked last (its first when none).
void pick_panel(ViewState& vs, PanelId p);
PanelId shown_panel(const ViewState& vs, const std::vector<PanelId>& group);


// ---- tokens panel -------------------------------------------------------------
// The main session's tokens grouped by the characters their bytes form (kv::group_pieces):
// GPT-2's "日" is one group of the two pieces <0xE6><0x97> and <0xA5>.
std::vector<kv::PieceGroup> token_groups(const AppState& app, const SessionView& v);
// Whether token i of v is the pending one: chosen by the latest step, not yet fed.
bool token_pending(const SessionView& v, int i);
// The badges under token i: how many times its K/V have been computed so far in the
// main session ("x6") and, in compare mode, in the other one ("|x1"); none (empty) on
// the pending token. Lesson point 1: "Python" x6 after six steps without the cache.
struct TokenBadges {
    std::string main, other;
};
TokenBadges token_badges(const AppState& app, int i);

// ---- narration --------------------------------------------------------------
// The latest step explained in plain words with its own numbers.
std::string narrate(const AppState& app);

// ---- work formulas (docs/design.md, "Counters") ---------------------------------
struct Work {
    double kv_rows = 0, attn_scores = 0, flops = 0;
    double get(WorkMetric m) const { return m == WorkMetric::kv_rows ? kv_rows : m == WorkMetric::attn_scores ? attn_scores : flops; }
};
// One step s (0 = prefill) for a prompt of p tokens, cache on or off, under a cache
// policy (core's kv::formula_step).
Work formula_step(const kv::ModelConfig& c, int p, int s, bool cache, const kv::CachePolicy& pol = {});
// Sum over steps 0..n_steps-1.
Work formula_total(const kv::ModelConfig& c, int p, int n_steps, bool cache, const kv::CachePolicy& pol = {});
// The cache's bytes are core's kv::cache_bytes_for (the one formula). Its factors as the
// memory panel and the lesson write them: "2x12x12x64x1024x4" (K and V x L x Hkv x hd x
// tokens x bytes), or for MLA "61x(512+64)x1024x2" (L x (d_c + d_R) x tokens x bytes).
std::string cache_formula_text(const kv::ModelConfig& c, int64_t tokens, kv::KvDtype t);
// The memory panel's rows: this model in f32, GPT-2 124M (f32) and Llama-3-8B (fp16).
struct MemoryRow {
    std::string name;
    kv::ModelConfig config;
    kv::KvDtype dtype = kv::KvDtype::f32;
};
std::vector<MemoryRow> memory_rows(const AppState& app);
std::string human_bytes(double b);
// What the Work chart draws: cumulative formula lines for both modes over `horizon`
// steps (at least 8, at most to n_ctx), and the measured cumulative series of each
// session (one point per step of its history).
struct WorkChart {
    int horizon = 0;
    std::vector<double> formula_cached, formula_uncached;  // (horizon)
    std::vector<double> measured_main, measured_other;     // (n_steps) of each view
    double ymax = 1.0;                                     // top of the y axis
};
WorkChart work_chart(const kv::ModelConfig& c, const SessionView& main, const SessionView* other, WorkMetric m);
// Mean ms of v's decode steps (0 when none): the prefill is the same work in both modes.
double decode_mean_ms(const SessionView& v);
std::vector<double> cumulative_work(const SessionView& v, WorkMetric m);
std::string human_count(double v);

// ---- cache panel: what it draws, computed without a window ---------------------
// One row of the cache view (row r = position r): the latest step's state of that
// row, its tag text and its label ("3 programming"). Under a window, rows the cache
// no longer holds are evicted (tag "evicted"); the first S rows are sinks (tag "sink",
// coloured by their state).
struct CacheRow {
    int row = 0;
    RowState state = RowState::empty;
    const char* tag = "";
    std::string label;
    bool sink = false;         // one of the policy's S sinks
    bool read_now = false;     // some query of the latest step read this key
    bool evicted_now = false;  // the latest step evicted it (it was read, then dropped)
};
// The rows of v's cache (none before the first step).
std::vector<CacheRow> cache_rows(const AppState& app, const SessionView& v);
// What hovering a presenter's one-line cache caption shows: the layer and kv head, the
// bytes now and at n_ctx, the tags' key.
std::string cache_tooltip(const AppState& app);
// Where the cache view draws: columns left to right are label, tag, K block, V block,
// attention weights. An MLA model's rows have one block, the latent [c_KV | k_R]
// (k_cols = d_c + d_R, v_cols = 0; ModelConfig::cache_k_width, cache_v_width). The presenter rule (docs/design.md, "The presenter rule"): every
// row is at least cache_row_min_h tall and carries its label (position and token) and
// its tag's word; rows share the height they get up to 1.3 font heights, and when
// even the minimum does not fit they scroll (the newest kept in view). The K/V
// captions under the rows take a line only when every row fits with it.
struct CacheGeometry {
    int n_rows = 0;
    int k_cols = 0, v_cols = 0;         // values of a row's K and V parts (hd and hd, or d_c + d_R and 0)
    float x0 = 0, y0 = 0;               // top left of the rows
    float row_h = 0, gap = 0;           // row height, gap under each row
    float label_scale = 1.f;            // row text height / font height
    bool captions = true;               // the "K" and "V" line under the rows
    bool scrolls = false;               // the rows are taller than the room they had
    float label_w = 0, tag_w = 0, cw = 0;  // column widths (cw: one K or V cell)
    float x_tag = 0, x_k = 0, x_v = 0, x_attn = 0, attn_w = 0;
    float rows_h() const { return n_rows * row_h; }
    float cells_end() const { return x_v + cw * v_cols; }  // right edge of the cells (the K block's without V)
};
// The least height of a cache row: 0.8 of the font, and never under 14 px (12 px text).
float cache_row_min_h(float font_px);
// attention: the attention column beside the rows (the speculative caches have none:
// their labels are whole and their cells take the rest).
CacheGeometry cache_geometry(float font_px, float x0, float y0, float avail_w, float avail_h, int rows, int k_cols,
                             int v_cols, float longest_label, bool attention = true);
// Where a row's label of height text_h goes: centred on the row at top y, kept inside
// the rows' block (labels taller than short rows would stick out above the first row
// and below the last, where a child window cuts them).
float row_label_y(const CacheGeometry& g, float y, float text_h);
// Rows that scroll keep the newest in view: true when the current (child) window's rows
// or height changed since its last frame (a step, a new layout), so it scrolls to the
// newest row then, and otherwise leaves the scroll to the user.
bool newest_changed(const CacheGeometry& g);
// Appends what the rows in the current (child) window drew this frame to app.cache_drawn.
void record_cache_drawn(AppState& app, const CacheGeometry& g, float font_px, int labelled);

// ---- the model: its field, its line, its weights ----------------------------
// What the model field shows while its edit buffer is empty: the model's name
// ("tiny-gpt", "random:gpt2-124m:0"), never its path; the tooltip has the path.
std::string model_field_hint(const AppState& app);
// What Load loads: the field's text, or (empty field) the loaded model again.
std::string model_to_load(const AppState& app);
// "tiny-gpt: 2 layers, 4 heads (4 kv), hd 16, ctx 64, weights f16 (held 2 bytes each)".
std::string model_line(const AppState& app);
// The loaded weights' bytes in their held type (kv::Weights::bytes, as export reports).
int64_t weight_bytes(const AppState& app);
// With f16/bf16 weights, the step's cost against f32 weights fed the same tokens
// (StepTrace::vs_f32, the numbers of `compare --weights T --json`'s "vs_f32"):
// "Cost of f16 weights vs f32 weights on the same tokens: max logit difference 0.0012,
// same top token." Empty when not measured (f32 weights, or a model too big to twin).
std::string vs_f32_sentence(const AppState& app, const kv::StepTrace& t);
// The Scaling tab's overlay of two weights' types: the measured decode-step ratio
// (mean ms with cache over the positions, f32 over f16/bf16) and why they differ.
double mean_ms(const std::vector<kv::SweepPoint>& pts, bool cached);  // -1: none measured
std::string weights_overlay_caption(const ScalingView& sv);
// Which curves a Scaling plot shows: both modes on one axis (one weights type), or,
// with the overlay, one mode for both types on its own axis, so the cached f32/f16
// gap is not flattened by the uncached line's scale. The axis top: 1.08x the largest
// value shown (0 when none is measured).
enum class SweepCurves { both, cached, uncached };
double sweep_plot_ymax(const ScalingView& sv, SweepCurves shown);
// The progress bar's text: "Loading gpt2-medium (bf16): 12/293 tensors, 210/710 MB".
std::string load_caption(const LoadView& v);

// ---- panels ---------------------------------------------------------------
void draw_controls_panel(AppState& app, bool folded = false);  // folded: one row and "More controls"
void draw_tokens_panel(AppState& app);
void draw_qkv_panel(AppState& app);
void draw_cache_panel(AppState& app);
void draw_work_panel(AppState& app);
void draw_scaling_panel(AppState& app);  // shares the Work area (a tab)
void draw_next_token_panel(AppState& app);
void draw_narration_panel(AppState& app);
void draw_memory_panel(AppState& app);
void draw_timeline_panel(AppState& app);
void draw_help_overlay(AppState& app);
// Attention weights drawn beside the cache rows (used by the cache panel): for the
// query rows of trace t, one cell per key row at the same y as that cache row.
// Keys the policy masks (outside the window, or evicted) are drawn as not read.
struct AttnGeometry {
    float x = 0, y0 = 0, row_h = 0, width = 0;
    kv::CachePolicy policy;
};
void draw_attention_beside(const AppState& app, const kv::StepTrace& t, int layer, int head, const AttnGeometry& g);
const char* attention_caption(const kv::StepTrace& t);

// ---- the serving view (ui/state/serve_view.h; serve_*.cpp) -----------------------------
// A request's colour in the grid, the strip and the list (distinguishable, 8 then repeating).
ImU32 request_color(int request, float alpha = 1.f);
std::string ms_text(double ms);  // "0.412" below 1 ms, else "12.35" (no unit)
// The serve_run Command for a request set, showing `shown` steps once it has run.
Command serve_command(const kv::ServePreset& setup, int shown);
// V: on (running the preset, "class" by default, unless a run is there and none is
// named) and off. serve_key_step: one recorded step forward or back.
void enter_serve(AppState& app, const std::string& preset = "");
void leave_serve(AppState& app);
void serve_key_step(AppState& app, bool forward);
void draw_serve_pool(AppState& app, bool legend);  // records app.serve_drawn
void draw_serve_table(AppState& app);
void draw_serve_strip(AppState& app);
void draw_serve_counters(AppState& app);
void draw_serve_requests(AppState& app, bool editable);
void draw_serve_view(AppState& app);  // the whole window (draw_app calls it while app.serve.on)

// The whole window for one frame: layout, windows, keyboard, play timer, overlays.
void draw_app(AppState& app);

// Heads-up: the animation phase 0..1 of the latest step (1 when settled).
float step_anim(const AppState& app, float seconds);

}  // namespace kvui
