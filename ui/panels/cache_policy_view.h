// The window's view of cache policies (issue 11), computed without a window so the
// tests can check it: the bundled models a picker lists, the rows of a windowed or
// rounded cache, the memory curve of a policy and what a policy did in a step.
// Notation: W window, S sinks, n positions that entered the cache, hd head_dim.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine/cache_policy.h"
#include "core/model/config.h"
#include "ui/state/app_state.h"
#include "ui/panels/panels.h"

namespace kvui {

// ---- model picker -------------------------------------------------------------
// The models bundled beside the default one (kv::default_model_dir's siblings that
// hold a config.json), by name: tiny-draft, tiny-gpt, tiny-gqa. Empty when the
// bundled model is not found.
std::vector<BundledModel> bundled_models();

// ---- policy control ---------------------------------------------------------------
// The edit buffer's policy as typed, or the reason it cannot be applied (kv::check_policy).
std::string policy_problem(const kv::CachePolicy& p);
// Short form for captions: "full f32", "W 6 + 2 sinks, int8", "full f32, absorbed" (MLA).
std::string policy_caption(const kv::CachePolicy& p);

// ---- cache cells ----------------------------------------------------------------
// One stored K or V value of the view's (layer, kv head) and, for f16/int8, the f32
// value it was rounded from (rounded false: f32 storage, or the cache kept no f32 rows).
struct CellValue {
    bool held = false;     // the cache holds the row (not evicted, entered)
    float stored = 0.f;    // as attention reads it
    bool rounded = false;  // f32 below is known
    float f32 = 0.f;       // the value before rounding
    float error() const { return stored - f32; }
};
CellValue cache_cell(const SessionView& v, int row, int col, bool k);
// The tooltip of a cell: "K row 3, dim 5: stored 0.1234 (int8) ... f32 0.1236, error -2e-4".
std::string cell_hover_text(const SessionView& v, const CacheRow& row, int col, bool k);

// ---- memory curve -------------------------------------------------------------
// Cache bytes against tokens (core's kv::rows_kept and kv::cache_bytes_for, the one
// source): linear for full, a plateau at S + W - 1 rows for a window, int8 about a
// quarter of f32. `now` is the session's own count (its cache's bytes after the step).
struct MemoryCurve {
    std::vector<int> tokens;                // x: positions that entered, 0..max_tokens
    std::vector<double> policy, full_f32;   // y: bytes under the policy / the textbook cache
    int now_tokens = 0;                     // the session: positions that entered
    double now_bytes = 0;                   // the session: its cache's bytes (counted)
    double ymax = 1;
};
double policy_bytes_at(const kv::ModelConfig& c, const kv::CachePolicy& pol, int tokens);
MemoryCurve memory_curve(const kv::ModelConfig& c, const SessionView& v, int max_tokens, int max_points = 160);

// ---- narration --------------------------------------------------------------------
// What the policy did in v's latest step, with the model's numbers: the rows it
// evicted ("Row 2, 'a', evicted: no later token can attend to it."), the keys the
// newest query read, the storage rounding of this head, and the step's cost against
// full attention in f32 (StepTrace::vs_full). Empty under the full f32 policy.
std::string narrate_policy(const AppState& app, const SessionView& v);
// The keys a windowed query at position q reads, as ranges: "sinks 0-1 and rows 6-10"
// (without q itself when from_cache: the rows it takes from the cache).
std::string window_ranges(const kv::CachePolicy& pol, int q, bool from_cache);
// The largest |stored - f32| over the held rows of v's (layer, kv head); -1 when
// the view has no f32 rows (f32 storage).
float rounding_error(const SessionView& v);

// ---- drawers (ui/panels/cache_controls.cpp), called by the controls panel -------------------
void draw_policy_controls(AppState& app);  // flows after the cache switch
void draw_model_picker(AppState& app);     // on the model field's line
// The memory curve in a w x h box at the cursor (ui/panels/memory_curve.cpp).
void draw_memory_curve(const AppState& app, const SessionView& v, float w, float h);

}  // namespace kvui
