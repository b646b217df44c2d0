// Controller: runs the panels' Commands. Each responsibility has its own home:
//   the model          model_ (unique_ptr; the sessions and the sweep read it)
//   the sessions       SessionPair (ui/runtime/session_pair.h): main + compare, their views
//   the worker thread  BatchWorker (ui/runtime/batch_worker.h): heavy batches off the UI thread
//   loading a model    ModelLoader (ui/runtime/model_loader.h): kv::load_model on its own thread,
//                      with progress and cancel; the previous model stays until it is done
//   the sweep          SweepRunner (ui/runtime/sweep_runner.h): the Scaling panel's measurement
//   the prompt         PromptChoice (ui/runtime/prompt_choice.h): typed or default, and the
//                      fallback to token ids for models without a tokenizer
//   speculative mode   SpecRunner (ui/runtime/spec_runner.h): the draft and the decoder; while
//                      it is on, Step/Back/Reset run rounds and main is the target's view
// With a worker, a batch of commands runs on its thread; the sessions are touched only
// by that thread until poll() joins it, and the UI draws the SessionViews published by
// the last finished batch. Without a worker (tests, screenshots, small models)
// commands run inline. docs/design.md, "Threading in the window", has the picture.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/model/model_io.h"
#include "core/session/session.h"
#include "ui/state/app_state.h"
#include "ui/runtime/batch_worker.h"
#include "ui/runtime/model_loader.h"
#include "ui/runtime/prompt_choice.h"
#include "ui/runtime/session_pair.h"
#include "ui/runtime/spec_runner.h"
#include "ui/runtime/sweep_runner.h"

namespace kvui {

class Controller {
public:
    // worker: "auto" (a thread for heavy models), "always" or "never".
    explicit Controller(std::string worker = "auto");
    ~Controller();
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    // Loads a model and sets the prompt, waiting for it (open_async + settle); errors
    // go to app.error (a model that fails to load leaves the previous one, or none).
    // A default prompt (typed_prompt false) that a random model cannot read becomes
    // 5,9,3,7 quietly; a typed one that does not suit is an error in the window.
    // Stops a running sweep (it reads the old model).
    void open(AppState& app, const std::string& spec, const std::string& backend,
              const std::string& prompt, bool typed_prompt = true);
    // The same without waiting: the load runs on the loader's thread and poll()
    // publishes it; commands submitted meanwhile wait for it while no model is loaded,
    // else run on the previous model.
    void open_async(AppState& app, const std::string& spec, const std::string& backend,
                    const std::string& prompt, bool typed_prompt = true);
    // Waits and publishes until no load or batch is in flight (screenshots, tests).
    void settle(AppState& app);
    bool loading() const { return loader_.running(); }
    // For tests: see ModelLoader::set_observer.
    void set_load_observer(std::function<void(const kv::LoadProgress&)> f) { loader_.set_observer(std::move(f)); }
    // The cache policy of the sessions open() makes (window, sinks, dtype).
    void set_policy(const kv::CachePolicy& p) { policy_ = p; }
    // The type the next loads hold the weights in (none: as stored; --weights).
    void set_weights(std::optional<kv::WeightType> t) { weights_ = t; }
    // Runs app.pending (and clears it): inline, or on the worker when it is heavy.
    void submit(AppState& app);
    // Publishes a finished worker batch into app (true when views changed) and
    // copies the sweep's progress into app.scaling.
    bool poll(AppState& app);
    bool busy() const { return worker_.running(); }
    // Blocks until the load and the worker batch in flight (if any) are done; poll()
    // then publishes them (a finished load may start its sessions' batch: settle()).
    void wait() {
        loader_.join();
        worker_.join();
    }

    // The Scaling panel's sweep on its own thread (reads only the model). submit()
    // also runs app.sweep_request; these are for the app's batch mode and tests.
    void start_sweep(AppState& app);
    void cancel_sweep() { sweep_.cancel(); }
    void wait_sweep() { sweep_.join(); }  // then poll() to publish
    bool sweep_running() const { return sweep_.running(); }

    // For tests: the sessions themselves (only while !busy()).
    const kv::Session* main_session() const { return sessions_.main_ptr(); }
    const kv::Session* other_session() const { return sessions_.other_ptr(); }
    const kv::SpecDecoder* spec_decoder() const { return spec_.decoder(); }

private:
    // A freshly loaded model with its sessions, not yet published.
    struct Loaded {
        std::unique_ptr<kv::Model> model;
        std::unique_ptr<kv::Model> model32;  // 16-bit weights: the same model in f32 (vs_f32), or null
        SessionPair sessions;
        std::string name, spec, note;
    };
    // What a batch produced, published into AppState by publish().
    struct Result {
        SessionView main, other;
        SpecView spec;  // off unless speculative mode is on
        bool compare = false;
        bool stale_demo = false;
        std::string error;
        bool prompt_changed = false;
        PromptPieces prompt;
        std::unique_ptr<Loaded> loaded;  // a load_model command succeeded
        bool stepped = false;
        std::shared_ptr<const ServeRun> serve;  // a serve_run command's run
        int serve_shown = 0;                    // and the steps it shows
    };
    void run(const std::vector<Command>& cmds, Result& r);
    void apply(const Command& c, Result& r);
    std::unique_ptr<Loaded> load(const std::string& spec, Result& r);
    void set_compare(bool on, Result& r);
    void set_speculative(const Command& c, Result& r);
    void set_other_policy(const Command& c, Result& r);
    void set_stale_demo(const Command& c, Result& r);  // lesson chapter 8 (SessionPair::start_stale_demo)
    void build_views(Result& r);
    void publish(AppState& app, Result& r);
    void publish_model(AppState& app, Loaded& loaded);
    bool heavy() const;
    bool heavy(const kv::ModelConfig& c) const;
    void start_load(const Command& c, std::vector<Command> after);
    bool finish_load(AppState& app);  // true when the model was installed
    void queue_deferred(AppState& app);
    void run_batch(AppState& app, std::vector<Command> cmds);
    kv::TraceOptions trace_options() const;

    std::string worker_mode_;
    std::string backend_ = "cpu";
    std::string model_spec_;  // what model_ was loaded from
    kv::CachePolicy policy_;
    std::optional<kv::WeightType> weights_;  // the weights' type loads ask for (none: as stored)
    int layer_ = 0, head_ = 0;  // selection (trace options and cache view)
    bool compare_ = false;
    std::optional<kv::CachePolicy> other_policy_;  // compare mode's second session: its own policy
    PromptChoice prompt_;
    ModelLoader loader_;         // reads nothing of ours: loads spec into its own Model
    std::string loading_spec_;   // what loader_ loads, in which type
    std::optional<kv::WeightType> loading_weights_;
    std::vector<Command> deferred_;        // commands waiting for the load in flight
    std::unique_ptr<kv::Model> ready_;     // the loaded model load() installs
    std::unique_ptr<kv::Model> ready32_;   // and its f32 twin (16-bit weights only)
    std::unique_ptr<kv::Model> model_;  // declared before what reads it
    std::unique_ptr<kv::Model> model32_;  // model_ with f32 weights when model_'s are 16-bit (vs_f32), or null
    SessionPair sessions_;
    SpecRunner spec_;     // reads model_: stopped before model_ changes
    Result result_;       // the worker's batch, read after worker_ finishes
    BatchWorker worker_;  // joined before sessions_ and model_ go
    SweepRunner sweep_;   // declared last: stopped first, while model_ is alive
};

}  // namespace kvui
