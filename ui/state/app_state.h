// The visualizer's state: what the panels draw (SessionView, a copy of a Session
// taken while no step runs), what the teacher selected (ViewState), and the commands
// a panel may issue. Panels never touch a kv::Session: they read views and push
// Commands; the Controller (ui/runtime/controller.h) runs them, on a worker thread for heavy
// models, and publishes fresh views when done.
// Notation: p prompt tokens, s step (0 = prefill), n tokens processed this step,
// hd head_dim, L layers, H heads, Hkv kv heads.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/session/bench.h"
#include "core/model/config.h"
#include "core/session/rope_shift.h"
#include "core/session/session.h"
#include "core/engine/trace.h"
#include "ui/state/layout.h"
#include "ui/state/load_view.h"
#include "ui/state/serve_view.h"
#include "ui/state/spec_view.h"

namespace kv {
struct Model;
}

namespace kvui {

// A snapshot of one Session, safe to read from the UI thread while a worker runs.
struct SessionView {
    bool valid = false;
    bool cache_on = true;
    std::vector<int> prompt_ids;
    std::vector<int> tokens;                              // prompt + chosen tokens
    std::vector<std::shared_ptr<const kv::StepTrace>> history;
    std::vector<int> compute_counts;                      // per token of `tokens`
    std::vector<int> stale_ids;                           // stale rows before the prompt (the bug, chapter 8)
    kv::Counters totals;
    bool can_step = false;
    std::string why_not;                                  // when !can_step
    int cache_rows = 0;                                   // rows the cache holds (its used cells)
    int64_t cache_bytes = 0;
    kv::CachePolicy policy;
    int cache_positions = 0;                              // positions that entered: [0, cache_positions)
    std::vector<int> slot_pos;                            // the cache's cells: slot -> position (-1 free)
    std::vector<bool> held;                               // (cache_positions) position held by the cache
    int cache_layer = 0, cache_kv_head = 0;               // what cache_k/v hold
    // (cache_positions, cache_k_width / cache_v_width) stored, as f32; 0 if not held. For
    // MLA, cache_k holds the latent rows [c_KV | k_R] (d_c + d_R) and cache_v is (n, 0).
    kv::RowMat cache_k, cache_v;
    kv::RowMat cache_k_f32, cache_v_f32;                  // same, the f32 rows f16/int8 rounded (empty: f32)

    const kv::StepTrace* last() const { return history.empty() ? nullptr : history.back().get(); }
    int n_steps() const { return static_cast<int>(history.size()); }
};

// How a cache row was obtained in the latest step; evicted: the cache's policy dropped
// it (this step or earlier), so no later query can read it.
enum class RowState { empty, read, computed, recomputed, evicted };
const char* row_state_name(RowState s);
RowState row_state(const kv::StepTrace& t, int row);

enum class CommandKind {
    step, back, back_to, reset, set_cache, set_compare, set_prompt, load_model,
    set_sampling, set_selection, refresh_cache, set_policy, set_other_policy,
    set_speculative,  // flag: on/off; text: the draft SPEC ("" = default); n: k
    set_stale_demo,   // flag: on/off; text: the first prompt; n: its steps (lesson chapter 8)
    set_weights,      // n: -1 as stored, else int(kv::WeightType); reloads the model in that type
    serve_run         // serve: the request set; n: steps to show; flag: measure the large model too (the serving view)
};

struct Command {
    Command() = default;
    Command(CommandKind k) : kind(k) {}  // NOLINT: {CommandKind::step} reads well
    CommandKind kind = CommandKind::step;
    bool flag = false;       // set_cache, set_compare, set_speculative, set_stale_demo; set_other_policy: own policy (else the other cache mode)
    int n = 0;               // back_to: steps to keep; set_selection: layer; set_speculative: k; set_stale_demo: first steps
    int m = 0;               // set_selection: head
    std::string text;        // set_prompt, load_model, set_speculative (draft), set_stale_demo (first prompt)
    kv::SamplingOptions sampling;
    kv::CachePolicy policy;  // set_policy, set_other_policy
    std::shared_ptr<const kv::ServePreset> serve;  // serve_run
};

enum class WorkMetric { kv_rows, attn_scores, flops };

// The Scaling panel's sweep (kv::run_sweep on its own thread, see ui/runtime/sweep_runner.h):
// a snapshot the UI reads, copied from the runner by Controller::poll.
enum class SweepState { idle, running, done, cancelled, failed };
const char* sweep_state_name(SweepState s);

struct ScalingView {
    SweepState state = SweepState::idle;
    float progress = 0.f;                 // 0..1, work-weighted
    std::vector<kv::SweepPoint> points;   // measured so far, by position (ms_* -1: not yet)
    int max_pos = 0, stride = 1;          // of the sweep these points belong to
    double seconds = 0.0;                 // wall time so far
    std::string error;                    // when failed
    // The model's weights' type and bytes for `points`; with the overlay, the same sweep
    // again on a copy held in the other type (f16 for f32 weights, else f32).
    kv::WeightType weights = kv::WeightType::f32;
    int64_t weight_bytes = 0;
    bool overlay = false;
    kv::WeightType other_weights = kv::WeightType::f16;
    int64_t other_weight_bytes = 0;       // of the copy the second sweep ran on
    std::vector<kv::SweepPoint> other_points;
};

// What the Scaling panel asks the controller to do this frame.
enum class SweepRequest { none, start, cancel };

// The sessions' mode a lesson chapter sets up, or the normal layout's that leaving the
// lesson restores: model, cache policy, compare, cache on/off, speculative mode.
struct LessonMode {
    std::string model_spec;                       // "" = the model the lesson was entered with
    kv::CachePolicy policy;                       // main session's (and compare's unless other_policy)
    bool compare = false;
    std::optional<kv::CachePolicy> other_policy;  // compare: the second session's own policy
    bool cache_on = true;
    bool speculative = false;
    std::string draft;                            // speculative: the draft SPEC ("" = the default)
    int draft_k = 4;
};

// The RoPE chapter's measurement: the main session's processed tokens, and what reusing
// their cached keys one position late does to the next token (lesson_tick refreshes it).
struct RopeShiftView {
    const void* model = nullptr;  // the model it was measured on
    std::vector<int> ids;         // the tokens it was measured on (prompt + fed tokens)
    kv::RopeShiftResult r;        // shift 1
    bool valid() const { return !r.correct.empty(); }
};

// Lesson mode (ui/lesson/lesson.h): which chapter, and what leaving restores.
struct LessonState {
    bool on = false;
    int chapter = 1;                 // 1-based
    float text_h = 0.f;              // the chapter text's height, measured each frame
    bool saved_scaling = false;      // the normal layout's choices, restored on leaving
    WorkMetric saved_metric = WorkMetric::kv_rows;
    LessonMode saved;                // the normal layout's mode (saved.model_spec: its model)
    // A setup waiting to be pushed (lesson_tick): a chapter number, kRestore (leaving),
    // or 0. A setup that needs another model asks for it first (load_model, which may
    // complete later) and pushes the rest once app.model_spec is that model.
    static constexpr int kRestore = -1;
    int setup = 0;
    bool load_asked = false;         // the setup's load_model was pushed
    RopeShiftView rope;              // the RoPE chapter's measurement
    // The MLA chapter's table: the bundled models it compares (tiny-gpt, tiny-llama,
    // tiny-mla) by name, their config.json read once when the chapter opens (lesson_tick).
    std::vector<std::pair<std::string, kv::ModelConfig>> bundled_shapes;
};

// What one cache picture drew this frame (the cache panel, each side in compare mode,
// the speculative caches), from its own geometry: tests hold it to the presenter rule
// (docs/design.md): rows at least 0.8 font heights, each labelled, the newest in view.
struct CacheDrawn {
    std::string name;
    float font_px = 0, row_h = 0, label_px = 0;  // the label's text height
    int rows = 0, labelled = 0;   // rows drawn; rows whose label (position and token) was drawn
    int in_view = 0;              // rows wholly inside the visible region
    bool newest_in_view = false;
};

// How a panel's content compares with the room it has (pixels), measured from
// ImGui's own cursor extents at the end of the frame: the lesson records it for the
// framed panel and its child windows; tests read it.
struct PanelFit {
    std::string name;
    float content_w = 0, content_h = 0;  // what the items reached
    float visible_w = 0, visible_h = 0;  // the window's content region
    bool scrolls = false;                // the layout let it scroll on purpose (content asks more than fits)
    bool fits(float slack = 1.f) const { return content_w <= visible_w + slack && content_h <= visible_h + slack; }
};

// The normal layout (ui/state/layout.h): what the teacher chose and what the window
// measured for the next frame's layout. Indices are PanelId values.
struct LayoutChoice {
    std::array<unsigned, kPanelCount> picked{};  // when each panel was last picked: a tab group shows its latest
    unsigned pick_seq = 0;
    bool pick_pending = false;       // a key picked a panel: the tab bars follow it
    bool force_focus = false;        // F: one column, one large tabbed slot
    bool controls_expanded = false;  // M / "More": all the controls even when they fold
    float controls_full_h = 0.f, controls_compact_h = 0.f;  // measured content heights of both forms
    struct Measured {
        float w = 0;                 // window width it was drawn at
        PanelNeed need;              // window heights its content asked
    };
    std::array<std::vector<Measured>, kPanelCount> measured;
    std::vector<Measured> measured_scaling;  // the Work slot while it shows the Scaling tab
    size_t measured_key = 0;         // the content and size the measurements belong to
    LayoutMode mode = LayoutMode::tiled;  // what the last frame used
    int slots = 0;
    std::vector<std::vector<PanelId>> groups;  // its tab groups (Tab cycles the largest)
    bool compact_controls = false;
    std::vector<PanelFit> fits;      // every shown panel's fit, last frame (tests)
    float short_h = 0.f;             // set by a panel that shrinks to what it gets: how much more it needed
};

struct Toast {
    std::string text;
    double until = 0.0;
};

// Characters beyond the fonts' fixed ranges that the atlas holds (ui/look/fonts.cpp): the
// window loads only those its text needs, and what it scanned last, to rescan only on
// a change.
struct GlyphNeeds {
    static constexpr size_t kMax = 8192;     // bounds the atlas for very long texts
    std::vector<char32_t> loaded;            // sorted
    std::string scanned_prompt;
    const void* scanned_model = nullptr;
    std::vector<int> scanned_main, scanned_other;
};

// A model folder that comes with kvscope (the model picker's entries).
struct BundledModel {
    std::string name, dir;
};

// What the teacher has chosen; everything a panel needs besides the views.
struct ViewState {
    int layer = 0, head = 0;
    bool dark = true;
    float font_scale = 1.f;
    float base_font_px = 18.f;
    bool show_help = false;
    bool playing = false;
    float play_speed = 1.f;          // steps per second
    double last_play_step = 0.0;
    WorkMetric metric = WorkMetric::kv_rows;
    int memory_ctx = 1024;           // memory panel's context length
    bool show_scaling = false;       // the Work panel's area shows the Scaling tab
    bool select_tab = false;         // make the tab bar follow show_scaling next frame
    int sweep_max_pos = 0;           // Scaling panel choices (0: default_sweep_max_pos)
    int sweep_stride = 0;            // 0: default_sweep_stride
    bool sweep_overlay = false;      // the sweep runs again with f16 weights (f32 for 16-bit ones), overlaid
    std::string prompt_text;         // edit buffer
    std::string model_text;          // "load model" edit buffer (empty: the field shows the model's name)
    kv::CachePolicy policy_edit;     // the cache-policy control's edit buffer
    bool policy_edit_init = false;   // filled from the main session's policy once
    std::vector<BundledModel> bundled;  // the model picker's list, read from disk once
    bool bundled_scanned = false;
    kv::SamplingOptions sampling;
    bool animate = true;             // false for screenshots and tests
    double step_time = -100.0;       // ImGui time when the latest step arrived
    std::string note;                // e.g. "bundled model not found: using random:tiny"
    Toast toast;
    bool font_changed = false;       // app must rebuild the font atlas
    SpecChoice spec;                 // speculative mode: draft field, k, phase hold
    GlyphNeeds glyphs;               // characters the atlas holds beyond the fixed ranges
    bool screenshot_requested = false;
    LayoutChoice layout;             // the normal layout's tabs, focus, folded controls, measurements
    // Key presses queued by the app's GLFW key callback (GLFW key, modifiers). In 1.86
    // a press and release within one frame never shows in io.KeysDown, so the window
    // queues presses; headless tests leave this off and ImGui's key state is polled.
    bool queued_keys = false;
    struct KeyPress {
        int key = 0;
        bool ctrl = false, shift = false;
    };
    std::vector<KeyPress> key_queue;
    LessonState lesson;
};

// Everything draw_app() reads: the model, views and the teacher's choices.
struct AppState {
    const kv::Model* model = nullptr;
    std::string model_name;          // folder name or random:SHAPE:SEED: what the model field shows
    std::string model_spec;          // what it was loaded from (a full path): the field's tooltip
    std::optional<kv::WeightType> weights;  // the type asked for (none: as stored); the held one is model->weights.type
    std::string backend = "cpu";
    SessionView main;                // the session the controls drive
    SessionView other;               // compare mode: cache in the other mode, or its own policy
    SpecView spec;                   // speculative mode (spec.on): main is then the target's view
    bool compare = false;
    bool other_own_policy = false;   // compare mode's second session runs its own policy, cache as main
    bool stale_demo = false;         // chapter 8: `other` runs the prompt on a stale cache
    bool busy = false;               // a worker runs: buttons disabled
    LoadView loading;                // a model loading off the UI thread (the previous one stays usable)
    bool cancel_load = false;        // the progress bar's Cancel, for the controller's next submit
    double busy_since = 0.0;
    std::string error;               // last command's error, shown in the window
    std::vector<std::string> unknown_words;  // of the current prompt
    std::vector<std::string> prompt_pieces;
    ViewState vs;
    std::vector<Command> pending;    // issued by panels this frame
    ScalingView scaling;             // the latest sweep
    ServeView serve;                 // the serving view (V): its run and the step shown
    ServeDrawn serve_drawn;          // the pool grid this frame (tests)
    SweepRequest sweep_request = SweepRequest::none;
    bool quit = false;
    std::vector<PanelFit> fits;      // the framed lesson panel's, this frame
    std::vector<CacheDrawn> cache_drawn;  // this frame's cache pictures (tests)

    void push(Command c) { pending.push_back(std::move(c)); }
    int n_layer() const;
    int n_head() const;
    int kv_head_of(int head) const;  // ModelConfig::kv_head_of
    std::string token_text(int id) const;
};

// The window's title: the latest step of the main session as the narration names it,
// "kvscope: Step 5, decode, cache off, next 'writing'", or kTitle before the first step,
// then " (lesson chapter 4)" in lesson mode.
// In the browser it is the page's title, which the browser test reads (tests/web).
inline constexpr const char* kTitle = "kvscope: the KV cache, step by step";
std::string window_title(const AppState& app);

}  // namespace kvui
