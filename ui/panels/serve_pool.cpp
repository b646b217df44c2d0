// The serving view's pool grid (ui/state/serve_view.h has the model): P blocks of B
// slots, each slot coloured by the request whose sequence wrote it, its position
// inside; shared blocks framed with their reference count, cached blocks greyed, the
// block copy-on-write just filled and the blocks of a request preempted this step
// framed and flashing. Hover a slot for its request, position, token and layer-0 K.
// Click a slot to select its sequence (its block table is drawn below the grid).
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ui/look/colormap.h"
#include "ui/look/theme.h"
#include "ui/panels/panels.h"

namespace kvui {

ImU32 request_color(int request, float alpha) {
    // Okabe and Ito's colour-blind-safe set, then two more; distinguishable on both themes.
    static const ImU32 rgb[] = {0xE69F00, 0x56B4E9, 0x009E73, 0xF0E442, 0xCC79A7, 0xD55E00, 0x0072B2, 0xB0B0FF};
    const ImU32 c = rgb[size_t(std::max(request, 0)) % (sizeof rgb / sizeof rgb[0])];
    const auto a = static_cast<ImU32>(std::clamp(alpha, 0.f, 1.f) * 255.f);
    return IM_COL32((c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff, a);
}

namespace {

// 0..1 pulse for the flashing frames; steady in screenshots and tests.
float flash(const AppState& app) {
    if (!app.vs.animate) return 1.f;
    const double t = ImGui::GetTime() - app.vs.step_time;
    return t > 2.0 ? 1.f : 0.55f + 0.45f * float(std::cos(t * 9.0));
}

void draw_legend(const AppState& app) {
    const Palette& pal = palette();
    const float f = ImGui::GetFontSize();
    auto swatch = [&](ImU32 fill, ImU32 frame, const char* text) {
        flow(f * 1.2f + ImGui::CalcTextSize(text).x + f);
        const ImVec2 p = ImGui::GetCursorScreenPos();
        ImDrawList* dl = ImGui::GetWindowDrawList();
        dl->AddRectFilled(ImVec2(p.x, p.y + f * 0.15f), ImVec2(p.x + f * 0.9f, p.y + f), fill);
        if (frame) dl->AddRect(ImVec2(p.x, p.y + f * 0.15f), ImVec2(p.x + f * 0.9f, p.y + f), frame, 0, 0, 3.f);
        ImGui::Dummy(ImVec2(f * 1.1f, f));
        ImGui::SameLine(0, 0);
        ImGui::TextUnformatted(text);
    };
    (void)app;
    swatch(request_color(0), 0, "a request's slot (its colour: list)");
    swatch(IM_COL32(128, 128, 128, 255), 0, "cached: kept for reuse");
    swatch(0, pal.text, "xN: shared by N tables");
    swatch(0, pal.good, "copied on write");
    swatch(0, pal.bad, "preempted");
}

struct Cell {
    ImVec2 a, b;
};

void draw_block(AppState& app, const PoolGrid& g, int blk, const GridGeometry& geo, ImVec2 at, const Cell& frame) {
    const Palette& pal = palette();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const GridBlock& gb = g.blocks[size_t(blk)];
    const float f = ImGui::GetFontSize();
    char label[32];
    std::snprintf(label, sizeof label, gb.ref_count > 1 ? "#%d x%d" : "#%d", blk, gb.ref_count);
    const float label_px = std::min(geo.label_h, f);
    dl->AddText(ImGui::GetFont(), label_px, at, gb.ref_count > 1 ? pal.text : pal.text_dim, label);
    const float y = at.y + geo.label_h;
    const float text_px = std::min(f, geo.cell * 0.62f);
    for (int j = 0; j < g.block_size; ++j) {
        const GridSlot& s = g.slot(blk, j);
        const ImVec2 a(at.x + float(j) * (geo.cell + geo.gap), y), b(a.x + geo.cell, y + geo.cell);
        if (s.look == SlotLook::empty) {
            dl->AddRect(a, b, pal.grid, 0, 0, 1.5f);
            continue;
        }
        const ImU32 fill = s.look == SlotLook::cached ? IM_COL32(128, 128, 128, 255) : request_color(s.request);
        dl->AddRectFilled(a, b, fill);
        char pos[16];
        std::snprintf(pos, sizeof pos, "%d", s.pos);
        const ImVec2 ts = ImGui::GetFont()->CalcTextSizeA(text_px, FLT_MAX, 0.f, pos);
        if (ts.x < geo.cell)
            dl->AddText(ImGui::GetFont(), text_px, ImVec2(a.x + (geo.cell - ts.x) * 0.5f, a.y + (geo.cell - ts.y) * 0.5f),
                        IM_COL32(0, 0, 0, 255), pos);
        if (ImGui::IsMouseHoveringRect(a, b)) {
            ImGui::SetTooltip("%s", slot_tooltip(app.serve, blk, j, app.kv_head_of(app.vs.head),
                                                 [&app](int id) { return app.token_text(id); })
                                        .c_str());
            if (ImGui::IsMouseClicked(0)) app.serve.selected = s.seq;
        }
    }
    const float t = std::max(2.f, f * 0.14f);
    if (gb.ref_count > 1) dl->AddRect(frame.a, frame.b, pal.text, 0, 0, t);
    const float k = flash(app);
    if (gb.copied_now) dl->AddRect(frame.a, frame.b, (pal.good & 0x00ffffff) | (ImU32(255 * k) << 24), 0, 0, t * 1.6f);
    if (gb.preempted_now) dl->AddRect(frame.a, frame.b, (pal.bad & 0x00ffffff) | (ImU32(255 * k) << 24), 0, 0, t * 1.6f);
}

}  // namespace

void draw_serve_pool(AppState& app, bool legend) {
    ServeDrawn& d = app.serve_drawn;
    d = ServeDrawn{};
    const ServeView& v = app.serve;
    if (!v.run) {
        text_wrapped("No requests have run yet: pick a preset above.");
        return;
    }
    const kv::ServeResult& r = v.run->result;
    text_wrapped("%d blocks x %d slots, %s a block; step %d of %d", r.n_blocks, r.block_size,
                 human_bytes(double(r.bytes_per_block)).c_str(), v.shown, v.n_steps());
    if (legend) draw_legend(app);
    const PoolGrid g = pool_grid(v);
    const ImVec2 avail = ImGui::GetContentRegionAvail(), o = ImGui::GetCursorScreenPos();
    const GridGeometry geo = grid_geometry(avail.x, avail.y, ImGui::GetFontSize(), g.n_blocks, g.block_size);
    const ImRect clip = ImGui::GetCurrentWindow()->InnerClipRect;
    d.drawn = true;
    d.geometry = geo;
    d.area = {clip.Min.x, clip.Min.y, clip.GetWidth(), clip.GetHeight()};
    for (int b = 0; b < g.n_blocks; ++b) {
        const ImVec2 at(o.x + float(b % geo.cols) * (geo.block_w() + geo.block_gap),
                        o.y + float(b / geo.cols) * (geo.block_h() + geo.block_gap));
        const Cell frame{ImVec2(at.x - 2, at.y + geo.label_h - 2), ImVec2(at.x + geo.block_w() + 2, at.y + geo.block_h() + 2)};
        draw_block(app, g, b, geo, at, frame);
        const Rect rb{at.x, at.y, geo.block_w(), geo.block_h()};
        d.blocks.push_back(rb);
        d.in_view += rb.x >= clip.Min.x - 0.5f && rb.y >= clip.Min.y - 0.5f && rb.x + rb.w <= clip.Max.x + 0.5f &&
                     rb.y + rb.h <= clip.Max.y + 0.5f;
    }
    ImGui::Dummy(ImVec2(geo.width(), geo.height()));
}

}  // namespace kvui
