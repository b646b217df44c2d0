// Controller: owns the model and the sessions (the main one and, in compare mode, a
// second one with the cache in the other mode, stepped in lockstep) and runs the
// panels' Commands. With a worker, a batch of commands runs on a std::thread; the
// sessions are touched only by that thread until poll() joins it, and the UI draws
// the SessionViews published by the last finished batch. Without a worker (tests,
// screenshots, small models) commands run inline.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/model/model_io.h"
#include "core/session/session.h"
#include "ui/app_state.h"
#include "ui/sweep_runner.h"

namespace kvui {

// "5, 9,3 7" -> {5, 9, 3, 7}; throws kv::Error naming the bad piece or an id >= vocab.
std::vector<int> parse_ids(const std::string& text, int vocab_size);

class Controller {
public:
    // worker: "auto" (a thread for heavy models), "always" or "never".
    explicit Controller(std::string worker = "auto");
    ~Controller();
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    // Loads a model synchronously and sets the prompt; errors go to app.error
    // (a model that fails to load leaves the previous one, or none). A default
    // prompt (typed_prompt false) that a random model cannot read becomes 5,9,3,7
    // quietly; a typed one that does not suit is an error in the window. Stops a
    // running sweep (it reads the old model).
    void open(AppState& app, const std::string& spec, const std::string& backend,
              const std::string& prompt, bool typed_prompt = true);
    // The cache policy of the sessions open() makes (window, sinks, dtype).
    void set_policy(const kv::CachePolicy& p) { policy_ = p; }
    // Runs app.pending (and clears it): inline, or on the worker when it is heavy.
    void submit(AppState& app);
    // Publishes a finished worker batch into app (true when views changed) and
    // copies the sweep's progress into app.scaling.
    bool poll(AppState& app);
    bool busy() const { return running_; }
    void wait();  // blocks until the worker batch (if any) is done

    // The Scaling panel's sweep on its own thread (reads only the model). submit()
    // also runs app.sweep_request; these are for the app's batch mode and tests.
    void start_sweep(AppState& app);
    void cancel_sweep() { sweep_.cancel(); }
    void wait_sweep() { sweep_.join(); }  // then poll() to publish
    bool sweep_running() const { return sweep_.running(); }

    // For tests: the sessions themselves (only while !busy()).
    const kv::Session* main_session() const { return main_.get(); }
    const kv::Session* other_session() const { return other_.get(); }

private:
    struct Result {
        SessionView main, other;
        bool compare = false;
        std::string error;
        bool prompt_changed = false;
        std::vector<std::string> unknown, pieces;
        bool model_changed = false;
        std::unique_ptr<kv::Model> model;             // loaded by load_model
        std::unique_ptr<kv::Session> main_s, other_s;  // sessions on that model
        std::string model_name, spec, note;
        bool stepped = false;
    };
    void run(const std::vector<Command>& cmds, Result& r);
    void apply(const Command& c, Result& r);
    void set_prompt(kv::Session& s, const std::string& text, Result& r, bool record);
    void build_views(Result& r);
    void publish(AppState& app, Result& r);
    bool heavy() const;
    void update_trace_options();

    std::string worker_mode_;
    std::unique_ptr<kv::Model> model_;
    std::unique_ptr<kv::Session> main_, other_;
    std::string backend_ = "cpu";
    kv::CachePolicy policy_;
    std::string prompt_;          // as typed
    bool prompt_typed_ = true;    // false: the app's default prompt, never edited
    std::string default_prompt_;  // that default, for models with a tokenizer
    int layer_ = 0, head_ = 0;    // selection (trace options and cache view)
    bool compare_ = false;
    SessionView main_view_, other_view_;
    int main_prefix_ = 0, other_prefix_ = 0;  // history entries still valid in the views

    std::thread thread_;
    std::atomic<bool> running_{false};
    std::atomic<bool> done_{false};
    Result result_;
    SweepRunner sweep_;  // declared last: stopped first, while model_ is alive
};

}  // namespace kvui
