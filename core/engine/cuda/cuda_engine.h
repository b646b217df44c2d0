// The CUDA engine's own knobs, beyond core/engine.h's make_cuda_engine(model).
// Built only with the CUDA backend (KVSCOPE_HAVE_CUDA).
#pragma once
#include <cstdint>
#include <memory>

#include "core/engine/engine.h"

namespace kv {

struct CudaEngineOptions {
    // Capture the one-token decode step in a CUDA graph once and replay it at every
    // position (the start position is read from device memory). Off: launch every
    // kernel each step. make_cuda_engine(model) turns it off when the environment
    // has KVSCOPE_CUDA_GRAPHS=0.
    bool graphs = true;
    // The device to run on; -1: $KVSCOPE_CUDA_DEVICE when set, else device 0. The engine
    // sets it explicitly (never whichever device happens to be current) and names it
    // on stderr once per device and process.
    int device = -1;
};

std::unique_ptr<Engine> make_cuda_engine(const Model& model, const CudaEngineOptions& opt);

// How many forward passes of this CUDA engine replayed a captured graph (0 for any
// other engine): lets tests check that the graph path really ran.
int64_t cuda_graph_replays(const Engine& engine);

}  // namespace kv
