// Controller: runs Commands on the sessions and publishes SessionViews.
#include "ui/runtime/controller.h"

#include <algorithm>
#include <exception>

#include "core/error.h"
#include "ui/runtime/serve_runner.h"

namespace kvui {

Controller::Controller(std::string worker) : worker_mode_(std::move(worker)) {}

Controller::~Controller() {
    loader_.stop();
    sweep_.stop();
    wait();
}

bool Controller::heavy() const { return model_ ? heavy(model_->config) : worker_mode_ == "always"; }

bool Controller::heavy(const kv::ModelConfig& c) const {
    if (worker_mode_ == "always") return true;
    if (worker_mode_ == "never") return false;
    return c.n_embd >= 256 || c.n_ctx > 512;
}

kv::TraceOptions Controller::trace_options() const {
    return kv::trace_options_for(model_->config, layer_, head_);
}

void Controller::open(AppState& app, const std::string& spec, const std::string& backend,
                      const std::string& prompt, bool typed_prompt) {
    open_async(app, spec, backend, prompt, typed_prompt);
    settle(app);
}

void Controller::open_async(AppState& app, const std::string& spec, const std::string& backend,
                            const std::string& prompt, bool typed_prompt) {
    worker_.join();
    prompt_.open(prompt, typed_prompt);
    if (worker_.finished()) worker_.take();  // an unpublished batch: drop it
    backend_ = backend;
    if (!model_) app.vs.prompt_text = prompt_.text();  // shown while the first model loads
    Command c{CommandKind::load_model};
    c.text = spec;
    start_load(c, {});
    app.loading = loader_.snapshot();
}

void Controller::settle(AppState& app) {
    while (loader_.running() || worker_.running() || !deferred_.empty() || !app.pending.empty()) {
        submit(app);
        wait();
        poll(app);
    }
}

// The load (load_model: c.text; set_weights: this model in c.n's type) starts on the
// loader, replacing one in flight; `after` waits for it.
void Controller::start_load(const Command& c, std::vector<Command> after) {
    loading_spec_ = c.text;
    loading_weights_ = weights_;
    if (c.kind == CommandKind::set_weights) {
        loading_spec_ = model_spec_;
        loading_weights_ = c.n < 0 ? std::nullopt : std::optional<kv::WeightType>(kv::WeightType(c.n));
    }
    deferred_ = std::move(after);
    loader_.start(loading_spec_, loading_weights_);
}

// The loaded model gets its sessions, is published, and the commands that waited run
// after it (poll); a failed or cancelled load
// keeps the previous model (and weights choice) and drops them.
bool Controller::finish_load(AppState& app) {
    std::string error;
    bool cancelled = false;
    ready_ = loader_.take(error, cancelled);
    ready32_ = loader_.take_f32_twin();
    app.loading = LoadView{};
    if (!ready_) {
        deferred_.clear();
        app.error = error;
        return false;
    }
    weights_ = loading_weights_;
    Command c{CommandKind::load_model};
    c.text = loading_spec_;
    Result r;  // inline: making sessions (engine scratch, the prompt) is quick; the load was the slow part
    run({c}, r);
    const bool installed = r.loaded != nullptr;
    publish(app, r);
    if (!installed) deferred_.clear();
    return installed;
}

// Runs cmds inline or, for a heavy model, on the worker.
void Controller::run_batch(AppState& app, std::vector<Command> cmds) {
    bool serve = false;  // a serving run measures decode speed too: off the UI thread unless told never
    for (const Command& c : cmds) {
        if (c.kind == CommandKind::step) app.vs.step_time = -100.0;  // set on arrival
        serve = serve || c.kind == CommandKind::serve_run;
    }
    if (!heavy() && !(serve && worker_mode_ != "never")) {
        Result r;
        run(cmds, r);
        publish(app, r);
        return;
    }
    result_ = Result{};
    worker_.start([this, cmds = std::move(cmds)] { run(cmds, result_); });
    app.busy = true;
}

void Controller::start_sweep(AppState& app) {
    if (!model_) {
        app.error = "no model loaded: nothing to measure";
        return;
    }
    try {
        const kv::SweepOptions opt = sweep_options(model_->config, app.vs.sweep_max_pos, app.vs.sweep_stride);
        kv::sweep_positions(model_->config, opt);  // option errors show in the window, not on the thread
        sweep_.start(*model_, opt, app.vs.sweep_overlay);
    } catch (const std::exception& e) {
        app.error = e.what();
    }
    app.scaling = sweep_.snapshot();
}

// A load or set_weights command starts the loader and what follows it waits for the
// new model; without a model everything waits; the rest runs now.
void Controller::submit(AppState& app) {
    const SweepRequest req = app.sweep_request;
    app.sweep_request = SweepRequest::none;
    if (req == SweepRequest::start) start_sweep(app);
    if (req == SweepRequest::cancel) sweep_.cancel();
    if (app.cancel_load) loader_.cancel();
    app.cancel_load = false;
    if (app.pending.empty() || worker_.running()) return;
    std::vector<Command> cmds = std::move(app.pending);
    app.pending.clear();
    const auto load = std::find_if(cmds.begin(), cmds.end(), [](const Command& c) {
        return c.kind == CommandKind::load_model || c.kind == CommandKind::set_weights;
    });
    if (load != cmds.end()) {
        start_load(*load, std::vector<Command>(load + 1, cmds.end()));
        cmds.erase(load, cmds.end());
        app.loading = loader_.snapshot();
    }
    if (loader_.running() && sessions_.empty()) {
        deferred_.insert(deferred_.end(), cmds.begin(), cmds.end());
        return;
    }
    if (!cmds.empty()) run_batch(app, std::move(cmds));
}

// Publishes a finished batch, then a finished load (once no batch runs: the sessions
// are the worker's until then), then queues the commands that waited for it.
bool Controller::poll(AppState& app) {
    app.scaling = sweep_.snapshot();
    bool changed = false;
    if (worker_.finished()) {
        worker_.take();
        publish(app, result_);
        result_ = Result{};
        changed = true;
    }
    if (loader_.finished() && !worker_.running()) {
        changed = true;
        if (finish_load(app)) queue_deferred(app);
    }
    if (loader_.running()) app.loading = loader_.snapshot();
    return changed;
}

// The commands that waited for a load run now, before any queued since.
void Controller::queue_deferred(AppState& app) {
    if (deferred_.empty()) return;
    app.pending.insert(app.pending.begin(), deferred_.begin(), deferred_.end());
    deferred_.clear();
    submit(app);
}

void Controller::run(const std::vector<Command>& cmds, Result& r) {
    r.compare = compare_;
    for (const Command& c : cmds) {
        try {
            apply(c, r);
        } catch (const std::exception& e) {
            r.error = e.what();
        }
        if (r.loaded || !r.error.empty()) break;
    }
    try {
        build_views(r);
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

// A model and its sessions, with the prompt (or its fallback) set; compare mode
// gets its second session at once.
std::unique_ptr<Controller::Loaded> Controller::load(const std::string& spec, Result& r) {
    auto l = std::make_unique<Loaded>();
    l->model = ready_ ? std::move(ready_) : kv::load_model(spec, weights_);
    l->model32 = std::move(ready32_);
    const kv::Model& m = *l->model;
    if (!m.config.is_mla()) {  // an MLA read chosen for a model loaded before means nothing here
        policy_.mla = kv::MlaRead::expand;
        if (other_policy_) other_policy_->mla = kv::MlaRead::expand;
    }
    auto main = std::make_unique<kv::Session>(m, kv::make_engine(m, backend_), policy_);
    main->set_measure_vs_full(true);  // the narration's cost vs full attention
    if (l->model32) main->set_measure_vs_f32(kv::make_engine(*l->model32, backend_));  // the narration's cost vs f32 weights
    l->name = m.name.empty() ? spec : m.name;
    l->spec = spec;
    // The prompt may not suit the new model (text vs ids, too long): say so, keep
    // the model (without a prompt when even the fallback fails).
    try {
        r.prompt = prompt_.apply_on_load(*main, r.error, l->note);
        r.prompt_changed = true;
    } catch (const std::exception& e) {
        r.error = e.what();
        l->sessions = SessionPair(std::move(main), nullptr);
        return l;
    }
    std::unique_ptr<kv::Session> other;
    if (compare_) {
        other = std::make_unique<kv::Session>(m, main->shared_engine(), other_policy_.value_or(policy_));
        other->set_measure_vs_full(true);
        other->set_measure_vs_f32(main->f32_engine());
        other->set_prompt_ids(main->prompt_ids());
        other->set_cache(other_policy_ ? main->cache_on() : !main->cache_on());
    }
    l->sessions = SessionPair(std::move(main), std::move(other), other_policy_.has_value());
    return l;
}

void Controller::set_compare(bool on, Result& r) {
    if (!on) other_policy_.reset();  // compare again: the other cache mode, as before
    compare_ = on;
    r.compare = on;
    if (on) sessions_.start_compare(*model_, other_policy_.value_or(policy_), trace_options(), other_policy_.has_value());
    else sessions_.stop_compare();
}

// Speculative mode on (a fresh decoder over the main session's prompt, compare mode
// off: the mode has one target and one draft) or off (main's own session again).
void Controller::set_speculative(const Command& c, Result& r) {
    if (!c.flag) {
        spec_.stop();
        return;
    }
    if (!policy_.is_default())
        throw kv::Error("speculative mode: its caches are full f32; apply window 0, f32 first (now " +
                        kv::policy_text(policy_) + ")");
    spec_.start(*model_, model_spec_, backend_, c.text, c.n, sessions_.main().prompt_ids(), sessions_.main().sampling(),
                trace_options());
    if (compare_) set_compare(false, r);
}

// The second session's own policy (flag), or back to main's policy in the other cache
// mode; compare mode turns on, the second session starts afresh and catches up.
void Controller::set_other_policy(const Command& c, Result& r) {
    if (spec_.on()) throw kv::Error("compare mode: turn speculative mode off first");
    if (c.flag) kv::check_policy(c.policy, "second session's policy");
    other_policy_ = c.flag ? std::optional<kv::CachePolicy>(c.policy) : std::nullopt;
    sessions_.stop_compare();
    set_compare(true, r);
}

// The stale-cache demonstration on (compare and speculative mode off: it takes the
// second session) or off.
void Controller::set_stale_demo(const Command& c, Result& r) {
    if (!c.flag) {
        if (sessions_.stale_demo()) sessions_.stop_compare();
        return;
    }
    if (spec_.on()) set_speculative(Command{CommandKind::set_speculative}, r);
    compare_ = false;
    r.compare = false;
    sessions_.start_stale_demo(policy_, trace_options(), c.text, c.n);
}

void Controller::apply(const Command& c, Result& r) {
    if (c.kind == CommandKind::load_model) {
        r.loaded = load(c.text, r);
        return;
    }
    if (sessions_.empty()) throw kv::Error("no model loaded: type a model folder or random:tiny and press Load");
    switch (c.kind) {
    case CommandKind::step:
        if (spec_.on()) spec_.round();
        else sessions_.step();
        r.stepped = true;
        break;
    case CommandKind::back:
        if (spec_.on()) spec_.back();
        else sessions_.back();
        break;
    case CommandKind::back_to:
        if (spec_.on()) spec_.back_to(c.n);
        else sessions_.back_to(c.n);
        break;
    case CommandKind::reset:
        if (spec_.on()) spec_.reset();
        else sessions_.reset();
        break;
    case CommandKind::set_cache: sessions_.set_cache(c.flag); break;
    case CommandKind::set_compare:
        if (c.flag && spec_.on()) throw kv::Error("compare mode: turn speculative mode off first");
        set_compare(c.flag, r);
        break;
    case CommandKind::set_speculative: set_speculative(c, r); break;
    case CommandKind::set_stale_demo: set_stale_demo(c, r); break;
    case CommandKind::set_prompt:
        prompt_.type(c.text);
        r.prompt = set_session_prompt(sessions_.main(), c.text);
        r.prompt_changed = true;
        sessions_.prompt_changed();
        if (spec_.on()) spec_.set_prompt_ids(sessions_.main().prompt_ids());
        break;
    case CommandKind::serve_run:
        if (!c.serve) throw kv::Error("serving view: no requests");
        r.serve = run_serve_view(*model_, backend_, *c.serve, c.flag);
        r.serve_shown = c.n;
        break;
    case CommandKind::set_sampling:
        sessions_.set_sampling(c.sampling);
        if (spec_.on()) spec_.set_sampling(c.sampling);
        break;
    case CommandKind::set_selection:
        layer_ = c.n;
        head_ = c.m;
        sessions_.set_trace_options(trace_options());
        if (spec_.on()) spec_.set_trace_options(trace_options());
        break;
    case CommandKind::set_policy:
        if (spec_.on()) throw kv::Error("cache policy: speculative mode runs full f32 caches; turn it off first");
        policy_ = c.policy;
        sessions_.set_policy(policy_);
        break;
    case CommandKind::set_other_policy: set_other_policy(c, r); break;
    case CommandKind::set_weights:
        throw kv::Error("set_weights: loads go through submit()");  // programmer error
    case CommandKind::refresh_cache:
    case CommandKind::load_model:
        break;
    }
}

void Controller::build_views(Result& r) {
    if (r.loaded) {
        const kv::ModelConfig& c = r.loaded->model->config;
        layer_ = std::min(layer_, c.n_layer - 1);
        head_ = std::min(head_, c.n_head - 1);
        r.loaded->sessions.fill_views(layer_, c.kv_head_of(head_));
        r.main = r.loaded->sessions.main_view();
        r.other = r.loaded->sessions.other_view();
        return;
    }
    if (sessions_.empty()) return;
    const kv::ModelConfig& c = model_->config;
    sessions_.fill_views(layer_, c.kv_head_of(head_));
    r.main = sessions_.main_view();
    if (sessions_.other_ptr()) r.other = sessions_.other_view();
    if (spec_.on()) spec_.fill_views(layer_, head_, r.main, r.spec);
    r.stale_demo = sessions_.stale_demo();
}

void Controller::publish_model(AppState& app, Loaded& l) {
    sweep_.stop();  // it reads the model about to be freed; its points belong to it
    app.scaling = ScalingView{};
    app.serve.run.reset();  // its tokens are the old model's
    app.serve.shown = 0;
    sessions_ = SessionPair{};
    spec_.stop();  // it reads the model about to be freed
    model_ = std::move(l.model);
    model32_ = std::move(l.model32);
    model_spec_ = l.spec;
    app.vs.spec.draft_text.clear();  // the new model's default draft, unless one is typed
    sessions_ = std::move(l.sessions);
    sessions_.set_trace_options(trace_options());
    app.model = model_.get();
    app.model_name = l.name;
    app.vs.layer = layer_;
    app.vs.head = head_;
    app.vs.prompt_text = prompt_.text();
    if (!l.note.empty()) app.vs.note = app.vs.note.empty() ? l.note : app.vs.note + "; " + l.note;
    app.vs.memory_ctx = model_->config.n_ctx;
    app.model_spec = l.spec;
    app.weights = weights_;
    app.vs.model_text.clear();  // the field shows model_name, the tooltip model_spec
}

void Controller::publish(AppState& app, Result& r) {
    if (r.loaded) publish_model(app, *r.loaded);
    if (r.main.valid) {
        int before = app.main.n_steps();
        app.main = std::move(r.main);
        if (app.main.n_steps() > before || r.stepped) app.vs.step_time = -1.0;  // app stamps the time
    }
    app.compare = compare_;
    app.other_own_policy = compare_ && other_policy_.has_value();
    app.stale_demo = r.stale_demo;
    app.other = compare_ || r.stale_demo ? std::move(r.other) : SessionView{};
    app.spec = std::move(r.spec);
    if (r.prompt_changed) {
        app.unknown_words = r.prompt.unknown;
        app.prompt_pieces = r.prompt.pieces;
    }
    if (r.serve) {
        ServeView& v = app.serve;
        v.run = std::move(r.serve);
        v.shown = std::clamp(r.serve_shown, 0, v.n_steps());
        v.selected = 0;
        v.edit = v.run->setup.requests;
        v.edit_init = true;
        v.error.clear();
    }
    app.error = r.error;
    app.busy = false;
}

}  // namespace kvui
