// Kernels of the CUDA engine: embedding, LayerNorm (with the previous projection's
// bias folded in), c_attn bias + cache write, GELU, and causal attention over the
// cache. The matrix products are cuBLAS calls in cuda_engine.cpp. Same math as the
// CPU reference (core/engine_cpu.cpp), in f32, without fast-math intrinsics.
// Notation: n rows this step, C n_embd, Q c_attn width, T n_ctx, hd head_dim.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/engine/cuda/cuda_check.h"
#include "core/engine/cuda/kernels.cuh"

namespace kv::cuda {

namespace {

constexpr int kRowThreads = 256;   // one block per row: embed, LayerNorm, bias+cache
constexpr int kAttnThreads = 256;  // one block per (query row, head)
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    return v;
}

// Block-wide sum or max; every thread of the block (a multiple of 32) must call it,
// and every thread gets the result. `sh` holds 33 floats.
template <bool kMax>
__device__ float block_reduce(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = kMax ? warp_max(v) : warp_sum(v);
    __syncthreads();  // earlier readers of sh[32] are done
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < n_warps ? sh[lane] : (kMax ? -INFINITY : 0.f);
        t = kMax ? warp_max(t) : warp_sum(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

__global__ void embed_kernel(float* x, const int* step, const float* wte, const float* wpe, int C) {
    const int i = blockIdx.x;
    const int id = step[1 + i], pos = step[0] + i;
    const float* te = wte + size_t(id) * C;
    const float* pe = wpe ? wpe + size_t(pos) * C : nullptr;
    float* xi = x + size_t(i) * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) xi[c] = pe ? te[c] + pe[c] : te[c];
}

__global__ void bias_layernorm_kernel(float* out, float* x, const float* bias, const float* gamma,
                                      const float* beta, int C, float eps) {
    __shared__ float sh[33];
    float* xi = x + size_t(blockIdx.x) * C;
    float* oi = out + size_t(blockIdx.x) * C;
    float sum = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = xi[c];
        if (bias) {
            v += bias[c];
            xi[c] = v;  // each element is read and written by the same thread
        }
        sum += v;
    }
    const float mean = block_reduce<false>(sum, sh) / C;
    float sq = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float d = xi[c] - mean;
        sq += d * d;
    }
    const float var = block_reduce<false>(sq, sh) / C;
    const float rstd = 1.0f / sqrtf(var + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) oi[c] = (xi[c] - mean) * rstd * gamma[c] + beta[c];
}

__global__ void bias_rmsnorm_kernel(float* out, float* x, const float* bias, const float* w, int C, float eps) {
    __shared__ float sh[33];
    float* xi = x + size_t(blockIdx.x) * C;
    float* oi = out + size_t(blockIdx.x) * C;
    float sq = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = xi[c];
        if (bias) {
            v += bias[c];
            xi[c] = v;  // each element is read and written by the same thread
        }
        sq += v * v;
    }
    const float rstd = 1.0f / sqrtf(block_reduce<false>(sq, sh) / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) oi[c] = xi[c] * rstd * w[c];
}

// One block per row: bias, the rotation of every q and k head, then the cache write.
// Each thread owns whole pairs (c, c + hd/2), so the rotation needs no barrier; the
// copy of k before rotation and the cache write read only what the same thread wrote.
__global__ void qkv_rope_to_cache_kernel(float* qkv, const float* b, const float* inv_freq, float* k_cache,
                                         float* v_cache, const int* step, const int* slots, float* k_pre, int r0,
                                         int q_dim, int kv_dim, int hd) {
    const int i = blockIdx.x, half = hd / 2;
    const int Q = q_dim + 2 * kv_dim;
    const float pos = float(step[0] + i);
    float* qi = qkv + size_t(i) * Q;
    float* kpre = (k_pre && i >= r0) ? k_pre + size_t(i - r0) * kv_dim : nullptr;
    const int n_pairs = (q_dim + kv_dim) / 2;  // q heads then k heads, hd/2 pairs each
    for (int t = threadIdx.x; t < n_pairs; t += blockDim.x) {
        const int head = t / half, c = t % half;
        const int a = head * hd + c, z = a + half;  // a < q_dim + kv_dim: q or k
        float x1 = qi[a], x2 = qi[z];
        if (b) {
            x1 += b[a];
            x2 += b[z];
        }
        if (kpre && a >= q_dim) {
            kpre[a - q_dim] = x1;
            kpre[z - q_dim] = x2;
        }
        const float ang = pos * inv_freq[c];
        const float cs = cosf(ang), sn = sinf(ang);
        qi[a] = x1 * cs - x2 * sn;
        qi[z] = x2 * cs + x1 * sn;
    }
    __syncthreads();  // the k part is rotated before it is copied to the cache
    const size_t row = size_t(slots[i]) * kv_dim;
    for (int c = threadIdx.x; c < 2 * kv_dim; c += blockDim.x) {
        const int col = q_dim + c;
        float v = qi[col];
        if (c >= kv_dim) {
            if (b) {
                v += b[col];
                qi[col] = v;
            }
            v_cache[row + (c - kv_dim)] = v;
        } else {
            k_cache[row + c] = v;
        }
    }
}

__global__ void silu_mul_kernel(float* out, const float* g, const float* u, int ld, size_t total, int F) {
    for (size_t t = size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += size_t(gridDim.x) * blockDim.x) {
        const size_t i = t / F, c = t % F;
        const float x = g[i * ld + c];
        out[t] = x / (1.0f + expf(-x)) * u[i * ld + c];
    }
}

__global__ void qkv_bias_to_cache_kernel(float* qkv, const float* b, float* k_cache, float* v_cache,
                                         const int* slots, int C, int kv_dim) {
    const int i = blockIdx.x;
    const int Q = C + 2 * kv_dim;
    const size_t row = size_t(slots[i]) * kv_dim;  // the cache slot of position start_pos + i
    float* qi = qkv + size_t(i) * Q;
    for (int c = threadIdx.x; c < Q; c += blockDim.x) {
        const float v = qi[c] + b[c];
        qi[c] = v;
        if (c >= C + kv_dim)
            v_cache[row + (c - C - kv_dim)] = v;
        else if (c >= C)
            k_cache[row + (c - C)] = v;
    }
}

__global__ void bias_gelu_kernel(float* y, const float* b, size_t total, int W) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    for (size_t t = size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += size_t(gridDim.x) * blockDim.x) {
        const float x = y[t] + b[t % W];
        y[t] = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
}

// Shared memory: scores (T) | q (hd) | partial sums of weights.V (G, hd), where
// G = max(1, blockDim / hd) groups of threads split the keys between them.
__host__ __device__ inline int attn_groups(int threads, int hd) { return threads / hd > 1 ? threads / hd : 1; }
inline size_t attn_smem_bytes(int T, int hd) {
    return sizeof(float) * (size_t(T) + hd + size_t(attn_groups(kAttnThreads, hd)) * hd);
}

__global__ void attention_kernel(float* out, const float* qkv, const float* k_cache, const float* v_cache,
                                 const int* step, const int* key_slots, int n, int T, int q_dim, int H, int Hkv,
                                 int hd, float scale,
                                 float* rec, int rec_h0, int rec_h1, int rec_r0) {
    extern __shared__ float sm[];
    __shared__ float red[33];
    const int i = blockIdx.x, h = blockIdx.y;
    const int g = h / (H / Hkv);  // kv head of this query head
    const int kv_dim = Hkv * hd, Q = q_dim + 2 * kv_dim;
    const int p0 = step[0];
    const int nk = p0 + i + 1;  // causal: keys 0 .. pos
    float* s = sm;              // (T) scores, then weights
    float* q = sm + T;          // (hd)
    float* part = q + hd;       // (G, hd)
    const int tid = threadIdx.x, nt = blockDim.x;

    for (int d = tid; d < hd; d += nt) q[d] = qkv[size_t(i) * Q + size_t(h) * hd + d];
    __syncthreads();

    // Scores: one key per thread (the key's hd floats are contiguous).
    const float* K = k_cache + size_t(g) * hd;
    float mx = -INFINITY;
    for (int j = tid; j < nk; j += nt) {
        const float* kr = K + size_t(key_slots[j]) * kv_dim;
        float dot = 0.f;
        for (int d = 0; d < hd; ++d) dot += q[d] * kr[d];
        dot *= scale;
        s[j] = dot;
        mx = fmaxf(mx, dot);
    }
    mx = block_reduce<true>(mx, red);
    float sum = 0.f;
    for (int j = tid; j < nk; j += nt) {
        const float e = expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    sum = block_reduce<false>(sum, red);
    float* rrow = nullptr;
    if (rec && h >= rec_h0 && h < rec_h1 && i >= rec_r0)
        rrow = rec + (size_t(h - rec_h0) * (n - rec_r0) + (i - rec_r0)) * T;
    for (int j = tid; j < nk; j += nt) {
        const float w = s[j] / sum;
        s[j] = w;
        if (rrow) rrow[j] = w;
    }
    if (rrow)
        for (int j = nk + tid; j < p0 + n; j += nt) rrow[j] = 0.f;  // above the causal diagonal
    __syncthreads();

    // out = weights . V: thread (grp, d) sums keys grp, grp+G, ... of column d.
    const float* V = v_cache + size_t(g) * hd;
    const int G = attn_groups(nt, hd);
    for (int t = tid; t < G * hd; t += nt) {
        const int d = t % hd, grp = t / hd;
        float acc = 0.f;
        for (int j = grp; j < nk; j += G) acc += s[j] * V[size_t(key_slots[j]) * kv_dim + d];
        part[grp * hd + d] = acc;
    }
    __syncthreads();
    for (int d = tid; d < hd; d += nt) {
        float acc = 0.f;
        for (int grp = 0; grp < G; ++grp) acc += part[grp * hd + d];
        out[size_t(i) * q_dim + size_t(h) * hd + d] = acc;
    }
}

}  // namespace

void embed(float* x, const int* step, const float* wte, const float* wpe, int n, int C, cudaStream_t stream) {
    embed_kernel<<<n, kRowThreads, 0, stream>>>(x, step, wte, wpe, C);
    KV_CUDA_LAUNCHED();
}

void bias_layernorm(float* out, float* x, const float* bias, const float* gamma, const float* beta, int n,
                    int C, float eps, cudaStream_t stream) {
    bias_layernorm_kernel<<<n, kRowThreads, 0, stream>>>(out, x, bias, gamma, beta, C, eps);
    KV_CUDA_LAUNCHED();
}

void bias_rmsnorm(float* out, float* x, const float* bias, const float* w, int n, int C, float eps,
                  cudaStream_t stream) {
    bias_rmsnorm_kernel<<<n, kRowThreads, 0, stream>>>(out, x, bias, w, C, eps);
    KV_CUDA_LAUNCHED();
}

void qkv_rope_to_cache(float* qkv, const float* b, const float* inv_freq, float* k_cache, float* v_cache,
                       const int* step, const int* slots, float* k_pre, int r0, int n, int q_dim, int kv_dim,
                       int hd, cudaStream_t stream) {
    qkv_rope_to_cache_kernel<<<n, kRowThreads, 0, stream>>>(qkv, b, inv_freq, k_cache, v_cache, step, slots, k_pre,
                                                           r0, q_dim, kv_dim, hd);
    KV_CUDA_LAUNCHED();
}

void silu_mul(float* out, const float* g, const float* u, int ld, int n, int F, cudaStream_t stream) {
    const size_t total = size_t(n) * F;
    const size_t blocks = (total + kRowThreads - 1) / kRowThreads;
    silu_mul_kernel<<<unsigned(blocks < 65536 ? blocks : 65536), kRowThreads, 0, stream>>>(out, g, u, ld, total, F);
    KV_CUDA_LAUNCHED();
}

void qkv_bias_to_cache(float* qkv, const float* b, float* k_cache, float* v_cache, const int* slots, int n,
                       int C, int kv_dim, cudaStream_t stream) {
    qkv_bias_to_cache_kernel<<<n, kRowThreads, 0, stream>>>(qkv, b, k_cache, v_cache, slots, C, kv_dim);
    KV_CUDA_LAUNCHED();
}

void bias_gelu(float* y, const float* b, int n, int W, cudaStream_t stream) {
    const size_t total = size_t(n) * W;
    const size_t blocks = (total + kRowThreads - 1) / kRowThreads;
    bias_gelu_kernel<<<unsigned(blocks < 65536 ? blocks : 65536), kRowThreads, 0, stream>>>(y, b, total, W);
    KV_CUDA_LAUNCHED();
}

void attention(float* out, const float* qkv, const float* k_cache, const float* v_cache, const int* step,
               const int* key_slots, const AttnShape& s, const AttnRecord& rec, cudaStream_t stream) {
    const dim3 grid(unsigned(s.n), unsigned(s.H));
    const float scale = 1.0f / std::sqrt(float(s.hd));
    attention_kernel<<<grid, kAttnThreads, attn_smem_bytes(s.T, s.hd), stream>>>(
        out, qkv, k_cache, v_cache, step, key_slots, s.n, s.T, s.q_dim, s.H, s.Hkv, s.hd, scale, rec.w, rec.h0, rec.h1,
        rec.r0);
    KV_CUDA_LAUNCHED();
}

void attention_prepare(int T, int hd) {
    const size_t need = attn_smem_bytes(T, hd);
    int dev = 0, max_optin = 0;
    KV_CUDA(cudaGetDevice(&dev));
    KV_CUDA(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    // The kernel's static part (red[33], 144 bytes as compiled) comes on top of the dynamic part.
    cudaFuncAttributes fa{};
    KV_CUDA(cudaFuncGetAttributes(&fa, attention_kernel));
    if (need + fa.sharedSizeBytes > size_t(max_optin))
        throw Error("CUDA attention: n_ctx " + std::to_string(T) + " needs " + std::to_string(need) +
                    " bytes of shared memory per block, the device allows " + std::to_string(max_optin));
    // The limit is per kernel and process-wide: only ever raise it (another engine with
    // a longer context may rely on the current value). Without the opt-in, static plus
    // dynamic shared memory must fit in 48 KiB, so compare against the current limit.
    if (need > size_t(fa.maxDynamicSharedSizeBytes) || need + fa.sharedSizeBytes > 48 * 1024) {
        const int limit = std::max(int(need), fa.maxDynamicSharedSizeBytes);
        KV_CUDA(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit));
    }
}

}  // namespace kv::cuda
