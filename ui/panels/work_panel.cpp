// Work with vs without cache: cumulative K/V rows computed, attention scores or FLOPs
// per step on one chart. Solid lines are measured (the engine's counters; both
// sessions in compare mode), dashed lines are core's formulas (docs/design.md, "Counters") for each mode, so
// the linear and quadratic curves both show even without compare. Below: this step's
// numbers, the totals, "work saved" and measured ms per step.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/engine/formulas.h"
#include "core/model/model_io.h"
#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

// The formulas are core's (core/engine/formulas.h); the chart wants doubles.
Work formula_step(const kv::ModelConfig& c, int p, int s, bool cache, const kv::CachePolicy& pol) {
    const kv::Counters f = kv::formula_step(c, pol, p, s, cache);
    Work w;
    w.kv_rows = static_cast<double>(f.kv_rows_computed);
    w.attn_scores = static_cast<double>(f.attn_scores);
    w.flops = static_cast<double>(f.flops);
    return w;
}

Work formula_total(const kv::ModelConfig& c, int p, int n_steps, bool cache, const kv::CachePolicy& pol) {
    Work t;
    for (int s = 0; s < n_steps; ++s) {
        Work w = formula_step(c, p, s, cache, pol);
        t.kv_rows += w.kv_rows;
        t.attn_scores += w.attn_scores;
        t.flops += w.flops;
    }
    return t;
}

std::string human_count(double v) {
    char b[32];
    if (v >= 1e12) std::snprintf(b, sizeof b, "%.2fT", v / 1e12);
    else if (v >= 1e9) std::snprintf(b, sizeof b, "%.2fG", v / 1e9);
    else if (v >= 1e6) std::snprintf(b, sizeof b, "%.2fM", v / 1e6);
    else if (v >= 1e4) std::snprintf(b, sizeof b, "%.1fk", v / 1e3);
    else std::snprintf(b, sizeof b, "%.0f", v);
    return b;
}

namespace {

double measured(const kv::Counters& c, WorkMetric m) {
    return m == WorkMetric::kv_rows ? c.kv_rows_computed : m == WorkMetric::attn_scores ? c.attn_scores : c.flops;
}

void dashed(ImDrawList* dl, ImVec2 a, ImVec2 b, ImU32 col, float th) {
    const float len = std::hypot(b.x - a.x, b.y - a.y);
    const float dash = 7.f;
    for (float d = 0; d < len; d += dash * 2) {
        float t0 = d / len, t1 = std::min(1.f, (d + dash) / len);
        dl->AddLine(ImVec2(a.x + (b.x - a.x) * t0, a.y + (b.y - a.y) * t0),
                    ImVec2(a.x + (b.x - a.x) * t1, a.y + (b.y - a.y) * t1), col, th);
    }
}

void draw_metric_choice(ViewState& vs) {
    int m = static_cast<int>(vs.metric);
    ImGui::RadioButton("K/V rows", &m, 0);
    ImGui::SameLine();
    ImGui::RadioButton("attention scores", &m, 1);
    ImGui::SameLine();
    ImGui::RadioButton("FLOPs", &m, 2);
    vs.metric = static_cast<WorkMetric>(m);
}

// The legend line above the chart; keys wrap onto a second line when narrow.
void draw_chart_legend() {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize();
    ImDrawList* ldl = ImGui::GetWindowDrawList();
    ImVec2 lp = ImGui::GetCursorScreenPos();
    const float x0 = lp.x, right = lp.x + ImGui::GetContentRegionAvail().x;
    const float lw = fs * 1.5f, sp = fs * 0.8f;
    auto key = [&](const char* txt, ImU32 col, bool solid_line) {
        const float w = lw + 4 + ImGui::CalcTextSize(txt).x;
        if (lp.x + w > right && lp.x > x0) {
            lp.x = x0;
            lp.y += fs * 1.25f;
        }
        if (solid_line) ldl->AddLine(ImVec2(lp.x, lp.y + fs * 0.55f), ImVec2(lp.x + lw, lp.y + fs * 0.55f), col, 4.f);
        else dashed(ldl, ImVec2(lp.x, lp.y + fs * 0.55f), ImVec2(lp.x + lw, lp.y + fs * 0.55f), col, 2.f);
        ldl->AddText(ImVec2(lp.x + lw + 4, lp.y), col, txt);
        lp.x += w + sp;
    };
    key("measured", pal.text, true);
    key("formula", pal.text_dim, false);
    key("with cache", pal.cached_line, true);
    key("without cache", pal.uncached_line, true);
    ImGui::Dummy(ImVec2(right - x0, lp.y + fs * 1.25f - ImGui::GetCursorScreenPos().y));
}

// The chart in the rect a..b: grid, axis labels, the "now" marker, dashed formula
// lines and solid measured lines (coloured by each step's cache mode).
void draw_work_chart(const WorkChart& ch, const SessionView& v, const SessionView* other, ImVec2 o, ImVec2 a, ImVec2 b) {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize();
    const float thick = std::max(3.f, fs * 0.2f), thin = std::max(2.f, fs * 0.1f);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const int horizon = ch.horizon;
    dl->AddRect(a, b, pal.grid);
    auto px = [&](int s, double y) {
        float fx = a.x + (b.x - a.x) * (horizon > 1 ? static_cast<float>(s) / (horizon - 1) : 0.f);
        float fy = b.y - (b.y - a.y) * static_cast<float>(y / ch.ymax);
        return ImVec2(fx, fy);
    };
    for (int g = 1; g < 4; ++g) {
        float y = b.y - (b.y - a.y) * g / 4.f;
        dl->AddLine(ImVec2(a.x, y), ImVec2(b.x, y), with_alpha(pal.grid, 0.5f));
    }
    dl->AddText(ImVec2(o.x, a.y), pal.text_dim, human_count(ch.ymax).c_str());
    dl->AddText(ImVec2(o.x, b.y - fs), pal.text_dim, "0");
    char xl[48];
    std::snprintf(xl, sizeof xl, "step 0 .. %d", horizon - 1);
    dl->AddText(ImVec2(a.x, b.y + 2), pal.text_dim, xl);
    if (v.n_steps() > 0) {  // "now" marker
        ImVec2 n0 = px(v.n_steps() - 1, 0);
        dl->AddLine(ImVec2(n0.x, a.y), ImVec2(n0.x, b.y), with_alpha(pal.text_dim, 0.6f), 1.f);
    }
    for (int s = 1; s < horizon; ++s) {
        dashed(dl, px(s - 1, ch.formula_cached[s - 1]), px(s, ch.formula_cached[s]), pal.cached_line, thin);
        dashed(dl, px(s - 1, ch.formula_uncached[s - 1]), px(s, ch.formula_uncached[s]), pal.uncached_line, thin);
    }
    auto solid = [&](const std::vector<double>& ys, const SessionView& sv) {
        for (size_t s = 0; s < ys.size(); ++s) {
            ImU32 col = sv.history[s]->cache_on ? pal.cached_line : pal.uncached_line;
            if (s > 0) dl->AddLine(px(static_cast<int>(s) - 1, ys[s - 1]), px(static_cast<int>(s), ys[s]), col, thick);
            dl->AddCircleFilled(px(static_cast<int>(s), ys[s]), thick * 1.3f, col);
        }
    };
    solid(ch.measured_main, v);
    if (other) solid(ch.measured_other, *other);
}

// One line under the chart: its colour, its text (wrapped to the panel) and a tooltip.
struct WorkLine {
    ImU32 col = 0;
    std::string text, tip;
};

template <class... A>
std::string fmt(const char* f, A... a) {
    char buf[256];
    std::snprintf(buf, sizeof buf, f, a...);
    return buf;
}

// This step's numbers, the totals, "work saved" and the formula in words.
// Sets the work saved (uncached / cached total).
void work_numbers(std::vector<WorkLine>& out, const kv::ModelConfig& c, const SessionView& v, WorkMetric metric,
                  double& saved) {
    const Palette& pal = palette();
    const int p = static_cast<int>(v.prompt_ids.size());
    const int ns = v.n_steps();
    const char* unit = metric == WorkMetric::kv_rows ? "K/V rows" : metric == WorkMetric::attn_scores ? "scores" : "FLOPs";
    const int s = ns - 1;
    Work wc = formula_step(c, p, s, true, v.policy), wu = formula_step(c, p, s, false, v.policy);
    const double this_meas = measured(v.last()->counters, metric);
    out.push_back({pal.text, fmt("Step %d: %s %s (measured, cache %s) | formula %s with, %s without", s,
                                 human_count(this_meas).c_str(), unit, v.cache_on ? "on" : "off",
                                 human_count(wc.get(metric)).c_str(), human_count(wu.get(metric)).c_str()), ""});
    Work tc = formula_total(c, p, ns, true, v.policy), tu = formula_total(c, p, ns, false, v.policy);
    saved = tc.get(metric) > 0 ? tu.get(metric) / tc.get(metric) : 1.0;
    out.push_back({pal.accent, fmt("After %d steps: %s with cache, %s without: %.1fx work saved", ns,
                                   human_count(tc.get(metric)).c_str(), human_count(tu.get(metric)).c_str(), saved), ""});
    if (metric == WorkMetric::kv_rows)
        out.push_back({pal.text_dim, fmt("with: L*Hkv*(p+N-1) = %d*%d*(%d+%d-1);  without: L*Hkv*(N*p+N(N-1)/2)",
                                         c.n_layer, c.n_kv_head, p, ns), ""});
    else if (metric == WorkMetric::attn_scores)
        out.push_back({pal.text_dim, "with: L*H*(p+s) per decode step;  without: L*H*(p+s)(p+s+1)/2", ""});
    else
        out.push_back({pal.text_dim, "FLOPs: 2 per multiply-add; the dashed lines are an estimate", ""});
}

// Measured time: this step and the total, or in compare mode both modes' decode means.
void step_times(std::vector<WorkLine>& out, const AppState& app, double saved) {
    const SessionView& v = app.main;
    const ImU32 col = palette().text;
    if (app.compare && app.other.n_steps() > 0) {
        const SessionView& on = v.cache_on ? v : app.other;
        const SessionView& off = v.cache_on ? app.other : v;
        const double ma = decode_mean_ms(on), mb = decode_mean_ms(off);
        out.push_back({col, fmt("ms this step (measured): with cache %.3f, without %.3f", on.last()->ms, off.last()->ms), ""});
        if (ma > 0)
            out.push_back({col, fmt("decode mean: %.3f vs %.3f ms: %.1fx faster (work saved %.1fx)", ma, mb, mb / ma, saved),
                           "The speed-up is smaller than the work saved: one-row products run less\n"
                           "efficiently than batched ones, and fixed costs (embedding, MLP, head) remain."});
        return;
    }
    double ms_sum = 0;
    for (const auto& t : v.history) ms_sum += t->ms;
    out.push_back({col, fmt("ms this step (measured, cache %s): %.3f; total %.2f", v.cache_on ? "on" : "off", v.last()->ms,
                            ms_sum), ""});
}

// The lines' height wrapped to width w.
float lines_height(const std::vector<WorkLine>& lines, float w) {
    float h = 0;
    for (const WorkLine& l : lines)
        h += ImGui::CalcTextSize(wrap_text(l.text, w).c_str()).y + ImGui::GetStyle().ItemSpacing.y;
    return h;
}

void draw_lines(const std::vector<WorkLine>& lines) {
    for (const WorkLine& l : lines) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(l.col));
        text_wrapped("%s", l.text.c_str());
        ImGui::PopStyleColor();
        if (!l.tip.empty() && ImGui::IsItemHovered()) ImGui::SetTooltip("%s", l.tip.c_str());
    }
}

}  // namespace

double decode_mean_ms(const SessionView& v) {
    double sum = 0;
    int n = 0;
    for (const auto& t : v.history)
        if (t->phase == kv::Phase::decode) sum += t->ms, ++n;
    return n ? sum / n : 0.0;
}

std::vector<double> cumulative_work(const SessionView& v, WorkMetric m) {
    std::vector<double> out;
    double acc = 0;
    for (const auto& t : v.history) out.push_back(acc += measured(t->counters, m));
    return out;
}

WorkChart work_chart(const kv::ModelConfig& c, const SessionView& v, const SessionView* other, WorkMetric metric) {
    WorkChart ch;
    const int p = static_cast<int>(v.prompt_ids.size());
    ch.horizon = std::max(2, std::min(std::max(v.n_steps() + 3, 8), c.n_ctx - p + 1));
    double acc_c = 0, acc_u = 0;
    for (int s = 0; s < ch.horizon; ++s) {
        ch.formula_cached.push_back(acc_c += formula_step(c, p, s, true, v.policy).get(metric));
        ch.formula_uncached.push_back(acc_u += formula_step(c, p, s, false, v.policy).get(metric));
    }
    ch.measured_main = cumulative_work(v, metric);
    if (other) ch.measured_other = cumulative_work(*other, metric);
    ch.ymax = std::max({ch.formula_cached.back(), ch.formula_uncached.back(), 1.0});
    for (double x : ch.measured_main) ch.ymax = std::max(ch.ymax, x);
    for (double x : ch.measured_other) ch.ymax = std::max(ch.ymax, x);
    return ch;
}

// Metric choice, legend, chart (what is left of the height after the numbers), numbers.
void draw_work_panel(AppState& app) {
    if (!app.model) return;
    if (app.spec.on) return draw_spec_work(app);  // target passes per token, plain vs speculative
    const kv::ModelConfig& c = app.model->config;
    const SessionView& v = app.main;
    const float fs = ImGui::GetFontSize();
    draw_metric_choice(app.vs);
    draw_chart_legend();

    // The numbers under the chart, wrapped; the chart takes what they leave.
    std::vector<WorkLine> lines;
    if (v.n_steps() == 0) {
        lines.push_back({palette().text,
                         "Step to see the work. With cache: total K/V rows L*Hkv*(p+N-1); without: L*Hkv*(N*p + N(N-1)/2).",
                         ""});
    } else {
        double saved = 1.0;
        work_numbers(lines, c, v, app.vs.metric, saved);
        step_times(lines, app, saved);
    }
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float W = ImGui::GetContentRegionAvail().x;
    const float Hc = std::max(fs * 4, ImGui::GetContentRegionAvail().y - lines_height(lines, W) - 2.f);
    const float left = fs * 3.2f, bottom = fs * 1.2f;
    const ImVec2 a(o.x + left, o.y + fs * 0.3f), b(o.x + W - fs * 0.5f, o.y + Hc - bottom);
    const SessionView* other = app.compare ? &app.other : nullptr;
    draw_work_chart(work_chart(c, v, other, app.vs.metric), v, other, o, a, b);
    ImGui::Dummy(ImVec2(W, Hc));
    draw_lines(lines);
}

}  // namespace kvui
