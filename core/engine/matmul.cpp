// Weight products for f32/f16/bf16 weights (see matmul.h). Element types are tags:
// F32 (float), F16 and BF16 (uint16_t bit patterns), each widened to f32 before the
// multiply-add. The portable loops are plain C++; the AVX2 and AVX-512 ones are compiled
// for their targets by a function attribute, whatever the build's -march, and only
// called when CPUID reports the instructions and the OS saves their registers.
#include "core/engine/matmul.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/bit_cast.h"
#include "core/error.h"
#include "core/tensor.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KV_HAVE_X86_PATHS 1
#include <cpuid.h>
#include <immintrin.h>
// The instruction sets of the vector paths, on every function of theirs, lambdas and
// inline helpers included: clang ignores `#pragma GCC target`, and neither compiler
// inlines a target's intrinsics into a function (or lambda) compiled without it.
#define KV_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define KV_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

namespace kv::matmul {

namespace {

// ---------------------------------------------------------------- portable path

inline float f16_to_f32(uint16_t h) {
    // Exponent/mantissa shifted into place and rescaled by 2^112: exact for normal
    // and subnormal halves; Inf/NaN get the float's all-ones exponent.
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    float v = kv::bit_cast<float>(uint32_t(h & 0x7fffu) << 13) * 0x1p112f;
    if ((h & 0x7c00u) == 0x7c00u) v = kv::bit_cast<float>(kv::bit_cast<uint32_t>(v) | 0x7f800000u);
    return kv::bit_cast<float>(kv::bit_cast<uint32_t>(v) | sign);
}
inline float bf16_to_f32(uint16_t b) { return kv::bit_cast<float>(uint32_t(b) << 16); }

struct F32 { using E = float; static float get(E v) { return v; } };
struct F16 { using E = uint16_t; static float get(E v) { return f16_to_f32(v); } };
struct BF16 { using E = uint16_t; static float get(E v) { return bf16_to_f32(v); } };

template <class T>
void rows_times_portable(int n, int nk, int w, const float* X, int64_t ldx, const void* Wv, int64_t ldw, float* Y,
                         int64_t ldy) {
    const auto* W = static_cast<const typename T::E*>(Wv);
    for (int r0 = 0; r0 < n; r0 += 4) {
        const int nr = std::min(4, n - r0);
        for (int r = 0; r < nr; ++r) std::fill_n(Y + (r0 + r) * ldy, w, 0.0f);
        for (int k = 0; k < nk; ++k) {
            const typename T::E* wr = W + k * ldw;
            for (int r = 0; r < nr; ++r) {
                const float xv = X[(r0 + r) * ldx + k];
                float* y = Y + (r0 + r) * ldy;
                for (int c = 0; c < w; ++c) y[c] += xv * T::get(wr[c]);
            }
        }
    }
}

template <class T>
void dot_rows_portable(int rows, int C, const float* x, const void* Hv, float* out) {
    const auto* H = static_cast<const typename T::E*>(Hv);
    for (int j = 0; j < rows; ++j) {
        const typename T::E* h = H + int64_t(j) * C;
        float s = 0;
        for (int c = 0; c < C; ++c) s += x[c] * T::get(h[c]);
        out[j] = s;
    }
}

template <class T>
void widen_portable(const void* src, float* dst, int64_t n) {
    const auto* s = static_cast<const typename T::E*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = T::get(s[i]);
}

}  // namespace

// ---------------------------------------------------------------- prefetch

#ifdef KV_HAVE_X86_PATHS
namespace {

// Prefetches a contiguous block a loop reads later, a share per step of the loop
// now running. The loops below read R rows side by side: R streams, which the
// hardware prefetcher follows late when the rows are short (<= kShortRow bytes).
// Measured on an AMD EPYC 7003, 2 threads, 256 MB of weights (docs/benchmarks.md):
// 16-bit rows of 768 go from 22-24 to 26-27 GB/s; longer rows and f32 rows of 768
// lose 2-4 GB/s with it, so they go without. The AVX-512 loops follow the same rule
// (their 16-bit head was the slow part there too); not yet measured on such a CPU.
constexpr int64_t kShortRow = 2048;
constexpr int kAheadBlocks = 2;  // fetch the block after next
struct AheadPrefetch {
    const char* p;
    int64_t bytes, per_step, done = 0;
    // The block of `rows` rows of `row_bytes` at `block`, kAheadBlocks blocks on.
    AheadPrefetch(const void* block, int rows, int64_t row_bytes, int steps)
        : p(static_cast<const char*>(block) + kAheadBlocks * rows * row_bytes),
          bytes(row_bytes <= kShortRow ? rows * row_bytes : 0),
          per_step((bytes / std::max(1, steps) + 63) / 64 * 64) {}
    void step() {
        for (const int64_t e = std::min(bytes, done + per_step); done < e; done += 64) _mm_prefetch(p + done, _MM_HINT_T0);
    }
};

}  // namespace
#endif

// ---------------------------------------------------------------- AVX-512 path

#ifdef KV_HAVE_X86_PATHS
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// GCC 12's _mm512_reduce_add_ps starts from _mm512_undefined_pd() on purpose, and its
// -Wuninitialized then fires inside the header (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#define KV_POP_UNINITIALIZED 1
#endif
namespace {

KV_AVX512 inline __mmask16 tail_mask(int left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u); }

template <class T, bool Masked = true>
KV_AVX512 inline __m512 vload(const typename T::E* p, __mmask16 m) {
    if constexpr (std::is_same_v<T, F32>) {
        return Masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
    } else {
        const __m256i h = Masked ? _mm256_maskz_loadu_epi16(m, p) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        if constexpr (std::is_same_v<T, F16>)
            return _mm512_cvtph_ps(h);
        else
            return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
}

// One 16-column chunk of Y (full, or the masked tail) += sum_i x_i * W[row i]: the
// unmasked loads and stores of full chunks are much cheaper than masked ones.
template <class T, int R, bool Tail>
KV_AVX512 inline void chunk_fma(float* y, const typename T::E* w0, int64_t ldw, const __m512* xb, __mmask16 m) {
    __m512 acc = Tail ? _mm512_maskz_loadu_ps(m, y) : _mm512_loadu_ps(y);
    __m512 acc2 = _mm512_setzero_ps();
    for (int i = 0; i < R; i += 2) {
        acc = _mm512_fmadd_ps(xb[i], vload<T, Tail>(w0 + i * ldw, m), acc);
        if (i + 1 < R) acc2 = _mm512_fmadd_ps(xb[i + 1], vload<T, Tail>(w0 + (i + 1) * ldw, m), acc2);
    }
    acc = _mm512_add_ps(acc, acc2);
    if (Tail)
        _mm512_mask_storeu_ps(y, m, acc);
    else
        _mm512_storeu_ps(y, acc);
}

// NR rows of X against one 16-column chunk of R rows of W: each W load feeds NR
// FMAs into NR accumulators (the rows' Y chunks), x broadcast from memory.
template <class T, int R, int NR, bool Tail>
KV_AVX512 inline void chunk_fma_rows(float* y, int64_t ldy, const typename T::E* w0, int64_t ldw, const float* x,
                                     int64_t ldx, __mmask16 m) {
    __m512 acc[NR];
    for (int r = 0; r < NR; ++r) acc[r] = Tail ? _mm512_maskz_loadu_ps(m, y + r * ldy) : _mm512_loadu_ps(y + r * ldy);
    for (int i = 0; i < R; ++i) {
        const __m512 wv = vload<T, Tail>(w0 + i * ldw, m);
        for (int r = 0; r < NR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ldx + i]), wv, acc[r]);
    }
    for (int r = 0; r < NR; ++r) {
        if (Tail)
            _mm512_mask_storeu_ps(y + r * ldy, m, acc[r]);
        else
            _mm512_storeu_ps(y + r * ldy, acc[r]);
    }
}

// Rows of X against W's rows k (8 at a time), the whole width w per k, so W is read
// once from memory, row after row. One row alone takes two accumulators per chunk;
// batches (serving) go 8 or 4 rows at a time, each W chunk loaded once for all of them
// (the 8 rows of W stay in L2 across the groups).
template <class T>
KV_AVX512 void rows_times_avx512(int n, int nk, int w, const float* X, int64_t ldx, const void* Wv, int64_t ldw,
                                 float* Y, int64_t ldy) {
    constexpr int R = 8;
    const auto* W = static_cast<const typename T::E*>(Wv);
    const int wf = w / 16 * 16;  // full chunks end here
    const __mmask16 mt = tail_mask(w - wf);
    for (int r = 0; r < n; ++r) std::fill_n(Y + r * ldy, w, 0.0f);
    auto group = [&](int k, int r, auto rows, auto nr) KV_AVX512 {
        constexpr int Rk = decltype(rows)::value, NR = decltype(nr)::value;
        const typename T::E* w0 = W + k * ldw;
        const float* x = X + r * ldx + k;
        float* y = Y + r * ldy;
        AheadPrefetch pf(w0, r == 0 && ldw == w ? Rk : 0, int64_t(w) * int64_t(sizeof(typename T::E)), wf / 16);
        for (int c = 0; c < wf; c += 16) {
            pf.step();
            chunk_fma_rows<T, Rk, NR, false>(y + c, ldy, w0 + c, ldw, x, ldx, 0);
        }
        if (wf < w) chunk_fma_rows<T, Rk, NR, true>(y + wf, ldy, w0 + wf, ldw, x, ldx, mt);
    };
    auto pass = [&](int k, auto rows) KV_AVX512 {
        constexpr int Rk = decltype(rows)::value;
        if (n == 1) {  // one row: two accumulators keep both FMA pipes busy
            __m512 xb[Rk];
            for (int i = 0; i < Rk; ++i) xb[i] = _mm512_set1_ps(X[k + i]);
            const typename T::E* w0 = W + k * ldw;
            AheadPrefetch pf(w0, ldw == w ? Rk : 0, int64_t(w) * int64_t(sizeof(typename T::E)), wf / 16);
            for (int c = 0; c < wf; c += 16) {
                pf.step();
                chunk_fma<T, Rk, false>(Y + c, w0 + c, ldw, xb, 0);
            }
            if (wf < w) chunk_fma<T, Rk, true>(Y + wf, w0 + wf, ldw, xb, mt);
            return;
        }
        int r = 0;
        for (; r + 8 <= n; r += 8) group(k, r, rows, std::integral_constant<int, 8>{});
        for (; r + 4 <= n; r += 4) group(k, r, rows, std::integral_constant<int, 4>{});
        for (; r < n; ++r) group(k, r, rows, std::integral_constant<int, 1>{});
    };
    int k = 0;
    for (; k + R <= nk; k += R) pass(k, std::integral_constant<int, R>{});
    for (; k < nk; ++k) pass(k, std::integral_constant<int, 1>{});
}

// Eight rows of H at a time against x (eight independent sums keep both FMA pipes
// busy; the rows are adjacent, so this reads one contiguous block), unmasked but for
// the tail of a row, reduced at the end.
template <class T, int R>
KV_AVX512 inline void dot_block(int C, const float* x, const typename T::E* h, float* out) {
    __m512 s[R];
    for (int i = 0; i < R; ++i) s[i] = _mm512_setzero_ps();
    const int cf = C / 16 * 16;
    AheadPrefetch pf(h, R, int64_t(C) * int64_t(sizeof(typename T::E)), cf / 16);  // R rows, one block
    for (int c = 0; c < cf; c += 16) {
        pf.step();
        const __m512 xv = _mm512_loadu_ps(x + c);
        for (int i = 0; i < R; ++i) s[i] = _mm512_fmadd_ps(xv, vload<T, false>(h + int64_t(i) * C + c, 0), s[i]);
    }
    if (cf < C) {
        const __mmask16 m = tail_mask(C - cf);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + cf);
        for (int i = 0; i < R; ++i) s[i] = _mm512_fmadd_ps(xv, vload<T>(h + int64_t(i) * C + cf, m), s[i]);
    }
    for (int i = 0; i < R; ++i) out[i] = _mm512_reduce_add_ps(s[i]);
}

template <class T>
KV_AVX512 void dot_rows_avx512(int rows, int C, const float* x, const void* Hv, float* out) {
    const auto* H = static_cast<const typename T::E*>(Hv);
    int j = 0;
    for (; j + 8 <= rows; j += 8) dot_block<T, 8>(C, x, H + int64_t(j) * C, out + j);
    for (; j < rows; ++j) dot_block<T, 1>(C, x, H + int64_t(j) * C, out + j);
}

template <class T>
KV_AVX512 void widen_avx512(const void* src, float* dst, int64_t n) {
    const auto* s = static_cast<const typename T::E*>(src);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, vload<T, false>(s + i, 0));
    if (i < n) {
        const __mmask16 m = tail_mask(int(n - i));
        _mm512_mask_storeu_ps(dst + i, m, vload<T>(s + i, m));
    }
}

}  // namespace
#ifdef KV_POP_UNINITIALIZED
#pragma GCC diagnostic pop
#endif
#endif  // KV_HAVE_X86_PATHS

// ---------------------------------------------------------------- AVX2 path
// The same loops in 256-bit registers (AVX2, FMA, F16C), for x86 CPUs without
// AVX-512 (AMD Zen 2/3, most laptops). AVX2 has no masked 16-bit loads, so a row's
// last w % 8 columns take the portable loop.

#ifdef KV_HAVE_X86_PATHS
namespace {

template <class T>
KV_AVX2 inline __m256 vload8(const typename T::E* p) {
    if constexpr (std::is_same_v<T, F32>) {
        return _mm256_loadu_ps(p);
    } else {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        if constexpr (std::is_same_v<T, F16>)
            return _mm256_cvtph_ps(h);
        else
            return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
}

// Y[r, c:c+8] += sum_{i < R} x_i * W[k + i, c:c+8], two accumulators.
template <class T, int R>
KV_AVX2 inline void chunk_fma8(float* y, const typename T::E* w0, int64_t ldw, const __m256* xb) {
    __m256 acc = _mm256_loadu_ps(y), acc2 = _mm256_setzero_ps();
    for (int i = 0; i < R; i += 2) {
        acc = _mm256_fmadd_ps(xb[i], vload8<T>(w0 + i * ldw), acc);
        if (i + 1 < R) acc2 = _mm256_fmadd_ps(xb[i + 1], vload8<T>(w0 + (i + 1) * ldw), acc2);
    }
    _mm256_storeu_ps(y, _mm256_add_ps(acc, acc2));
}

template <class T>
KV_AVX2 void rows_times_avx2(int n, int nk, int w, const float* X, int64_t ldx, const void* Wv, int64_t ldw,
                             float* Y, int64_t ldy) {
    constexpr int R = 8;
    const auto* W = static_cast<const typename T::E*>(Wv);
    const int wf = w / 8 * 8;
    for (int r = 0; r < n; ++r) std::fill_n(Y + r * ldy, w, 0.0f);
    auto pass = [&](int k, auto rows) KV_AVX2 {
        constexpr int Rk = decltype(rows)::value;
        const typename T::E* w0 = W + k * ldw;
        for (int r = 0; r < n; ++r) {
            __m256 xb[Rk];
            for (int i = 0; i < Rk; ++i) xb[i] = _mm256_set1_ps(X[r * ldx + k + i]);
            float* y = Y + r * ldy;
            // W's next rows are contiguous when ldw == w; fetched once, for row 0 of X.
            AheadPrefetch pf(w0, r == 0 && ldw == w ? Rk : 0, int64_t(w) * int64_t(sizeof(typename T::E)), wf / 8);
            for (int c = 0; c < wf; c += 8) {
                pf.step();
                chunk_fma8<T, Rk>(y + c, w0 + c, ldw, xb);
            }
            for (int i = 0; i < Rk; ++i)
                for (int c = wf; c < w; ++c) y[c] += X[r * ldx + k + i] * T::get(w0[i * ldw + c]);
        }
    };
    int k = 0;
    for (; k + R <= nk; k += R) pass(k, std::integral_constant<int, R>{});
    for (; k < nk; ++k) pass(k, std::integral_constant<int, 1>{});
}

KV_AVX2 inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// R rows of H against x, 8 columns a step, one sum per row; the tail scalar.
template <class T, int R>
KV_AVX2 inline void dot_block8(int C, const float* x, const typename T::E* h, float* out) {
    __m256 s[R];
    for (int i = 0; i < R; ++i) s[i] = _mm256_setzero_ps();
    const int cf = C / 8 * 8;
    AheadPrefetch pf(h, R, int64_t(C) * int64_t(sizeof(typename T::E)), cf / 8);  // R rows, one block
    for (int c = 0; c < cf; c += 8) {
        pf.step();
        const __m256 xv = _mm256_loadu_ps(x + c);
        for (int i = 0; i < R; ++i) s[i] = _mm256_fmadd_ps(xv, vload8<T>(h + int64_t(i) * C + c), s[i]);
    }
    for (int i = 0; i < R; ++i) {
        float t = hsum8(s[i]);
        for (int c = cf; c < C; ++c) t += x[c] * T::get(h[int64_t(i) * C + c]);
        out[i] = t;
    }
}

template <class T>
KV_AVX2 void dot_rows_avx2(int rows, int C, const float* x, const void* Hv, float* out) {
    const auto* H = static_cast<const typename T::E*>(Hv);
    int j = 0;
    for (; j + 8 <= rows; j += 8) dot_block8<T, 8>(C, x, H + int64_t(j) * C, out + j);
    for (; j < rows; ++j) dot_block8<T, 1>(C, x, H + int64_t(j) * C, out + j);
}

template <class T>
KV_AVX2 void widen_avx2(const void* src, float* dst, int64_t n) {
    const auto* s = static_cast<const typename T::E*>(src);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, vload8<T>(s + i));
    for (; i < n; ++i) dst[i] = T::get(s[i]);
}

}  // namespace
#endif  // KV_HAVE_X86_PATHS

// ---------------------------------------------------------------- dispatch

namespace {

#ifdef KV_HAVE_X86_PATHS
// Which vector kernels this CPU runs, from CPUID and XGETBV (clang 14's
// __builtin_cpu_supports knows no "f16c"). The same rule as libgcc's: AVX2, FMA and
// F16C count only when the OS saves the YMM registers (XCR0 bits 1-2), AVX-512 only
// when it saves the opmask and ZMM ones too (bits 5-7).
struct CpuFeatures {
    bool avx2 = false, avx512 = false;
};

CpuFeatures probe_cpu() {
    CpuFeatures f;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX)) return f;
    const bool fma_f16c = (c & bit_FMA) && (c & bit_F16C);
    unsigned xcr0, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));  // _xgetbv() would need -mxsave
    if ((xcr0 & 0x6u) != 0x6u || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    f.avx2 = fma_f16c && (b & bit_AVX2);
    f.avx512 = fma_f16c && (xcr0 & 0xe6u) == 0xe6u && (b & bit_AVX512F) && (b & bit_AVX512BW) && (b & bit_AVX512VL);
    return f;
}
#endif

Kernel initial_kernel() {
    // KVSCOPE_MATMUL=portable|avx2 picks a slower kernel than the detected one.
    if (const char* e = std::getenv("KVSCOPE_MATMUL"))
        for (Kernel k : {Kernel::portable, Kernel::avx2})
            if (std::string(e) == kernel_name(k) && cpu_runs(k)) return k;
    return detected_kernel();
}

Kernel g_kernel = initial_kernel();

// Calls fn_<kernel><Tag>(args...) for the element type t on the active kernel.
#ifdef KV_HAVE_X86_PATHS
#define KV_ON_KERNEL(fn, T, ...)                                                    \
    switch (g_kernel) {                                                             \
        case Kernel::avx512: return fn##_avx512<T>(__VA_ARGS__);                    \
        case Kernel::avx2: return fn##_avx2<T>(__VA_ARGS__);                        \
        case Kernel::portable: return fn##_portable<T>(__VA_ARGS__);                \
    }
#else
#define KV_ON_KERNEL(fn, T, ...) return fn##_portable<T>(__VA_ARGS__);
#endif
#define KV_DISPATCH(fn, t, ...)                                                     \
    do {                                                                            \
        switch (t) {                                                                \
            case WeightType::f32: KV_ON_KERNEL(fn, F32, __VA_ARGS__) break;         \
            case WeightType::f16: KV_ON_KERNEL(fn, F16, __VA_ARGS__) break;         \
            case WeightType::bf16: KV_ON_KERNEL(fn, BF16, __VA_ARGS__) break;       \
        }                                                                           \
    } while (0)

void widen(WeightType t, const void* src, float* dst, int64_t n) { KV_DISPATCH(widen, t, src, dst, n); }

// A per-thread f32 buffer for widened panels (grows once, then reused).
float* panel_buffer(size_t n) {
    thread_local std::vector<float> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

using ConstStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using Strided = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

}  // namespace

const char* kernel_name(Kernel k) {
    switch (k) {
        case Kernel::avx512: return "avx512";
        case Kernel::avx2: return "avx2";
        case Kernel::portable: break;
    }
    return "portable";
}

bool cpu_runs(Kernel k) {
#ifdef KV_HAVE_X86_PATHS
    static const CpuFeatures cpu = probe_cpu();
    switch (k) {
        case Kernel::avx512: return cpu.avx512;
        case Kernel::avx2: return cpu.avx2;
        case Kernel::portable: break;
    }
#endif
    return k == Kernel::portable;
}

Kernel detected_kernel() {
    for (Kernel k : {Kernel::avx512, Kernel::avx2})
        if (cpu_runs(k)) return k;
    return Kernel::portable;
}

Kernel kernel() { return g_kernel; }

void set_kernel(Kernel k) {
    if (!cpu_runs(k)) throw Error(std::string("matmul: this CPU cannot run the ") + kernel_name(k) + " kernel");
    g_kernel = k;
}

void rows_times(WeightType t, int n, int nk, int w, const float* X, int64_t ldx, const void* W, int64_t ldw,
                float* Y, int64_t ldy) {
    KV_DISPATCH(rows_times, t, n, nk, w, X, ldx, W, ldw, Y, ldy);
}

void dot_rows(WeightType t, int rows, int C, const float* x, const void* H, float* out) {
    KV_DISPATCH(dot_rows, t, rows, C, x, H, out);
}

void many_rows_times(const Mat16& W, int c0, int w, int n, const float* X, int64_t ldx, float* Y, int64_t ldy,
                     bool accumulate) {
    constexpr int kPanelCols = 128, kPanelRows = 256;
    const int in = int(W.rows);
    float* buf = panel_buffer(size_t(kPanelCols) * kPanelRows);
    for (int pc = 0; pc < w; pc += kPanelCols) {
        const int pw = std::min(kPanelCols, w - pc);
        Strided y(Y + pc, n, pw, Eigen::OuterStride<>(ldy));
        for (int k0 = 0; k0 < in; k0 += kPanelRows) {
            const int kb = std::min(kPanelRows, in - k0);
            for (int k = 0; k < kb; ++k) widen(W.type, W.row(k0 + k) + c0 + pc, buf + int64_t(k) * pw, pw);
            const Eigen::Map<const RowMat> P(buf, kb, pw);
            const ConstStrided x(X + k0, n, kb, Eigen::OuterStride<>(ldx));
            if (k0 == 0 && !accumulate)
                y.noalias() = x * P;
            else
                y.noalias() += x * P;
        }
    }
}

void many_rows_dot(const Mat16& H, int r0, int len, int n, const float* X, int64_t ldx, float* Y, int64_t ldy) {
    constexpr int kPanelRows = 128;
    const int C = int(H.cols);
    float* buf = panel_buffer(size_t(kPanelRows) * C);
    for (int j = 0; j < len; j += kPanelRows) {
        const int rows = std::min(kPanelRows, len - j);
        widen(H.type, H.row(r0 + j), buf, int64_t(rows) * C);
        const Eigen::Map<const RowMat> P(buf, rows, C);
        const ConstStrided x(X, n, C, Eigen::OuterStride<>(ldx));
        Strided(Y + j, n, rows, Eigen::OuterStride<>(ldy)).noalias() = x * P.transpose();
    }
}

}  // namespace kv::matmul
