// Controller: runs Commands on the sessions and publishes SessionViews.
#include "ui/controller.h"

#include <algorithm>
#include <cctype>
#include <exception>

#include "core/error.h"

namespace kvui {

std::vector<int> parse_ids(const std::string& text, int vocab_size) {
    std::vector<int> ids;
    std::string cur;
    auto flush = [&] {
        if (cur.empty()) return;
        for (char c : cur)
            if (!std::isdigit(static_cast<unsigned char>(c)))
                throw kv::Error("prompt: '" + cur +
                                "' is not a token id (this model has no tokenizer: type ids like 5,9,3,7)");
        if (cur.size() > 9) throw kv::Error("prompt: token id '" + cur + "' is too large");
        int id = std::stoi(cur);
        if (id >= vocab_size)
            throw kv::Error("prompt: token id " + cur + " is not below the vocabulary size " +
                            std::to_string(vocab_size));
        ids.push_back(id);
        cur.clear();
    };
    for (char c : text) {
        if (c == ',' || std::isspace(static_cast<unsigned char>(c))) flush();
        else cur += c;
    }
    flush();
    if (ids.empty()) throw kv::Error("prompt: empty (type some token ids like 5,9,3,7)");
    return ids;
}

Controller::Controller(std::string worker) : worker_mode_(std::move(worker)) {}

Controller::~Controller() {
    sweep_.stop();
    wait();
}

void Controller::wait() {
    if (thread_.joinable()) thread_.join();
}

bool Controller::heavy() const {
    if (worker_mode_ == "always") return true;
    if (worker_mode_ == "never" || !model_) return false;
    const kv::ModelConfig& c = model_->config;
    return c.n_embd >= 256 || c.n_ctx > 512;
}

void Controller::update_trace_options() {
    if (!model_) return;
    kv::TraceOptions t;
    // Large models record only the selected head so the history stays small.
    if (model_->config.n_embd >= 256) {
        t.all_heads = false;
        t.layer = layer_;
        t.head = head_;
    }
    if (main_) main_->set_trace_options(t);
    if (other_) other_->set_trace_options(t);
}

void Controller::set_prompt(kv::Session& s, const std::string& text, Result& r, bool record) {
    const kv::Model& m = s.model();
    if (m.tokenizer) {
        kv::Encoding e = s.set_prompt_text(text);
        if (record) {
            r.prompt_changed = true;
            r.unknown = e.unknown;
            r.pieces = e.pieces;
        }
    } else {
        s.set_prompt_ids(parse_ids(text, m.config.vocab_size));
        if (record) {
            r.prompt_changed = true;
            r.unknown.clear();
            r.pieces.clear();
        }
    }
}

void Controller::open(AppState& app, const std::string& spec, const std::string& backend,
                      const std::string& prompt, bool typed_prompt) {
    wait();
    prompt_typed_ = typed_prompt;
    if (!typed_prompt) default_prompt_ = prompt;
    if (done_) {  // an unpublished batch: drop it
        done_ = false;
        running_ = false;
    }
    backend_ = backend;
    Command c;
    c.kind = CommandKind::load_model;
    c.text = spec;
    Result r;
    prompt_ = prompt;
    run({c}, r);
    publish(app, r);
}

void Controller::start_sweep(AppState& app) {
    if (!model_) {
        app.error = "no model loaded: nothing to measure";
        return;
    }
    try {
        const kv::SweepOptions opt = sweep_options(model_->config, app.vs.sweep_max_pos, app.vs.sweep_stride);
        kv::sweep_positions(model_->config, opt);  // option errors show in the window, not on the thread
        sweep_.start(*model_, opt);
    } catch (const std::exception& e) {
        app.error = e.what();
    }
    app.scaling = sweep_.snapshot();
}

void Controller::submit(AppState& app) {
    const SweepRequest req = app.sweep_request;
    app.sweep_request = SweepRequest::none;
    if (req == SweepRequest::start) start_sweep(app);
    if (req == SweepRequest::cancel) sweep_.cancel();
    if (app.pending.empty() || running_) return;
    std::vector<Command> cmds = std::move(app.pending);
    app.pending.clear();
    for (const Command& c : cmds)
        if (c.kind == CommandKind::step) app.vs.step_time = -100.0;  // set on arrival
    if (!heavy()) {
        Result r;
        run(cmds, r);
        publish(app, r);
        return;
    }
    wait();
    running_ = true;
    done_ = false;
    result_ = Result{};
    thread_ = std::thread([this, cmds = std::move(cmds)] {
        run(cmds, result_);
        done_ = true;
    });
    app.busy = true;
}

bool Controller::poll(AppState& app) {
    app.scaling = sweep_.snapshot();
    if (!running_ || !done_) return false;
    wait();
    running_ = false;
    done_ = false;
    publish(app, result_);
    result_ = Result{};
    return true;
}

void Controller::run(const std::vector<Command>& cmds, Result& r) {
    r.compare = compare_;
    for (const Command& c : cmds) {
        try {
            apply(c, r);
        } catch (const std::exception& e) {
            r.error = e.what();
        }
        if (r.model_changed || !r.error.empty()) break;
    }
    try {
        build_views(r);
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

void Controller::apply(const Command& c, Result& r) {
    if (c.kind == CommandKind::load_model) {
        std::unique_ptr<kv::Model> m = kv::load_model(c.text);
        auto s = std::make_unique<kv::Session>(*m, kv::make_engine(*m, backend_), policy_);
        r.model_name = m->name.empty() ? c.text : m->name;
        r.spec = c.text;
        r.model = std::move(m);
        r.main_s = std::move(s);
        r.model_changed = true;
        // The prompt may not suit the new model (text vs ids): say so, keep going.
        // The app's default prompt, never typed, suits any model without a word.
        if (!prompt_typed_ && r.model->tokenizer) prompt_ = default_prompt_;
        try {
            set_prompt(*r.main_s, prompt_, r, true);
        } catch (const kv::Error& e) {
            if (r.model->tokenizer) throw;
            if (prompt_typed_) r.error = std::string(e.what()) + " (using 5,9,3,7)";
            set_prompt(*r.main_s, "5,9,3,7", r, true);
            prompt_ = "5,9,3,7";
            r.note = "random model, no tokenizer: the prompt is token ids";
        }
        if (compare_) {
            r.other_s = std::make_unique<kv::Session>(*r.model, r.main_s->shared_engine(), policy_);
            r.other_s->set_prompt_ids(r.main_s->prompt_ids());
            r.other_s->set_cache(!r.main_s->cache_on());
        }
        return;
    }
    if (!main_) throw kv::Error("no model loaded: type a model folder or random:tiny and press Load");
    switch (c.kind) {
    case CommandKind::step: {
        std::string why;
        if (!main_->can_step(&why)) throw kv::Error(why.empty() ? "cannot step" : why);
        main_->step();
        if (other_ && other_->can_step()) other_->step();
        r.stepped = true;
        break;
    }
    case CommandKind::back:
        main_->back();
        if (other_) other_->back();
        main_prefix_ = std::min(main_prefix_, main_->n_steps());
        if (other_) other_prefix_ = std::min(other_prefix_, other_->n_steps());
        break;
    case CommandKind::back_to:
        while (main_->n_steps() > std::max(0, c.n) && main_->back()) {
        }
        if (other_)
            while (other_->n_steps() > std::max(0, c.n) && other_->back()) {
            }
        main_prefix_ = std::min(main_prefix_, main_->n_steps());
        if (other_) other_prefix_ = std::min(other_prefix_, other_->n_steps());
        break;
    case CommandKind::reset:
        main_->reset();
        if (other_) other_->reset();
        main_prefix_ = other_prefix_ = 0;
        break;
    case CommandKind::set_cache:
        main_->set_cache(c.flag);
        if (other_) other_->set_cache(!c.flag);
        break;
    case CommandKind::set_compare:
        compare_ = c.flag;
        r.compare = c.flag;
        if (c.flag && !other_) {
            other_ = std::make_unique<kv::Session>(*model_, main_->shared_engine(), policy_);
            update_trace_options();
            other_->set_sampling(main_->sampling());
            other_->set_prompt_ids(main_->prompt_ids());
            other_->set_cache(!main_->cache_on());
            other_prefix_ = 0;
            // Catch up in lockstep with the main session.
            while (other_->n_steps() < main_->n_steps() && other_->can_step()) other_->step();
        } else if (!c.flag) {
            other_.reset();
            other_view_ = SessionView{};
            other_prefix_ = 0;
        }
        break;
    case CommandKind::set_prompt:
        prompt_ = c.text;
        prompt_typed_ = true;
        set_prompt(*main_, c.text, r, true);
        if (other_) other_->set_prompt_ids(main_->prompt_ids());
        main_prefix_ = other_prefix_ = 0;
        break;
    case CommandKind::set_sampling:
        main_->set_sampling(c.sampling);
        if (other_) other_->set_sampling(c.sampling);
        break;
    case CommandKind::set_selection:
        layer_ = c.n;
        head_ = c.m;
        update_trace_options();
        break;
    case CommandKind::set_policy:
        policy_ = c.policy;
        main_->set_policy(policy_);
        if (other_) other_->set_policy(policy_);
        main_prefix_ = other_prefix_ = 0;
        break;
    case CommandKind::refresh_cache:
    case CommandKind::load_model:
        break;
    }
}

namespace {

void fill_view(const kv::Session& s, SessionView& v, int& prefix, int layer, int kv_head) {
    const auto& h = s.history();
    prefix = std::min(prefix, static_cast<int>(h.size()));
    prefix = std::min(prefix, static_cast<int>(v.history.size()));
    v.history.resize(prefix);
    for (size_t i = prefix; i < h.size(); ++i)
        v.history.push_back(std::make_shared<const kv::StepTrace>(h[i]));
    prefix = static_cast<int>(h.size());
    v.valid = true;
    v.cache_on = s.cache_on();
    v.prompt_ids = s.prompt_ids();
    v.tokens = s.tokens();
    v.compute_counts = s.compute_counts();
    v.totals = s.totals();
    v.why_not.clear();
    v.can_step = s.can_step(&v.why_not);
    const kv::KVCache& cache = s.cache();
    v.cache_rows = cache.n_used();
    v.cache_bytes = cache.bytes();
    v.policy = cache.policy();
    v.cache_positions = cache.n_pos();
    v.slot_pos.clear();
    for (const kv::KVCell& cell : cache.cells()) v.slot_pos.push_back(cell.pos);
    v.held.assign(size_t(cache.n_pos()), false);
    for (int p = 0; p < cache.n_pos(); ++p) v.held[size_t(p)] = cache.slot_of(p) >= 0;
    const kv::ModelConfig& c = s.model().config;
    v.cache_layer = std::clamp(layer, 0, c.n_layer - 1);
    v.cache_kv_head = std::clamp(kv_head, 0, c.n_kv_head - 1);
    cache.read_positions(v.cache_layer, v.cache_kv_head, v.cache_k, v.cache_v);
    if (!cache.read_positions(v.cache_layer, v.cache_kv_head, v.cache_k_f32, v.cache_v_f32, true)) {
        v.cache_k_f32.resize(0, c.head_dim());
        v.cache_v_f32.resize(0, c.head_dim());
    }
}

}  // namespace

void Controller::build_views(Result& r) {
    if (r.model_changed) {
        int p0 = 0, p1 = 0;
        const kv::ModelConfig& c = r.model->config;
        layer_ = std::min(layer_, c.n_layer - 1);
        head_ = std::min(head_, c.n_head - 1);
        int kvh = c.kv_head_of(head_);
        fill_view(*r.main_s, r.main, p0, layer_, kvh);
        if (r.other_s) fill_view(*r.other_s, r.other, p1, layer_, kvh);
        return;
    }
    if (!main_) return;
    int kvh = model_->config.kv_head_of(head_);
    fill_view(*main_, main_view_, main_prefix_, layer_, kvh);
    r.main = main_view_;
    if (other_) {
        fill_view(*other_, other_view_, other_prefix_, layer_, kvh);
        r.other = other_view_;
    }
}

void Controller::publish(AppState& app, Result& r) {
    if (r.model_changed) {
        sweep_.stop();  // it reads the model about to be freed; its points belong to it
        app.scaling = ScalingView{};
        other_.reset();
        main_.reset();
        model_ = std::move(r.model);
        main_ = std::move(r.main_s);
        other_ = std::move(r.other_s);
        update_trace_options();
        main_view_ = r.main;
        other_view_ = r.other;
        main_prefix_ = main_view_.n_steps();
        other_prefix_ = other_view_.n_steps();
        app.model = model_.get();
        app.model_name = r.model_name;
        app.vs.layer = layer_;
        app.vs.head = head_;
        app.vs.prompt_text = prompt_;
        if (!r.note.empty()) app.vs.note = app.vs.note.empty() ? r.note : app.vs.note + "; " + r.note;
        const kv::ModelConfig& c = model_->config;
        app.vs.memory_ctx = c.n_ctx;
        app.vs.model_text = r.spec;
    }
    if (r.main.valid) {
        int before = app.main.n_steps();
        app.main = std::move(r.main);
        if (app.main.n_steps() > before || r.stepped) app.vs.step_time = -1.0;  // app stamps the time
    }
    app.compare = compare_;
    app.other = compare_ ? std::move(r.other) : SessionView{};
    if (r.prompt_changed) {
        app.unknown_words = r.unknown;
        app.prompt_pieces = r.pieces;
    }
    app.error = r.error;
    app.busy = false;
}

}  // namespace kvui
