// BlockPool: see block_pool.h and docs/design.md, "Serving: the block pool and the scheduler".
#include "core/serve/block_pool.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "core/error.h"

namespace kv {

namespace {

uint64_t mix(uint64_t h, uint64_t v) {  // SplitMix64's finaliser over h ^ v
    uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

[[noreturn]] void broken(const std::string& what) { throw Error("block pool invariant: " + what); }

}  // namespace

BlockHash chain_hash(BlockHash parent, std::span<const int> ids) {
    uint64_t h = mix(parent, ids.size());
    for (int id : ids) h = mix(h, static_cast<uint32_t>(id));
    return h;
}

std::vector<BlockHash> full_block_hashes(std::span<const int> ids, int n, int block_size) {
    assert(n <= int(ids.size()) && block_size >= 1);
    std::vector<BlockHash> out;
    BlockHash parent = kRootHash;
    for (int b = 0; (b + 1) * block_size <= n; ++b) {
        parent = chain_hash(parent, ids.subspan(static_cast<size_t>(b * block_size), static_cast<size_t>(block_size)));
        out.push_back(parent);
    }
    return out;
}

BlockPool::BlockPool(int n_blocks, int block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching) {
    if (block_size < 1)
        throw Error("block pool: block size " + std::to_string(block_size) + " must be at least 1 slot");
    if (n_blocks < 1)
        throw Error("block pool: pool of " + std::to_string(n_blocks) + " blocks must have at least 1 block");
    blocks_.resize(static_cast<size_t>(n_blocks));
    cached_pos_.resize(static_cast<size_t>(n_blocks));
    in_cached_.assign(static_cast<size_t>(n_blocks), false);
    for (int i = 0; i < n_blocks; ++i) free_.push_back(i);
}

PoolCounts BlockPool::counts() const {
    PoolCounts c;
    c.free = int(free_.size());
    c.cached = int(cached_.size());
    for (const Block& b : blocks_) {
        c.used += b.ref_count > 0;
        c.shared += b.ref_count > 1;
    }
    return c;
}

int BlockPool::waste_slots() const {
    int w = 0;
    for (const Block& b : blocks_)
        if (b.ref_count > 0) w += block_size_ - b.fill;
    return w;
}

int BlockPool::allocate() {
    int id = -1;
    if (!free_.empty()) {
        id = free_.front();
        free_.pop_front();
    } else if (!cached_.empty()) {
        id = cached_.front();  // least recently released: evicted, identity dropped
        cached_.pop_front();
        in_cached_[static_cast<size_t>(id)] = false;
        by_hash_.erase(*at(id).hash);
        at(id).hash.reset();
        at(id).fill = 0;
    } else {
        return -1;
    }
    at(id).ref_count = 1;
    return id;
}

std::vector<int> BlockPool::match_prefix(std::span<const BlockHash> hashes) const {
    std::vector<int> ids;
    if (!prefix_caching_) return ids;
    for (BlockHash h : hashes) {
        auto it = by_hash_.find(h);
        if (it == by_hash_.end()) break;
        ids.push_back(it->second);
    }
    return ids;
}

int BlockPool::n_unreferenced(std::span<const int> ids) const {
    int n = 0;
    for (int id : ids) n += block(id).ref_count == 0;
    return n;
}

void BlockPool::take(int id) {
    if (in_cached_[static_cast<size_t>(id)]) {
        cached_.erase(cached_pos_[static_cast<size_t>(id)]);
        in_cached_[static_cast<size_t>(id)] = false;
    }
    ++at(id).ref_count;
}

BlockTable BlockPool::take_prefix(std::span<const int> ids) {
    BlockTable t;
    for (int id : ids) {
        assert(block(id).hash && block(id).fill == block_size_);
        take(id);
        t.blocks.push_back(id);
    }
    t.n_pos = int(ids.size()) * block_size_;
    return t;
}

int BlockPool::blocks_needed(const BlockTable& t, int n) const {
    const int have = int(t.blocks.size());
    const int reach = (t.n_pos + n + block_size_ - 1) / block_size_;
    const bool copy = n > 0 && t.n_pos % block_size_ != 0 && block(t.blocks.back()).ref_count > 1;
    return std::max(0, reach - have) + (copy ? 1 : 0);
}

bool BlockPool::append(BlockTable& t, int n, std::vector<BlockCopy>& copies) {
    if (blocks_needed(t, n) > n_available()) return false;
    if (n > 0 && t.n_pos % block_size_ != 0 && block(t.blocks.back()).ref_count > 1) {
        const int src = t.blocks.back(), dst = allocate();  // copy-on-write
        at(dst).fill = block(src).fill;
        --at(src).ref_count;  // still > 0: the other tables keep it
        t.blocks.back() = dst;
        copies.push_back({src, dst});
        ++cow_copies_;
    }
    for (int p = t.n_pos; p < t.n_pos + n; ++p) {
        if (p / block_size_ == int(t.blocks.size())) t.blocks.push_back(allocate());
        Block& b = at(t.blocks[static_cast<size_t>(p / block_size_)]);
        assert(b.ref_count == 1 && b.fill == p % block_size_);
        ++b.fill;
    }
    t.n_pos += n;
    return true;
}

void BlockPool::register_full(int id, BlockHash hash) {
    Block& b = at(id);
    assert(b.fill == block_size_ && b.ref_count > 0);
    if (!prefix_caching_ || b.hash || by_hash_.count(hash)) return;
    b.hash = hash;
    by_hash_[hash] = id;
}

void BlockPool::release(BlockTable& t) {
    for (auto it = t.blocks.rbegin(); it != t.blocks.rend(); ++it) {
        Block& b = at(*it);
        assert(b.ref_count > 0);
        if (--b.ref_count > 0) continue;
        if (b.hash) {  // only set with prefix caching on
            cached_.push_back(*it);
            cached_pos_[static_cast<size_t>(*it)] = std::prev(cached_.end());
            in_cached_[static_cast<size_t>(*it)] = true;
        } else {
            b.fill = 0;
            free_.push_back(*it);
        }
    }
    t.blocks.clear();
    t.n_pos = 0;
}

BlockTable BlockPool::fork(const BlockTable& t) {
    for (int id : t.blocks) ++at(id).ref_count;
    return t;
}

}  // namespace kv

namespace kv {

namespace {

std::string name(int id) { return "block " + std::to_string(id); }

// Per table: its length, no block twice, and the count and fill each block must have.
void expect_from_tables(std::span<const BlockTable* const> tables, int P, int B, std::vector<int>& refs,
                        std::vector<int>& fill) {
    refs.assign(static_cast<size_t>(P), 0);
    fill.assign(static_cast<size_t>(P), -1);
    for (size_t s = 0; s < tables.size(); ++s) {
        const BlockTable& t = *tables[s];
        const std::string tab = "table " + std::to_string(s);
        if (int(t.blocks.size()) != (t.n_pos + B - 1) / B)
            broken(tab + " holds " + std::to_string(t.n_pos) + " positions in " + std::to_string(t.blocks.size()) +
                   " blocks of " + std::to_string(B));
        for (size_t i = 0; i < t.blocks.size(); ++i) {
            const int id = t.blocks[i];
            if (id < 0 || id >= P) broken(tab + " points at " + name(id) + ", outside the pool");
            if (std::count(t.blocks.begin(), t.blocks.end(), id) > 1) broken(tab + " holds " + name(id) + " twice");
            const int f = std::min(B, t.n_pos - int(i) * B);
            if (fill[static_cast<size_t>(id)] >= 0 && fill[static_cast<size_t>(id)] != f)
                broken(name(id) + " is shared by tables that hold different positions in it");
            fill[static_cast<size_t>(id)] = f;
            ++refs[static_cast<size_t>(id)];
        }
    }
}

}  // namespace

void BlockPool::check_invariants(std::span<const BlockTable* const> tables) const {
    const int P = n_blocks(), B = block_size_;
    std::vector<int> refs, fill;
    expect_from_tables(tables, P, B, refs, fill);
    std::vector<int> queued(static_cast<size_t>(P), 0);  // times in free_ or cached_
    for (int id : free_) {
        ++queued[static_cast<size_t>(id)];
        if (block(id).hash || block(id).fill != 0 || in_cached_[static_cast<size_t>(id)])
            broken(name(id) + " is free but keeps contents or an identity");
    }
    for (int id : cached_) {
        ++queued[static_cast<size_t>(id)];
        if (!block(id).hash || block(id).fill != B || !in_cached_[static_cast<size_t>(id)])
            broken(name(id) + " is cached without being a full block with an identity");
    }
    for (int id = 0; id < P; ++id) {
        const Block& b = block(id);
        const size_t i = static_cast<size_t>(id);
        if (b.ref_count != refs[i])
            broken(name(id) + " has reference count " + std::to_string(b.ref_count) + " but " +
                   std::to_string(refs[i]) + " tables point at it");
        if (b.ref_count > 0 && queued[i] > 0) broken(name(id) + " is both referenced and free or cached");
        if (b.ref_count == 0 && queued[i] != 1)
            broken(name(id) + " is unreferenced and queued " + std::to_string(queued[i]) + " times (must be 1)");
        if (b.ref_count > 0 && b.fill != fill[i])
            broken(name(id) + " has " + std::to_string(b.fill) + " slots filled, its tables hold " +
                   std::to_string(fill[i]));
        if (b.hash && (b.fill != B || !prefix_caching_)) broken(name(id) + " has an identity but is not a full block");
        if (b.hash && (!by_hash_.count(*b.hash) || by_hash_.at(*b.hash) != id))
            broken(name(id) + "'s identity is missing from the hash map");
    }
    for (const auto& [h, id] : by_hash_)
        if (id < 0 || id >= P || block(id).hash != h) broken("the hash map points at " + name(id) + " for another identity");
    const PoolCounts c = counts();
    if (c.used + c.cached + c.free != P)
        broken("used " + std::to_string(c.used) + " + cached " + std::to_string(c.cached) + " + free " +
               std::to_string(c.free) + " != " + std::to_string(P) + " blocks");
}

}  // namespace kv
