// kvscope: the window. GLFW + OpenGL 3 + Dear ImGui 1.86; the panels live in ui/.
//   kvscope [--model SPEC] [--prompt TEXT] [--no-cache] [--backend cpu|cuda]
//           [--font-scale F] [--screenshot FILE.png --steps N] [--frame-stats N]
//           [--size WxH] [--compare] [--light] [--scaling]
// --scaling opens the Scaling tab; with --screenshot the sweep runs to the end first.
// Usage errors exit 2, other errors 1, each with one line naming the argument or
// file. Once the window is up, model and prompt errors are shown in it instead.
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
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/error.h"
#include "core/model/model_io.h"
#include "ui/app_state.h"
#include "ui/controller.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace {

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
    int layer = 0, head = 0;
    int window = 0, sinks = 0;  // the cache policy (docs/design.md, "The command line and JSON")
    std::string kv_dtype = "f32";
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
    std::vector<unsigned char> px(static_cast<size_t>(w) * h * 3);  // RGB: smaller files
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    glReadBuffer(GL_BACK);
    glReadPixels(0, 0, w, h, GL_RGB, GL_UNSIGNED_BYTE, px.data());
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
    const bool arrow = key == GLFW_KEY_LEFT || key == GLFW_KEY_RIGHT;  // only arrows auto-repeat
    if (g_app && (action == GLFW_PRESS || (action == GLFW_REPEAT && arrow)))
        g_app->vs.key_queue.emplace_back(key, (mods & GLFW_MOD_CONTROL) != 0);
}

float font_px(const Options& o, int win_h) {
    const float base = std::clamp(win_h / 50.f, 13.f, 44.f);
    return std::round(base * o.font_scale);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
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
    cli.add_option("--layer", o.layer, "selected layer")->check(CLI::NonNegativeNumber);
    cli.add_option("--head", o.head, "selected head")->check(CLI::NonNegativeNumber);
    cli.add_option("--window", o.window, "attend to the last W positions only (0 = unlimited)");
    cli.add_option("--sinks", o.sinks, "with --window: the first S positions are always attended to");
    cli.add_option("--kv-dtype", o.kv_dtype, "how the cache stores K/V: f32, f16 or int8");
    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return cli.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "kvscope: %s\n", e.what());
        return 2;
    }
    int win_w = 1600, win_h = 1000;
    if (!parse_size(o.size, win_w, win_h)) {
        std::fprintf(stderr, "kvscope: --size: '%s' is not WxH between 320x240 and 8192x8192\n", o.size.c_str());
        return 2;
    }
    kv::CachePolicy policy;
    try {
        policy.window = o.window;
        policy.sinks = o.sinks;
        policy.dtype = kv::parse_dtype(o.kv_dtype, "--kv-dtype");
        kv::check_policy(policy, o.window < 0 ? "--window" : "--sinks");
    } catch (const kv::Error& e) {
        std::fprintf(stderr, "kvscope: %s\n", e.what());
        return 2;
    }
    if (o.steps >= 0 && o.screenshot.empty() && o.frame_stats == 0) {
        // --steps alone: run them, then open the window
    }
    if (o.backend == "cuda") {
        std::string why;
        if (!kv::cuda_available(&why)) {
            std::fprintf(stderr, "kvscope: --backend cuda: %s\n", why.empty() ? "not available" : why.c_str());
            return 1;
        }
    }

    // Model: explicit --model must load; the default falls back to random:tiny.
    const bool batch = !o.screenshot.empty() || o.frame_stats > 0;
    kvui::AppState app;
    kvui::Controller ctl(batch ? "never" : "auto");
    ctl.set_policy(policy);
    std::string spec = o.model;
    if (spec.empty()) {
        spec = kv::default_model_dir();
        if (spec.empty()) {
            spec = "random:tiny";
            app.vs.note = "bundled model not found: using random:tiny";
        }
    }
    // The default prompt is text; a random model (no tokenizer) takes 5,9,3,7 instead, quietly.
    const bool typed_prompt = prompt_opt->count() > 0;
    ctl.open(app, spec, o.backend, o.prompt, typed_prompt);
    if (!app.model) {
        if (!o.model.empty()) {
            std::fprintf(stderr, "kvscope: --model %s: %s\n", o.model.c_str(), app.error.c_str());
            return 1;
        }
        std::string first_error = app.error;
        ctl.open(app, "random:tiny", o.backend, o.prompt, typed_prompt);
        app.vs.note = "bundled model failed to load (" + first_error + "): using random:tiny";
        if (!app.model) {
            std::fprintf(stderr, "kvscope: %s\n", app.error.c_str());
            return 1;
        }
    }
    const std::string load_error = app.error;  // e.g. the prompt did not suit the model

    // Window.
    glfwSetErrorCallback([](int code, const char* msg) { std::fprintf(stderr, "kvscope: GLFW error %d: %s\n", code, msg); });
    if (!glfwInit()) {
        std::fprintf(stderr, "kvscope: cannot open a window (no display? try xvfb-run)\n");
        return 1;
    }
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
    glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
    glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
    GLFWwindow* win = glfwCreateWindow(win_w, win_h, "kvscope: the KV cache, step by step", nullptr, nullptr);
    if (!win) {
        std::fprintf(stderr, "kvscope: cannot create an OpenGL 3.3 window\n");
        glfwTerminate();
        return 1;
    }
    glfwMakeContextCurrent(win);
    glfwSwapInterval(batch ? 0 : 1);

    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;
    ImGui_ImplGlfw_InitForOpenGL(win, true);
    g_app = &app;
    app.vs.queued_keys = true;
    glfwSetKeyCallback(win, key_callback);  // chains to ImGui's
    ImGui_ImplOpenGL3_Init("#version 150");

    app.vs.font_scale = o.font_scale;
    app.vs.base_font_px = font_px(Options{}, win_h);
    app.vs.dark = !o.light;
    if (const auto* r = reinterpret_cast<const char*>(glGetString(GL_RENDERER)))
        kvui::set_software_renderer(std::strstr(r, "llvmpipe") || std::strstr(r, "softpipe") || std::strstr(r, "swrast"));
    kvui::apply_theme(app.vs.dark, app.vs.base_font_px * app.vs.font_scale / 18.f);
    kvui::build_fonts(app.vs.base_font_px * app.vs.font_scale, app.vs.glyphs.loaded);

    // Initial commands (run synchronously so screenshots show them).
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
    int steps = o.steps;
    if (steps < 0 && o.frame_stats > 0) steps = 1 << 20;  // full context
    if (steps < 0) steps = 0;
    {
        kvui::Controller* c = &ctl;
        c->submit(app);
        c->wait();
        c->poll(app);
        for (int i = 0; i < steps && app.main.can_step; ++i) {
            app.push({kvui::CommandKind::step});
            c->submit(app);
            c->wait();
            c->poll(app);
            if (!app.error.empty()) break;
        }
    }
    if (app.error.empty()) app.error = load_error;
    if (batch) app.vs.animate = false;
    if (o.scaling) {
        app.vs.show_scaling = true;
        app.vs.select_tab = true;
        if (!o.screenshot.empty()) {  // the whole sweep, measured before the capture
            ctl.start_sweep(app);
            ctl.wait_sweep();
            ctl.poll(app);
            if (app.scaling.state == kvui::SweepState::done)
                std::fprintf(stderr, "kvscope: sweep of %zu points in %.1f s\n", app.scaling.points.size(),
                             app.scaling.seconds);
            else
                std::fprintf(stderr, "kvscope: sweep %s: %s\n", kvui::sweep_state_name(app.scaling.state),
                             app.scaling.error.c_str());
        }
    }

    std::vector<double> frame_ms, ui_ms;  // whole frame; building the UI (CPU, before GL)
    int frames = 0;
    int exit_code = 0;
    auto last = std::chrono::steady_clock::now();
    while (!glfwWindowShouldClose(win)) {
        glfwPollEvents();
        if (app.vs.font_changed) {
            app.vs.font_changed = false;
            kvui::build_fonts(app.vs.base_font_px * app.vs.font_scale, app.vs.glyphs.loaded);
            kvui::apply_theme(app.vs.dark, app.vs.base_font_px * app.vs.font_scale / 18.f);
            ImGui_ImplOpenGL3_DestroyFontsTexture();
            ImGui_ImplOpenGL3_CreateFontsTexture();
        }
        ctl.poll(app);
        const auto t_ui = std::chrono::steady_clock::now();
        ImGui_ImplOpenGL3_NewFrame();
        ImGui_ImplGlfw_NewFrame();
        if (batch) io.MousePos = ImVec2(-FLT_MAX, -FLT_MAX);  // no hover tooltips in screenshots
        ImGui::NewFrame();
        kvui::draw_app(app);
        ImGui::Render();
        if (o.frame_stats > 0 && frames > 2)
            ui_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_ui).count());
        int fb_w = 0, fb_h = 0;
        glfwGetFramebufferSize(win, &fb_w, &fb_h);
        glViewport(0, 0, fb_w, fb_h);
        const ImVec4 bg = kvui::palette().clear;
        glClearColor(bg.x, bg.y, bg.z, 1.f);
        glClear(GL_COLOR_BUFFER_BIT);
        ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
        ++frames;
        if (!o.screenshot.empty() && frames >= 4) {
            if (!write_png(o.screenshot, fb_w, fb_h)) {
                std::fprintf(stderr, "kvscope: --screenshot %s: cannot write the file\n", o.screenshot.c_str());
                exit_code = 1;
            }
            break;
        }
        if (app.vs.screenshot_requested) {
            app.vs.screenshot_requested = false;
            const std::string name = timestamped_name();
            app.vs.toast.text = write_png(name, fb_w, fb_h) ? "Screenshot saved: " + name : "Could not write " + name;
            app.vs.toast.until = ImGui::GetTime() + 3.0;
        }
        glfwSwapBuffers(win);
        if (o.frame_stats > 0) {
            glFinish();
            auto now = std::chrono::steady_clock::now();
            if (frames > 2) frame_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
            last = now;
            if (static_cast<int>(frame_ms.size()) >= o.frame_stats) break;
        }
        const bool was_busy = app.busy;
        ctl.submit(app);
        if (app.busy && !was_busy) app.busy_since = ImGui::GetTime();
    }
    if (o.frame_stats > 0 && !frame_ms.empty()) {
        std::sort(frame_ms.begin(), frame_ms.end());
        const double med = frame_ms[frame_ms.size() / 2];
        const double p95 = frame_ms[std::min(frame_ms.size() - 1, static_cast<size_t>(frame_ms.size() * 0.95))];
        std::sort(ui_ms.begin(), ui_ms.end());
        const double ui_med = ui_ms.empty() ? 0.0 : ui_ms[ui_ms.size() / 2];
        std::fprintf(stderr,
                     "kvscope: %zu frames at %dx%d, %d steps (cache rows %d): median %.2f ms, p95 %.2f ms "
                     "(building the UI: median %.2f ms; the rest is GL rendering and swap, %s; %d vertices)\n",
                     frame_ms.size(), win_w, win_h, app.main.n_steps(), app.main.cache_rows, med, p95, ui_med,
                     reinterpret_cast<const char*>(glGetString(GL_RENDERER)), ImGui::GetDrawData()->TotalVtxCount);
    }
    ctl.wait();
    g_app = nullptr;
    ImGui_ImplOpenGL3_Shutdown();
    ImGui_ImplGlfw_Shutdown();
    ImGui::DestroyContext();
    glfwDestroyWindow(win);
    glfwTerminate();
    return exit_code;
}
