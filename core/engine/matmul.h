// The CPU engine's weight products for f32, f16 and bf16 weights, accumulating in
// f32 (activations and results are always f32). Three implementations of the same
// loops, chosen at run time: a portable one (plain C++, any CPU), an AVX2 one (F16C
// conversions in 256-bit registers, FMA) for CPUs with AVX2/FMA/F16C, and an
// AVX-512 one for CPUs that also have AVX-512F/BW/VL. All are compiled in every
// x86 build; tests run each the CPU has against the portable one.
//
// Decode-shaped products (a few rows) stream the weights once, in memory order:
//   rows_times_k: partial sums over a range of W's rows (contiguous memory), the
//   caller adds the parts; 8 rows of W per pass into two accumulators, so one
//   load and store of Y serves 8 of W. Full 16-lane chunks use plain loads and
//   stores, only a row's tail a masked one: on the AMD EPYC these figures come from,
//   the masked forms throughout halved the 16-bit kernels' rate (docs/benchmarks.md).
//   Many rows (prefill) go through Eigen on f32 panels
//   widened from the 16-bit weights (the widening is amortised over the rows).
#pragma once
#include <cstdint>

#include "core/model/weights.h"

namespace kv::matmul {

enum class Kernel { portable, avx2, avx512 };
const char* kernel_name(Kernel k);
// Whether this CPU has the instructions kernel k needs (portable: always).
bool cpu_runs(Kernel k);
// The fastest kernel this CPU runs.
Kernel detected_kernel();
// The kernel in use (detected_kernel() unless set, or KVSCOPE_MATMUL=portable|avx2
// at start-up). set_kernel throws kv::Error for a kernel the CPU cannot run. Not
// thread-safe: set it before running the engine.
Kernel kernel();
void set_kernel(Kernel k);

// Y[r, 0:w] = sum_{k < nk} X[r, k] * W[k, 0:w] for r < n (Y overwritten). W is the
// (nk, ldw) row-major block of element type t (f32: W points at floats), starting at
// its first row and column. W is read once, in memory order, for any n (meant for
// few rows: the CPU engine sends it up to 16); the AVX-512 kernel loads each chunk of
// W once for 8 or 4 rows of X at a time.
void rows_times(WeightType t, int n, int nk, int w, const float* X, int64_t ldx, const void* W, int64_t ldw,
                float* Y, int64_t ldy);

// out[j] = dot(x[0:C], H[j, 0:C]) for j < rows; H (rows, C) row-major, type t.
void dot_rows(WeightType t, int rows, int C, const float* x, const void* H, float* out);

// Y (n, w) = X (n, in) * W[:, c0:c0+w] for many rows n, 16-bit W (in, ldw): widens
// panels of W to f32 (a per-thread buffer) and multiplies with Eigen. accumulate: Y +=.
void many_rows_times(const Mat16& W, int c0, int w, int n, const float* X, int64_t ldx, float* Y, int64_t ldy,
                     bool accumulate);
// Y (n, len) = X (n, C) * H[r0:r0+len, :]^T for many rows, 16-bit H (rows of C).
void many_rows_dot(const Mat16& H, int r0, int len, int n, const float* X, int64_t ldx, float* Y, int64_t ldy);

}  // namespace kv::matmul
