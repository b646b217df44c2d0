// The memory panel's curve: cache bytes against tokens under the session's policy,
// beside the textbook full f32 cache, with the session's own count marked.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/engine/formulas.h"
#include "core/engine/kv_cache.h"
#include "ui/panels/cache_policy_view.h"
#include "ui/look/colormap.h"
#include "ui/look/theme.h"

namespace kvui {

double policy_bytes_at(const kv::ModelConfig& c, const kv::CachePolicy& pol, int tokens) {
    return static_cast<double>(kv::cache_bytes_for(c, pol.dtype, kv::rows_kept(pol, tokens)));
}

MemoryCurve memory_curve(const kv::ModelConfig& c, const SessionView& v, int max_tokens, int max_points) {
    MemoryCurve m;
    max_tokens = std::max(1, max_tokens);
    const int stride = std::max(1, (max_tokens + max_points - 1) / std::max(1, max_points));
    for (int t = 0;; t = std::min(t + stride, max_tokens)) {
        m.tokens.push_back(t);
        m.policy.push_back(policy_bytes_at(c, v.policy, t));
        m.full_f32.push_back(policy_bytes_at(c, kv::CachePolicy{}, t));
        if (t == max_tokens) break;
    }
    m.now_tokens = v.cache_positions;
    m.now_bytes = static_cast<double>(v.cache_bytes);
    // A policy far below full f32 (a window) gets the height: the full line leaves the top.
    const double top = std::max({1.0, *std::max_element(m.policy.begin(), m.policy.end()), m.now_bytes});
    m.ymax = top < 0.2 * m.full_f32.back() ? top * 1.3 : std::max(top, m.full_f32.back());
    return m;
}

namespace {

void dashed(ImDrawList* dl, ImVec2 a, ImVec2 b, ImU32 col, float th) {
    const float len = std::hypot(b.x - a.x, b.y - a.y), dash = 6.f;
    for (float s = 0; s < len; s += 2 * dash) {
        const float t0 = s / len, t1 = std::min(len, s + dash) / len;
        dl->AddLine(ImVec2(a.x + (b.x - a.x) * t0, a.y + (b.y - a.y) * t0),
                    ImVec2(a.x + (b.x - a.x) * t1, a.y + (b.y - a.y) * t1), col, th);
    }
}

}  // namespace

void draw_memory_curve(const AppState& app, const SessionView& v, float w, float h) {
    if (!app.model || w < 20 || h < 20) return;
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize();
    const MemoryCurve m = memory_curve(app.model->config, v, app.model->config.n_ctx);
    const ImVec2 o = ImGui::GetCursorScreenPos();
    ImGui::Dummy(ImVec2(w, h));
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float left = o.x + 2, right = o.x + w - 4, top = o.y + fs * 0.2f, bottom = o.y + h - fs * 1.1f;
    // ymax is drawn a label's height below the top, so a plateau near it never runs through the label.
    const float ytop = std::min(top + fs * 1.1f, bottom - fs);
    auto px = [&](double t, double b) {
        return ImVec2(left + static_cast<float>(t / std::max(1, m.tokens.back())) * (right - left),
                      bottom - static_cast<float>(b / m.ymax) * (bottom - ytop));
    };
    dl->AddLine(ImVec2(left, bottom), ImVec2(right, bottom), pal.text_dim);
    dl->AddLine(ImVec2(left, top), ImVec2(left, bottom), pal.text_dim);
    const float th = std::max(1.5f, fs * 0.11f);
    dl->PushClipRect(ImVec2(left, ytop - 2), ImVec2(right + 2, bottom + 2), true);
    for (size_t i = 1; i < m.tokens.size(); ++i) {
        dashed(dl, px(m.tokens[i - 1], m.full_f32[i - 1]), px(m.tokens[i], m.full_f32[i]), pal.text_dim, 1.f);
        dl->AddLine(px(m.tokens[i - 1], m.policy[i - 1]), px(m.tokens[i], m.policy[i]), pal.accent, th);
    }
    dl->PopClipRect();
    const ImVec2 now = px(m.now_tokens, m.now_bytes);
    dl->AddCircleFilled(now, fs * 0.3f, state_color(RowState::computed, pal.dark));
    dl->AddText(ImVec2(left + 4, top), pal.text_dim, human_bytes(m.ymax).c_str());
    char xl[48];
    std::snprintf(xl, sizeof xl, "%d tokens", m.tokens.back());
    const float xl_w = ImGui::CalcTextSize(xl).x;
    dl->AddText(ImVec2(right - xl_w, bottom + 1), pal.text_dim, xl);
    const char* key = "- - full f32";
    if (ImGui::CalcTextSize(key).x + xl_w + fs < right - left) dl->AddText(ImVec2(left + 4, bottom + 1), pal.text_dim, key);
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    if (ImGui::IsWindowHovered() && mouse.x >= left && mouse.x <= right && mouse.y >= top && mouse.y <= bottom + fs) {
        const int t = std::clamp(static_cast<int>(std::lround((mouse.x - left) / (right - left) * m.tokens.back())), 0,
                                 m.tokens.back());
        const kv::ModelConfig& c = app.model->config;
        ImGui::SetTooltip("%d tokens: %s under %s (%lld rows), %s for full f32\nnow: %d tokens, %s (counted by the cache)",
                          t, human_bytes(policy_bytes_at(c, v.policy, t)).c_str(), policy_caption(v.policy).c_str(),
                          static_cast<long long>(kv::rows_kept(v.policy, t)),
                          human_bytes(policy_bytes_at(c, kv::CachePolicy{}, t)).c_str(), m.now_tokens,
                          human_bytes(m.now_bytes).c_str());
    }
}

}  // namespace kvui
