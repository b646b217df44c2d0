// CachePolicy: what a KV cache keeps and how it stores it. A window W with S sinks is
// a mask: the query at position i reads key j iff j <= i and (W == 0 or j < S or
// j > i - W); prefill and decode alike. The cache keeps only rows a later query can
// read (the first S positions and the last W - 1) and evicts the rest; positions keep
// their absolute index (GPT-2's learned position embeddings), so a windowed run still
// ends at n_ctx. kv_dtype is how each stored K/V value is kept:
//   f32   as computed;
//   f16   rounded to IEEE half, round to nearest even;
//   int8  per (position, kv head) K row and V row: s = max|x| / 127 (s = 1 for an all-zero
//         row), q = round-half-away-from-zero(x / s) clamped to [-127, 127], read as q * s.
// mla is how an MLA model (ModelConfig::is_mla) reads its cached latent rows (docs/design.md, "MLA"):
//   expand    every step projects each cached latent up to the heads' K and V (kv_b_proj),
//             then attends as multi-head attention: that work grows with the sequence;
//   absorbed  W_UK folded into the query and W_UV into the output, attention runs on the
//             latent rows directly. Equal logits up to float rounding.
// docs/cache.md explains how the cache applies them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

namespace kv {

enum class KvDtype { f32, f16, int8 };
enum class MlaRead { expand, absorbed };
const char* mla_read_name(MlaRead m);  // "expand", "absorbed"
// "expand" | "absorbed"; throws kv::Error "WHERE: 'x' is not an MLA mode (use expand or absorbed)".
MlaRead parse_mla_read(const std::string& s, const std::string& where);

const char* dtype_name(KvDtype t);        // "f32", "f16", "int8"
int dtype_bytes(KvDtype t);               // bytes per stored value: 4, 2, 1
// "f32" | "f16" | "int8"; throws kv::Error "WHERE: 'x' is not a cache dtype (use f32, f16 or int8)".
KvDtype parse_dtype(const std::string& s, const std::string& where);

struct CachePolicy {
    int window = 0;  // W: keys within the last W positions (the query's own included); 0 = all
    int sinks = 0;   // S: the first S positions are always read (only with a window)
    KvDtype dtype = KvDtype::f32;
    MlaRead mla = MlaRead::expand;  // MLA models only

    bool windowed() const { return window > 0; }
    // Full attention over f32 rows (MLA: expanded): the textbook cache.
    bool is_default() const { return window == 0 && dtype == KvDtype::f32 && mla == MlaRead::expand; }
    // Does the query at position q read the key at position k?
    bool reads(int q, int k) const { return k <= q && (window == 0 || k < sinks || k > q - window); }
    // Does some query at a position in [q0, q1] read the key at position k? (q =
    // max(k, q0) is the one most likely to.) The keys a step of queries [q0, q1] needs.
    bool read_by_some(int q0, int q1, int k) const { return k <= q1 && reads(std::max(k, q0), k); }
    // Does a cache that has seen positions [0, n) keep position k (can a query at n or later read it)?
    bool keeps(int n, int k) const { return k < n && (window == 0 || k < sinks || k > n - window); }
    bool operator==(const CachePolicy&) const = default;
};

// Throws kv::Error naming `where` when the policy is impossible (negative W or S,
// S > W with W > 0).
void check_policy(const CachePolicy& p, const std::string& where);
// "full f32", "window 6 + 2 sinks, int8", "full f32, absorbed", ...
std::string policy_text(const CachePolicy& p);

// ---- storage rounding (the exact definitions above) ------------------------------
uint16_t f32_to_f16(float x);   // round to nearest even; overflow to inf, NaN kept
float f16_to_f32(uint16_t h);
float round_f16(float x);       // f16_to_f32(f32_to_f16(x))
float int8_scale(const float* x, int n);  // max|x| / 127, or 1 when every x is 0
int8_t quantize_int8(float x, float scale);

}  // namespace kv
