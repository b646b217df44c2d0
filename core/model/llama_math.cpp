#include "core/model/llama_math.h"

namespace kv {

void rms_norm(float* out, const float* x, const float* w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; ++i) ss += x[i] * x[i];
    const float r = 1.0f / std::sqrt(ss / float(n) + eps);
    for (int i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

void rope_angles(int pos, const float* inv_freq, int half, float* cos_out, float* sin_out) {
    for (int i = 0; i < half; ++i) {
        const float a = float(pos) * inv_freq[i];
        cos_out[i] = std::cos(a);
        sin_out[i] = std::sin(a);
    }
}

void rope_rotate(float* row, int hd, const float* cos, const float* sin) {
    const int half = hd / 2;
    for (int i = 0; i < half; ++i) {
        const float x1 = row[i], x2 = row[i + half];
        row[i] = x1 * cos[i] - x2 * sin[i];
        row[i + half] = x2 * cos[i] + x1 * sin[i];
    }
}

}  // namespace kv
