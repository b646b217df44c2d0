// spawn(job): the worker classes' one way to start a thread (BatchWorker, ModelLoader,
// SweepRunner). Where no thread can start (the browser build, kv::kHaveThreads false)
// it runs the job to the end on the caller and returns an empty std::thread, which
// is not joinable: the callers' join() is then a no-op and their finished() is true
// at once, so the Controller publishes the result at its next poll(), as on the desktop.
#pragma once
#include <thread>
#include <utility>

#include "core/engine/threadpool.h"

namespace kvui {

template <class Job>
std::thread spawn(Job&& job) {
    if constexpr (kv::kHaveThreads) {
        return std::thread(std::forward<Job>(job));
    } else {
        job();
        return {};
    }
}

}  // namespace kvui
