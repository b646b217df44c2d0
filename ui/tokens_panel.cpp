// Tokens: one chip per position (position above, text inside, "xN" badge under it:
// how many times its K/V have been computed). Prefill (prompt) tokens are underlined
// in purple, decoded tokens in green; the tokens that entered the model in the
// latest step are highlighted; the chosen next token is a dashed chip; unknown words
// are flagged in red.
#include <imgui.h>

#include <algorithm>
#include <cstdio>

#include "core/model/model_io.h"
#include "ui/colormap.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace kvui {

void draw_tokens_panel(AppState& app) {
    const Palette& pal = palette();
    const SessionView& v = app.main;
    const float fs = ImGui::GetFontSize();
    const int p = static_cast<int>(v.prompt_ids.size());
    const kv::StepTrace* t = v.last();
    const int fed = t ? t->start_pos + static_cast<int>(t->input_ids.size()) : 0;  // positions in the model
    const int cur_lo = t ? t->start_pos : -1, cur_hi = fed;

    if (!app.unknown_words.empty()) {
        std::string u;
        for (const std::string& w : app.unknown_words) u += (u.empty() ? "'" : ", '") + w + "'";
        ImGui::TextColored(to_vec4(pal.bad), "Not in the vocabulary (became <unk>): %s", u.c_str());
    }

    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float pad = fs * 0.35f;
    const float chip_h = fs + pad * 2;
    const float row_h = fs * 0.8f + chip_h + fs * 0.85f + 6.f;  // position, chip, badge
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    ImVec2 cur = ImGui::GetCursorScreenPos();
    const float x0 = cur.x;
    const int n_tok = static_cast<int>(v.tokens.size());
    auto unknown_at = [&](int i) {
        return i < p && app.model && app.model->tokenizer && app.model->tokenizer->kind() == "word" &&
               v.prompt_ids[i] == 0;
    };
    for (int i = 0; i < n_tok; ++i) {
        const bool pending = i >= fed && t;  // chosen but not fed yet
        std::string text = app.token_text(v.tokens[i]);
        if (unknown_at(i) && i < static_cast<int>(app.prompt_pieces.size())) text = app.prompt_pieces[i] + "?";
        const char* label = pending ? "next:" : nullptr;
        const float lw = label ? ImGui::CalcTextSize(label).x + pad : 0.f;
        // badges: "xN" (and "|xM" for the compare session)
        std::string b1, b2;
        if (!pending && i < static_cast<int>(v.compute_counts.size())) b1 = "x" + std::to_string(v.compute_counts[i]);
        if (!pending && app.compare && i < static_cast<int>(app.other.compute_counts.size()))
            b2 = "|x" + std::to_string(app.other.compute_counts[i]);
        const float small = fs * 0.85f / ImGui::GetFontSize();
        const float b1w = ImGui::CalcTextSize(b1.c_str()).x * small, b2w = ImGui::CalcTextSize(b2.c_str()).x * small;
        const float w = std::max({ImGui::CalcTextSize(text.c_str()).x + pad * 2 + lw, fs * 1.6f, b1w + b2w + 4});
        if (cur.x + w > right && cur.x > x0) {
            cur.x = x0;
            cur.y += row_h;
        }
        ImVec2 a(cur.x, cur.y + fs * 0.8f), b(cur.x + w, cur.y + fs * 0.8f + chip_h);
        const bool current = i >= cur_lo && i < cur_hi;
        const bool newest = t && i == cur_hi - 1;
        ImU32 bg = current ? pal.chip_current : pal.chip;
        if (pending) {
            // dashed outline: the model's prediction, not yet in the cache
            for (float x = a.x; x < b.x; x += 8.f) {
                dl->AddLine(ImVec2(x, a.y), ImVec2(std::min(x + 4.f, b.x), a.y), pal.accent, 2.f);
                dl->AddLine(ImVec2(x, b.y), ImVec2(std::min(x + 4.f, b.x), b.y), pal.accent, 2.f);
            }
            dl->AddLine(a, ImVec2(a.x, b.y), pal.accent, 2.f);
            dl->AddLine(ImVec2(b.x, a.y), b, pal.accent, 2.f);
            dl->AddText(ImVec2(a.x + pad, a.y + pad), pal.text_dim, label);
        } else {
            dl->AddRectFilled(a, b, bg, 5.f);
            if (newest) dl->AddRect(a, b, pal.accent, 5.f, 0, 3.f);
            // prefill vs decode marker
            dl->AddLine(ImVec2(a.x + 3, b.y - 2), ImVec2(b.x - 3, b.y - 2), i < p ? pal.prefill : pal.decode, 3.f);
        }
        const bool unk = unknown_at(i);
        dl->AddText(ImVec2(a.x + pad + lw, a.y + pad), unk ? pal.bad : pal.text, text.c_str());
        char pos[16];
        std::snprintf(pos, sizeof pos, "%d", i);
        dl->AddText(ImGui::GetFont(), fs * 0.8f, ImVec2(a.x + 2, cur.y), pal.text_dim, pos);
        auto badge_col = [&](const std::string& b) {  // computed more than once: magenta
            const bool once = b == "x1" || b == "|x1" || b == "x0" || b == "|x0";
            return once ? pal.text_dim : state_color(RowState::recomputed, pal.dark);
        };
        if (!b1.empty()) dl->AddText(ImGui::GetFont(), fs * 0.85f, ImVec2(a.x + 2, b.y + 2), badge_col(b1), b1.c_str());
        if (!b2.empty())
            dl->AddText(ImGui::GetFont(), fs * 0.85f, ImVec2(a.x + 2 + b1w, b.y + 2), badge_col(b2), b2.c_str());
        ImGui::SetCursorScreenPos(a);
        ImGui::InvisibleButton(("##tok" + std::to_string(i)).c_str(), ImVec2(w, chip_h));
        if (newest && (!app.vs.animate || ImGui::GetTime() - app.vs.step_time < 0.3)) ImGui::SetScrollHereY(0.5f);
        if (ImGui::IsItemHovered()) {
            int cnt = i < static_cast<int>(v.compute_counts.size()) ? v.compute_counts[i] : 0;
            if (unk)
                ImGui::SetTooltip("'%s' is not in the vocabulary: the model sees <unk> (id 0)",
                                  app.prompt_pieces[i].c_str());
            else if (pending)
                ImGui::SetTooltip("Chosen at the last step; it enters the model at the next step (position %d)", i);
            else
                ImGui::SetTooltip("position %d, id %d, %s token\nits K/V have been computed %d time%s", i,
                                  v.tokens[i], i < p ? "prompt (prefill)" : "generated (decode)", cnt,
                                  cnt == 1 ? "" : "s");
        }
        cur.x += w + fs * 0.4f;
    }
    if (n_tok == 0) {
        ImGui::TextColored(to_vec4(pal.text_dim), "No prompt yet: type one above and press Set.");
        return;
    }
    // key: after the last chip when it fits on that row, else on the next row
    const char* k1 = "prompt (prefill)";
    const char* k2 = "generated (decode)";
    const float kw = ImGui::CalcTextSize(k1).x + ImGui::CalcTextSize(k2).x + fs * 4;
    ImVec2 kp(cur.x + fs, cur.y + fs * 0.8f + pad);
    if (kp.x + kw > right) kp = ImVec2(x0, cur.y + row_h);
    dl->AddLine(ImVec2(kp.x, kp.y + fs), ImVec2(kp.x + fs, kp.y + fs), pal.prefill, 3.f);
    dl->AddText(ImVec2(kp.x + fs * 1.3f, kp.y), pal.text_dim, k1);
    kp.x += fs * 2 + ImGui::CalcTextSize(k1).x;
    dl->AddLine(ImVec2(kp.x, kp.y + fs), ImVec2(kp.x + fs, kp.y + fs), pal.decode, 3.f);
    dl->AddText(ImVec2(kp.x + fs * 1.3f, kp.y), pal.text_dim, k2);
    ImGui::SetCursorScreenPos(ImVec2(x0, std::max(cur.y + row_h, kp.y + fs * 1.5f)));
    ImGui::Dummy(ImVec2(1, 1));
}

}  // namespace kvui
