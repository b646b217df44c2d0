// Loading a model off the UI thread (ui/runtime/model_loader.h, Controller): the previous
// model keeps working while the new one loads, progress reaches the window, Cancel
// and a bad path keep the previous model and publish nothing, and the commands that
// followed a load run on the new model once it is there.
#include <doctest/doctest.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "core/model/model_io.h"
#include "test_helpers.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/panels/panels.h"

using namespace kvui;

namespace {

void run(Controller& ctl, AppState& app, Command c) {
    app.push(std::move(c));
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
}

Command load_cmd(const std::string& spec) {
    Command c{CommandKind::load_model};
    c.text = spec;
    return c;
}

// Holds the loading thread at tensor `at` until release(): the test acts while a
// load is provably half done.
struct Gate {
    int at = 3;
    std::mutex mu;
    std::condition_variable cv;
    bool reached = false, released = false;

    std::function<void(const kv::LoadProgress&)> observer() {
        return [this](const kv::LoadProgress& p) {
            if (p.tensors_done != at) return;
            std::unique_lock<std::mutex> lock(mu);
            reached = true;
            cv.notify_all();
            cv.wait(lock, [&] { return released; });
        };
    }
    void wait_reached() {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return reached; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mu);
        released = true;
        cv.notify_all();
    }
};

// A model folder of random:tiny:SEED (no tokenizer: prompts are ids).
std::string tiny_folder(const kvtest::TempDir& dir, const std::string& name, int seed) {
    auto m = kv::load_model("random:tiny:" + std::to_string(seed));
    const std::string folder = dir / name;
    kv::save_model_folder(folder, m->config, m->weights, nullptr);
    return folder;
}

}  // namespace

TEST_CASE("async load: the previous model steps while the new one loads, and progress reaches the window") {
    kvtest::TempDir dir("kvscope_async_load");
    const std::string folder = tiny_folder(dir, "next-model", 7);
    Controller ctl("never");
    AppState app;
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    const kv::Model* before = app.model;
    Gate gate;
    ctl.set_load_observer(gate.observer());
    app.push(load_cmd(folder));
    app.push(Command{CommandKind::step});  // after the load: waits for the new model
    ctl.submit(app);
    gate.wait_reached();
    ctl.poll(app);
    CHECK(app.model == before);
    REQUIRE(app.loading.running);
    CHECK(app.loading.progress.tensors_done == 3);
    CHECK(app.loading.progress.tensors_total > 3);
    CHECK(load_caption(app.loading).find("Loading next-model: 3/") != std::string::npos);
    // The old model still answers, without waiting for the load.
    app.push(Command{CommandKind::step});
    ctl.submit(app);
    CHECK(app.model == before);
    CHECK(app.main.n_steps() == 1);
    gate.release();
    ctl.settle(app);
    CHECK(app.error.empty());
    CHECK_FALSE(app.loading.running);
    REQUIRE(app.model != nullptr);
    CHECK(app.model_name == "next-model");
    CHECK(app.main.n_steps() == 1);  // the step that followed the load ran on the new model
    CHECK(app.main.prompt_ids == std::vector<int>{5, 9, 3, 7});
}

TEST_CASE("async load: Cancel mid-load keeps the previous model, publishes nothing and drops what waited") {
    kvtest::TempDir dir("kvscope_async_cancel");
    const std::string folder = tiny_folder(dir, "never-shown", 8);
    Controller ctl("never");
    AppState app;
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    run(ctl, app, Command{CommandKind::step});
    const kv::Model* before = app.model;
    const std::string name = app.model_name;
    Gate gate;
    ctl.set_load_observer(gate.observer());
    app.push(load_cmd(folder));
    app.push(Command{CommandKind::step});
    ctl.submit(app);
    gate.wait_reached();
    app.cancel_load = true;  // the progress bar's Cancel
    ctl.submit(app);
    gate.release();
    ctl.settle(app);
    CHECK(app.model == before);
    CHECK(app.model_name == name);
    CHECK(app.main.n_steps() == 1);  // the waiting step was dropped, the old session untouched
    CHECK(app.error == "model '" + folder + "': loading cancelled");
    CHECK_FALSE(app.loading.running);
    run(ctl, app, Command{CommandKind::step});  // and the previous model goes on
    CHECK(app.main.n_steps() == 2);
}

TEST_CASE("async load: a bad path gives one error line and keeps the previous model") {
    Controller ctl("never");
    AppState app;
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    const kv::Model* before = app.model;
    app.push(load_cmd("/nonexistent/model-folder"));
    app.push(Command{CommandKind::step});
    ctl.submit(app);
    ctl.settle(app);
    CHECK(app.model == before);
    CHECK(app.error.find("/nonexistent/model-folder") != std::string::npos);
    CHECK(app.error.find('\n') == std::string::npos);
    CHECK(app.main.n_steps() == 0);
}

TEST_CASE("async load at start-up: commands given before the model is there run once it is") {
    Controller ctl("always");  // a worker for the sessions' batches too
    AppState app;
    ctl.open_async(app, "random:tiny:3", "cpu", "5,9,3,7");
    Command cache{CommandKind::set_cache};
    cache.flag = false;
    app.push(cache);
    app.push(Command{CommandKind::step});
    app.push(Command{CommandKind::step});
    ctl.submit(app);
    ctl.settle(app);
    REQUIRE(app.model != nullptr);
    CHECK(app.error.empty());
    CHECK(app.main.n_steps() == 2);
    CHECK_FALSE(app.main.cache_on);
}
