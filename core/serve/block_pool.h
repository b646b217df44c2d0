// BlockPool: where a serving run's K/V rows live, as bookkeeping only (vLLM v1's
// block_pool.py and kv_cache_manager.py). No storage and no engine: the pool says which
// physical block holds which positions of which sequence; an engine keeps the rows.
//
// Notation: P physical blocks of B token slots. A sequence's BlockTable maps logical
// block i to a physical block id; position p lives in table[p / B] at offset p % B.
//
// Per block: a reference count (tables pointing at it), its fill (slots holding a
// position) and, for a FULL block only, an identity: a hash chain over (the previous
// block's identity, its B token ids), so a block is equal to another only with the
// whole prefix before it. A block whose count drops to 0:
//   - with an identity and prefix caching on: stays "cached", contents and identity kept,
//     in a least-recently-released queue; a later prompt with the same prefix hits it;
//   - otherwise: becomes "free" (empty).
// allocate() takes a free block first, else evicts the oldest cached one (its identity
// dropped). Accounting (docs/design.md, "Serving"): used = referenced by a table,
// cached = unreferenced but kept for reuse, free = empty; used + cached + free = P.
// Identities are 64-bit; a collision (about n^2 / 2^65 for n blocks) would share a wrong
// block, which is why vLLM offers sha256. A teaching pool accepts that.
#pragma once
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace kv {

using BlockHash = uint64_t;

// The identity of a full block: the chain over (parent's identity, its B token ids).
// The first block's parent is kRootHash.
inline constexpr BlockHash kRootHash = 0x6b7673636f706521ULL;
BlockHash chain_hash(BlockHash parent, std::span<const int> ids);
// The identities of the full blocks among ids[0, n): n / B hashes, chained.
std::vector<BlockHash> full_block_hashes(std::span<const int> ids, int n, int block_size);

struct Block {
    int ref_count = 0;              // tables pointing at this block
    int fill = 0;                   // slots holding a position, 0..B
    std::optional<BlockHash> hash;  // identity, set only while the block is full and registered
};

// One sequence's view of the pool. Shape: blocks (ceil(n_pos / B)).
struct BlockTable {
    std::vector<int> blocks;  // logical block i -> physical block id
    int n_pos = 0;            // positions [0, n_pos) are held

    int block_of(int pos, int block_size) const { return blocks[static_cast<size_t>(pos / block_size)]; }
    // Allocated slots holding no position (only the last block can have any).
    int waste_slots(int block_size) const { return int(blocks.size()) * block_size - n_pos; }
};

// Blocks by state (docs/design.md, "Serving"). shared: used blocks with count > 1.
struct PoolCounts {
    int used = 0, free = 0, cached = 0, shared = 0;
};

// A copy the engine makes before the step's forward: block src's rows into dst.
struct BlockCopy {
    int src = 0, dst = 0;
};

class BlockPool {
public:
    // Throws kv::Error when n_blocks < 1 or block_size < 1.
    BlockPool(int n_blocks, int block_size, bool prefix_caching = true);

    int n_blocks() const { return int(blocks_.size()); }
    int block_size() const { return block_size_; }
    bool prefix_caching() const { return prefix_caching_; }
    const Block& block(int id) const { return blocks_[static_cast<size_t>(id)]; }
    // Blocks allocate() can hand out now: free + cached.
    int n_available() const { return int(free_.size() + cached_.size()); }
    PoolCounts counts() const;
    // Slots of used blocks holding no position (each physical block counted once).
    int waste_slots() const;
    int cow_copies() const { return cow_copies_; }

    // A block with count 1 and fill 0: free first, else the oldest cached one (its
    // identity dropped). Returns -1 when neither exists.
    int allocate();

    // Prefix hits: the blocks holding the longest run of leading `hashes`, without
    // taking them (empty when prefix caching is off).
    std::vector<int> match_prefix(std::span<const BlockHash> hashes) const;
    // Of those, the ones a table would take from the cached queue (count 0).
    int n_unreferenced(std::span<const int> ids) const;
    // A table over the hit blocks (count + 1 each, cached ones leave the queue).
    BlockTable take_prefix(std::span<const int> ids);

    // Blocks append(t, n) needs: one copy if t's last block is shared and partial
    // (copy-on-write), plus the new blocks positions [n_pos, n_pos + n) reach.
    int blocks_needed(const BlockTable& t, int n) const;
    // Makes room for n more positions in t: copies a shared partial last block first
    // (recorded in copies, counted), allocates the rest, fills slots. Returns false,
    // changing nothing, when fewer than blocks_needed(t, n) blocks are available.
    bool append(BlockTable& t, int n, std::vector<BlockCopy>& copies);

    // Gives a full block its identity when prefix caching is on, unless it has one or
    // another block already holds that identity (that block stays the one hit).
    void register_full(int id, BlockHash hash);
    // Drops t's references, last block first, so a cached sequence's tail is reused
    // before its head; empties t.
    void release(BlockTable& t);
    // Another table over the same blocks (count + 1 each, the partial last one included).
    BlockTable fork(const BlockTable& t);

    // Throws kv::Error naming the first broken rule: counts equal the tables pointing at
    // each block, fills match the tables' positions, no block is both free and mapped,
    // identities only on full blocks and in the map, used + cached + free = P.
    void check_invariants(std::span<const BlockTable* const> tables) const;

private:
    Block& at(int id) { return blocks_[static_cast<size_t>(id)]; }
    void take(int id);  // count + 1, out of the cached queue if it was there

    int block_size_;
    bool prefix_caching_;
    std::vector<Block> blocks_;                         // (P)
    std::deque<int> free_;                              // empty blocks, next to hand out first
    std::list<int> cached_;                             // unreferenced with identity, oldest first
    std::vector<std::list<int>::iterator> cached_pos_;  // (P) where each cached block sits
    std::vector<bool> in_cached_;                       // (P)
    std::unordered_map<BlockHash, int> by_hash_;        // identity -> block (full blocks)
    int cow_copies_ = 0;
};

}  // namespace kv
