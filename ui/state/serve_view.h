// The serving view (key V, `kvscope --serve`; docs/design.md, "The serving view"): many
// requests in one paged pool, step by step. The Controller runs the whole request set
// once with kv::run_serve (a snapshot of the pool after every step, on the worker when
// the model is heavy) and publishes it here; Space and Left then move through the
// recorded steps, so going back one step shows exactly what a fresh run to that step
// records. This file is the view's model, without ImGui: what each slot of the grid
// shows, the contiguous strip, the counters, and where the pieces go on screen.
//
// Notation: P blocks of B slots; a sequence is one fork of a request; `shown` steps
// have run (0: none yet, the pool is empty).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/serve/presets.h"
#include "core/serve/serve.h"
#include "core/session/bench.h"
#include "ui/state/layout.h"

namespace kvui {

// One run of a request set and what was measured beside it.
struct ServeRun {
    kv::ServePreset setup;                 // requests, pool, sampling (name "custom" when edited)
    kv::ServeResult result;                // every step with its pool snapshot
    int64_t slot_bytes = 0;                // one cached position, every layer: kv::bytes_per_slot
    int n_kv_head = 0, head_dim = 0;       // of the snapshots' layer-0 keys
    int peak_batch = 0;                    // most sequences in one step
    kv::BatchPoint single, batch;          // measured decode: 1 sequence, and peak_batch of them
    int64_t weight_bytes = 0;              // a decode step streams these (kv::decode_weight_bytes)
    // The same two measurements on a model of GPT-2's shape (serve_runner.h kLargeModel),
    // when asked: size 0 when not measured.
    kv::BatchPoint large_single, large_batch;
    int64_t large_weight_bytes = 0;
};

struct ServeView {
    bool on = false;                        // the window shows the serving view
    std::shared_ptr<const ServeRun> run;    // null before the first run
    int shown = 0;                          // steps shown, 0..n_steps()
    int selected = 0;                       // the sequence whose block table is drawn
    std::vector<kv::PresetRequest> edit;    // the request list's edit buffer
    bool edit_init = false;                 // filled from the run once
    std::string error;                      // the last run's (bad requests)

    int n_steps() const { return run ? int(run->result.steps.size()) : 0; }
    // The step on screen (null before the first).
    const kv::ServeStep* step() const { return run && shown > 0 ? &run->result.steps[size_t(shown - 1)] : nullptr; }
    const kv::PoolSnapshot* pool() const { const kv::ServeStep* s = step(); return s ? s->pool.get() : nullptr; }
    const kv::PoolSnapshot* previous_pool() const {
        return run && shown > 1 ? run->result.steps[size_t(shown - 2)].pool.get() : nullptr;
    }
};

// Space / Left: one step forward or back through the run (false at either end).
bool serve_step(ServeView& v);
bool serve_back(ServeView& v);

// ---- the grid: one cell per slot ----------------------------------------------------
enum class SlotLook { empty, used, shared, cached };
struct GridSlot {
    SlotLook look = SlotLook::empty;
    int seq = -1, request = -1, pos = -1, token = -1;  // who wrote it (empty: -1)
};
struct GridBlock {
    kv::BlockState state = kv::BlockState::free;
    int ref_count = 0, fill = 0;
    int request = -1;           // the colour: the request whose sequence wrote it (-1 free)
    bool copied_now = false;    // copy-on-write filled it this step
    bool preempted_now = false; // it belonged to a sequence preempted this step
};
struct PoolGrid {
    int n_blocks = 0, block_size = 0;
    std::vector<GridBlock> blocks;  // (P)
    std::vector<GridSlot> slots;    // (P * B)
    const GridSlot& slot(int block, int offset) const { return slots[size_t(block * block_size + offset)]; }
};
// The grid for the step on screen (an empty pool before the first step).
PoolGrid pool_grid(const ServeView& v);

// ---- the contiguous reservation beside it ----------------------------------------------
// Over the sequences running after the step: each reserves p + N slots at once (the
// baseline, core/serve/baseline.h) and holds n_pos of them; paged, they hold used
// blocks. fit: how many of them, in admission (id) order, a contiguous layout holds in
// the pool's bytes.
struct StripSeq {
    int seq = 0, request = 0;
    int64_t reserved_slots = 0, used_slots = 0;
};
struct ContiguousStrip {
    int64_t pool_bytes = 0;        // P * B slots
    int64_t reserved_bytes = 0, used_bytes = 0;
    int64_t paged_bytes = 0;       // used blocks * bytes per block
    int running = 0, fit = 0;
    std::vector<StripSeq> seqs;
    double waste_share() const { return reserved_bytes > 0 ? 1.0 - double(used_bytes) / double(reserved_bytes) : 0.0; }
};
ContiguousStrip contiguous_strip(const ServeView& v);

// ---- the counters ---------------------------------------------------------------------
struct ServeCounters {
    int step = 0, tokens = 0, batch = 0;   // positions computed, sequences that ran
    kv::PoolCounts blocks;
    int waste_slots = 0, prefix_hits = 0, copies = 0, preempted = 0, preemptions = 0;
    double ms = 0, single_ms = 0;          // this batched step; one sequence's decode step alone
};
ServeCounters serve_counters(const ServeView& v);

// What hovering a slot shows: request, fork, position, token, and the stored layer-0 K
// values of kv head `kv_head` ("" for an empty slot).
std::string slot_tooltip(const ServeView& v, int block, int offset, int kv_head,
                         const std::function<std::string(int)>& token_text);

// ---- on screen -------------------------------------------------------------------------
// The pool grid in a w x h area: blocks in `cols` columns, each block a row of B square
// slot cells (a small gap between slots, a larger one between blocks) with a label
// line above the blocks' rows. cell >= kMinCell whenever that fits.
struct GridGeometry {
    int cols = 1, rows = 1;
    float cell = 0, gap = 0, block_gap = 0, label_h = 0;
    float block_w() const;             // B cells and gaps
    float block_h() const;             // label line + cell
    float width() const, height() const;
    int block_size = 0;
};
inline constexpr float kMinGridCell = 12.f;
GridGeometry grid_geometry(float w, float h, float font_px, int n_blocks, int block_size);

// What the pool grid drew last frame, from its own geometry (tests): the grid's
// region on screen, each block's rectangle, and how many blocks lie wholly inside it.
struct ServeDrawn {
    bool drawn = false;
    GridGeometry geometry;
    Rect area;                 // the visible region the grid had
    std::vector<Rect> blocks;  // (P) where each block was drawn
    int in_view = 0;
};

// The serving view's regions: a bar (title, steps, presets), the requests list (its
// colours are the legend), the pool grid, the counters, the selected block table and
// the contiguous strip. Wide: requests | pool | counters with the table and strip
// under the pool. Focus (a big font on a small window): the pool full width under the
// bar, then strip and table; requests and counters share the last row.
struct ServeLayout {
    bool focus = false;
    Rect bar, requests, pool, counters, table, strip;
};
ServeLayout compute_serve_layout(float W, float H, float font_px);

}  // namespace kvui
