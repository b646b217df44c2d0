// The serving view's run (ui/state/serve_view.h): a request set through kv::run_serve
// on the loaded model, with the pool recorded after every step, and the batched decode
// measured beside it (one sequence, and the run's largest batch) for the counters and
// the batching chapter. The Controller calls it for CommandKind::serve_run, on its
// worker when the model is heavy.
#pragma once
#include <memory>
#include <string>

#include "core/model/model_io.h"
#include "ui/state/serve_view.h"

namespace kvui {

// measure_large: also measure batched decode on kLargeModel (random weights of
// GPT-2's shape), whose weights do not fit a processor's caches (the batching chapter).
// Throws kv::Error naming the request ("requests:3: ...") when one does not suit the
// model (an unknown word, too long), or when the model has no tokenizer.
inline constexpr const char* kLargeModel = "random:gpt2-124m";
std::shared_ptr<const ServeRun> run_serve_view(const kv::Model& model, const std::string& backend,
                                               const kv::ServePreset& setup, bool measure_large = false);

}  // namespace kvui
