// Heat strips and legends drawn with ImDrawList rectangles (no textures).
#include "ui/look/heatmap.h"

#include <algorithm>
#include <cmath>

#include "ui/look/colormap.h"
#include "ui/look/theme.h"

namespace kvui {

float abs_max(const float* vals, int n) {
    float m = 1e-6f;
    for (int i = 0; i < n; ++i)
        if (std::isfinite(vals[i])) m = std::max(m, std::fabs(vals[i]));
    return m;
}

int draw_value_strip(ImDrawList* dl, ImVec2 pos, const float* vals, int n, float cell_w, float cell_h,
                     float scale, bool dark) {
    const float gap = cell_w >= 6.f ? 1.f : 0.f;
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    int hovered = -1;
    const bool hover_row = ImGui::IsWindowHovered() && mouse.y >= pos.y && mouse.y < pos.y + cell_h &&
                           mouse.x >= pos.x && mouse.x < pos.x + cell_w * n;
    for (int i = 0; i < n; ++i) {
        ImVec2 a(pos.x + i * cell_w, pos.y), b(pos.x + (i + 1) * cell_w - gap, pos.y + cell_h);
        dl->AddRectFilled(a, b, diverging(vals[i] / scale, dark));
    }
    if (hover_row) {
        hovered = std::clamp(static_cast<int>((mouse.x - pos.x) / cell_w), 0, n - 1);
        ImVec2 a(pos.x + hovered * cell_w, pos.y), b(a.x + cell_w, pos.y + cell_h);
        dl->AddRect(a, b, palette().text, 0.f, 0, 2.f);
    }
    return hovered;
}

void draw_diverging_legend(float scale, bool dark, float width) {
    char lo[32], hi[32];
    std::snprintf(lo, sizeof lo, "%+.2f", -scale);
    std::snprintf(hi, sizeof hi, "%+.2f", scale);
    ImGui::TextUnformatted(lo);
    ImGui::SameLine();
    ImVec2 p = ImGui::GetCursorScreenPos();
    float h = ImGui::GetTextLineHeight();
    const int steps = 32;
    float w = std::max(width, 40.f);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (int i = 0; i < steps; ++i) {
        float t = -1.f + 2.f * (i + 0.5f) / steps;
        dl->AddRectFilled(ImVec2(p.x + w * i / steps, p.y), ImVec2(p.x + w * (i + 1) / steps + 0.5f, p.y + h),
                          diverging(t, dark));
    }
    ImGui::Dummy(ImVec2(w, h));
    ImGui::SameLine();
    ImGui::TextUnformatted(hi);
}

void draw_sequential_legend(float width, const char* label) {
    ImGui::TextUnformatted(label);
    ImGui::SameLine();
    ImGui::TextUnformatted("0");
    ImGui::SameLine();
    ImVec2 p = ImGui::GetCursorScreenPos();
    float h = ImGui::GetTextLineHeight();
    const int steps = 24;
    float w = std::max(width, 40.f);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (int i = 0; i < steps; ++i)
        dl->AddRectFilled(ImVec2(p.x + w * i / steps, p.y), ImVec2(p.x + w * (i + 1) / steps + 0.5f, p.y + h),
                          sequential((i + 0.5f) / steps));
    ImGui::Dummy(ImVec2(w, h));
    ImGui::SameLine();
    ImGui::TextUnformatted("1");
}

void color_key(ImU32 color, const char* label) {
    ImVec2 p = ImGui::GetCursorScreenPos();
    float h = ImGui::GetTextLineHeight();
    ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(p.x, p.y + h * 0.15f), ImVec2(p.x + h * 0.7f, p.y + h * 0.85f),
                                              color, 2.f);
    ImGui::Dummy(ImVec2(h * 0.75f, h));
    ImGui::SameLine();
    ImGui::TextUnformatted(label);
}

void dashed_rect(ImDrawList* dl, ImVec2 a, ImVec2 b, ImU32 col, float th) {
    for (float x = a.x; x < b.x; x += 8.f) {
        dl->AddLine(ImVec2(x, a.y), ImVec2(std::min(x + 4.f, b.x), a.y), col, th);
        dl->AddLine(ImVec2(x, b.y), ImVec2(std::min(x + 4.f, b.x), b.y), col, th);
    }
    for (float y = a.y; y < b.y; y += 8.f) {
        dl->AddLine(ImVec2(a.x, y), ImVec2(a.x, std::min(y + 4.f, b.y)), col, th);
        dl->AddLine(ImVec2(b.x, y), ImVec2(b.x, std::min(y + 4.f, b.y)), col, th);
    }
}


}  // namespace kvui
