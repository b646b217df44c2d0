// compute_layout: panel rectangles from the viewport size, every frame. Controls on
// top, tokens under them; centre: q/k/v above the cache matrix (attention beside its
// rows); right column: work chart, next token, memory; bottom: narration, timeline.
#include <algorithm>
#include <cmath>

#include "ui/panels.h"

namespace kvui {

Layout compute_layout(float W, float H, float font_px) {
    Layout L;
    W = std::max(W, 200.f);
    H = std::max(H, 200.f);
    const float gap = 4.f;
    const float line = font_px + 10.f;          // a framed widget plus spacing
    const float title = font_px + 8.f;
    const int control_rows = W < 80.f * font_px ? 4 : 3;  // the last row: model, notes, errors
    float y = gap;
    L.controls = {gap, y, W - 2 * gap, control_rows * line + 12.f};
    y += L.controls.h + gap;
    L.tokens = {gap, y, W - 2 * gap, title + 3.6f * font_px + 22.f};
    y += L.tokens.h + gap;
    float bottom_h = std::clamp(title + 4.3f * line, H * 0.14f, H * 0.24f);
    float mid_h = H - y - bottom_h - 2 * gap;
    if (mid_h < 6 * line) {  // tiny windows: give the middle what is left
        bottom_h = std::max(title + 2.f * line, H - y - 6 * line - 2 * gap);
        mid_h = std::max(line, H - y - bottom_h - 2 * gap);
    }
    const float left_w = std::floor((W - 3 * gap) * 0.61f);
    const float right_w = W - 3 * gap - left_w;
    const float right_x = gap + left_w + gap;
    const float qkv_h = std::min(title + 5.0f * line, mid_h * 0.4f);
    L.qkv = {gap, y, left_w, qkv_h};
    L.cache = {gap, y + qkv_h + gap, left_w, mid_h - qkv_h - gap};
    const float work_h = std::floor(mid_h * 0.52f);
    const float next_h = std::floor(mid_h * 0.2f);
    L.work = {right_x, y, right_w, work_h};
    L.next_token = {right_x, y + work_h + gap, right_w, next_h};
    L.memory = {right_x, y + work_h + next_h + 2 * gap, right_w, mid_h - work_h - next_h - 2 * gap};
    y += mid_h + gap;
    const float narr_w = std::floor((W - 3 * gap) * 0.61f);
    L.narration = {gap, y, narr_w, bottom_h};
    L.timeline = {gap + narr_w + gap, y, W - 3 * gap - narr_w, bottom_h};
    return L;
}

}  // namespace kvui
