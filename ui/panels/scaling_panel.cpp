// Scaling: measured ms per step against position, with and without the cache, from
// kv::run_sweep on its own thread (ui/runtime/sweep_runner.h). The panel only reads
// app.scaling (a snapshot the controller copies every frame) and asks for a start
// or cancel through app.sweep_request. The cached line stays flat (one new row per
// step), the uncached one grows (the whole sequence every step).
// Notation: pos the position of the step's newest token; ms wall time of one step.
#include <imgui.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>

#include "core/session/bench.h"
#include "core/model/model_io.h"
#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/panels/panels.h"
#include "ui/state/sweep_choice.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

std::string fmt_ms(double ms) {
    char b[32];
    if (ms >= 100) std::snprintf(b, sizeof b, "%.0f ms", ms);
    else if (ms >= 10) std::snprintf(b, sizeof b, "%.1f ms", ms);
    else if (ms >= 0.1) std::snprintf(b, sizeof b, "%.2f ms", ms);
    else std::snprintf(b, sizeof b, "%.3f ms", ms);
    return b;
}

// SameLine when w more pixels fit on this line, else a new line.
void same_line_if(float w) {
    ImGui::SameLine();
    if (ImGui::GetContentRegionAvail().x < w) ImGui::NewLine();
}

void draw_plot(const ScalingView& sv, ImVec2 size, SweepCurves shown, const char* title) {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 o0 = ImGui::GetCursorScreenPos();
    ImGui::PushID(static_cast<int>(shown));
    ImGui::InvisibleButton("##sweep_plot", ImVec2(std::max(size.x, 1.f), std::max(size.y, 1.f)));
    ImGui::PopID();
    const bool hovered = ImGui::IsItemHovered();
    const bool show_c = shown != SweepCurves::uncached, show_u = shown != SweepCurves::cached;
    if (title) dl->AddText(o0, pal.text, title);
    const ImVec2 o(o0.x, o0.y + (title ? ImGui::GetTextLineHeightWithSpacing() : 0.f));
    if (title) size.y -= ImGui::GetTextLineHeightWithSpacing();

    double ymax = sweep_plot_ymax(sv, shown);
    const bool any = ymax > 0;
    if (!any) ymax = 1;
    const std::string top = any ? fmt_ms(ymax) : "ms";
    const float left = ImGui::CalcTextSize(top.c_str()).x + fs * 0.4f, bottom = fs * 1.3f;
    const ImVec2 a(o.x + left, o.y + fs * 0.4f), b(o.x + size.x - fs * 0.5f, o.y + size.y - bottom);
    if (b.x - a.x < fs * 3 || b.y - a.y < fs) return;
    const int xmax = std::max(1, sv.max_pos - 1);
    auto px = [&](int pos, double ms) {
        return ImVec2(a.x + (b.x - a.x) * static_cast<float>(pos) / xmax,
                      b.y - (b.y - a.y) * static_cast<float>(ms / ymax));
    };
    dl->AddRect(a, b, pal.grid);
    for (int g = 1; g < 4; ++g) {
        const float y = b.y - (b.y - a.y) * g / 4.f;
        dl->AddLine(ImVec2(a.x, y), ImVec2(b.x, y), with_alpha(pal.grid, 0.5f));
    }
    dl->AddText(ImVec2(o.x, a.y - fs * 0.4f), pal.text_dim, top.c_str());
    dl->AddText(ImVec2(a.x - ImGui::CalcTextSize("0").x - fs * 0.3f, b.y - fs), pal.text_dim, "0");
    char xl[64];
    std::snprintf(xl, sizeof xl, "%d", xmax);
    dl->AddText(ImVec2(a.x, b.y + 2), pal.text_dim, "position 0");
    dl->AddText(ImVec2(b.x - ImGui::CalcTextSize(xl).x, b.y + 2), pal.text_dim, xl);

    const float thick = std::max(3.f, fs * 0.18f);
    const bool dots = sv.points.size() <= 80;
    // The overlay's curve (the other weights' type) is drawn thinner and paler, under the model's own.
    auto line = [&](const std::vector<kv::SweepPoint>& pts, bool cached, ImU32 col, float thick) {
        bool have_prev = false;
        ImVec2 prev;
        for (const kv::SweepPoint& p : pts) {
            const double ms = cached ? p.ms_cached : p.ms_uncached;
            if (ms < 0) {
                have_prev = false;
                continue;
            }
            const ImVec2 q = px(p.pos, ms);
            if (have_prev) dl->AddLine(prev, q, col, thick);
            if (dots) dl->AddCircleFilled(q, thick * 1.1f, col);
            prev = q;
            have_prev = true;
        }
    };
    if (sv.overlay) {
        if (show_u) line(sv.other_points, false, with_alpha(pal.uncached_line, 0.45f), thick * 0.6f);
        if (show_c) line(sv.other_points, true, with_alpha(pal.cached_line, 0.45f), thick * 0.6f);
    }
    if (show_u) line(sv.points, false, pal.uncached_line, thick);
    if (show_c) line(sv.points, true, pal.cached_line, thick);

    if (hovered && any && !sv.points.empty()) {
        const float mx = ImGui::GetIO().MousePos.x;
        const kv::SweepPoint* best = &sv.points.front();
        for (const kv::SweepPoint& p : sv.points)
            if (std::fabs(px(p.pos, 0).x - mx) < std::fabs(px(best->pos, 0).x - mx)) best = &p;
        const float x = px(best->pos, 0).x;
        dl->AddLine(ImVec2(x, a.y), ImVec2(x, b.y), with_alpha(pal.text, 0.5f), 1.f);
        const std::string c = best->ms_cached >= 0 ? fmt_ms(best->ms_cached) : "not measured yet";
        const std::string u = best->ms_uncached >= 0 ? fmt_ms(best->ms_uncached) : "not measured yet";
        std::string other;
        const size_t i = static_cast<size_t>(best - sv.points.data());
        if (sv.overlay && i < sv.other_points.size() && sv.other_points[i].ms_cached >= 0)
            other = std::string("\n") + kv::weight_type_name(sv.other_weights) + " weights: " +
                    fmt_ms(sv.other_points[i].ms_cached) + " with cache, " +
                    (sv.other_points[i].ms_uncached >= 0 ? fmt_ms(sv.other_points[i].ms_uncached) : "-") + " without";
        ImGui::SetTooltip("position %d (%s weights)\nwith cache: %s (one new row)\nwithout cache: %s (%d tokens again)%s",
                          best->pos, kv::weight_type_name(sv.weights), c.c_str(), u.c_str(), best->pos + 1, other.c_str());
    }
}

}  // namespace

double mean_ms(const std::vector<kv::SweepPoint>& pts, bool cached) {
    double sum = 0;
    int n = 0;
    for (const kv::SweepPoint& p : pts) {
        const double ms = cached ? p.ms_cached : p.ms_uncached;
        if (ms > 0) sum += ms, ++n;
    }
    return n ? sum / n : -1.0;
}

double sweep_plot_ymax(const ScalingView& sv, SweepCurves shown) {
    double ymax = 0;
    for (const auto* pts : {&sv.points, &sv.other_points})
        for (const kv::SweepPoint& p : *pts) {
            if (shown != SweepCurves::uncached) ymax = std::max(ymax, p.ms_cached);
            if (shown != SweepCurves::cached) ymax = std::max(ymax, p.ms_uncached);
        }
    return ymax * 1.08;
}

std::string weights_overlay_caption(const ScalingView& sv) {
    const bool own32 = sv.weights == kv::WeightType::f32;
    const auto& p32 = own32 ? sv.points : sv.other_points;
    const auto& p16 = own32 ? sv.other_points : sv.points;
    const char* t16 = kv::weight_type_name(own32 ? sv.other_weights : sv.weights);
    const double c32 = mean_ms(p32, true), c16 = mean_ms(p16, true);
    const double u32 = mean_ms(p32, false), u16 = mean_ms(p16, false);
    if (c32 <= 0 || c16 <= 0) return "Measuring both weights' types...";
    char b[512];
    std::snprintf(b, sizeof b,
                  "Decode step (mean): %s %s, f32 %s, %.2fx. It streams every weight once and waits for memory, so "
                  "half the bytes is nearly half the time; the arithmetic is the same.",
                  t16, fmt_ms(c16).c_str(), fmt_ms(c32).c_str(), c32 / c16);
    std::string s = b;
    if (u32 > 0 && u16 > 0) {
        std::snprintf(b, sizeof b, " Without cache (many rows per weight read): %.2fx.", u32 / u16);
        s += b;
    }
    const int64_t bytes32 = own32 ? sv.weight_bytes : sv.other_weight_bytes;
    if (c32 / c16 < 1.3 && bytes32 < (int64_t(8) << 20))
        s += " These weights (" + human_bytes(static_cast<double>(bytes32)) +
             ") fit in the CPU's caches: memory is not the limit here; try random:gpt2-124m.";
    return s;
}

void draw_scaling_panel(AppState& app) {
    const Palette& pal = palette();
    ViewState& vs = app.vs;
    const ScalingView& sv = app.scaling;
    const float fs = ImGui::GetFontSize();
    if (!app.model) {
        ImGui::TextUnformatted("No model loaded: nothing to measure.");
        return;
    }
    const kv::ModelConfig& c = app.model->config;
    const bool running = sv.state == SweepState::running;

    // Controls: run / cancel, how far, how often.
    if (running) {
        if (ImGui::Button("Cancel")) app.sweep_request = SweepRequest::cancel;
    } else {
        if (ImGui::Button(sv.state == SweepState::idle ? "Run sweep" : "Run again"))
            app.sweep_request = SweepRequest::start;
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("Times one step at each position, with the cache and without,\n"
                              "on a separate engine (your steps are not touched).");
    }
    ImGui::BeginDisabled(running);
    int last_pos = (vs.sweep_max_pos > 0 ? std::min(vs.sweep_max_pos, c.n_ctx) : default_sweep_max_pos(c)) - 1;
    same_line_if(fs * 10);
    ImGui::TextUnformatted("positions 0 to");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(fs * 4.5f);
    if (ImGui::SliderInt("##sweep_last", &last_pos, 1, c.n_ctx - 1, "%d")) vs.sweep_max_pos = last_pos + 1;
    int stride = vs.sweep_stride > 0 ? vs.sweep_stride : default_sweep_stride(last_pos + 1);
    same_line_if(fs * 7);
    ImGui::TextUnformatted("every");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(fs * 3.5f);
    if (ImGui::SliderInt("##sweep_stride", &stride, 1, std::max(2, c.n_ctx / 8), "%d")) vs.sweep_stride = stride;
    ImGui::EndDisabled();
    const kv::SweepOptions opt = sweep_options(c, last_pos + 1, stride);
    const size_t n_points = kv::sweep_positions(c, opt).size();
    same_line_if(fs * 5);
    ImGui::TextColored(to_vec4(pal.text_dim), "(%zu points)", n_points);
    char vs_label[48];
    std::snprintf(vs_label, sizeof vs_label, "and %s weights",
                  kv::weight_type_name(other_weight_type(app.model->weights.type)));
    same_line_if(ImGui::CalcTextSize(vs_label).x + fs * 2);
    ImGui::BeginDisabled(running);
    ImGui::Checkbox(vs_label, &vs.sweep_overlay);
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("Run the sweep again on a copy of the model held in %s and overlay it (paler lines)",
                          kv::weight_type_name(other_weight_type(app.model->weights.type)));

    // Progress.
    char overlay[96];
    switch (sv.state) {
    case SweepState::idle: std::snprintf(overlay, sizeof overlay, "not run yet"); break;
    case SweepState::running:
        std::snprintf(overlay, sizeof overlay, "measuring... %.0f%%  (%.1f s)", sv.progress * 100, sv.seconds);
        break;
    case SweepState::done: std::snprintf(overlay, sizeof overlay, "done in %.1f s", sv.seconds); break;
    case SweepState::cancelled:
        std::snprintf(overlay, sizeof overlay, "cancelled at %.0f%%", sv.progress * 100);
        break;
    case SweepState::failed: std::snprintf(overlay, sizeof overlay, "failed"); break;
    }
    ImGui::ProgressBar(sv.progress, ImVec2(-FLT_MIN, 0), overlay);
    if (sv.state == SweepState::failed) ImGui::TextColored(to_vec4(pal.bad), "Error: %s", sv.error.c_str());

    // Legend, the one-line reason, the plot, the numbers at the last position.
    const bool both = sv.overlay && !sv.other_points.empty();
    color_key(pal.cached_line, "with cache");
    ImGui::SameLine();
    color_key(pal.uncached_line, "without cache");
    if (both) {
        char key[64];
        std::snprintf(key, sizeof key, "bright: %s weights, pale: %s", kv::weight_type_name(sv.weights),
                      kv::weight_type_name(sv.other_weights));
        same_line_if(ImGui::CalcTextSize(key).x);
        ImGui::TextUnformatted(key);
    }
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.text_dim));
    const std::string why = both ? weights_overlay_caption(sv)
                                 : "cached: one new row per step, cost flat; uncached: the whole sequence every "
                                   "step, cost grows with position";
    text_wrapped("%s", why.c_str());
    ImGui::PopStyleColor();
    // The line under the plots, wrapped: its height is kept free for it.
    const kv::SweepPoint* last = nullptr;
    for (const kv::SweepPoint& p : sv.points)
        if (p.ms_cached >= 0 && p.ms_uncached >= 0) last = &p;
    char summary[160] = "";
    const bool measured = last && last->ms_cached > 0;
    if (measured)
        std::snprintf(summary, sizeof summary, "At position %d: %s with cache, %s without (%.1fx)", last->pos,
                      fmt_ms(last->ms_cached).c_str(), fmt_ms(last->ms_uncached).c_str(),
                      last->ms_uncached / last->ms_cached);
    else if (sv.state == SweepState::idle)
        std::snprintf(summary, sizeof summary, "Run the sweep to measure this machine (%s).", app.model_name.c_str());
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const float summary_h = ImGui::CalcTextSize(wrap_text(summary, avail.x).c_str()).y + ImGui::GetStyle().ItemSpacing.y;
    const float plot_h = std::max(fs * 3, avail.y - summary_h);
    if (!both) {
        draw_plot(sv, ImVec2(avail.x, plot_h), SweepCurves::both, nullptr);
    } else {
        // Two types: each mode on its own axis, side by side when the panel is wide, or
        // when two plots under each other would each be much wider than tall.
        const bool side = avail.x >= fs * 26 || (avail.x >= fs * 18 && plot_h < avail.x * 0.6f);
        const float gap = ImGui::GetStyle().ItemSpacing.x;
        const ImVec2 each = side ? ImVec2((avail.x - gap) * 0.5f, plot_h)
                                 : ImVec2(avail.x, std::max(fs * 3, (plot_h - ImGui::GetStyle().ItemSpacing.y) * 0.5f));
        draw_plot(sv, each, SweepCurves::cached, "with cache");
        if (side) ImGui::SameLine(0, gap);
        draw_plot(sv, each, SweepCurves::uncached, "without cache");
    }

    if (summary[0]) text_wrapped_colored(measured ? pal.accent : pal.text_dim, "%s", summary);
}

}  // namespace kvui
