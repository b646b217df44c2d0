// Owners of what the CUDA engine holds on the device, so that a constructor that
// throws half-way releases everything: DevArray (a cudaMalloc'd array), PinnedArray
// (page-locked host memory for the per-step transfers), the stream and the cuBLAS
// handle; upload() copies a host matrix into a DevArray; KV_CUBLAS turns a failing
// cuBLAS call into a kv::Error naming the call and file:line (cuda_check.h does the
// same for the runtime). Host code only: the kernels (kernels.cu) take plain pointers.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "core/engine/cuda/cuda_check.h"
#include "core/error.h"

#define KV_CUBLAS(call)                                                                          \
    do {                                                                                         \
        const cublasStatus_t kv_st_ = (call);                                                    \
        if (kv_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
            throw ::kv::Error(std::string("cuBLAS: ") + #call + " failed at " +                  \
                              ::kv::cuda::short_file(__FILE__) + ":" + std::to_string(__LINE__) + \
                              ": " + cublasGetStatusString(kv_st_));                            \
    } while (0)

namespace kv::cuda {

// A device allocation (cudaMalloc), freed on destruction.
template <class T>
class DevArray {
public:
    DevArray() = default;
    DevArray(const DevArray&) = delete;
    DevArray& operator=(const DevArray&) = delete;
    ~DevArray() { release(); }

    void alloc(size_t n) {
        release();
        if (n) KV_CUDA(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
        n_ = n;
    }
    void upload(const T* host, size_t n) {
        alloc(n);
        if (n) KV_CUDA(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice));
    }
    // Grows to at least n elements (contents are lost when it grows).
    void reserve(size_t n) {
        if (n > n_) alloc(n);
    }
    T* get() const { return p_; }
    size_t size() const { return n_; }

private:
    void release() {
        if (p_) cudaFree(p_);
        p_ = nullptr;
        n_ = 0;
    }
    T* p_ = nullptr;
    size_t n_ = 0;
};

// Page-locked host memory (cudaMallocHost), for the per-step transfers.
template <class T>
class PinnedArray {
public:
    PinnedArray() = default;
    PinnedArray(const PinnedArray&) = delete;
    PinnedArray& operator=(const PinnedArray&) = delete;
    ~PinnedArray() {
        if (p_) cudaFreeHost(p_);
    }
    void alloc(size_t n) {
        KV_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
    }
    T* get() const { return p_; }

private:
    T* p_ = nullptr;
};

// Owners of the stream and the cuBLAS handle, so a constructor that throws half-way
// releases them.
struct Stream {
    cudaStream_t s = nullptr;
    ~Stream() {
        if (s) cudaStreamDestroy(s);
    }
};
struct Blas {
    cublasHandle_t h = nullptr;
    ~Blas() {
        if (h) cublasDestroy(h);
    }
};

template <class M>
void upload(DevArray<float>& d, const M& m) {
    d.upload(m.data(), size_t(m.size()));
}

}  // namespace kv::cuda
