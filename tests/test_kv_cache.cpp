// KVCache on its own: slot assignment, the mask's key lists, eviction order with
// sinks, going back across an eviction, bytes, and the f16/int8 storage rounding.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "core/engine/kv_cache.h"
#include "core/error.h"
#include "test_helpers.h"

namespace {

kv::ModelConfig cache_config() {
    kv::ModelConfig c;
    c.vocab_size = 10;
    c.n_ctx = 24;
    c.n_embd = 16;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 2;  // hd 4, kv_dim 8
    return c;
}

kv::CachePolicy policy(int w, int s, kv::KvDtype t = kv::KvDtype::f32) { return kv::CachePolicy{w, s, t}; }

// Writes deterministic rows for every slot placed by the last place().
void write_placed(kv::KVCache& c, const std::vector<int>& slots, int first_pos) {
    const int kvd = c.config().kv_dim();
    std::vector<float> k(kvd), v(kvd);
    for (size_t i = 0; i < slots.size(); ++i)
        for (int l = 0; l < c.config().n_layer; ++l) {
            for (int d = 0; d < kvd; ++d) {
                const int pos = first_pos + int(i);
                k[d] = std::sin(0.37f * float(pos * 31 + d * 7 + l * 101)) * (1.0f + 0.1f * d);
                v[d] = std::cos(0.53f * float(pos * 17 + d * 3 + l * 59)) * (2.0f - 0.1f * d);
            }
            c.write(l, slots[i], k.data(), v.data());
        }
}

// One step of n positions: place, write, evict.
std::vector<int> step(kv::KVCache& c, int n) {
    const int p0 = c.n_pos();
    const std::vector<int> slots = c.place(n);
    write_placed(c, slots, p0);
    return c.evict();
}

std::set<int> held(const kv::KVCache& c) {
    std::set<int> s;
    for (const kv::KVCell& cell : c.cells())
        if (cell.used()) s.insert(cell.pos);
    return s;
}

}  // namespace

TEST_CASE("a full cache places each position in a free slot and going back frees them") {
    kv::HostKVCache c(cache_config(), {});
    CHECK(c.n_slots() == 24);
    CHECK(c.place(3) == std::vector<int>{0, 1, 2});
    CHECK(c.n_pos() == 3);
    CHECK(c.n_used() == 3);
    for (int p = 0; p < 3; ++p) CHECK(c.slot_of(p) == p);
    c.truncate(1);
    CHECK(c.n_pos() == 1);
    CHECK(c.n_used() == 1);
    CHECK_FALSE(c.cells()[1].used());
    CHECK(c.slot_of(1) == -1);
    CHECK(c.place(2) == std::vector<int>{1, 2});
    CHECK(c.cells()[2].pos == 2);
    CHECK(c.evict().empty());  // a full cache never evicts
}

TEST_CASE("keys_for lists, in position order, exactly the keys some query of the step reads") {
    for (const auto& pol : {policy(0, 0), policy(3, 0), policy(3, 1), policy(5, 2), policy(1, 1)}) {
        CAPTURE(kv::policy_text(pol));
        kv::HostKVCache c(cache_config(), pol);
        c.place(10);  // no eviction yet: every position held
        for (int q0 = 0; q0 < 10; ++q0)
            for (int q1 = q0; q1 < 10; ++q1) {
                std::vector<int> slots, pos, want;
                c.keys_for(q0, q1, slots, pos);
                for (int k = 0; k < 10; ++k) {
                    bool any = false;
                    for (int q = q0; q <= q1; ++q) any = any || pol.reads(q, k);
                    if (any) want.push_back(k);
                }
                CAPTURE(q0);
                CAPTURE(q1);
                CHECK(pos == want);
                for (size_t i = 0; i < pos.size(); ++i) CHECK(slots[i] == c.slot_of(pos[i]));
            }
    }
}

TEST_CASE("a window evicts, oldest first, what no later query reads, keeping the sinks") {
    kv::HostKVCache c(cache_config(), policy(4, 2));  // keeps 0, 1 and the last 3
    CHECK(c.n_slots() == 6);                           // S + W: one decode step's worth
    SUBCASE("one token at a time") {
        for (int m = 1; m <= 5; ++m) CHECK(step(c, 1).empty());
        CHECK(held(c) == std::set<int>{0, 1, 2, 3, 4});
        CHECK(step(c, 1) == std::vector<int>{2});  // m = 6: 2 <= 6 - 4
        CHECK(held(c) == std::set<int>{0, 1, 3, 4, 5});
        CHECK(c.slot_of(2) == -1);
        const int freed = 2;  // position 2 sat in slot 2
        CHECK(c.place(1) == std::vector<int>{freed});  // the freed slot is reused
        c.evict();
        CHECK(held(c) == std::set<int>{0, 1, 4, 5, 6});
        CHECK(c.last_evicted() == std::vector<int>{3});
        CHECK(c.n_used() == 5);
    }
    SUBCASE("a prefill longer than the window grows storage, then evicts in position order") {
        CHECK(step(c, 10) == std::vector<int>{2, 3, 4, 5, 6});
        CHECK(held(c) == std::set<int>{0, 1, 7, 8, 9});
        CHECK(c.n_slots() >= 10);
        CHECK(c.n_logged() == 5);
    }
}

TEST_CASE("going back across an eviction restores the rows a shorter run holds, bit for bit") {
    for (kv::KvDtype t : {kv::KvDtype::f32, kv::KvDtype::f16, kv::KvDtype::int8}) {
        CAPTURE(kv::dtype_name(t));
        kv::HostKVCache c(cache_config(), policy(4, 1, t));
        // Snapshots of a run that went forward one position at a time.
        std::vector<std::pair<std::set<int>, kv::RowMat>> at(16);
        for (int m = 1; m < 16; ++m) {
            step(c, 1);
            kv::RowMat k, v;
            c.read_positions(1, 1, k, v);
            at[size_t(m)] = {held(c), v};
        }
        for (int m : {12, 7, 3, 9, 1}) {  // back, forward again, back further
            CAPTURE(m);
            if (m < c.n_pos()) {
                c.truncate(m);
            } else {
                while (c.n_pos() < m) step(c, 1);
            }
            CHECK(held(c) == at[size_t(m)].first);
            kv::RowMat k, v;
            c.read_positions(1, 1, k, v);
            CHECK(v == at[size_t(m)].second);
        }
        c.clear();
        CHECK(c.n_used() == 0);
        CHECK(c.n_logged() == 0);
    }
}

TEST_CASE("cache bytes: 2 * L * kv_dim * rows * bytes, plus int8's f32 scales per row and kv head") {
    const kv::ModelConfig c = cache_config();  // L 2, kv_dim 8, Hkv 2
    CHECK(kv::cache_bytes_for(c, kv::KvDtype::f32, 5) == 2 * 2 * 8 * 5 * 4);
    CHECK(kv::cache_bytes_for(c, kv::KvDtype::f16, 5) == 2 * 2 * 8 * 5 * 2);
    CHECK(kv::cache_bytes_for(c, kv::KvDtype::int8, 5) == 2 * 2 * 8 * 5 * 1 + 2 * 2 * 2 * 5 * 4);
    kv::HostKVCache w(c, policy(3, 1, kv::KvDtype::int8));
    step(w, 9);
    CHECK(w.n_used() == 3);  // 0, 7, 8
    CHECK(w.bytes() == kv::cache_bytes_for(c, kv::KvDtype::int8, 3));
}

TEST_CASE("f16 rounds to nearest even, exactly as IEEE half") {
    // Every finite half value survives the round trip.
    for (uint32_t h = 0; h < 0x10000; ++h) {
        if ((h & 0x7c00u) == 0x7c00u) continue;  // inf, NaN
        CAPTURE(h);
        const float f = kv::f16_to_f32(uint16_t(h));
        REQUIRE(kv::f32_to_f16(f) == uint16_t(h));
    }
    // Halfway between neighbours: to the even one; a hair off: to the nearer one.
    for (uint32_t h = 1; h < 0x7bffu; h += 37) {
        const float a = kv::f16_to_f32(uint16_t(h)), b = kv::f16_to_f32(uint16_t(h + 1));
        const float mid = 0.5f * (a + b);  // exact in f32
        CAPTURE(h);
        CHECK(kv::f32_to_f16(mid) == uint16_t((h & 1) ? h + 1 : h));
        CHECK(kv::f32_to_f16(std::nextafter(mid, 0.f)) == uint16_t(h));
        CHECK(kv::f32_to_f16(std::nextafter(mid, 1e9f)) == uint16_t(h + 1));
        CHECK(kv::f32_to_f16(-mid) == uint16_t(0x8000u | ((h & 1) ? h + 1 : h)));
    }
    CHECK(kv::f32_to_f16(65504.f) == 0x7bffu);
    CHECK(kv::f32_to_f16(65520.f) == 0x7c00u);  // rounds to inf
    CHECK(kv::f32_to_f16(1e-9f) == 0);
    CHECK(kv::f16_to_f32(0x0001u) == std::ldexp(1.f, -24));
    CHECK(kv::round_f16(1.0f + std::ldexp(1.f, -11)) == 1.0f);  // tie: to even
}

TEST_CASE("int8: scale max|x|/127, round half away from zero, clamp, zero rows scale 1") {
    const float x[4] = {-2.54f, 1.27f, 0.01f, 0.005f};
    const float s = kv::int8_scale(x, 4);
    CHECK(s == 2.54f / 127.f);
    CHECK(kv::quantize_int8(-2.54f, s) == -127);
    CHECK(kv::quantize_int8(1.27f, s) == 64);  // 63.5 -> 64 (half away from zero)
    CHECK(kv::quantize_int8(-1.27f, s) == -64);
    CHECK(kv::quantize_int8(100.f, s) == 127);  // clamped
    const float zero[3] = {0.f, 0.f, 0.f};
    CHECK(kv::int8_scale(zero, 3) == 1.f);
}

TEST_CASE("f16 and int8 rows read back within half a quantisation step of the f32 rows") {
    const kv::ModelConfig cfg = cache_config();
    const int kvd = cfg.kv_dim(), hd = cfg.head_dim();
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 1.5f);
    for (kv::KvDtype t : {kv::KvDtype::f16, kv::KvDtype::int8}) {
        CAPTURE(kv::dtype_name(t));
        kv::HostKVCache c(cfg, policy(0, 0, t));
        c.set_keep_unrounded(true);
        const std::vector<int> slots = c.place(6);
        std::vector<std::vector<float>> ks(6, std::vector<float>(kvd)), vs = ks;
        for (int i = 0; i < 6; ++i) {
            for (int d = 0; d < kvd; ++d) ks[i][d] = nd(rng), vs[i][d] = nd(rng) * (i == 3 ? 0.f : 1.f);
            for (int l = 0; l < cfg.n_layer; ++l) c.write(l, slots[i], ks[i].data(), vs[i].data());
        }
        for (int g = 0; g < cfg.n_kv_head; ++g) {
            kv::RowMat k, v, kr, vr;
            REQUIRE(c.read_rows(1, g, slots, k, v));
            REQUIRE(c.read_rows(1, g, slots, kr, vr, true));
            for (int i = 0; i < 6; ++i) {
                for (int which = 0; which < 2; ++which) {
                    const std::vector<float>& x = which ? vs[i] : ks[i];
                    const kv::RowMat& got = which ? v : k;
                    const kv::RowMat& raw = which ? vr : kr;
                    const float s = kv::int8_scale(x.data() + g * hd, hd);
                    for (int d = 0; d < hd; ++d) {
                        const float xf = x[size_t(g * hd + d)];
                        CAPTURE(i);
                        CAPTURE(d);
                        CHECK(raw(i, d) == xf);  // the unrounded row is kept as computed
                        float half_step;
                        if (t == kv::KvDtype::int8) {
                            half_step = 0.5f * s;
                        } else {
                            int e = 0;
                            std::frexp(xf, &e);  // |x| in [2^(e-1), 2^e): ulp 2^(e-11)
                            half_step = 0.5f * std::ldexp(1.f, std::max(e - 11, -24));
                        }
                        CHECK(std::abs(got(i, d) - xf) <= half_step * (1.f + 1e-6f));
                    }
                }
            }
        }
    }
}

TEST_CASE("bad policies are refused with a line naming the field") {
    const kv::ModelConfig cfg = cache_config();
    CHECK(kvtest::error_of([&] { kv::HostKVCache c(cfg, policy(-1, 0)); }).find("window -1") != std::string::npos);
    CHECK(kvtest::error_of([&] { kv::HostKVCache c(cfg, policy(3, 4)); }).find("sinks 4 exceed") !=
          std::string::npos);
    CHECK(kvtest::error_of([] { kv::parse_dtype("f8", "--kv-dtype"); }) ==
          "--kv-dtype: 'f8' is not a cache dtype (use f32, f16 or int8)");
}

TEST_CASE("f16 storage reads every finite half back exactly (vector and scalar paths)") {
    kv::ModelConfig c = cache_config();
    c.n_ctx = 2048;
    c.n_embd = 64;
    c.n_head = 4;
    c.n_kv_head = 2;  // hd 16: 8-wide vector conversions and no scalar tail
    const int kvd = c.kv_dim();
    std::vector<float> vals;
    for (uint32_t h = 0; h < 0x10000; ++h)
        if ((h & 0x7c00u) != 0x7c00u) vals.push_back(kv::f16_to_f32(uint16_t(h)));
    const int rows = int(vals.size() + kvd - 1) / kvd;
    vals.resize(size_t(rows) * kvd, 0.f);
    kv::HostKVCache cache(c, policy(0, 0, kv::KvDtype::f16));
    const std::vector<int> slots = cache.place(rows);
    for (int r = 0; r < rows; ++r) cache.write(0, slots[r], vals.data() + size_t(r) * kvd, vals.data() + size_t(r) * kvd);
    for (int g = 0; g < c.n_kv_head; ++g) {
        kv::RowMat k, v;
        cache.read_rows(0, g, slots, k, v);
        int bad = 0;
        for (int r = 0; r < rows; ++r)
            for (int d = 0; d < c.head_dim(); ++d) {
                const float want = vals[size_t(r) * kvd + g * c.head_dim() + d];
                bad += !(k(r, d) == want && std::signbit(k(r, d)) == std::signbit(want));
            }
        CHECK(bad == 0);
    }
}
