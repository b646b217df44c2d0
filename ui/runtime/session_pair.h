// The window's sessions: the main one (driven by the controls) and, in compare mode,
// a second one with the cache in the other mode, stepped in lockstep (or, for lesson
// chapter 8, the same prompt on top of a stale cache: the bug on purpose). Each keeps a
// SessionView (ui/state/app_state.h) refreshed by fill_views, which copies only the history
// entries added since the last call.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/session/session.h"
#include "ui/state/app_state.h"

namespace kvui {

class SessionPair {
public:
    SessionPair() = default;
    // main (required) and other (compare mode, or null), fresh from a model load.
    // own_policy: other runs its own cache policy with the cache in main's mode
    // (else main's policy with the cache in the other mode).
    SessionPair(std::unique_ptr<kv::Session> main, std::unique_ptr<kv::Session> other, bool own_policy = false);

    bool empty() const { return !main_; }
    kv::Session& main() { return *main_; }
    const kv::Session* main_ptr() const { return main_.get(); }
    const kv::Session* other_ptr() const { return other_.get(); }

    // Commands, applied to both sessions. Only step() throws (kv::Error: cannot step).
    void step();
    void back();
    void back_to(int n_steps);  // undo until at most n_steps remain
    void reset();
    void set_cache(bool on);    // main on, other off (or the reverse; with its own policy, the same)
    void prompt_changed();      // after main().set_prompt_*: other takes the same ids
    void set_sampling(const kv::SamplingOptions& s);
    void set_trace_options(const kv::TraceOptions& t);
    void set_policy(const kv::CachePolicy& p);  // a fresh cache of that policy, both sessions reset (other: unless it has its own)
    // Compare on: a second session on `model` sharing the main one's engine (weights), caught up with the main one's steps.
    // own_policy: `policy` is the second session's own and its cache follows main's mode.
    void start_compare(const kv::Model& model, const kv::CachePolicy& policy, const kv::TraceOptions& t,
                       bool own_policy = false);
    void stop_compare();  // also ends the stale-cache demonstration
    // Lesson chapter 8, THE BUG ON PURPOSE: other runs main's prompt on top of the
    // cache that first_text (first_steps steps) left (Session::set_prompt_keeping_stale_cache),
    // caught up with main's steps; it follows main's prompt and steps until stopped.
    void start_stale_demo(const kv::CachePolicy& policy, const kv::TraceOptions& t, const std::string& first_text,
                          int first_steps);
    bool stale_demo() const { return stale_; }

    // Refreshes the views of the selected layer and kv head.
    void fill_views(int layer, int kv_head);
    const SessionView& main_view() const { return main_view_; }
    const SessionView& other_view() const { return other_view_; }

private:
    void keep_valid_prefix();  // after undo: history entries beyond n_steps are stale
    void build_stale(const kv::CachePolicy& policy, const kv::TraceOptions& t);  // other_ from stale_first_ids_

    std::unique_ptr<kv::Session> main_, other_;
    bool own_policy_ = false;  // other runs its own policy, cache in main's mode
    SessionView main_view_, other_view_;
    int main_prefix_ = 0, other_prefix_ = 0;  // history entries still valid in the views
    bool stale_ = false;                      // other_ is the stale-cache demonstration
    std::vector<int> stale_first_ids_;        // its first prompt
    int stale_first_steps_ = 0;
};

// The cache part of a SessionView: rows, bytes, policy, the slot -> position map,
// which positions are held, and the K/V rows (stored and, for f16/int8, the f32 rows
// they rounded) of one layer and kv head.
void fill_cache_view(const kv::KVCache& cache, const kv::ModelConfig& c, int layer, int kv_head, SessionView& v);

}  // namespace kvui
