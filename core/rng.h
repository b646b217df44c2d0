// SplitMix64: a small, fast, seedable generator (Steele, Lea, Flood 2014). Used for
// random weights (random:gpt2-124m draws 124M numbers) and the trainer's batches,
// where reproducibility per seed matters and statistical finesse does not.
#pragma once
#include <cstdint>

namespace kv {

struct SplitMix64 {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

}  // namespace kv
