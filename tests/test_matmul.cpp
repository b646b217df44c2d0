// The weight products of core/engine/matmul: the portable, AVX2 and AVX-512 kernels
// against a double-precision loop written here (on the same widened weights) and
// against each other, for f32, f16 and bf16, with widths that leave vector tails;
// and a whole engine run with each kernel. A vector kernel the CPU cannot run is
// skipped with a message; under CI an x86 machine must run at least the AVX2 one.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/engine/matmul.h"
#include "core/model/safetensors.h"
#include "core/rng.h"
#include "core/session/session.h"
#include "test_helpers.h"

using namespace kv;
namespace mm = kv::matmul;

namespace {

// Restores the kernel in use when a test changes it.
struct KernelGuard {
    mm::Kernel saved = mm::kernel();
    ~KernelGuard() { mm::set_kernel(saved); }
};

// Every kernel this CPU runs, the portable one first.
std::vector<mm::Kernel> kernels() {
    std::vector<mm::Kernel> run;
    for (auto k : {mm::Kernel::portable, mm::Kernel::avx2, mm::Kernel::avx512}) {
        if (mm::cpu_runs(k))
            run.push_back(k);
        else
            MESSAGE("skipped the " << std::string(mm::kernel_name(k)) << " kernel: this CPU lacks its instructions");
    }
#if defined(__x86_64__)
    if (run.size() < 2 && kvtest::under_ci()) FAIL("under CI an x86-64 machine must run a vector kernel (AVX2)");
#endif
    return run;
}

std::vector<float> randoms(size_t n, uint64_t seed) {
    SplitMix64 r{seed};
    std::vector<float> v(n);
    for (auto& x : v) x = float(int64_t(r.next() >> 40) - (int64_t(1) << 23)) / float(1 << 23);
    return v;
}

// A matrix in type t: its stored bits (f32: the floats) and the values they hold.
struct Stored {
    std::vector<float> f32, values;
    std::vector<uint16_t> bits;
    const void* data() const { return bits.empty() ? static_cast<const void*>(f32.data()) : bits.data(); }
};

Stored store(const std::vector<float>& v, WeightType t) {
    Stored s;
    if (t == WeightType::f32) {
        s.f32 = s.values = v;
        return s;
    }
    for (float x : v) {
        s.bits.push_back(t == WeightType::f16 ? float_to_half(x) : float_to_bf16(x));
        s.values.push_back(t == WeightType::f16 ? half_to_float(s.bits.back()) : bf16_to_float(s.bits.back()));
    }
    return s;
}

}  // namespace

TEST_CASE("rows_times and dot_rows: every kernel matches a double-precision loop") {
    KernelGuard guard;
    for (auto t : {WeightType::f32, WeightType::f16, WeightType::bf16})
        for (auto k : kernels()) {
            mm::set_kernel(k);
            CAPTURE(weight_type_name(t));
            CAPTURE(mm::kernel_name(k));
            // n rows of X (n, nk) times W (nk, ldw) columns [0, w): odd sizes, tails of every length.
            for (int n : {1, 3, 4, 6})
                for (int w : {1, 16, 37, 100}) {
                    const int nk = 23, ldw = w + 5, ldx = nk + 2, ldy = w + 3;
                    const auto X = randoms(size_t(n) * ldx, 1 + n);
                    const Stored W = store(randoms(size_t(nk) * ldw, 7 + w), t);
                    std::vector<float> Y(size_t(n) * ldy, -99.f);
                    mm::rows_times(t, n, nk, w, X.data(), ldx, W.data(), ldw, Y.data(), ldy);
                    double worst = 0;
                    for (int r = 0; r < n; ++r)
                        for (int c = 0; c < w; ++c) {
                            double e = 0;
                            for (int q = 0; q < nk; ++q) e += double(X[r * ldx + q]) * W.values[q * ldw + c];
                            worst = std::max(worst, std::abs(e - Y[r * ldy + c]));
                        }
                    CHECK(worst < 1e-5);
                }
            for (int rows : {1, 4, 7, 8, 19})
                for (int C : {5, 16, 48, 50}) {
                    const auto x = randoms(size_t(C), 3 + C);
                    const Stored H = store(randoms(size_t(rows) * C, 11 + rows), t);
                    std::vector<float> out(static_cast<size_t>(rows), 0.0f);
                    mm::dot_rows(t, rows, C, x.data(), H.data(), out.data());
                    for (int j = 0; j < rows; ++j) {
                        double e = 0;
                        for (int c = 0; c < C; ++c) e += double(x[c]) * H.values[j * C + c];
                        CHECK(std::abs(e - out[j]) < 1e-5);
                    }
                }
        }
}

TEST_CASE("many-row products on 16-bit weights match a double-precision loop") {
    KernelGuard guard;
    for (auto t : {WeightType::f16, WeightType::bf16})
        for (auto k : kernels()) {
            mm::set_kernel(k);
            const int n = 9, in = 300, out = 270, c0 = 13, w = 250;  // panels of 256 rows / 128 columns, with tails
            const auto X = randoms(size_t(n) * in, 5);
            const Mat16 W = Mat16::round(randoms(size_t(in) * out, 6).data(), in, out, t, "W");
            std::vector<float> wide(size_t(in) * out);
            W.widen(wide.data());
            for (bool acc : {false, true}) {
                std::vector<float> Y(size_t(n) * out, 0.5f);
                mm::many_rows_times(W, c0, w, n, X.data(), in, Y.data() + c0, out, acc);
                double worst = 0;
                for (int r = 0; r < n; ++r)
                    for (int c = 0; c < w; ++c) {
                        double e = acc ? 0.5 : 0.0;
                        for (int q = 0; q < in; ++q) e += double(X[r * in + q]) * wide[q * out + c0 + c];
                        worst = std::max(worst, std::abs(e - Y[r * out + c0 + c]));
                    }
                CHECK(worst < 1e-4);
            }
            // Head-shaped: Y (n, len) = X (n, C) * H[r0:r0+len]^T.
            const int V = 300, C = 40, r0 = 7, len = 290;
            const Mat16 H = Mat16::round(randoms(size_t(V) * C, 8).data(), V, C, t, "H");
            std::vector<float> hw(size_t(V) * C), Xh = randoms(size_t(n) * C, 9), Y(size_t(n) * len);
            H.widen(hw.data());
            mm::many_rows_dot(H, r0, len, n, Xh.data(), C, Y.data(), len);
            double worst = 0;
            for (int r = 0; r < n; ++r)
                for (int j = 0; j < len; ++j) {
                    double e = 0;
                    for (int c = 0; c < C; ++c) e += double(Xh[r * C + c]) * hw[(r0 + j) * C + c];
                    worst = std::max(worst, std::abs(e - Y[r * len + j]));
                }
            CHECK(worst < 1e-4);
        }
}

TEST_CASE("every vector kernel gives the portable kernel's generation") {
    KernelGuard guard;
    const auto ks = kernels();
    if (ks.size() < 2) {
        MESSAGE("SKIPPED: this CPU runs no vector kernel, only the portable one");
        return;
    }
    for (auto t : {WeightType::f32, WeightType::f16, WeightType::bf16}) {
        CAPTURE(weight_type_name(t));
        auto m = kvtest::random_model(67, 24, 48, 2, 4, 2, 77, false);
        m->weights.wte *= 20.0f;
        m->weights.lm_head *= 20.0f;
        set_weight_type(m->weights, m->config, t);
        std::vector<std::vector<float>> logits[3];
        std::vector<int> tokens[3];
        for (size_t i = 0; i < ks.size(); ++i) {
            mm::set_kernel(ks[i]);
            Session s(*m, make_cpu_engine(*m));
            s.set_prompt_ids(kvtest::seq_ids(6, 67));  // a 6-row prefill, then decode steps
            for (int k = 0; k < 12; ++k) logits[i].push_back(s.step().logits);
            tokens[i] = s.tokens();
        }
        for (size_t i = 1; i < ks.size(); ++i) {
            CAPTURE(mm::kernel_name(ks[i]));
            CHECK(tokens[0] == tokens[i]);
            for (size_t k = 0; k < logits[0].size(); ++k)
                CHECK(kvtest::max_abs_diff(logits[0][k], logits[i][k]) < 1e-4f);
        }
    }
}

TEST_CASE("set_kernel refuses a kernel the CPU cannot run") {
    KernelGuard guard;
    for (auto k : {mm::Kernel::avx2, mm::Kernel::avx512}) {
        CAPTURE(mm::kernel_name(k));
        if (mm::cpu_runs(k)) {
            CHECK_NOTHROW(mm::set_kernel(k));
            CHECK(mm::kernel() == k);
        } else {
            CHECK_THROWS_AS(mm::set_kernel(k), kv::Error);
        }
    }
    CHECK(mm::cpu_runs(mm::Kernel::portable));
    CHECK_NOTHROW(mm::set_kernel(mm::Kernel::portable));
    CHECK(mm::kernel() == mm::Kernel::portable);
    // The fastest kernel the CPU runs is the detected one.
    CHECK(mm::detected_kernel() == kernels().back());
}
