// The serving view's run: see serve_runner.h.
#include "ui/runtime/serve_runner.h"

#include <algorithm>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/serve/requests.h"

namespace kvui {

namespace {

std::vector<kv::ServeRequest> requests_for(const kv::Model& model, const kv::ServePreset& setup) {
    if (!model.tokenizer) throw kv::Error("serving view: its prompts are text, and this model has no tokenizer");
    return kv::parse_requests(kv::requests_jsonl(setup.requests), "requests", kv::model_request_rules(model));
}

// Batched decode on this model: short prompts, a few timed steps (the tiny model's
// 64 positions hold them).
kv::BatchPoint measure(const kv::Model& model, const std::string& backend, int size, int steps) {
    kv::BatchBenchOptions o;
    o.backend = backend;
    o.prompt_len = std::min(8, model.config.n_ctx / 4);
    o.warmup = 2;
    o.steps = std::min(steps, model.config.n_ctx - o.prompt_len - o.warmup);
    return kv::measure_batch(model, o, size);
}

}  // namespace

std::shared_ptr<const ServeRun> run_serve_view(const kv::Model& model, const std::string& backend,
                                               const kv::ServePreset& setup, bool measure_large) {
    const std::vector<kv::ServeRequest> reqs = requests_for(model, setup);
    auto run = std::make_shared<ServeRun>();
    run->setup = setup;
    kv::ServeOptions opt;
    opt.sched = setup.sched;
    opt.sampling = setup.sampling;
    opt.snapshots = opt.snapshot_keys = true;
    std::unique_ptr<kv::Engine> engine = kv::make_engine(model, backend);
    run->result = kv::run_serve(*engine, reqs, opt);
    const kv::ModelConfig& c = model.config;
    run->slot_bytes = kv::bytes_per_slot(c, opt.policy.dtype);
    run->n_kv_head = c.n_kv_head;
    run->head_dim = c.head_dim();
    for (const kv::ServeStep& s : run->result.steps) run->peak_batch = std::max(run->peak_batch, int(s.running.size()));
    run->single = measure(model, backend, 1, 32);
    run->batch = measure(model, backend, std::max(1, run->peak_batch), 32);
    run->weight_bytes = kv::decode_weight_bytes(c, model.weights.type);
    if (measure_large) {
        const std::unique_ptr<kv::Model> big = kv::load_model(kLargeModel);
        run->large_single = measure(*big, backend, 1, 6);
        run->large_batch = measure(*big, backend, std::max(1, run->peak_batch), 6);
        run->large_weight_bytes = kv::decode_weight_bytes(big->config);
    }
    return run;
}

}  // namespace kvui
