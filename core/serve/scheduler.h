// Scheduler: continuous batching over a BlockPool, as pure bookkeeping (vLLM v1's
// scheduler.py, recompute preemption). It decides, step by step, who runs; the pool
// decides where rows live; an engine (later) computes the step's plan. Tokens come from
// a callback, so tests drive it with fake ones.
//
// Notation: B slots per block, P blocks; a request has p prompt ids, generates N tokens,
// arrives at a step, and samples F continuations (forks) of its prompt. Each fork is a
// sequence. A sequence's known tokens are its prompt then what it generated; positions
// [0, n_pos) of them are in the pool, and n_pos = known - 1 while it runs (the newest
// token is fed at the next step).
//
// One step (`step`):
//   1. requests whose arrival step has come join the waiting queue (arrival order);
//   2. every running sequence, oldest admission first, decodes one token at position
//      n_pos; when the pool has no block for it (free or cached), the most recently
//      admitted running sequence is preempted (its blocks released; it waits to be
//      prefilled again, recompute) until there is one or the sequence preempted itself;
//   3. unless step 2 preempted, waiting sequences are admitted in order while max_batch
//      allows and the pool has the blocks for their known tokens after prefix hits; a
//      request's first prefill forks it into F sequences sharing every block;
//   4. the caller runs the plan (`execute`, when given) and samples one token per
//      sequence that ran (`sample`), full blocks
//      get their identity, and sequences that have their N tokens finish (blocks freed).
// The returned StepPlan is what an engine executes: copies first, then each entry's
// positions through its block table.
#pragma once
#include <functional>
#include <vector>

#include "core/serve/block_pool.h"

namespace kv {

struct ServeRequest {
    std::vector<int> prompt;  // (p) token ids, p >= 1
    int new_tokens = 1;       // N >= 1 tokens to generate
    int arrive = 0;           // step at which it joins the waiting queue
    int fork = 1;             // F >= 1 continuations sampled from one prompt
};

struct SchedulerConfig {
    int block_size = 16;  // B
    int pool_blocks = 0;  // P
    int max_batch = 64;   // M: running sequences at most
    bool prefix_caching = true;
};

enum class SeqState { pending, waiting, running, finished };

struct Sequence {
    int id = 0, request = 0, fork = 0;  // fork f of request r
    std::vector<int> tokens;            // (p + generated) known tokens
    int n_prompt = 0;                   // p
    int new_tokens = 0;                 // N
    SeqState state = SeqState::pending;
    BlockTable table;                   // positions [0, table.n_pos) in the pool
    std::vector<BlockHash> hashes;      // identities of the table's full blocks computed so far
    int forks_pending = 0;              // F - 1 until the first prefill forks it
    int admitted_order = -1;            // admission counter at the latest admission
    int prefix_blocks_hit = 0;          // summed over admissions
    int preemptions = 0;
    int finished_step = -1;

    int generated() const { return int(tokens.size()) - n_prompt; }
};

// One sequence's part of a step: positions [first_pos, first_pos + n) are computed,
// fed input_ids; [0, prefix_hit_pos) came from prefix hits at this admission, and
// every position before first_pos is already in the pool. `samplers` take one token
// each from the logits of the last position: this sequence, plus its forks at a
// request's first prefill.
struct SeqWork {
    int seq = 0;
    bool prefill = false;
    int first_pos = 0, n = 0;
    int prefix_hit_pos = 0;
    std::vector<int> input_ids;  // (n)
    std::vector<int> table;      // the block table the step reads and writes through
    std::vector<int> samplers;   // sequence ids
};

struct StepPlan {
    int step = 0;
    std::vector<BlockCopy> copies;  // copy-on-write copies, before the forward
    std::vector<SeqWork> work;      // decodes (admission order), then admitted prefills
    // Sequence ids: running = every sequence that sampled a token this step (decodes,
    // admitted prefills and their forks); finished ones also ran; preempted ones did not.
    std::vector<int> running, admitted, finished, preempted;
    int tokens = 0;                 // positions computed this step
    PoolCounts blocks;              // after the step
    int waste_slots = 0;            // after the step
};

// The caller's sampler: the next token of sequence `s` (all its known tokens are in
// the pool when it is called).
using SampleFn = std::function<int(const Sequence& s)>;
// The caller's engine: runs the step's plan (copies, then every work entry) once it
// is made and before any token is sampled. Every running sequence's table is current.
using ExecuteFn = std::function<void(const StepPlan& plan)>;

class Scheduler {
public:
    // Throws kv::Error for a bad pool (B < 1, P < 1), max_batch < 1, or a request that
    // could never run: empty prompt, N < 1, F < 1 or F > max_batch, or one sequence's
    // p + N - 1 positions need more than P blocks.
    Scheduler(const SchedulerConfig& cfg, const std::vector<ServeRequest>& requests);

    StepPlan step(const SampleFn& sample, const ExecuteFn& execute = {});
    bool done() const { return n_finished_ == int(seqs_.size()); }
    int step_index() const { return step_; }

    const BlockPool& pool() const { return pool_; }
    const std::vector<Sequence>& sequences() const { return seqs_; }
    int preemptions() const { return preemptions_; }
    int prefix_hits() const { return prefix_hits_; }
    int peak_used_blocks() const { return peak_used_; }

    // The pool's invariants over the running tables, plus: waiting and finished
    // sequences hold no block, running ones hold n_pos = known - 1 positions, and at
    // most max_batch run. Throws kv::Error naming what is wrong.
    void check_invariants() const;

private:
    Sequence& seq(int id) { return seqs_[static_cast<size_t>(id)]; }
    void arrive();
    void decode_running(StepPlan& plan);
    void preempt(int id, StepPlan& plan);
    void admit_waiting(StepPlan& plan);
    bool admit(int id, StepPlan& plan);
    void sample_and_finish(StepPlan& plan, const SampleFn& sample);
    void register_full_blocks(Sequence& s);
    void to_waiting(int id);

    SchedulerConfig cfg_;
    BlockPool pool_;
    std::vector<Sequence> seqs_;  // by id; forks of a request follow it
    std::vector<int> pending_;    // sequences not yet arrived, by (arrive, id)
    std::vector<int> waiting_;    // by (arrive, id)
    std::vector<int> running_;    // admission order
    std::vector<int> arrive_;     // per sequence: its request's arrival step
    int step_ = 0, admissions_ = 0, n_finished_ = 0;
    int preemptions_ = 0, prefix_hits_ = 0, peak_used_ = 0;
};

}  // namespace kv
