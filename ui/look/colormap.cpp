// Colour maps: piecewise-linear interpolation between a few anchor colours.
#include "ui/look/colormap.h"

#include <algorithm>
#include <cmath>

namespace kvui {

namespace {

struct Rgb {
    float r, g, b;
};

Rgb lerp(Rgb a, Rgb b, float t) { return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t}; }

ImU32 pack(Rgb c, float a = 1.f) {
    return ImGui::ColorConvertFloat4ToU32(ImVec4(c.r, c.g, c.b, a));
}

Rgb ramp(const Rgb* stops, int n, float t) {
    t = std::clamp(t, 0.f, 1.f) * (n - 1);
    int i = std::min(static_cast<int>(t), n - 2);
    return lerp(stops[i], stops[i + 1], t - i);
}

}  // namespace

ImU32 diverging(float t, bool dark) {
    if (!std::isfinite(t)) t = 0.f;
    t = std::clamp(t, -1.f, 1.f);
    // PuOr-like: blue (#2166ac) .. light .. orange (#e08214 / #b35806).
    static const Rgb light_stops[5] = {{0.13f, 0.40f, 0.67f}, {0.57f, 0.77f, 0.87f}, {0.97f, 0.97f, 0.97f},
                                       {0.99f, 0.72f, 0.39f}, {0.70f, 0.35f, 0.02f}};
    static const Rgb dark_stops[5] = {{0.26f, 0.58f, 0.96f}, {0.20f, 0.38f, 0.60f}, {0.16f, 0.17f, 0.20f},
                                      {0.66f, 0.42f, 0.12f}, {1.00f, 0.66f, 0.20f}};
    return pack(ramp(dark ? dark_stops : light_stops, 5, (t + 1.f) * 0.5f));
}

ImU32 sequential(float t) {
    if (!std::isfinite(t)) t = 0.f;
    // cividis anchors
    static const Rgb stops[5] = {{0.00f, 0.13f, 0.30f}, {0.26f, 0.30f, 0.42f}, {0.49f, 0.49f, 0.47f},
                                 {0.74f, 0.68f, 0.44f}, {1.00f, 0.92f, 0.27f}};
    return pack(ramp(stops, 5, t));
}

ImVec4 to_vec4(ImU32 c) { return ImGui::ColorConvertU32ToFloat4(c); }

ImU32 with_alpha(ImU32 c, float a) {
    ImVec4 v = to_vec4(c);
    v.w = std::clamp(a, 0.f, 1.f);
    return ImGui::ColorConvertFloat4ToU32(v);
}

ImU32 state_color(RowState s, bool dark) {
    switch (s) {
    case RowState::read: return dark ? IM_COL32(86, 160, 230, 255) : IM_COL32(0, 114, 178, 255);
    case RowState::computed: return dark ? IM_COL32(240, 175, 30, 255) : IM_COL32(215, 145, 0, 255);
    case RowState::recomputed: return dark ? IM_COL32(235, 80, 170, 255) : IM_COL32(200, 40, 130, 255);
    case RowState::evicted: return dark ? IM_COL32(105, 105, 112, 255) : IM_COL32(160, 160, 166, 255);
    case RowState::empty: break;
    }
    return dark ? IM_COL32(70, 70, 78, 255) : IM_COL32(200, 200, 205, 255);
}

const char* state_label(RowState s) {
    switch (s) {
    case RowState::read: return "cache";
    case RowState::computed: return "new";
    case RowState::recomputed: return "recomp";
    case RowState::evicted: return "evicted";
    case RowState::empty: break;
    }
    return "";
}

}  // namespace kvui
