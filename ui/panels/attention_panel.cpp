// Attention weights, drawn beside the cache rows so each key's weight sits on the
// same line as its cache row. Decode with cache: one query, one weight per cached
// key (cell + bar + number). Prefill or cache off: the full causal matrix, query i
// on the line of row i; with the cache off the last row is outlined: the only one
// the next token needs.
#include <imgui.h>

#include <algorithm>
#include <cstdio>

#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

// A key the query did not read: an empty cell, struck through.
void draw_not_read(ImDrawList* dl, ImVec2 a, ImVec2 b) {
    const ImU32 grey = with_alpha(state_color(RowState::evicted, palette().dark), 0.7f);
    dl->AddRect(a, b, grey);
    if (b.x - a.x > 3 && b.y - a.y > 3) dl->AddLine(a, b, grey);
}

}  // namespace

const char* attention_caption(const kv::StepTrace& t) {
    if (t.input_ids.size() == 1) return "attention: 1 query";
    return t.phase == kv::Phase::prefill ? "attention: causal matrix" : "attention: all queries (last needed)";
}

void draw_attention_beside(const AppState& app, const kv::StepTrace& t, int layer, int head, const AttnGeometry& g) {
    const Palette& pal = palette();
    const kv::HeadTrace* h = t.find_head(layer, head);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float fs = ImGui::GetFontSize();
    if (!h || h->attn.rows() == 0) {
        dl->AddText(ImVec2(g.x, g.y0), pal.text_dim, "(head not recorded)");
        return;
    }
    const int nq = static_cast<int>(h->attn.rows());
    const int nk = static_cast<int>(h->attn.cols());
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    const bool hover_win = ImGui::IsWindowHovered();
    if (nq == 1) {
        const float cell = std::min(g.row_h * 1.4f, fs * 1.3f);
        const float bar_max = std::max(0.f, g.width - cell - fs * 3.2f);
        const int q_pos = h->first_pos;
        for (int j = 0; j < nk; ++j) {
            const float w = h->attn(0, j);
            const float y = g.y0 + j * g.row_h;
            const float gap = g.row_h > 6 ? 1.f : 0.f;
            if (!g.policy.reads(q_pos, j)) {  // evicted or outside the window: not read
                draw_not_read(dl, ImVec2(g.x, y), ImVec2(g.x + cell, y + g.row_h - gap));
                if (g.row_h >= fs * 0.8f)
                    dl->AddText(ImVec2(g.x + cell + 6, y + (g.row_h - fs) * 0.5f), pal.text_dim, "not read");
                if (hover_win && mouse.x >= g.x && mouse.x < g.x + g.width && mouse.y >= y && mouse.y < y + g.row_h)
                    ImGui::SetTooltip("query at position %d does not read key %d: outside the window (%s)", q_pos, j,
                                      kv::policy_text(g.policy).c_str());
                continue;
            }
            dl->AddRectFilled(ImVec2(g.x, y), ImVec2(g.x + cell, y + g.row_h - gap), sequential(w));
            dl->AddRectFilled(ImVec2(g.x + cell + 3, y + g.row_h * 0.2f),
                              ImVec2(g.x + cell + 3 + bar_max * w, y + g.row_h * 0.8f), pal.accent);
            if (g.row_h >= fs * 0.8f) {
                char num[16];
                std::snprintf(num, sizeof num, "%.2f", w);
                dl->AddText(ImVec2(g.x + cell + 6 + bar_max * w, y + (g.row_h - fs) * 0.5f), pal.text_dim, num);
            }
            if (hover_win && mouse.x >= g.x && mouse.x < g.x + g.width && mouse.y >= y && mouse.y < y + g.row_h) {
                std::string kt = j < static_cast<int>(app.main.tokens.size()) ? app.token_text(app.main.tokens[j]) : "";
                ImGui::SetTooltip("query at position %d attends to key %d ('%s'): weight %.4f", q_pos, j, kt.c_str(), w);
            }
        }
        return;
    }
    const float cell = std::clamp(g.width / std::max(nk, 1), 1.f, g.row_h * 1.5f);
    for (int i = 0; i < nq; ++i) {
        const int qp = h->first_pos + i;
        const float y = g.y0 + qp * g.row_h;
        const float gap = g.row_h > 6 ? 1.f : 0.f;
        for (int j = 0; j <= std::min(qp, nk - 1); ++j) {
            const ImVec2 a(g.x + j * cell, y), b(g.x + (j + 1) * cell - (cell > 4 ? 1.f : 0.f), y + g.row_h - gap);
            if (g.policy.reads(qp, j)) dl->AddRectFilled(a, b, sequential(h->attn(i, j)));
            else draw_not_read(dl, a, b);
        }
        if (hover_win && mouse.y >= y && mouse.y < y + g.row_h && mouse.x >= g.x && mouse.x < g.x + nk * cell) {
            int j = std::clamp(static_cast<int>((mouse.x - g.x) / cell), 0, nk - 1);
            ImGui::SetTooltip("query %d -> key %d: weight %.4f%s", qp, j, h->attn(i, j),
                              j > qp                     ? " (masked: a token cannot see the future)"
                              : !g.policy.reads(qp, j) ? " (masked: outside the window)"
                                                         : "");
        }
    }
    if (!t.cache_on && t.phase == kv::Phase::decode) {
        const float y = g.y0 + (h->first_pos + nq - 1) * g.row_h;
        dl->AddRect(ImVec2(g.x - 2, y - 1), ImVec2(g.x + nk * cell + 2, y + g.row_h + 1), pal.text, 0.f, 0, 2.f);
    }
}

}  // namespace kvui
