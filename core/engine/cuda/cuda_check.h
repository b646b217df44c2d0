// Error checks for CUDA runtime and cuBLAS calls: a failing call becomes a kv::Error
// naming the call, file:line and CUDA's own description, on one line.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "core/error.h"

namespace kv::cuda {

// "core/engine/cuda/x.cpp" rather than the absolute path the build passes in __FILE__.
inline const char* short_file(const char* file) {
    const std::string f(file);
    const auto at = f.rfind("core/engine/cuda/");
    return at == std::string::npos ? file : file + at;
}

// Also clears the runtime's last-error state: cudaGetLastError() (KV_CUDA_LAUNCHED)
// returns the most recent error of *any* runtime call, so an error that was thrown and
// handled (a graph capture that fell back to direct launches, a cudaMalloc for an
// engine that did not fit) would otherwise be thrown again by the next launch check.
// Sticky errors (a kernel fault) stay: the context is unusable and every call says so.
[[noreturn]] inline void throw_cuda_error(const char* call, const char* file, int line, cudaError_t e) {
    (void)cudaGetLastError();
    throw Error(std::string("CUDA: ") + call + " failed at " + short_file(file) + ":" + std::to_string(line) +
                ": " + cudaGetErrorString(e));
}

}  // namespace kv::cuda

#define KV_CUDA(call)                                                                \
    do {                                                                             \
        const cudaError_t kv_err_ = (call);                                          \
        if (kv_err_ != cudaSuccess)                                                  \
            ::kv::cuda::throw_cuda_error(#call, __FILE__, __LINE__, kv_err_);        \
    } while (0)

// After a kernel launch: launch-configuration errors surface here.
#define KV_CUDA_LAUNCHED() KV_CUDA(cudaGetLastError())
