// Serving with an engine: see serve.h.
#include "core/serve/serve.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/rng.h"

namespace kv {

uint64_t fork_seed(uint64_t seed, int fork) {
    if (fork == 0) return seed;
    SplitMix64 mix{seed ^ (0x9e3779b97f4a7c15ULL * uint64_t(fork))};
    return mix.next();
}

namespace {

// The engine side of one step: copies, then one batched forward over the plan's work.
// Keeps each sampler's logits for the sampling that follows.
struct StepRunner {
    Engine& engine;
    PagedKV& pool;
    const Scheduler& sched;
    std::vector<BatchSeq> batch;
    BatchResult out;
    std::vector<size_t> row_of;              // per sequence: its logits row in this step
    std::vector<int> computed;               // per sequence: positions some step has computed
    ServeStep* rec = nullptr;
    std::vector<ServeSeqResult>* seqs = nullptr;
    bool trace_tables = false;
    std::vector<SlotHolds> holds;            // (P * B) with snapshots: who wrote each slot
    std::vector<int> copied;                 // this step's copy destinations

    // The slots the step writes: copies first (a copy holds its source's positions),
    // then every computed position through its table.
    void note_writes(const StepPlan& plan) {
        copied.clear();
        if (holds.empty()) return;
        const int B = pool.block_size();
        for (const BlockCopy& c : plan.copies) {
            copied.push_back(c.dst);
            std::copy_n(holds.begin() + c.src * B, B, holds.begin() + c.dst * B);
        }
        for (const SeqWork& w : plan.work)
            for (int i = 0; i < w.n; ++i) {
                const int pos = w.first_pos + i;
                holds[size_t(paged_slot(w.table, B, pos))] = {w.seq, pos, w.input_ids[size_t(i)]};
            }
    }

    void operator()(const StepPlan& plan) {
        const auto t0 = std::chrono::steady_clock::now();
        for (const BlockCopy& c : plan.copies) pool.copy_block(c.src, c.dst);
        batch.clear();
        out.logits.clear();
        for (const SeqWork& w : plan.work) {
            batch.push_back({w.input_ids, w.first_pos, w.table, computed[size_t(w.seq)]});
            for (int id : w.samplers) row_of[size_t(id)] = batch.size() - 1;
        }
        if (!batch.empty()) engine.forward_batch(batch, pool, out);
        for (size_t i = 0; i < batch.size(); ++i) {
            const SeqWork& w = plan.work[i];
            const Counters& c = out.counters[i];
            rec->kv_rows_computed += c.kv_rows_computed;
            rec->kv_rows_recomputed += c.kv_rows_recomputed;
            (*seqs)[size_t(w.seq)].kv_rows_computed += c.kv_rows_computed;
            (*seqs)[size_t(w.seq)].kv_rows_recomputed += c.kv_rows_recomputed;
            int& done = computed[size_t(w.seq)];
            done = std::max(done, w.first_pos + w.n);
        }
        for (const SeqWork& w : plan.work)
            for (int id : w.samplers) {
                const std::vector<int>& table = sched.sequences()[size_t(id)].table.blocks;
                (*seqs)[size_t(id)].block_table = table;
                if (trace_tables) rec->tables.push_back({id, table});
            }
        rec->copies = int(plan.copies.size());
        rec->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        note_writes(plan);
    }
};

// The pool after the step (ServeOptions::snapshots), with every slot's layer-0 keys
// when asked and small enough.
std::shared_ptr<const PoolSnapshot> take_snapshot(const StepRunner& run, const ServeOptions& opt) {
    auto s = std::make_shared<PoolSnapshot>(snapshot_pool(run.sched, run.holds, run.copied));
    const ModelConfig& c = run.pool.config();
    const int n = run.pool.n_blocks() * run.pool.block_size(), hd = c.head_dim(), kv_dim = c.n_kv_head * hd;
    if (!opt.snapshot_keys || int64_t(n) * kv_dim > ServeOptions::kSnapshotKeyFloats) return s;
    std::vector<int> slots(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) slots[size_t(i)] = i;
    RowMat k, v;
    s->k0.resize(n, kv_dim);
    for (int h = 0; h < c.n_kv_head; ++h) {
        run.pool.read_rows(0, h, slots, k, v);
        if (k.rows() != n || k.cols() != hd) {  // a pool whose rows are not plain keys (MLA's latent)
            s->k0.resize(0, 0);
            break;
        }
        s->k0.middleCols(h * hd, hd) = k;
    }
    return s;
}

ServeStep record_of(const StepPlan& plan, ServeStep rec) {
    rec.step = plan.step;
    rec.running = plan.running;
    rec.admitted = plan.admitted;
    rec.finished = plan.finished;
    rec.preempted = plan.preempted;
    rec.tokens = plan.tokens;
    rec.blocks = plan.blocks;
    rec.waste_slots = plan.waste_slots;
    return rec;
}

}  // namespace

ServeResult run_serve(Engine& engine, const std::vector<ServeRequest>& requests, const ServeOptions& opt,
                      const LogitsFn& on_logits, const StepFn& on_step) {
    Scheduler sched(opt.sched, requests);
    std::unique_ptr<PagedKV> pool = engine.make_paged(opt.policy, opt.sched.pool_blocks, opt.sched.block_size);
    ServeResult res;
    res.block_size = pool->block_size();
    res.n_blocks = pool->n_blocks();
    res.bytes_per_block = pool->bytes_per_block();
    for (const Sequence& s : sched.sequences())
        res.seqs.push_back({s.id, s.request, s.fork, s.tokens, {}, 0, 0, 0, 0, {}});

    StepRunner run{engine, *pool, sched, {}, {}, std::vector<size_t>(res.seqs.size(), 0),
                   std::vector<int>(res.seqs.size(), 0), nullptr, &res.seqs, opt.trace_tables, {}, {}};
    if (opt.snapshots) run.holds.assign(size_t(res.n_blocks) * size_t(res.block_size), SlotHolds{});
    const int V = engine.config().vocab_size;
    auto sample = [&](const Sequence& s) {
        const size_t row = run.row_of[size_t(s.id)];
        std::span<const float> logits(run.out.logits.data() + row * size_t(V), size_t(V));
        if (on_logits) on_logits(s.id, s.generated(), logits);
        SamplingOptions so = opt.sampling;
        so.seed = fork_seed(opt.sampling.seed, s.fork);
        return sample_token(std::vector<float>(logits.begin(), logits.end()), so, s.generated());
    };
    while (!sched.done()) {
        ServeStep rec;
        run.rec = &rec;
        const StepPlan plan = sched.step(sample, std::ref(run));
        rec = record_of(plan, std::move(rec));
        for (const Sequence& q : sched.sequences())
            if (q.state == SeqState::running) {
                rec.held_positions += q.table.n_pos;
                rec.contiguous_slots += q.n_prompt + q.new_tokens;
            }
        res.total_ms += rec.ms;
        if (opt.snapshots) rec.pool = take_snapshot(run, opt);
        if (on_step) on_step(sched, rec);
        res.steps.push_back(std::move(rec));
    }
    for (ServeSeqResult& r : res.seqs) {
        const Sequence& s = sched.sequences()[size_t(r.id)];
        r.tokens.assign(s.tokens.begin() + s.n_prompt, s.tokens.end());
        r.prefix_blocks_hit = s.prefix_blocks_hit;
        r.preemptions = s.preemptions;
        res.kv_rows_recomputed += r.kv_rows_recomputed;
        res.tokens_generated += int(r.tokens.size());
    }
    res.peak_blocks = sched.peak_used_blocks();
    res.peak_bytes = int64_t(res.peak_blocks) * res.bytes_per_block;
    res.prefix_hits = sched.prefix_hits();
    res.cow_copies = sched.pool().cow_copies();
    res.preemptions = sched.preemptions();
    res.contiguous = contiguous_baseline(requests, int64_t(res.n_blocks) * res.bytes_per_block,
                                         bytes_per_slot(engine.config(), opt.policy.dtype));
    return res;
}

}  // namespace kv
