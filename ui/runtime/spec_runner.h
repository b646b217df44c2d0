// The window's speculative decoder: the draft model it loaded and a kv::SpecDecoder
// over the window's target model. The Controller owns one and routes Step, Back,
// Reset, the prompt, sampling and the selection to it while the mode is on; it
// publishes a SpecView (ui/state/spec_view.h) and a SessionView of the target's verifying
// forwards, so the panels that read a SessionView (Q/K/V, next token, timeline,
// memory) show the rounds too. Touched only by the thread running the batch.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/model/model_io.h"
#include "core/session/speculative.h"
#include "ui/state/app_state.h"

namespace kvui {

class SpecRunner {
public:
    // Loads the draft (draft_spec, or default_draft_spec of the target when empty),
    // makes the decoder with k drafts per round and sets the prompt. Throws kv::Error
    // (draft missing, vocabularies differ, k out of range); the mode stays as it was.
    void start(const kv::Model& target, const std::string& target_spec, const std::string& backend,
               const std::string& draft_spec, int k, const std::vector<int>& prompt_ids,
               const kv::SamplingOptions& s, const kv::TraceOptions& t);
    void stop();  // before the target model goes
    bool on() const { return decoder_ != nullptr; }

    void round();                // one round (throws kv::Error when the context is full)
    void back();                 // undo the latest round
    void back_to(int n_rounds);  // undo until at most n_rounds remain
    void reset();
    void set_prompt_ids(const std::vector<int>& ids);
    void set_sampling(const kv::SamplingOptions& s);
    void set_trace_options(const kv::TraceOptions& t);

    // Refreshes both views for the selected layer and (query) head.
    void fill_views(int layer, int head, SessionView& target, SpecView& spec);
    const kv::SpecDecoder* decoder() const { return decoder_.get(); }  // for tests

private:
    void keep_valid_prefix();

    std::unique_ptr<kv::Model> draft_;
    std::string draft_spec_;  // what draft_ was loaded from
    std::unique_ptr<kv::SpecDecoder> decoder_;
    std::vector<std::shared_ptr<const kv::SpecRound>> rounds_;  // the decoder's rounds, as published
};

}  // namespace kvui
