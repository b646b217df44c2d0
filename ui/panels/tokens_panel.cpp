// Tokens: one chip per position (position above, text inside, "xN" badge under it:
// how many times its K/V have been computed). Prefill (prompt) tokens are underlined
// in purple, decoded tokens in green; the tokens that entered the model in the
// latest step are highlighted; the chosen next token is a dashed chip; unknown words
// are flagged in red. Byte pieces that form one character together (GPT-2 writes
// "日" as <0xE6><0x97> and <0xA5>) stand under a bracket with that character, so a
// class sees that one character can cost several tokens (kv::group_pieces).
#include <imgui.h>

#include <algorithm>
#include <cstdio>

#include "core/model/model_io.h"
#include "core/text/utf8.h"
#include "ui/look/colormap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

std::vector<kv::PieceGroup> token_groups(const AppState& app, const SessionView& v) {
    if (!app.model || !app.model->tokenizer) return {};
    std::vector<std::string> pieces;
    pieces.reserve(v.tokens.size());
    for (int id : v.tokens) pieces.push_back(app.model->tokenizer->token_bytes(id));
    return kv::group_pieces(pieces);
}

bool token_pending(const SessionView& v, int i) {
    const kv::StepTrace* t = v.last();
    return t && i >= t->start_pos + static_cast<int>(t->input_ids.size());
}

TokenBadges token_badges(const AppState& app, int i) {
    TokenBadges b;
    const SessionView& v = app.main;
    if (token_pending(v, i)) return b;
    if (i < static_cast<int>(v.compute_counts.size())) b.main = "x" + std::to_string(v.compute_counts[i]);
    if (app.compare && i < static_cast<int>(app.other.compute_counts.size()))
        b.other = "|x" + std::to_string(app.other.compute_counts[i]);
    return b;
}

namespace {

// What one chip shows and how wide it is.
struct Chip {
    std::string text, label, b1, b2;  // label: "next:" on the pending chip; badges
    float w = 0, lw = 0, b1w = 0;
    bool pending = false, unknown = false, current = false, newest = false;
};

struct Row {
    float fs, pad, chip_h, group_h, row_h;  // group_h: the line of character brackets (0: none)
};

// The non-ASCII code points of some bytes, for a tooltip ("U+65E5"); emoji above
// U+FFFF are drawn as U+FFFD by ImGui 1.86, so this is where a class reads them.
std::string code_points(const std::string& bytes) {
    std::string s;
    for (char32_t c : kv::utf8_code_points(bytes)) {
        if (c < 0x80) continue;
        char buf[16];
        std::snprintf(buf, sizeof buf, "%sU+%04X", s.empty() ? "" : " ", unsigned(c));
        s += buf;
    }
    return s;
}

// One chip: background (or dashed outline), text, position above, badges below.
void draw_chip(const Chip& c, const Row& r, ImVec2 cur, int i, int p) {
    const Palette& pal = palette();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float fs = r.fs, pad = r.pad;
    ImVec2 a(cur.x, cur.y + r.group_h + fs * 0.8f), b(cur.x + c.w, a.y + r.chip_h);
    if (c.pending) {  // dashed outline: the model's prediction, not yet in the cache
        for (float x = a.x; x < b.x; x += 8.f) {
            dl->AddLine(ImVec2(x, a.y), ImVec2(std::min(x + 4.f, b.x), a.y), pal.accent, 2.f);
            dl->AddLine(ImVec2(x, b.y), ImVec2(std::min(x + 4.f, b.x), b.y), pal.accent, 2.f);
        }
        dl->AddLine(a, ImVec2(a.x, b.y), pal.accent, 2.f);
        dl->AddLine(ImVec2(b.x, a.y), b, pal.accent, 2.f);
        dl->AddText(ImVec2(a.x + pad, a.y + pad), pal.text_dim, c.label.c_str());
    } else {
        dl->AddRectFilled(a, b, c.current ? pal.chip_current : pal.chip, 5.f);
        if (c.newest) dl->AddRect(a, b, pal.accent, 5.f, 0, 3.f);
        dl->AddLine(ImVec2(a.x + 3, b.y - 2), ImVec2(b.x - 3, b.y - 2), i < p ? pal.prefill : pal.decode, 3.f);
    }
    dl->AddText(ImVec2(a.x + pad + c.lw, a.y + pad), c.unknown ? pal.bad : pal.text, c.text.c_str());
    char pos[16];
    std::snprintf(pos, sizeof pos, "%d", i);
    dl->AddText(ImGui::GetFont(), fs * 0.8f, ImVec2(a.x + 2, cur.y + r.group_h), pal.text_dim, pos);
    auto badge_col = [&](const std::string& s) {  // computed more than once: magenta
        const bool once = s == "x1" || s == "|x1" || s == "x0" || s == "|x0";
        return once ? pal.text_dim : state_color(RowState::recomputed, pal.dark);
    };
    if (!c.b1.empty()) dl->AddText(ImGui::GetFont(), fs * 0.85f, ImVec2(a.x + 2, b.y + 2), badge_col(c.b1), c.b1.c_str());
    if (!c.b2.empty())
        dl->AddText(ImGui::GetFont(), fs * 0.85f, ImVec2(a.x + 2 + c.b1w, b.y + 2), badge_col(c.b2), c.b2.c_str());
}

// The bracket over the chips [x0, x1) of one character group, the character above it.
void draw_group(const kv::PieceGroup& g, float x0, float x1, float y, const Row& r) {
    const Palette& pal = palette();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float yb = y + r.group_h - r.fs * 0.15f;
    dl->AddLine(ImVec2(x0 + 2, yb), ImVec2(x1 - 2, yb), pal.accent, 2.f);
    dl->AddLine(ImVec2(x0 + 2, yb), ImVec2(x0 + 2, yb + r.fs * 0.25f), pal.accent, 2.f);
    dl->AddLine(ImVec2(x1 - 2, yb), ImVec2(x1 - 2, yb + r.fs * 0.25f), pal.accent, 2.f);
    const float tw = ImGui::CalcTextSize(g.text.c_str()).x;
    dl->AddText(ImVec2((x0 + x1 - tw) * 0.5f, y), pal.text, g.text.c_str());
}

// The tooltip of chip i; `group` is the character group it belongs to (may be null).
void chip_tooltip(const AppState& app, const Chip& c, int i, int p, const kv::PieceGroup* group) {
    const SessionView& v = app.main;
    const int cnt = i < static_cast<int>(v.compute_counts.size()) ? v.compute_counts[i] : 0;
    std::string extra;
    if (group && app.model && app.model->tokenizer) {
        std::string bytes;  // the exact bytes of the group's tokens
        for (int k = group->first; k < group->first + group->count; ++k)
            bytes += app.model->tokenizer->token_bytes(v.tokens[size_t(k)]);
        const std::string cps = code_points(bytes);
        if (group->joined())
            extra = "\nthe bytes of tokens " + std::to_string(group->first) + "-" +
                    std::to_string(group->first + group->count - 1) + " together form '" + group->text + "' (" +
                    cps + "): " + std::to_string(group->count) + " tokens for it";
        else if (!cps.empty())
            extra = "\ncharacters: " + cps;
    }
    if (c.unknown)
        ImGui::SetTooltip("'%s' is not in the vocabulary: the model sees <unk> (id 0)", app.prompt_pieces[i].c_str());
    else if (c.pending)
        ImGui::SetTooltip("Chosen at the last step; it enters the model at the next step (position %d)%s", i,
                          extra.c_str());
    else
        ImGui::SetTooltip("position %d, id %d, %s token\nits K/V have been computed %d time%s%s", i, v.tokens[i],
                          i < p ? "prompt (prefill)" : "generated (decode)", cnt, cnt == 1 ? "" : "s", extra.c_str());
}

Chip make_chip(const AppState& app, int i, float fs, float pad) {
    const SessionView& v = app.main;
    const kv::StepTrace* t = v.last();
    const int p = static_cast<int>(v.prompt_ids.size());
    const int fed = t ? t->start_pos + static_cast<int>(t->input_ids.size()) : 0;  // positions in the model
    Chip c;
    c.pending = token_pending(v, i);
    c.current = t && i >= t->start_pos && i < fed;
    c.newest = t && i == fed - 1;
    c.unknown = i < p && app.model && app.model->tokenizer && app.model->tokenizer->kind() == "word" &&
                v.prompt_ids[i] == 0 && i < static_cast<int>(app.prompt_pieces.size());
    c.text = c.unknown ? app.prompt_pieces[i] + "?" : app.token_text(v.tokens[i]);
    if (c.pending) c.label = "next:";
    c.lw = c.pending ? ImGui::CalcTextSize(c.label.c_str()).x + pad : 0.f;
    TokenBadges badges = token_badges(app, i);
    c.b1 = std::move(badges.main);
    c.b2 = std::move(badges.other);
    const float small = fs * 0.85f / ImGui::GetFontSize();
    c.b1w = ImGui::CalcTextSize(c.b1.c_str()).x * small;
    const float b2w = ImGui::CalcTextSize(c.b2.c_str()).x * small;
    c.w = std::max({ImGui::CalcTextSize(c.text.c_str()).x + pad * 2 + c.lw, fs * 1.6f, c.b1w + b2w + 4});
    return c;
}

// Where each chip and the key go, relative to the top left of the chips (no ImGui
// window needed, only the font): the chips flow left to right and wrap at `width`; a
// joined character group starts on a row it fits on; the key goes after the last chip
// when it fits on that row, else on the next row. height: what the chips and the key take.
struct Geometry {
    Row r{};
    std::vector<Chip> chips;
    std::vector<ImVec2> at;  // (n_tok) each chip's row origin
    ImVec2 key_at;
    bool key = true;  // the key is drawn (a presenter's font drops it rather than give it a row)
    float height = 0;
};

const char* const kKey1 = "prompt (prefill)";
const char* const kKey2 = "generated (decode)";

Geometry tokens_geometry(const AppState& app, const std::vector<kv::PieceGroup>& groups, float width) {
    Geometry geo;
    const int n_tok = static_cast<int>(app.main.tokens.size());
    const bool any_joined = std::any_of(groups.begin(), groups.end(), [](const auto& g) { return g.joined(); });
    Row& r = geo.r;
    r.fs = ImGui::GetFontSize();
    r.pad = r.fs * 0.35f;
    r.chip_h = r.fs + r.pad * 2;
    r.group_h = any_joined ? r.fs * 1.2f : 0.f;
    r.row_h = r.group_h + r.fs * 0.8f + r.chip_h + r.fs * 0.85f + 6.f;  // characters, position, chip, badge
    const float gap = r.fs * 0.4f;
    for (int i = 0; i < n_tok; ++i) geo.chips.push_back(make_chip(app, i, r.fs, r.pad));
    ImVec2 cur(0, 0);
    size_t gi = 0;
    for (int i = 0; i < n_tok; ++i) {
        while (gi + 1 < groups.size() && groups[gi].first + groups[gi].count <= i) ++gi;
        const kv::PieceGroup* g = gi < groups.size() ? &groups[gi] : nullptr;
        float need = geo.chips[size_t(i)].w;
        if (g && g->joined() && g->first == i)
            for (int k = i + 1; k < g->first + g->count; ++k) need += gap + geo.chips[size_t(k)].w;
        if (cur.x + need > width && cur.x > 0) {
            cur.x = 0;
            cur.y += r.row_h;
        }
        geo.at.push_back(cur);
        cur.x += geo.chips[size_t(i)].w + gap;
    }
    const float fs = r.fs;
    const float kw = ImGui::CalcTextSize(kKey1).x + ImGui::CalcTextSize(kKey2).x + fs * 4;
    geo.key_at = ImVec2(cur.x + fs, cur.y + r.group_h + fs * 0.8f + r.pad);
    if (geo.key_at.x + kw > width) {
        // A row of its own for the key: not at a projector's font, where the chips'
        // tooltips say it and the cache below needs the height (presenter rule).
        geo.key = !presenter_font();
        geo.key_at = ImVec2(0, cur.y + r.row_h);
    }
    geo.height = (geo.key ? std::max(cur.y + r.row_h, geo.key_at.y + fs * 1.5f) : cur.y + r.row_h) + 1.f;  // + the 1 px Dummy
    return geo;
}

void draw_key(ImVec2 o, const Geometry& geo) {
    const Palette& pal = palette();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float fs = geo.r.fs;
    ImVec2 kp(o.x + geo.key_at.x, o.y + geo.key_at.y);
    if (!geo.key) {
        ImGui::SetCursorScreenPos(ImVec2(o.x, o.y + geo.height - 1.f));
        ImGui::Dummy(ImVec2(1, 1));
        return;
    }
    dl->AddLine(ImVec2(kp.x, kp.y + fs), ImVec2(kp.x + fs, kp.y + fs), pal.prefill, 3.f);
    dl->AddText(ImVec2(kp.x + fs * 1.3f, kp.y), pal.text_dim, kKey1);
    kp.x += fs * 2 + ImGui::CalcTextSize(kKey1).x;
    dl->AddLine(ImVec2(kp.x, kp.y + fs), ImVec2(kp.x + fs, kp.y + fs), pal.decode, 3.f);
    dl->AddText(ImVec2(kp.x + fs * 1.3f, kp.y), pal.text_dim, kKey2);
    ImGui::SetCursorScreenPos(ImVec2(o.x, o.y + geo.height - 1.f));
    ImGui::Dummy(ImVec2(1, 1));
}

std::string unknown_line(const AppState& app) {
    std::string u;
    for (const std::string& w : app.unknown_words) u += (u.empty() ? "'" : ", '") + w + "'";
    return "Not in the vocabulary (became <unk>): " + u;
}

}  // namespace

float tokens_panel_height(const AppState& app, float width) {
    const ImGuiStyle& st = ImGui::GetStyle();
    float h = 0;
    if (!app.unknown_words.empty())
        h += ImGui::CalcTextSize(wrap_text(unknown_line(app), width).c_str()).y + st.ItemSpacing.y;
    if (app.main.tokens.empty()) return h + ImGui::GetTextLineHeight();
    return h + tokens_geometry(app, token_groups(app, app.main), width).height;
}

void draw_tokens_panel(AppState& app) {
    const Palette& pal = palette();
    const SessionView& v = app.main;
    const int p = static_cast<int>(v.prompt_ids.size());
    const int n_tok = static_cast<int>(v.tokens.size());
    if (!app.unknown_words.empty()) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.bad));
        text_wrapped("%s", unknown_line(app).c_str());
        ImGui::PopStyleColor();
    }
    if (n_tok == 0) {
        ImGui::TextColored(to_vec4(pal.text_dim), "No prompt yet: type one above and press Set.");
        return;
    }
    const std::vector<kv::PieceGroup> groups = token_groups(app, v);
    const float x_right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const Geometry geo = tokens_geometry(app, groups, x_right - o.x);
    const Row& r = geo.r;
    const float gap = r.fs * 0.4f;
    size_t gi = 0;
    for (int i = 0; i < n_tok; ++i) {
        while (gi + 1 < groups.size() && groups[gi].first + groups[gi].count <= i) ++gi;
        const kv::PieceGroup* g = gi < groups.size() ? &groups[gi] : nullptr;
        const Chip& c = geo.chips[size_t(i)];
        const ImVec2 cur(o.x + geo.at[size_t(i)].x, o.y + geo.at[size_t(i)].y);
        draw_chip(c, r, cur, i, p);
        if (g && g->joined() && g->first == i) {
            float need = c.w;
            for (int k = i + 1; k < g->first + g->count; ++k) need += gap + geo.chips[size_t(k)].w;
            draw_group(*g, cur.x, std::min(x_right, cur.x + need), cur.y, r);
        }
        ImGui::SetCursorScreenPos(ImVec2(cur.x, cur.y + r.group_h + r.fs * 0.8f));
        ImGui::InvisibleButton(("##tok" + std::to_string(i)).c_str(), ImVec2(c.w, r.chip_h));
        if (c.newest && (!app.vs.animate || ImGui::GetTime() - app.vs.step_time < 0.3)) {
            // the row from its top, so the characters over the chips stay in view, when the
            // panel holds a whole row (title bar included); else the chip in the middle
            if (r.group_h > 0 && ImGui::GetWindowHeight() >= r.row_h + r.fs * 2.f)
                ImGui::SetScrollFromPosY(cur.y - ImGui::GetWindowPos().y, 0.f);
            else
                ImGui::SetScrollHereY(0.5f);
        }
        if (ImGui::IsItemHovered()) chip_tooltip(app, c, i, p, g);
    }
    draw_key(o, geo);
}

}  // namespace kvui
