// kvscope: the window. GLFW + OpenGL 3 + Dear ImGui 1.86; the panels live in ui/.
//   kvscope [--model SPEC] [--prompt TEXT] [--no-cache] [--backend cpu|cuda]
//           [--font-scale F] [--screenshot FILE.png --steps N] [--frame-stats N]
//           [--size WxH] [--compare] [--light] [--scaling] [--draft SPEC] [--draft-k K]
//           [--window W --sinks S --kv-dtype T] [--mla expand|absorbed] [--weights f32|f16|bf16]
//           [--serve [--preset class|forks|small-pool] [--requests FILE]]
// --draft (or --draft-k alone, with the tiny-draft next to the model) starts in
// speculative mode: each step is one round of draft-and-verify.
// --lesson [--chapter N] opens lesson mode (ui/lesson/lesson.h) at chapter N; chapters that
// measure (the Scaling sweep) measure to the end before a --screenshot.
// --serve opens the serving view (ui/state/serve_view.h) on a preset or a requests
// file; --steps N then shows N of its steps.
// --scaling opens the Scaling tab; with --screenshot the sweep runs to the end first.
// Usage errors exit 2, other errors 1, each with one line naming the argument or
// file. Once the window is up, model and prompt errors are shown in it instead.
// The same file is the browser build's page (scripts/web, Emscripten): there the frame
// loop is the browser's animation callback, the canvas follows the browser window
// and S downloads the PNG (app/browser.h; docs/design.md, "In the browser").
#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>
#include <stb_image_write.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/model/model_io.h"
#include "core/serve/presets.h"
#include "core/serve/requests.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/lesson/lesson.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"
#ifdef __EMSCRIPTEN__
#include "app/browser.h"
#endif

namespace {

// GLSL of the OpenGL 3.3 core context, or of WebGL 2 (OpenGL ES 3.0) in the browser.
#ifdef __EMSCRIPTEN__
constexpr const char* kGlslVersion = "#version 300 es";
#else
constexpr const char* kGlslVersion = "#version 150";
#endif

struct Options {
    std::string model;
    std::string prompt = "Python is a programming";
    bool no_cache = false;
    std::string backend = "cpu";
    float font_scale = 1.f;
    std::string screenshot;
    int steps = -1;
    int frame_stats = 0;
    std::string size = "1600x1000";
    bool compare = false;
    bool light = false;
    bool scaling = false;
    bool scaling_weights = false;  // the sweep also on f16 weights (f32 for 16-bit ones), overlaid
    int layer = 0, head = 0;
    int window = 0, sinks = 0;  // the cache policy (docs/design.md, "The command line and JSON")
    std::string kv_dtype = "f32";
    std::string mla;            // --mla expand|absorbed ("" = expand): an MLA model's read
    kv::CachePolicy policy;     // from the four above
    std::string weights;        // --weights f32|f16|bf16 ("" = as stored)
    std::optional<kv::WeightType> weight_type;  // from it
    std::string draft;          // speculative mode's draft ("" with --draft-k: the default)
    int draft_k = 4;
    bool speculative = false;   // --draft or --draft-k given
    bool lesson = false;        // --lesson: start in lesson mode at `chapter`
    int chapter = 1;
    bool serve = false;         // --serve: start in the serving view
    std::string preset;         // its preset ("" = class), or
    std::string requests;       // its requests file
    bool typed_prompt = false;  // --prompt given (else the default, which suits any model)
    int win_w = 1600, win_h = 1000;  // from --size
    bool batch() const { return !screenshot.empty() || frame_stats > 0; }  // no one watches
    // What needs the model before the first frame (steps, a screenshot, speculative
    // mode, the lesson, a selection to clamp); else the window opens while it loads.
    bool model_first() const {
        return batch() || steps >= 0 || speculative || lesson || serve || layer > 0 || head > 0 || mla == "absorbed";
    }
};

bool parse_size(const std::string& s, int& w, int& h) {
    int a = 0, b = 0;
    char x = 0, extra = 0;
    if (std::sscanf(s.c_str(), "%d%c%d%c", &a, &x, &b, &extra) != 3 || (x != 'x' && x != 'X')) return false;
    if (a < 320 || b < 240 || a > 8192 || b > 8192) return false;
    w = a;
    h = b;
    return true;
}

bool write_png(const std::string& path, int w, int h) {
    const size_t n = static_cast<size_t>(w) * h;
    std::vector<unsigned char> px(n * 4);  // RGBA: the one format WebGL must read back
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    glReadBuffer(GL_BACK);
    glReadPixels(0, 0, w, h, GL_RGBA, GL_UNSIGNED_BYTE, px.data());
    for (size_t i = 0; i < n; ++i) std::memmove(&px[3 * i], &px[4 * i], 3);  // RGB: smaller files
    stbi_flip_vertically_on_write(1);  // GL rows run bottom-up
    stbi_write_png_compression_level = 9;
    return stbi_write_png(path.c_str(), w, h, 3, px.data(), w * 3) != 0;
}

std::string timestamped_name() {
    std::time_t t = std::time(nullptr);
    char b[64];
    std::strftime(b, sizeof b, "kvscope-%Y%m%d-%H%M%S.png", std::localtime(&t));
    return b;
}

// Key presses for the app's shortcuts, queued so a press and release within one
// frame still count (ImGui 1.86 only sees key state at frame start).
kvui::AppState* g_app = nullptr;
void key_callback(GLFWwindow* w, int key, int scancode, int action, int mods) {
    ImGui_ImplGlfw_KeyCallback(w, key, scancode, action, mods);
    // Only arrows auto-repeat, and not in the lesson (a held arrow would skip chapters).
    const bool arrow = (key == GLFW_KEY_LEFT || key == GLFW_KEY_RIGHT) && g_app && !g_app->vs.lesson.on;
    if (g_app && (action == GLFW_PRESS || (action == GLFW_REPEAT && arrow)))
        g_app->vs.key_queue.push_back({key, (mods & GLFW_MOD_CONTROL) != 0, (mods & GLFW_MOD_SHIFT) != 0});
}

// ---- start-up -------------------------------------------------------------------

// The command line into o (and the window size). Returns -1 to go on, else the
// exit code (0 after --help, 2 for a usage error, 1 without CUDA for --backend cuda).
int parse_options(int argc, char** argv, Options& o) {
    CLI::App cli{"kvscope: see the KV cache of a transformer, step by step"};
    cli.add_option("--model", o.model, "model folder, or random:tiny / random:gpt2-124m[:SEED]");
    CLI::Option* prompt_opt =
        cli.add_option("--prompt", o.prompt, "prompt text (token ids like 5,9,3,7 for random models)");
    cli.add_flag("--no-cache", o.no_cache, "start with the KV cache off");
    cli.add_option("--backend", o.backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    cli.add_option("--font-scale", o.font_scale, "font size multiplier")->check(CLI::Range(0.25f, 8.f));
    cli.add_option("--screenshot", o.screenshot, "render the window after --steps N, write this PNG and exit");
    cli.add_option("--steps", o.steps, "steps to run before showing the window")->check(CLI::Range(0, 100000));
    cli.add_option("--frame-stats", o.frame_stats, "print median and p95 frame time over N frames and exit")
        ->check(CLI::Range(1, 1000000));
    cli.add_option("--size", o.size, "window size WxH (default 1600x1000)");
    cli.add_flag("--compare", o.compare, "start in side-by-side compare mode");
    cli.add_flag("--light", o.light, "light theme");
    cli.add_flag("--scaling", o.scaling,
                 "open the Scaling tab (ms per step vs position); with --screenshot, run the sweep first");
    cli.add_flag("--scaling-weights", o.scaling_weights,
                 "with --scaling: sweep again with f16 weights (f32 for 16-bit ones) and overlay the curves");
    cli.add_option("--layer", o.layer, "selected layer")->check(CLI::NonNegativeNumber);
    cli.add_option("--head", o.head, "selected head")->check(CLI::NonNegativeNumber);
    cli.add_option("--window", o.window, "attend to the last W positions only (0 = unlimited)");
    cli.add_option("--sinks", o.sinks, "with --window: the first S positions are always attended to");
    cli.add_option("--kv-dtype", o.kv_dtype, "how the cache stores K/V: f32, f16 or int8");
    cli.add_option("--mla", o.mla, "an MLA model's read of its latent cache: expand or absorbed (key A)");
    cli.add_option("--weights", o.weights, "hold the weight matrices in f32, f16 or bf16 (default: as stored)");
    CLI::Option* draft_opt =
        cli.add_option("--draft", o.draft, "start in speculative mode with this draft model (SPEC as --model)");
    CLI::Option* draft_k_opt =
        cli.add_option("--draft-k", o.draft_k, "speculative mode: drafts per round, 1..16 (default 4)")
            ->check(CLI::Range(1, 16));
    cli.add_flag("--lesson", o.lesson, "start in lesson mode: chapters through the KV cache (L in the window)");
    CLI::Option* chapter_opt = cli.add_option("--chapter", o.chapter, "lesson chapter to start at")
                                   ->check(CLI::Range(1, kvui::lesson_chapter_count()));
    cli.add_flag("--serve", o.serve, "start in the serving view: many requests in one paged pool (V in the window)");
    CLI::Option* preset_opt =
        cli.add_option("--preset", o.preset, "with --serve: the request set, " + kv::serve_preset_names());
    CLI::Option* requests_opt = cli.add_option("--requests", o.requests,
                                               "with --serve: a requests file (JSON Lines, as kvscope-cli serve takes)");
    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return cli.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "kvscope: %s\n", e.what());
        return 2;
    }
    o.typed_prompt = prompt_opt->count() > 0;
    if (o.scaling_weights && !o.scaling) {
        std::fprintf(stderr, "kvscope: --scaling-weights: needs --scaling\n");
        return 2;
    }
    if ((preset_opt->count() > 0 || requests_opt->count() > 0) && !o.serve) {
        std::fprintf(stderr, "kvscope: %s: needs --serve\n", preset_opt->count() > 0 ? "--preset" : "--requests");
        return 2;
    }
    if (preset_opt->count() > 0 && requests_opt->count() > 0) {
        std::fprintf(stderr, "kvscope: --preset: give a preset or --requests FILE, not both\n");
        return 2;
    }
    if (o.serve && o.lesson) {
        std::fprintf(stderr, "kvscope: --serve: the lesson has its own serving chapters; drop --serve or --lesson\n");
        return 2;
    }
    if (!o.preset.empty()) {
        try {
            kv::serve_preset(o.preset);
        } catch (const kv::Error& e) {
            std::fprintf(stderr, "kvscope: %s\n", e.what());
            return 2;
        }
    }
    if (chapter_opt->count() > 0 && !o.lesson) {
        std::fprintf(stderr, "kvscope: --chapter: needs --lesson\n");
        return 2;
    }
    if (o.lesson && (draft_opt->count() > 0 || draft_k_opt->count() > 0)) {
        std::fprintf(stderr, "kvscope: --lesson: the chapters set up their own state; drop --draft/--draft-k\n");
        return 2;
    }
    o.speculative = draft_opt->count() > 0 || draft_k_opt->count() > 0;
    // Speculative rounds run full f32 caches and one target: name the first option that does not fit.
    const char* clash = o.window != 0 ? "--window" : o.sinks != 0 ? "--sinks" : o.kv_dtype != "f32" ? "--kv-dtype"
                        : o.mla == "absorbed" ? "--mla"
                        : o.compare ? "--compare" : o.no_cache ? "--no-cache" : !o.weights.empty() ? "--weights"
                        : nullptr;
    if (o.speculative && clash) {
        std::fprintf(stderr, "kvscope: --draft: speculative decoding runs the full f32 cache and one target; %s is not "
                             "supported with it (drop %s)\n", clash, clash);
        return 2;
    }
    if (!o.weights.empty()) {
        o.weight_type = kv::parse_weight_type(o.weights);
        if (!o.weight_type) {
            std::fprintf(stderr, "kvscope: --weights: '%s' is not a weight type (use f32, f16 or bf16)\n", o.weights.c_str());
            return 2;
        }
    }
    if (!parse_size(o.size, o.win_w, o.win_h)) {
        std::fprintf(stderr, "kvscope: --size: '%s' is not WxH between 320x240 and 8192x8192\n", o.size.c_str());
        return 2;
    }
    try {
        o.policy.window = o.window;
        o.policy.sinks = o.sinks;
        o.policy.dtype = kv::parse_dtype(o.kv_dtype, "--kv-dtype");
        if (!o.mla.empty()) o.policy.mla = kv::parse_mla_read(o.mla, "--mla");
        kv::check_policy(o.policy, o.window < 0 ? "--window" : "--sinks");
    } catch (const kv::Error& e) {
        std::fprintf(stderr, "kvscope: %s\n", e.what());
        return 2;
    }
    std::string why;
    if (o.backend == "cuda" && !kv::cuda_available(&why)) {
        std::fprintf(stderr, "kvscope: --backend cuda: %s\n", why.empty() ? "not available" : why.c_str());
        return 1;
    }
    return -1;
}

// The model: an explicit --model must load; the default (the bundled model) falls
// back to random:tiny with a note. False (message printed) when nothing loads.
bool open_model(kvui::Controller& ctl, kvui::AppState& app, const Options& o) {
    std::string spec = o.model;
    if (spec.empty()) {
        spec = kv::default_model_dir();
        if (spec.empty()) {
            spec = "random:tiny";
            app.vs.note = "bundled model not found: using random:tiny";
        }
    }
    // The default prompt is text; a random model (no tokenizer) takes 5,9,3,7 instead, quietly.
    ctl.open(app, spec, o.backend, o.prompt, o.typed_prompt);
    if (app.model) return true;
    if (!o.model.empty()) {
        std::fprintf(stderr, "kvscope: --model %s: %s\n", o.model.c_str(), app.error.c_str());
        return false;
    }
    std::string first_error = app.error;
    ctl.open(app, "random:tiny", o.backend, o.prompt, o.typed_prompt);
    app.vs.note = "bundled model failed to load (" + first_error + "): using random:tiny";
    if (app.model) return true;
    std::fprintf(stderr, "kvscope: %s\n", app.error.c_str());
    return false;
}

// The model loads off the UI thread (the window opens at once and shows its
// progress). A spec that names no model, or a folder whose config.json or tokenizer
// is wrong, is refused first (one line, exit 1): those are read here, not the weights.
// The default falls back to random:tiny with a note. False (message printed) when refused.
bool start_model(kvui::Controller& ctl, kvui::AppState& app, const Options& o) {
    std::string spec = o.model.empty() ? kv::default_model_dir() : o.model;
    try {
        if (spec.empty()) throw kv::Error("the bundled model (assets/models/tiny-gpt) was not found");
        kv::load_model_text(spec);
    } catch (const std::exception& e) {
        if (!o.model.empty()) {
            std::fprintf(stderr, "kvscope: --model %s: %s\n", o.model.c_str(), e.what());
            return false;
        }
        app.vs.note = std::string(spec.empty() ? "bundled model not found" : "bundled model failed to load (" +
                                  std::string(e.what()) + ")") + ": using random:tiny";
        spec = "random:tiny";
    }
    ctl.open_async(app, spec, o.backend, o.prompt, o.typed_prompt);
    return true;
}

// --draft / --draft-k: speculative mode on before the window opens. False (message
// printed) when the draft does not load or does not suit the model.
bool start_speculative(kvui::Controller& ctl, kvui::AppState& app, const Options& o) {
    app.vs.spec.k = o.draft_k;
    app.vs.spec.draft_text = o.draft;
    kvui::Command c{kvui::CommandKind::set_speculative};
    c.flag = true;
    c.text = o.draft;
    c.n = o.draft_k;
    app.push(c);
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    if (app.spec.on) return true;
    const bool named = app.error.rfind("--draft", 0) == 0;  // "--draft: ..." / "--draft-k: ..."
    std::fprintf(stderr, "kvscope: %s%s\n", named ? "" : "--draft: ", app.error.c_str());
    return false;
}

// An OpenGL 3.3 core window, or null (message printed).
GLFWwindow* open_window(const Options& o) {
    glfwSetErrorCallback([](int code, const char* msg) { std::fprintf(stderr, "kvscope: GLFW error %d: %s\n", code, msg); });
    if (!glfwInit()) {
        std::fprintf(stderr, "kvscope: cannot open a window (no display? try xvfb-run)\n");
        return nullptr;
    }
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
    glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
    glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
    GLFWwindow* win = glfwCreateWindow(o.win_w, o.win_h, kvui::kTitle, nullptr, nullptr);
    if (!win) {
        std::fprintf(stderr, "kvscope: cannot create an OpenGL 3.3 window\n");
        glfwTerminate();
        return nullptr;
    }
    glfwMakeContextCurrent(win);
    glfwSwapInterval(o.batch() ? 0 : 1);
    return win;
}

// ImGui on the window, the key queue, theme and fonts.
void init_imgui(GLFWwindow* win, kvui::AppState& app, const Options& o) {
    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGui::GetIO().IniFilename = nullptr;
    ImGui_ImplGlfw_InitForOpenGL(win, true);
    g_app = &app;
    app.vs.queued_keys = true;
    glfwSetKeyCallback(win, key_callback);  // chains to ImGui's
    ImGui_ImplOpenGL3_Init(kGlslVersion);

    app.vs.font_scale = o.font_scale;
    app.vs.base_font_px = kvui::window_font_px(float(o.win_h), 1.f);
    app.vs.dark = !o.light;
    if (const auto* r = reinterpret_cast<const char*>(glGetString(GL_RENDERER)))
        kvui::set_software_renderer(std::strstr(r, "llvmpipe") || std::strstr(r, "softpipe") || std::strstr(r, "swrast"));
    kvui::apply_theme(app.vs.dark, app.vs.base_font_px * app.vs.font_scale / 18.f);
    kvui::build_fonts(app.vs.base_font_px * app.vs.font_scale, app.vs.glyphs.loaded);
}

// The command-line choices as Commands, run before the first frame.
void push_initial_commands(kvui::AppState& app, const Options& o) {
    if (o.no_cache) {
        kvui::Command c{kvui::CommandKind::set_cache};
        c.flag = false;
        app.push(c);
    }
    if (o.compare) {
        kvui::Command c{kvui::CommandKind::set_compare};
        c.flag = true;
        app.push(c);
    }
    if (o.layer || o.head) {
        app.vs.layer = std::min(o.layer, app.n_layer() - 1);
        app.vs.head = std::min(o.head, app.n_head() - 1);
        kvui::Command c{kvui::CommandKind::set_selection};
        c.n = app.vs.layer;
        c.m = app.vs.head;
        app.push(c);
    }
}

// The initial commands, then --steps (all of the context for --frame-stats), run
// synchronously so screenshots show them.
void run_initial_steps(kvui::Controller& ctl, kvui::AppState& app, const Options& o) {
    int steps = o.steps;
    if (steps < 0 && o.frame_stats > 0) steps = 1 << 20;  // full context
    if (!o.model_first()) {  // they wait for the model loading, and run once it is there
        ctl.submit(app);
        return;
    }
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    if (o.serve) return;  // --steps are the serving run's (open_serve)
    for (int i = 0; i < steps && app.main.can_step; ++i) {
        app.push({kvui::CommandKind::step});
        ctl.submit(app);
        ctl.wait();
        ctl.poll(app);
        if (!app.error.empty()) break;
    }
}

// --scaling: open the tab; before a screenshot, run the whole sweep.
void open_scaling(kvui::Controller& ctl, kvui::AppState& app, const Options& o) {
    app.vs.show_scaling = true;
    app.vs.select_tab = true;
    app.vs.sweep_overlay = o.scaling_weights;
    if (o.screenshot.empty()) return;
    ctl.start_sweep(app);
    ctl.wait_sweep();
    ctl.poll(app);
    if (app.scaling.state == kvui::SweepState::done)
        std::fprintf(stderr, "kvscope: sweep of %zu points in %.1f s%s%s\n", app.scaling.points.size(), app.scaling.seconds,
                     app.scaling.overlay ? "; " : "",
                     app.scaling.overlay ? kvui::weights_overlay_caption(app.scaling).c_str() : "");
    else
        std::fprintf(stderr, "kvscope: sweep %s: %s\n", kvui::sweep_state_name(app.scaling.state),
                     app.scaling.error.c_str());
}

// --lesson: the chapter's own state, set up synchronously (a sweep measured to the
// end before a screenshot).
void open_lesson(kvui::Controller& ctl, kvui::AppState& app, const Options& o) {
    kvui::enter_lesson(app, o.chapter);
    // A chapter on another model loads it first, then pushes the rest (lesson_tick).
    for (int i = 0; i < 4 && (!app.pending.empty() || app.vs.lesson.setup != 0 || ctl.loading() || ctl.busy()); ++i) {
        ctl.settle(app);
        kvui::lesson_tick(app);
    }
    if (o.screenshot.empty() || !ctl.sweep_running()) return;
    ctl.wait_sweep();
    ctl.poll(app);
}

// --requests FILE for the serving view: the file checked as `kvscope-cli serve` checks
// it, its prompts kept as text for the request list. Throws kv::Error naming the file.
kv::ServePreset serve_setup_from_file(const kv::Model& m, const std::string& path) {
    const kv::RequestRules rules = kv::model_request_rules(m);
    kv::ServePreset s = kv::serve_preset("class");
    s.name = "custom";
    s.title = path;
    s.requests.clear();
    int blocks = 0;
    for (const kv::ServeRequest& q : kv::read_requests(path, rules)) {
        s.requests.push_back({m.tokenizer->decode(q.prompt), q.new_tokens, q.arrive, q.fork});
        blocks += q.fork * ((int(q.prompt.size()) + q.new_tokens - 1 + s.sched.block_size - 1) / s.sched.block_size);
    }
    s.sched.pool_blocks = std::max(1, blocks);  // every request at once, as serve's default
    return s;
}

// --serve's request set, read before the window opens. False (message printed) for a
// requests file that cannot be read or does not suit the model.
bool serve_setup(const kvui::AppState& app, const Options& o, kv::ServePreset& setup) {
    try {
        if (!app.model->tokenizer) throw kv::Error("--serve: the requests are text, and this model has no tokenizer");
        setup = o.requests.empty() ? kv::serve_preset(o.preset.empty() ? "class" : o.preset)
                                   : serve_setup_from_file(*app.model, o.requests);
        return true;
    } catch (const kv::Error& e) {
        std::fprintf(stderr, "kvscope: %s\n", e.what());
        return false;
    }
}

// --serve: the serving view on, its run made before the first frame, --steps of it shown.
bool open_serve(kvui::Controller& ctl, kvui::AppState& app, const Options& o, const kv::ServePreset& setup) {
    app.serve.on = true;
    app.push(kvui::serve_command(setup, std::max(0, o.steps)));
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    if (app.serve.run) return true;
    std::fprintf(stderr, "kvscope: --serve: %s\n", app.error.c_str());
    return false;
}

// ---- the frame loop -------------------------------------------------------------

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// --frame-stats: whole frames and the UI-building part (CPU, before GL), after 2 warm-up frames.
struct FrameStats {
    std::vector<double> frame_ms, ui_ms;
    Clock::time_point last = Clock::now();

    void report(const Options& o, const kvui::AppState& app) {
        if (frame_ms.empty()) return;
        std::sort(frame_ms.begin(), frame_ms.end());
        const double med = frame_ms[frame_ms.size() / 2];
        const double p95 = frame_ms[std::min(frame_ms.size() - 1, static_cast<size_t>(frame_ms.size() * 0.95))];
        std::sort(ui_ms.begin(), ui_ms.end());
        const double ui_med = ui_ms.empty() ? 0.0 : ui_ms[ui_ms.size() / 2];
        std::fprintf(stderr,
                     "kvscope: %zu frames at %dx%d, %d steps (cache rows %d): median %.2f ms, p95 %.2f ms "
                     "(building the UI: median %.2f ms; the rest is GL rendering and swap, %s; %d vertices)\n",
                     frame_ms.size(), o.win_w, o.win_h, app.main.n_steps(), app.main.cache_rows, med, p95, ui_med,
                     reinterpret_cast<const char*>(glGetString(GL_RENDERER)), ImGui::GetDrawData()->TotalVtxCount);
    }
};

void rebuild_fonts_if_changed(kvui::AppState& app) {
    if (!app.vs.font_changed) return;
    app.vs.font_changed = false;
    kvui::build_fonts(app.vs.base_font_px * app.vs.font_scale, app.vs.glyphs.loaded);
    kvui::apply_theme(app.vs.dark, app.vs.base_font_px * app.vs.font_scale / 18.f);
    ImGui_ImplOpenGL3_DestroyFontsTexture();
    ImGui_ImplOpenGL3_CreateFontsTexture();
}

// Builds the UI and renders it into the back buffer; returns the UI-building ms.
double render_frame(GLFWwindow* win, kvui::AppState& app, bool batch, int& fb_w, int& fb_h) {
    const auto t_ui = Clock::now();
    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    // Two frames can share a timestamp in the browser; ImGui 1.86 asserts on a zero step.
    ImGui::GetIO().DeltaTime = std::max(ImGui::GetIO().DeltaTime, 1e-4f);
    if (batch) ImGui::GetIO().MousePos = ImVec2(-FLT_MAX, -FLT_MAX);  // no hover tooltips in screenshots
    ImGui::NewFrame();
    kvui::draw_app(app);
    ImGui::Render();
    const double ui_ms = ms_since(t_ui);
    glfwGetFramebufferSize(win, &fb_w, &fb_h);
    glViewport(0, 0, fb_w, fb_h);
    const ImVec4 bg = kvui::palette().clear;
    glClearColor(bg.x, bg.y, bg.z, 1.f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
    return ui_ms;
}

// The S key's screenshot, named by the time, announced in a toast.
void save_requested_screenshot(kvui::AppState& app, int fb_w, int fb_h) {
    if (!app.vs.screenshot_requested) return;
    app.vs.screenshot_requested = false;
    const std::string name = timestamped_name();
    const bool ok = write_png(name, fb_w, fb_h);
    app.vs.toast.text = ok ? "Screenshot saved: " + name : "Could not write " + name;
    app.vs.toast.until = ImGui::GetTime() + 3.0;
#ifdef __EMSCRIPTEN__
    if (ok) kvweb::download(name);
#endif
}

// The window title follows the latest step (kvui::window_title); set when it changes.
void update_title(GLFWwindow* win, const kvui::AppState& app, std::string& shown) {
    std::string title = kvui::window_title(app);
    if (title == shown) return;
    shown = std::move(title);
    glfwSetWindowTitle(win, shown.c_str());
}

// The frame loop's state: the desktop's while loop and the browser's animation
// callback both run frame() on it.
struct FrameLoop {
    GLFWwindow* win;
    kvui::Controller& ctl;
    kvui::AppState& app;
    const Options& o;
    FrameStats stats;
    int frames = 0;
    std::string title = kvui::kTitle;  // the window title last set
    int exit_code = -1;                // >= 0: the loop ends with it
    bool shot = false;                 // it ended at --screenshot (no frame statistics then)
};

// One frame: events, published results, the UI, --screenshot (after 6 frames: the
// layout settles on what it measured), the S key's PNG, --frame-stats and the next batch.
void frame(FrameLoop& f) {
    glfwPollEvents();
    rebuild_fonts_if_changed(f.app);
    f.ctl.poll(f.app);
    update_title(f.win, f.app, f.title);
    int fb_w = 0, fb_h = 0;
    const double ui_ms = render_frame(f.win, f.app, f.o.batch(), fb_w, fb_h);
    if (f.o.frame_stats > 0 && f.frames > 2) f.stats.ui_ms.push_back(ui_ms);
    ++f.frames;
    if (!f.o.screenshot.empty() && f.frames >= 6) {
        f.shot = true;
        f.exit_code = write_png(f.o.screenshot, fb_w, fb_h) ? 0 : 1;
        if (f.exit_code) std::fprintf(stderr, "kvscope: --screenshot %s: cannot write the file\n", f.o.screenshot.c_str());
        return;
    }
    save_requested_screenshot(f.app, fb_w, fb_h);
    glfwSwapBuffers(f.win);
    if (f.o.frame_stats > 0) {
        glFinish();
        if (f.frames > 2) f.stats.frame_ms.push_back(ms_since(f.stats.last));
        f.stats.last = Clock::now();
        if (static_cast<int>(f.stats.frame_ms.size()) >= f.o.frame_stats) {
            f.exit_code = 0;
            return;
        }
    }
    const bool was_busy = f.app.busy;
    f.ctl.submit(f.app);
    if (f.app.busy && !was_busy) f.app.busy_since = ImGui::GetTime();
}

// Frames until the window closes, --screenshot is written or --frame-stats has its
// frames. Returns the exit code. In the browser the page runs frames until it closes:
// this never returns (main's locals stay alive: Emscripten does not unwind the stack).
int run_frames(GLFWwindow* win, kvui::Controller& ctl, kvui::AppState& app, const Options& o) {
    FrameLoop f{win, ctl, app, o};
#ifdef __EMSCRIPTEN__
    kvweb::run_main_loop([](void* p) { frame(*static_cast<FrameLoop*>(p)); }, &f);
#endif
    while (f.exit_code < 0 && !glfwWindowShouldClose(win)) frame(f);
    if (o.frame_stats > 0 && !f.shot) f.stats.report(o, app);
    return std::max(f.exit_code, 0);
}

void close_window(GLFWwindow* win) {
    g_app = nullptr;
    ImGui_ImplOpenGL3_Shutdown();
    ImGui_ImplGlfw_Shutdown();
    ImGui::DestroyContext();
    glfwDestroyWindow(win);
    glfwTerminate();
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (int rc = parse_options(argc, argv, o); rc >= 0) return rc;
#ifdef __EMSCRIPTEN__
    kvweb::page_size(o.win_w, o.win_h);  // the canvas fills the page
#endif
    kvui::AppState app;
    kvui::Controller ctl(o.batch() ? "never" : "auto");
    ctl.set_policy(o.policy);
    ctl.set_weights(o.weight_type);
    if (o.model_first() && !open_model(ctl, app, o)) return 1;
    try {  // the rule and its words are core's, as kvscope-cli's
        kv::check_mla_read(app.model->config, o.policy, app.model_name);
    } catch (const kv::Error& e) {
        std::fprintf(stderr, "kvscope: %s\n", e.what());
        return 2;
    }
    if (!o.model_first() && !start_model(ctl, app, o)) return 1;
    const std::string load_error = app.error;  // e.g. the prompt did not suit the model
    if (o.speculative && !start_speculative(ctl, app, o)) return 1;
    kv::ServePreset serve;
    if (o.serve && !serve_setup(app, o, serve)) return 1;

    GLFWwindow* win = open_window(o);
    if (!win) return 1;
    init_imgui(win, app, o);
    push_initial_commands(app, o);
    run_initial_steps(ctl, app, o);
    if (app.error.empty()) app.error = load_error;
    if (o.batch()) app.vs.animate = false;
    if (o.scaling) open_scaling(ctl, app, o);
    if (o.lesson) open_lesson(ctl, app, o);
    if (o.serve && !open_serve(ctl, app, o, serve)) {
        close_window(win);
        return 1;
    }

    const int exit_code = run_frames(win, ctl, app, o);
    ctl.wait();
    close_window(win);
    return exit_code;
}
