#include "core/engine/cache_policy.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace kv {

const char* dtype_name(KvDtype t) {
    switch (t) {
    case KvDtype::f16: return "f16";
    case KvDtype::int8: return "int8";
    case KvDtype::f32: break;
    }
    return "f32";
}

int dtype_bytes(KvDtype t) { return t == KvDtype::f32 ? 4 : t == KvDtype::f16 ? 2 : 1; }

KvDtype parse_dtype(const std::string& s, const std::string& where) {
    if (s == "f32") return KvDtype::f32;
    if (s == "f16") return KvDtype::f16;
    if (s == "int8") return KvDtype::int8;
    throw Error(where + ": '" + s + "' is not a cache dtype (use f32, f16 or int8)");
}

void check_policy(const CachePolicy& p, const std::string& where) {
    if (p.window < 0) throw Error(where + ": window " + std::to_string(p.window) + " is negative (0 = unlimited)");
    if (p.sinks < 0) throw Error(where + ": sinks " + std::to_string(p.sinks) + " is negative");
    if (p.window > 0 && p.sinks > p.window)
        throw Error(where + ": sinks " + std::to_string(p.sinks) + " exceed the window " + std::to_string(p.window));
}

std::string policy_text(const CachePolicy& p) {
    std::string s = p.window > 0 ? "window " + std::to_string(p.window) : "full";
    if (p.window > 0 && p.sinks > 0) s += " + " + std::to_string(p.sinks) + " sinks";
    return s + (p.window > 0 ? ", " : " ") + dtype_name(p.dtype) + (p.mla == MlaRead::absorbed ? ", absorbed" : "");
}

const char* mla_read_name(MlaRead m) { return m == MlaRead::absorbed ? "absorbed" : "expand"; }

MlaRead parse_mla_read(const std::string& s, const std::string& where) {
    if (s == "expand") return MlaRead::expand;
    if (s == "absorbed") return MlaRead::absorbed;
    throw Error(where + ": '" + s + "' is not an MLA mode (use expand or absorbed)");
}

namespace {

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float float_of(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace

// After F. Giesen's float_to_half_fast3_rtne: normal halves by rebiasing the exponent
// and adding the rounding bias (0xfff plus the kept mantissa's lowest bit, so ties go
// to even); subnormal halves by letting the FPU round in a float whose ulp is 2^-24.
uint16_t f32_to_f16(float f) {
    uint32_t x = bits_of(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return uint16_t(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));  // NaN, inf
    if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
    if (x < 0x38800000u) {                                   // below 2^-14: subnormal or zero
        const float v = float_of(x) + 0.5f;
        return uint16_t(sign | (bits_of(v) - 0x3f000000u));
    }
    const uint32_t odd = (x >> 13) & 1u;
    x += 0xc8000fffu + odd;  // exponent -= 112 (127 - 15), then round
    return uint16_t(sign | (x >> 13));
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float v = std::ldexp(float(m), -24);
        return sign ? -v : v;
    }
    if (e == 31) return float_of(sign | 0x7f800000u | (m << 13));
    return float_of(sign | ((e + 112) << 23) | (m << 13));
}

float round_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

float int8_scale(const float* x, int n) {
    float mx = 0.f;
    for (int i = 0; i < n; ++i) mx = std::max(mx, std::abs(x[i]));
    return mx > 0.f ? mx / 127.f : 1.f;
}

int8_t quantize_int8(float x, float scale) {
    const float q = std::round(x / scale);  // std::round: halves away from zero
    return int8_t(std::clamp(q, -127.f, 127.f));
}

}  // namespace kv
