// Lesson mode: a guided walk through the KV cache in chapters, for a classroom.
// This file is the lesson's model and has no ImGui in it: the chapter list, the state
// each chapter sets up (as Commands the Controller runs), the key map inside the
// lesson, and each chapter's text, built from the numbers the engine gave for the
// state on screen (the views' counters, traces and measured times; never canned).
// ui/lesson/lesson_view.cpp draws it: the text on top, two or three panels large, a frame
// around the one to look at.
// Notation: p prompt tokens, s step (0 = prefill), L layers, H heads, Hkv kv heads,
// hd head_dim.
#pragma once
#include <string>
#include <vector>

#include "ui/state/app_state.h"
#include "ui/panels/panels.h"

namespace kvui {

// The panels a chapter can show. The first one listed is the one to look at (framed).
enum class LessonPanel {
    tokens, qkv, cache, work, scaling, next_token, memory, narration, timeline, stale, next_steps,
    spec_tokens, spec_cache, spec_work,  // speculative mode's (ui/state/spec_view.h)
    serve_pool, serve_strip, serve_counters, serve_table, serve_batch,  // the serving view's (ui/state/serve_view.h)
    mla  // the MLA chapter's: bytes per token of MHA, GQA and MLA caches, FLOPs of the two reads
};
const char* lesson_panel_title(LessonPanel p);

// How the panels share the room under the text: focus in a left column with the
// others stacked on the right, or focus across the top with the others side by side
// under it (for wide, short content such as the token chips).
enum class LessonArrangement { columns, rows };

// The state a chapter needs. Prompts come in two forms: text for models with a
// tokenizer, ids for random models (no tokenizer).
struct ChapterSetup {
    std::string prompt_text = "Python is a programming";
    std::string prompt_ids = "5,9,3,7";
    // Model (a bundled folder's name, "" = the lesson's model), cache policy, compare
    // (a second session with the cache in the other mode, or its own policy), cache
    // on/off, speculative mode. Steps are speculative rounds when that is on.
    LessonMode mode;
    int steps = 1;                      // steps taken after the reset (0 = before the prefill)
    bool sweep = false;                 // measure the Scaling sweep (ms per step vs position)
    WorkMetric metric = WorkMetric::kv_rows;
    // Chapter 8: the first prompt runs first_steps steps, then the prompt above runs
    // twice: after a reset (clean) and on top of the stale cache (the bug).
    bool stale_demo = false;
    std::string first_text = "Python is a programming";
    std::string first_ids = "5,9,3,7";
    int first_steps = 0;
    // The serving chapters: this preset (kv::serve_preset) runs, and serve_steps of it
    // are shown ("" = none).
    std::string serve_preset;
    int serve_steps = 0;
    bool serve_large = false;  // measure batched decode on a GPT-2-shaped model too
    // The RoPE chapter: measure the stale-position demonstration (kv::rope_shift_demo)
    // on the main session's tokens whenever they change (LessonState::rope).
    bool rope_shift = false;
    // The MLA chapter: compare the cache shapes of the bundled models (tiny-gpt, tiny-llama,
    // tiny-mla, read once into LessonState::bundled_shapes) and published ones.
    bool cache_shapes = false;
};

struct Chapter {
    int number = 0;       // 1-based
    std::string title;
    std::string look_at;  // one line: what the frame points at
    ChapterSetup setup;
    std::vector<LessonPanel> panels;  // panels[0] is framed
    LessonArrangement arrangement = LessonArrangement::columns;
    float focus_share = 0.6f;         // of the width (columns) or height (rows)
    std::string (*text)(const AppState&) = nullptr;  // its text from the state on screen (lesson_text.h)
};

const std::vector<Chapter>& lesson_chapters();
int lesson_chapter_count();
const Chapter& lesson_chapter(int number);  // clamped to 1..count

// The model a mode needs as a SPEC: the bundled folder of that name
// (kvui::bundled_models), a path or random:... as it is, "" for a name not bundled
// here; "" model_spec: the model the lesson was entered with.
std::string lesson_model_spec(const LessonMode& m, const AppState& app);
// Whether two SPECs name the same model (the same string, or the same folder).
bool same_model(const std::string& a, const std::string& b);

// The Commands that put the sessions (already on the chapter's model) into a mode:
// speculative, stale demo and compare off first where they must change, the policy,
// compare, cache on/off, then speculative on (it starts from main's prompt, so it
// comes last). mode_commands leaves out the prompt and steps; chapter_commands adds them.
std::vector<Command> mode_commands(const LessonMode& m, const AppState& app);
std::vector<Command> chapter_commands(const Chapter& ch, const AppState& app);

// Enters the lesson at a chapter (remembering the normal layout's mode and choices),
// moves to another chapter, leaves (restoring them). Each asks for a setup that
// lesson_tick pushes: at once when the model is right, else after a load_model.
void enter_lesson(AppState& app, int chapter);
void goto_chapter(AppState& app, int chapter);
void leave_lesson(AppState& app);
// Pushes the waiting setup (LessonState::setup) when nothing runs: the model first,
// the rest once it is loaded (however long the load takes). draw_app calls it every
// frame, in and out of the lesson; a failed load ends the setup (the error shows).
void lesson_tick(AppState& app);

// Keys inside the lesson (GLFW key codes). Right / PageDown: next chapter; Left /
// PageUp: previous; 1-9: that chapter, 0: chapter 10; End: the last chapter; Home:
// this chapter's state again; Escape or L: leave. Space steps, Backspace goes back a
// step, C, R, P, G and the font keys work as usual. Returns true when the key was a
// lesson key (handled here).
bool lesson_key(AppState& app, int glfw_key, bool ctrl);
// Whether Space / Left move through the serving run (ui/state/serve_view.h): the
// serving view is on, or the lesson shows a serving chapter.
bool serve_shown(const AppState& app);

// The key line the lesson shows and Help repeats.
const char* lesson_keys_text();

// The chapter's text for the state on screen, with the engine's numbers.
std::string chapter_text(const Chapter& ch, const AppState& app);

// The MLA chapter's table: one cache per row, its attention ("MHA": a kv head per query
// head, "GQA": fewer, "MLA": one latent row), and its bytes per cached token in f32 and at
// 2 bytes a value (kv::cache_bytes_for on the row's ModelConfig, the one formula). Rows:
// the bundled models the chapter compares (those found), the loaded model when it is
// not one of them, then GPT-2 124M, Llama-3-8B and DeepSeek-V3 (ModelConfig's presets).
struct CacheShape {
    std::string name, kind;
    kv::ModelConfig config;
    bool bundled = false;        // a model that comes with kvscope (else a published shape)
    int64_t bytes_f32 = 0, bytes_16 = 0;
};
const char* attention_kind(const kv::ModelConfig& c);  // "MHA", "GQA" or "MLA"
std::vector<CacheShape> cache_shapes(const AppState& app);
// The bundled models the MLA chapter compares, by name: tiny-gpt, tiny-llama, tiny-mla.
const std::vector<std::string>& compared_models();
// The measured FLOPs of the MLA chapter's two reads (main: expand, other: absorbed, fed
// the same tokens), per step of each history; false when compare mode does not run
// the two reads of one MLA model.
struct MlaReads {
    std::vector<int64_t> expand, absorbed;  // counters.flops of step s
};
bool mla_reads(const AppState& app, MlaReads& out);

// Small helpers the text and the stale panel share.
// ids[from..] as text, at most max_n of them then " ..."; sep "] [" brackets each.
std::string join_tokens(const AppState& app, const std::vector<int>& ids, size_t from = 0, size_t max_n = 12,
                        const char* sep = " ");
float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);  // -1 if sizes differ or empty
// Largest recompute_max_diff over the step's recorded heads (-1: nothing compared).
float max_recompute_diff(const kv::StepTrace& t);
std::string fmt_diff(float d);  // "0" or 2 significant digits, e.g. "2.4e-07"

// ---- on screen (ui/lesson/lesson_view.cpp) ------------------------------------------
// The chapter text across the top (text_h: its height measured last frame, 0 to
// estimate), then the chapter's panels: panels[0] is the framed one. When fewer than
// 30 lines of text fit the height (or 48 characters the width), only the framed
// panel is shown, full size.
struct LessonLayout {
    Rect text;
    std::vector<Rect> panels;
};
LessonLayout compute_lesson_layout(float W, float H, float font_px, float text_h, const Chapter& ch);
// The whole lesson window for one frame (draw_app calls it when the lesson is on);
// records the framed panel's fit in app.fits.
void draw_lesson(AppState& app);

}  // namespace kvui
