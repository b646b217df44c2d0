// compute_layout: panel rectangles from the viewport size, every frame. Controls on
// top, tokens under them; centre: q/k/v above the cache matrix (attention beside its
// rows); right column: work chart (or the Scaling plot, taller), next token, memory,
// timeline; bottom left: narration.
#include <algorithm>
#include <cmath>

#include "ui/panels.h"

namespace kvui {

Layout compute_layout(float W, float H, float font_px, float controls_h, bool tall_work) {
    Layout L;
    W = std::max(W, 200.f);
    H = std::max(H, 200.f);
    const float gap = 4.f;
    const float line = font_px * 1.55f;  // a framed widget plus spacing (style scales with the font)
    const float title = font_px * 1.45f;
    const int control_rows = W < 80.f * font_px ? 4 : 3;  // the last row: model, notes, errors
    float ch = controls_h > 0 ? controls_h + 2.f : control_rows * line + 12.f;
    ch = std::clamp(ch, 2 * line, std::max(2 * line, H * 0.3f));
    L.controls = {gap, gap, W - 2 * gap, ch};
    const float top = L.controls.y + L.controls.h + gap;
    const float avail = H - top - gap;  // both columns share this height
    const float left_w = std::floor((W - 3 * gap) * 0.61f);
    const float right_w = W - 3 * gap - left_w;
    const float right_x = gap + left_w + gap;

    // Left: tokens, q/k/v, the cache matrix (whatever is left), narration.
    float tokens_h = title + 4.9f * font_px + 24.f;  // a chip row and its key
    float qkv_h = title + 5.0f * line;
    float narr_h = title + 4.f * (font_px * 1.3f + 4.f) + 12.f;  // 4 lines of the big font
    const float min_cache = std::max(10 * line, avail * 0.36f);
    const float fixed = tokens_h + qkv_h + narr_h + 3 * gap;
    if (avail - fixed < min_cache) {  // small windows: shrink the fixed panels evenly
        const float k = std::max(0.3f, (avail - min_cache - 3 * gap) / (fixed - 3 * gap));
        tokens_h *= k;
        qkv_h *= k;
        narr_h *= k;
    }
    float y = top;
    L.tokens = {gap, y, left_w, tokens_h};
    y += tokens_h + gap;
    L.qkv = {gap, y, left_w, qkv_h};
    y += qkv_h + gap;
    const float cache_h = std::max(line, H - gap - narr_h - gap - y);
    L.cache = {gap, y, left_w, cache_h};
    L.narration = {gap, y + cache_h + gap, left_w, H - gap - (y + cache_h + gap)};

    // Right: work chart, next token, memory, timeline.
    // The Scaling plot takes room from next token and memory (still drawn, shorter).
    const float work_h = std::floor(avail * (tall_work ? 0.58f : 0.45f));
    const float next_h = std::floor(avail * (tall_work ? 0.13f : 0.17f));
    const float mem_h = std::floor(avail * (tall_work ? 0.15f : 0.22f));
    y = top;
    L.work = {right_x, y, right_w, work_h};
    y += work_h + gap;
    L.next_token = {right_x, y, right_w, next_h};
    y += next_h + gap;
    L.memory = {right_x, y, right_w, mem_h};
    y += mem_h + gap;
    L.timeline = {right_x, y, right_w, H - gap - y};
    return L;
}

}  // namespace kvui
