#include "core/engine/threadpool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KV_CPU_RELAX() _mm_pause()
#else
#define KV_CPU_RELAX() std::this_thread::yield()
#endif

namespace kv {

namespace {
// Spin this many times before sleeping (workers) or yielding (the caller): long
// enough to bridge the short serial parts between two parallel loops of a step.
constexpr int kSpin = 2000;
}  // namespace

int ThreadPool::default_threads() { return kHaveThreads ? std::max(1, int(std::thread::hardware_concurrency())) : 1; }

ThreadPool::ThreadPool(int n_threads) {
    const int n = kHaveThreads && n_threads > 0 ? n_threads : default_threads();
    workers_.reserve(n - 1);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::work(uint32_t gen, int n_tasks, TaskFn fn, void* ctx) {
    uint64_t cur = next_.load(std::memory_order_acquire);
    for (;;) {
        if (uint32_t(cur >> 32) != gen || int(uint32_t(cur)) >= n_tasks) return;
        if (!next_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_acquire))
            continue;
        fn(ctx, int(uint32_t(cur)));
        done_.fetch_add(1, std::memory_order_acq_rel);
        cur = next_.load(std::memory_order_acquire);
    }
}

void ThreadPool::run(int n_tasks, TaskFn fn, void* ctx) {
    uint32_t gen;
    {
        std::lock_guard<std::mutex> lk(mu_);
        gen = ++gen_;
        n_tasks_ = n_tasks;
        fn_ = fn;
        ctx_ = ctx;
        done_.store(0, std::memory_order_relaxed);
        next_.store(uint64_t(gen) << 32, std::memory_order_release);
        gen_seen_.store(gen, std::memory_order_release);
    }
    cv_.notify_all();
    work(gen, n_tasks, fn, ctx);
    for (int spins = 0; done_.load(std::memory_order_acquire) < n_tasks; ++spins) {
        if (spins < kSpin)
            KV_CPU_RELAX();
        else
            std::this_thread::yield();
    }
}

void ThreadPool::worker_loop() {
    uint32_t seen = 0;
    for (;;) {
        // Spin briefly for the next job, then sleep on the condition variable.
        for (int spins = 0; spins < kSpin && gen_seen_.load(std::memory_order_acquire) == seen; ++spins)
            KV_CPU_RELAX();
        uint32_t gen;
        int n_tasks;
        TaskFn fn;
        void* ctx;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
            if (stop_) return;
            gen = seen = gen_;
            n_tasks = n_tasks_;
            fn = fn_;
            ctx = ctx_;
        }
        work(gen, n_tasks, fn, ctx);
    }
}

}  // namespace kv
