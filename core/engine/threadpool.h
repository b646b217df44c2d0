// ThreadPool: a small persistent pool for the CPU engine's parallel loops. The
// calling thread takes part, so a pool of size n starts n-1 workers. Tasks are
// claimed one at a time from a shared counter (dynamic scheduling), so a worker the
// OS has descheduled only delays the task it holds, not a fixed share of the work.
// parallel_for neither allocates nor copies the callable: a decode step stays
// allocation-free. Not reentrant: one parallel_for at a time per pool.
// In the browser build (Emscripten without pthreads, docs/design.md "In the browser")
// no thread can start: every pool has size 1 and runs its tasks on the caller.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace kv {

// False where std::thread cannot start a thread (a WebAssembly build without pthreads).
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
inline constexpr bool kHaveThreads = false;
#else
inline constexpr bool kHaveThreads = true;
#endif

class ThreadPool {
public:
    // n_threads <= 0 means std::thread::hardware_concurrency(); always 1 without threads.
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }

    // Calls fn(i) for every i in [0, n_tasks), spread over the pool; returns when all
    // calls have returned. fn must not throw.
    template <class F>
    void parallel_for(int n_tasks, F&& fn) {
        if (n_tasks <= 0) return;
        if (n_tasks == 1 || workers_.empty()) {
            for (int i = 0; i < n_tasks; ++i) fn(i);
            return;
        }
        using Fn = std::remove_reference_t<F>;
        run(n_tasks, [](void* ctx, int i) { (*static_cast<Fn*>(ctx))(i); }, const_cast<void*>(static_cast<const void*>(&fn)));
    }

    static int default_threads();

private:
    using TaskFn = void (*)(void*, int);
    void run(int n_tasks, TaskFn fn, void* ctx);
    void worker_loop();
    // Claims and runs tasks of generation `gen` until none are left.
    void work(uint32_t gen, int n_tasks, TaskFn fn, void* ctx);

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_;
    // The job, guarded by mu_ (workers copy it under the lock).
    uint32_t gen_ = 0;
    int n_tasks_ = 0;
    TaskFn fn_ = nullptr;
    void* ctx_ = nullptr;
    bool stop_ = false;
    std::atomic<uint32_t> gen_seen_{0};  // gen_, readable without the lock (spinning)
    // (generation << 32) | next task index: a claim made for an older job fails.
    std::atomic<uint64_t> next_{0};
    std::atomic<int> done_{0};
};

}  // namespace kv
