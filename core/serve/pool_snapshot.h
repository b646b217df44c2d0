// The pool as it stands after one serving step, for the window's serving view and its
// tests: every block's state (free, used by tables, or cached for reuse), which
// sequences map it, which position of which sequence each slot holds, and the
// sequences' own tables. Recorded by run_serve (ServeOptions::snapshots) where the work
// happens: a slot's holder is written when the batched forward writes that slot (or
// when copy-on-write copies its block), never derived afterwards.
//
// Notation: P blocks of B slots; slot s = block * B + offset (kv::paged_slot).
#pragma once
#include <cstdint>
#include <vector>

#include "core/serve/scheduler.h"
#include "core/tensor.h"

namespace kv {

// What one slot holds: position `pos` (token `token`) of sequence `seq`, the one whose
// forward wrote it; -1 everywhere for a slot no position has reached.
struct SlotHolds {
    int seq = -1, pos = -1, token = -1;
    bool operator==(const SlotHolds&) const = default;
};

enum class BlockState { free, used, cached };
const char* block_state_name(BlockState s);

struct BlockSnap {
    BlockState state = BlockState::free;
    int ref_count = 0;          // tables mapping it
    int fill = 0;               // slots holding a position (B for a cached block)
    std::vector<int> seqs;      // sequences whose tables map it, by id
    bool operator==(const BlockSnap&) const = default;
};

struct SeqSnap {
    int id = 0, request = 0, fork = 0;
    SeqState state = SeqState::pending;
    std::vector<int> table;     // logical block -> physical block (empty unless running)
    int n_pos = 0;              // positions held
    std::vector<int> tokens;    // (p + generated) known tokens
    int n_prompt = 0, new_tokens = 0;
    int prefix_blocks_hit = 0, preemptions = 0;
    bool operator==(const SeqSnap&) const = default;
};

struct PoolSnapshot {
    int block_size = 0;               // B
    std::vector<BlockSnap> blocks;    // (P)
    std::vector<SlotHolds> slots;     // (P * B); a free block's slots, and a used block's past its fill, are empty
    std::vector<SeqSnap> seqs;        // by sequence id
    std::vector<int> copied;          // blocks filled by copy-on-write this step (the copies' destinations)
    int prefix_hits = 0, cow_copies = 0, preemptions = 0;  // so far
    RowMat k0;                        // (P * B, n_kv_head * hd) layer-0 keys as stored, as f32; empty if not kept
    bool same_state(const PoolSnapshot& o) const {  // everything but the stored keys
        return block_size == o.block_size && blocks == o.blocks && slots == o.slots && seqs == o.seqs &&
               copied == o.copied && prefix_hits == o.prefix_hits && cow_copies == o.cow_copies &&
               preemptions == o.preemptions;
    }
};

// The pool's bookkeeping after a step: blocks and sequences from the scheduler, slots
// from `holds` (P * B, kept by the caller as the forward writes).
PoolSnapshot snapshot_pool(const Scheduler& sched, const std::vector<SlotHolds>& holds,
                           const std::vector<int>& copied);

}  // namespace kv
