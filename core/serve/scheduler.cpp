// Scheduler: see scheduler.h and docs/design.md, "Serving: the block pool and the scheduler".
#include "core/serve/scheduler.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "core/error.h"

namespace kv {

namespace {

std::string req_name(size_t r) { return "request " + std::to_string(r); }

void check_request(const ServeRequest& q, size_t r, const SchedulerConfig& cfg) {
    const int B = cfg.block_size, P = cfg.pool_blocks;
    if (q.prompt.empty()) throw Error(req_name(r) + ": the prompt is empty (give at least 1 token id)");
    if (q.new_tokens < 1)
        throw Error(req_name(r) + ": new tokens " + std::to_string(q.new_tokens) + " must be at least 1");
    if (q.arrive < 0) throw Error(req_name(r) + ": arrival step " + std::to_string(q.arrive) + " is negative");
    if (q.fork < 1 || q.fork > cfg.max_batch)
        throw Error(req_name(r) + ": fork " + std::to_string(q.fork) + " must be between 1 and max batch " +
                    std::to_string(cfg.max_batch));
    const int64_t positions = int64_t(q.prompt.size()) + q.new_tokens - 1;  // held when it finishes
    const int64_t blocks = (positions + B - 1) / B;
    if (blocks > P)
        throw Error(req_name(r) + ": prompt of " + std::to_string(q.prompt.size()) + " tokens + " +
                    std::to_string(q.new_tokens) + " new needs " + std::to_string(blocks) + " blocks of " +
                    std::to_string(B) + " slots; the pool has " + std::to_string(P) + " (raise the pool blocks)");
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& cfg, const std::vector<ServeRequest>& requests)
    : cfg_(cfg), pool_(cfg.pool_blocks, cfg.block_size, cfg.prefix_caching) {
    if (cfg.max_batch < 1) throw Error("scheduler: max batch " + std::to_string(cfg.max_batch) + " must be at least 1");
    for (size_t r = 0; r < requests.size(); ++r) {
        const ServeRequest& q = requests[r];
        check_request(q, r, cfg);
        for (int f = 0; f < q.fork; ++f) {
            Sequence s;
            s.id = int(seqs_.size());
            s.request = int(r);
            s.fork = f;
            s.tokens = q.prompt;
            s.n_prompt = int(q.prompt.size());
            s.new_tokens = q.new_tokens;
            s.forks_pending = f == 0 ? q.fork - 1 : 0;
            if (f == 0) pending_.push_back(s.id);  // forks 1.. are born at its first prefill
            seqs_.push_back(std::move(s));
            arrive_.push_back(q.arrive);
        }
    }
    std::stable_sort(pending_.begin(), pending_.end(),
                     [&](int a, int b) { return arrive_[size_t(a)] < arrive_[size_t(b)]; });
}

StepPlan Scheduler::step(const SampleFn& sample, const ExecuteFn& execute) {
    StepPlan plan;
    plan.step = step_;
    arrive();
    decode_running(plan);
    if (plan.preempted.empty()) admit_waiting(plan);  // as vLLM: no admission in a step that preempted
    if (execute) execute(plan);
    sample_and_finish(plan, sample);
    plan.blocks = pool_.counts();
    plan.waste_slots = pool_.waste_slots();
    peak_used_ = std::max(peak_used_, plan.blocks.used);
    ++step_;
    return plan;
}

void Scheduler::arrive() {
    size_t n = 0;
    while (n < pending_.size() && arrive_[size_t(pending_[n])] <= step_) to_waiting(pending_[n++]);
    pending_.erase(pending_.begin(), pending_.begin() + long(n));
}

void Scheduler::to_waiting(int id) {
    auto before = [&](int a, int b) { return arrive_[size_t(a)] != arrive_[size_t(b)] ? arrive_[size_t(a)] < arrive_[size_t(b)] : a < b; };
    waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), id, before), id);
    seq(id).state = SeqState::waiting;
}

void Scheduler::decode_running(StepPlan& plan) {
    size_t i = 0;
    while (i < running_.size()) {
        const int id = running_[i];
        Sequence& s = seq(id);
        bool preempted_self = false;
        while (!preempted_self && pool_.blocks_needed(s.table, 1) > pool_.n_available()) {
            const int victim = running_.back();  // the most recently admitted
            preempt(victim, plan);
            preempted_self = victim == id;
        }
        if (preempted_self) break;  // it was the last one running
        const int p = s.table.n_pos;
        const bool ok = pool_.append(s.table, 1, plan.copies);
        assert(ok);
        (void)ok;
        plan.work.push_back({id, false, p, 1, 0, {s.tokens[size_t(p)]}, s.table.blocks, {id}});
        plan.tokens += 1;
        ++i;
    }
}

void Scheduler::preempt(int id, StepPlan& plan) {
    assert(!running_.empty() && running_.back() == id);
    running_.pop_back();
    Sequence& s = seq(id);
    pool_.release(s.table);  // full blocks stay cached: its re-prefill may hit them
    s.hashes.clear();
    ++s.preemptions;
    ++preemptions_;
    plan.preempted.push_back(id);
    to_waiting(id);
}

void Scheduler::admit_waiting(StepPlan& plan) {
    size_t n = 0;  // first come, first served: the first that does not fit stops admission
    while (n < waiting_.size() && admit(waiting_[n], plan)) ++n;
    waiting_.erase(waiting_.begin(), waiting_.begin() + long(n));
}

bool Scheduler::admit(int id, StepPlan& plan) {
    Sequence& s = seq(id);
    const int B = cfg_.block_size, known = int(s.tokens.size());
    if (int(running_.size()) + 1 + s.forks_pending > cfg_.max_batch) return false;
    // Hits only among blocks before the last known token: its logits must be computed.
    std::vector<BlockHash> hashes = full_block_hashes(s.tokens, known - 1, B);
    const std::vector<int> hits = pool_.match_prefix(hashes);
    const int need = (known + B - 1) / B - int(hits.size());
    if (need > pool_.n_available() - pool_.n_unreferenced(hits)) return false;

    s.table = pool_.take_prefix(hits);
    hashes.resize(hits.size());
    s.hashes = hashes;
    const int first = s.table.n_pos;
    const bool ok = pool_.append(s.table, known - first, plan.copies);
    assert(ok);
    (void)ok;
    s.state = SeqState::running;
    s.admitted_order = admissions_++;
    s.prefix_blocks_hit += int(hits.size());
    prefix_hits_ += int(hits.size());
    running_.push_back(id);
    plan.admitted.push_back(id);
    SeqWork w{id, true, first, known - first, first, {s.tokens.begin() + first, s.tokens.end()}, s.table.blocks, {id}};
    for (int f = 1; f <= s.forks_pending; ++f) {  // a request's first prefill: its forks share every block
        Sequence& c = seq(id + f);
        c.table = pool_.fork(s.table);
        c.hashes = s.hashes;
        c.state = SeqState::running;
        c.admitted_order = admissions_++;
        running_.push_back(c.id);
        plan.admitted.push_back(c.id);
        w.samplers.push_back(c.id);
    }
    s.forks_pending = 0;
    plan.tokens += w.n;
    plan.work.push_back(std::move(w));
    return true;
}

void Scheduler::sample_and_finish(StepPlan& plan, const SampleFn& sample) {
    for (const SeqWork& w : plan.work)
        for (int id : w.samplers) {
            Sequence& s = seq(id);
            assert(s.table.n_pos == int(s.tokens.size()));
            const int tok = sample(s);
            s.tokens.push_back(tok);
            plan.running.push_back(id);
        }
    std::vector<int> still;
    for (int id : running_) {
        Sequence& s = seq(id);
        register_full_blocks(s);  // before a release, so a finished prefix stays cached
        if (s.generated() < s.new_tokens) {
            still.push_back(id);
            continue;
        }
        pool_.release(s.table);
        s.hashes.clear();
        s.state = SeqState::finished;
        s.finished_step = step_;
        ++n_finished_;
        plan.finished.push_back(id);
    }
    running_ = std::move(still);
}

void Scheduler::register_full_blocks(Sequence& s) {
    const int B = cfg_.block_size;
    const std::span<const int> ids(s.tokens);
    for (int i = int(s.hashes.size()); i < s.table.n_pos / B; ++i) {
        const BlockHash parent = i == 0 ? kRootHash : s.hashes[size_t(i - 1)];
        s.hashes.push_back(chain_hash(parent, ids.subspan(size_t(i * B), size_t(B))));
        pool_.register_full(s.table.blocks[size_t(i)], s.hashes.back());
    }
}

void Scheduler::check_invariants() const {
    std::vector<const BlockTable*> tables;
    for (int id : running_) tables.push_back(&seqs_[size_t(id)].table);
    pool_.check_invariants(tables);
    if (int(running_.size()) > cfg_.max_batch)
        throw Error("scheduler invariant: " + std::to_string(running_.size()) + " sequences run, max batch " +
                    std::to_string(cfg_.max_batch));
    int n_running = 0;
    for (const Sequence& s : seqs_) {
        const std::string who = "scheduler invariant: sequence " + std::to_string(s.id);
        if (s.state != SeqState::running) {
            if (!s.table.blocks.empty() || s.table.n_pos != 0) throw Error(who + " holds blocks but is not running");
            continue;
        }
        ++n_running;
        if (s.table.n_pos != int(s.tokens.size()) - 1)
            throw Error(who + " holds " + std::to_string(s.table.n_pos) + " positions of " +
                        std::to_string(s.tokens.size()) + " known tokens (must be all but the newest)");
        if (int(s.hashes.size()) != s.table.n_pos / cfg_.block_size)
            throw Error(who + " has " + std::to_string(s.hashes.size()) + " block identities for " +
                        std::to_string(s.table.n_pos / cfg_.block_size) + " full blocks");
    }
    if (n_running != int(running_.size())) throw Error("scheduler invariant: the running list and the states disagree");
}

}  // namespace kv
