// The serving view's model: see serve_view.h.
#include "ui/state/serve_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kvui {

bool serve_step(ServeView& v) {
    if (v.shown >= v.n_steps()) return false;
    ++v.shown;
    return true;
}

bool serve_back(ServeView& v) {
    if (v.shown <= 0) return false;
    --v.shown;
    return true;
}

namespace {

int request_of(const kv::PoolSnapshot& s, int seq) { return seq >= 0 ? s.seqs[size_t(seq)].request : -1; }

// The blocks a sequence preempted at this step held: its table one step earlier.
void mark_preempted(const ServeView& v, PoolGrid& g) {
    const kv::ServeStep* st = v.step();
    const kv::PoolSnapshot* before = v.previous_pool();
    if (!st || !before) return;
    for (int id : st->preempted)
        for (int b : before->seqs[size_t(id)].table) g.blocks[size_t(b)].preempted_now = true;
}

}  // namespace

PoolGrid pool_grid(const ServeView& v) {
    PoolGrid g;
    if (!v.run) return g;
    g.n_blocks = v.run->result.n_blocks;
    g.block_size = v.run->result.block_size;
    g.blocks.resize(size_t(g.n_blocks));
    g.slots.resize(size_t(g.n_blocks) * size_t(g.block_size));
    const kv::PoolSnapshot* s = v.pool();
    if (!s) return g;
    for (int b = 0; b < g.n_blocks; ++b) {
        const kv::BlockSnap& bs = s->blocks[size_t(b)];
        GridBlock& gb = g.blocks[size_t(b)];
        gb.state = bs.state;
        gb.ref_count = bs.ref_count;
        gb.fill = bs.fill;
        const SlotLook look = bs.state == kv::BlockState::cached ? SlotLook::cached
                              : bs.ref_count > 1                 ? SlotLook::shared
                                                                 : SlotLook::used;
        for (int j = 0; j < g.block_size; ++j) {
            const kv::SlotHolds& h = s->slots[size_t(b * g.block_size + j)];
            if (h.seq < 0) continue;
            GridSlot& gs = g.slots[size_t(b * g.block_size + j)];
            gs = {look, h.seq, request_of(*s, h.seq), h.pos, h.token};
            if (gb.request < 0) gb.request = gs.request;
        }
    }
    for (int b : s->copied) g.blocks[size_t(b)].copied_now = true;
    mark_preempted(v, g);
    return g;
}

ContiguousStrip contiguous_strip(const ServeView& v) {
    ContiguousStrip c;
    if (!v.run) return c;
    const kv::ServeResult& r = v.run->result;
    const int64_t slot = v.run->slot_bytes;
    c.pool_bytes = int64_t(r.n_blocks) * r.block_size * slot;
    const kv::PoolSnapshot* s = v.pool();
    if (!s) return c;
    std::vector<int64_t> reserves;
    for (const kv::SeqSnap& q : s->seqs) {
        if (q.state != kv::SeqState::running) continue;
        StripSeq e{q.id, q.request, int64_t(q.n_prompt) + q.new_tokens, q.n_pos};
        c.reserved_bytes += e.reserved_slots * slot;
        c.used_bytes += e.used_slots * slot;
        reserves.push_back(e.reserved_slots);
        c.seqs.push_back(e);
    }
    c.running = int(c.seqs.size());
    c.fit = kv::contiguous_fit(reserves, c.pool_bytes, slot);
    c.paged_bytes = int64_t(v.step()->blocks.used) * r.bytes_per_block;
    return c;
}

ServeCounters serve_counters(const ServeView& v) {
    ServeCounters c;
    const kv::ServeStep* st = v.step();
    if (!st) return c;
    c.step = st->step;
    c.tokens = st->tokens;
    c.batch = int(st->running.size());
    c.blocks = st->blocks;
    c.waste_slots = st->waste_slots;
    c.copies = st->copies;
    c.preempted = int(st->preempted.size());
    c.ms = st->ms;
    c.single_ms = v.run->single.ms_per_step;
    if (const kv::PoolSnapshot* s = v.pool()) {
        c.prefix_hits = s->prefix_hits;
        c.preemptions = s->preemptions;
    }
    return c;
}

std::string slot_tooltip(const ServeView& v, int block, int offset, int kv_head,
                         const std::function<std::string(int)>& token_text) {
    const kv::PoolSnapshot* s = v.pool();
    if (!s) return "";
    const int B = s->block_size, slot = block * B + offset;
    const kv::SlotHolds& h = s->slots[size_t(slot)];
    if (h.seq < 0) return "";
    const kv::SeqSnap& q = s->seqs[size_t(h.seq)];
    const std::string tok = token_text(h.token);
    char b[160];
    std::snprintf(b, sizeof b, "request %d%s, position %d, token '%s'\nblock #%d slot %d (%s, ref count %d)", q.request,
                  q.fork > 0 ? (" fork " + std::to_string(q.fork)).c_str() : "", h.pos, tok.c_str(), block, offset,
                  kv::block_state_name(s->blocks[size_t(block)].state), s->blocks[size_t(block)].ref_count);
    std::string out = b;
    const int hd = v.run->head_dim;
    if (s->k0.rows() > slot && hd > 0 && kv_head < v.run->n_kv_head) {
        out += "\nlayer 0 K, kv head " + std::to_string(kv_head) + ":";
        for (int i = 0; i < hd; ++i) {
            std::snprintf(b, sizeof b, "%s%+.2f", i % 8 == 0 ? "\n  " : " ", double(s->k0(slot, kv_head * hd + i)));
            out += b;
        }
    }
    return out;
}

float GridGeometry::block_w() const { return float(block_size) * cell + float(block_size - 1) * gap; }
float GridGeometry::block_h() const { return label_h + cell; }
float GridGeometry::width() const { return float(cols) * block_w() + float(cols - 1) * block_gap; }
float GridGeometry::height() const { return float(rows) * block_h() + float(rows - 1) * block_gap; }

GridGeometry grid_geometry(float w, float h, float font_px, int n_blocks, int block_size) {
    GridGeometry best;
    best.block_size = std::max(1, block_size);
    const int P = std::max(1, n_blocks), B = best.block_size;
    for (int cols = 1; cols <= P; ++cols) {
        GridGeometry g;
        g.block_size = B;
        g.cols = cols;
        g.rows = (P + cols - 1) / cols;
        g.label_h = std::floor(font_px * 0.7f);
        g.block_gap = std::max(6.f, std::floor(font_px * 0.5f));
        // The widest cell that fits both ways, gaps a tenth of a cell (at least 1 px).
        const float by_w = (w - float(cols - 1) * g.block_gap) / (float(cols) * (B + 0.1f * (B - 1)));
        const float by_h = (h - float(g.rows - 1) * g.block_gap - float(g.rows) * g.label_h) / float(g.rows);
        g.cell = std::max(4.f, std::floor(std::min({by_w, by_h, font_px * 3.f})));
        g.gap = std::max(1.f, std::floor(g.cell * 0.1f));
        if (g.cell > best.cell) best = g;
    }
    return best;
}

ServeLayout compute_serve_layout(float W, float H, float f) {
    ServeLayout L;
    W = std::max(W, 200.f);
    H = std::max(H, 200.f);
    const float gap = 4.f;
    L.focus = H / f < 30.f || W / f < 55.f;
    const float bar_h = std::floor(f * 2.3f);
    L.bar = {gap, gap, W - 2 * gap, bar_h};
    const float y0 = gap + bar_h + gap, A = H - y0 - gap, full = W - 2 * gap;
    if (L.focus) {
        const float pool_h = std::floor(A * 0.42f), strip_h = std::floor(A * 0.25f), counters_h = std::floor(A * 0.17f);
        const float last = A - pool_h - strip_h - counters_h - 3 * gap, half = std::floor((full - gap) / 2);
        L.pool = {gap, y0, full, pool_h};
        L.strip = {gap, L.pool.y + pool_h + gap, full, strip_h};
        L.counters = {gap, L.strip.y + strip_h + gap, full, counters_h};
        L.table = {gap, L.counters.y + counters_h + gap, half, last};
        L.requests = {2 * gap + half, L.table.y, full - gap - half, last};
        return L;
    }
    const float left_w = std::floor((full - gap) * 0.3f), right_w = full - gap - left_w, x1 = 2 * gap + left_w;
    const float req_h = std::floor((A - gap) * 0.5f);
    L.requests = {gap, y0, left_w, req_h};
    L.counters = {gap, y0 + req_h + gap, left_w, A - req_h - gap};
    const float pool_h = std::floor(A * 0.5f), strip_h = std::floor(A * 0.27f);
    L.pool = {x1, y0, right_w, pool_h};
    L.strip = {x1, y0 + pool_h + gap, right_w, strip_h};
    L.table = {x1, L.strip.y + strip_h + gap, right_w, A - pool_h - strip_h - 2 * gap};
    return L;
}

}  // namespace kvui
