// The pool after a step: see pool_snapshot.h.
#include "core/serve/pool_snapshot.h"

namespace kv {

const char* block_state_name(BlockState s) {
    switch (s) {
    case BlockState::free: return "free";
    case BlockState::used: return "used";
    case BlockState::cached: return "cached";
    }
    return "";
}

PoolSnapshot snapshot_pool(const Scheduler& sched, const std::vector<SlotHolds>& holds,
                           const std::vector<int>& copied) {
    const BlockPool& pool = sched.pool();
    const int B = pool.block_size(), P = pool.n_blocks();
    PoolSnapshot s;
    s.block_size = B;
    s.blocks.resize(size_t(P));
    s.slots.assign(size_t(P) * size_t(B), SlotHolds{});
    for (int b = 0; b < P; ++b) {
        const Block& blk = pool.block(b);
        BlockSnap& o = s.blocks[size_t(b)];
        o.ref_count = blk.ref_count;
        o.fill = blk.fill;
        o.state = blk.ref_count > 0 ? BlockState::used : blk.hash ? BlockState::cached : BlockState::free;
        if (o.state == BlockState::free) continue;
        for (int j = 0; j < blk.fill; ++j) s.slots[size_t(b * B + j)] = holds[size_t(b * B + j)];
    }
    for (const Sequence& q : sched.sequences()) {
        SeqSnap o;
        o.id = q.id;
        o.request = q.request;
        o.fork = q.fork;
        o.state = q.state;
        o.table = q.table.blocks;
        o.n_pos = q.table.n_pos;
        o.tokens = q.tokens;
        o.n_prompt = q.n_prompt;
        o.new_tokens = q.new_tokens;
        o.prefix_blocks_hit = q.prefix_blocks_hit;
        o.preemptions = q.preemptions;
        for (int b : o.table) s.blocks[size_t(b)].seqs.push_back(q.id);
        s.seqs.push_back(std::move(o));
    }
    s.copied = copied;
    s.prefix_hits = sched.prefix_hits();
    s.cow_copies = pool.cow_copies();
    s.preemptions = sched.preemptions();
    return s;
}

}  // namespace kv
