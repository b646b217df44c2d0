// A cached decode step of the CPU engine allocates nothing once its buffers exist:
// no Eigen temporaries, no std::vector growth, in the calling thread or the pool's
// workers. malloc is interposed (glibc: __libc_malloc) and counted while armed; the
// test is skipped under sanitizers, which interpose malloc themselves.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>

#include "core/session/bench.h"
#include "core/engine/engine.h"
#include "test_helpers.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KV_NO_MALLOC_HOOK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define KV_NO_MALLOC_HOOK 1
#endif
#endif

namespace {
std::atomic<bool> g_armed{false};
std::atomic<long> g_allocs{0};
}  // namespace

#if !defined(KV_NO_MALLOC_HOOK) && defined(__GLIBC__)
extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void* __libc_memalign(size_t, size_t);
extern "C" {
void* malloc(size_t n) {
    if (g_armed.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
    if (g_armed.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
    if (g_armed.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_realloc(p, n);
}
int posix_memalign(void** p, size_t align, size_t n) {
    if (g_armed.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
    void* r = __libc_memalign(align, n);
    if (!r) return 12;  // ENOMEM
    *p = r;
    return 0;
}
void* aligned_alloc(size_t align, size_t n) {
    if (g_armed.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(align, n);
}
}
#define KV_HAVE_MALLOC_HOOK 1
#endif

TEST_CASE("a cached decode step allocates nothing") {
#ifndef KV_HAVE_MALLOC_HOOK
    MESSAGE("SKIPPED: malloc cannot be interposed in this build (sanitizer or not glibc)");
#else
    // The hook itself must see allocations, or the test proves nothing.
    g_allocs = 0;
    g_armed = true;
    void* volatile probe = std::malloc(64);
    g_armed = false;
    std::free(probe);
    REQUIRE(g_allocs.load() == 1);

    // GPT-2, and the Llama family (RoPE, RMSNorm and SwiGLU on their own scratch).
    auto gpt2 = kvtest::random_model(500, 64, 64, 3, 4, 2, 3);
    auto llama = kvtest::random_llama(kv::ModelConfig::llama_tiny(), 3);
    auto mla = kvtest::random_llama(kvtest::mla_shapes()[1], 3);  // MLA with a query latent
    kv::CachePolicy absorbed;
    absorbed.mla = kv::MlaRead::absorbed;
    const std::pair<const kv::Model*, kv::CachePolicy> runs[] = {
        {gpt2.get(), {}}, {llama.get(), {}}, {mla.get(), {}}, {mla.get(), absorbed}};
    for (const auto& [m, pol] : runs)
    for (int threads : {1, 2, 4}) {
        CAPTURE(m->config.is_llama());
        CAPTURE(m->config.is_mla());
        CAPTURE(kv::policy_text(pol));
        CAPTURE(threads);
        auto e = kv::make_cpu_engine(*m);
        auto cache = e->make_cache(pol);
        e->set_threads(threads);
        const auto ids = kv::bench_ids(m->config, 40, 1);
        kv::ForwardRequest req;
        req.trace_opts.record = false;
        req.ids = std::span<const int>(ids.data(), 8);
        kv::StepTrace tr;
        e->forward(req, *cache, tr);  // prefill: may allocate (products of many rows, the trace's vectors)
        req.ids = std::span<const int>(ids.data() + 8, 1);
        req.start_pos = 8;
        e->forward(req, *cache, tr);  // the trace's vectors now have their capacity
        for (int pos = 9; pos < 40; ++pos) {
            CAPTURE(pos);
            req.ids = std::span<const int>(ids.data() + pos, 1);
            req.start_pos = pos;
            req.n_known = pos;
            g_allocs = 0;
            g_armed = true;
            e->forward(req, *cache, tr);
            g_armed = false;
            CHECK(g_allocs.load() == 0);
            CHECK(tr.counters.cache_rows == pos + 1);
        }
    }
#endif
}
