// Q/K/V: for the selected layer and head, the newest processed token's q, k and v as
// rows of coloured cells (diverging map, value on hover), with where each goes:
// q is used now and thrown away, k and v become a cache row. For a RoPE model (the
// Llama family) k also before its rotation (k0), and the angles it was turned by. For an
// MLA model the cache row is the latent [c_KV | k_R] (HeadTrace::latent), and k and v
// are the head's expansion of it, not cached.
#include <imgui.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ui/look/colormap.h"
#include "ui/look/heatmap.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace kvui {

namespace {

// What RoPE did to this token's q and k, in one line: turned for its position, pair
// (i, i + hd/2) by pos x inv_freq[i] (the lesson's RoPE chapter gives the angles).
void draw_rope_note(int pos) {
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(palette().text_dim));
    text_wrapped("RoPE: q and k0 turned for position %d; the cache keeps the turned k.", pos);
    ImGui::PopStyleColor();
}

// MLA: what is cached and what is computed again at every step.
void draw_mla_note(const kv::ModelConfig& c, int pos) {
    ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(palette().text_dim));
    text_wrapped("MLA: cache row %d is the latent [c_KV %d | k_R %d] alone; k and v are expanded from it for each of "
                 "the %d heads (kv_b_proj) when a query reads it.", pos, c.mla.kv_lora_rank, c.mla.qk_rope_head_dim,
                 c.n_head);
    ImGui::PopStyleColor();
}

// One row of the panel: a vector of the newest token and where it goes.
struct QkvRow {
    const char* name;
    const float* x;
    int n;
    std::string note;
    bool cached;  // the note says which cache row it becomes ("computed" colour)
};

// q; an MLA model's latent row (HeadTrace::latent: what the cache keeps; its k and v are
// expanded from it again at every step, not cached); a RoPE model's k before its turn
// (k0); k and v. Row r of h is the token at pos.
std::vector<QkvRow> qkv_rows(const AppState& app, const kv::HeadTrace& h, int r, int pos) {
    const bool mla = app.model && app.model->config.is_mla();
    const std::string to_cache = "-> cache row " + std::to_string(pos) +
                                 (pos >= app.main.cache_positions && spec_phase(app) == SpecPhase::rolled_back
                                      ? " (rolled back)" : "");
    const char* expanded = "from the latent, not cached";
    auto row = [&](const char* name, const kv::RowMat& m, std::string note, bool cached) {
        return QkvRow{name, m.row(r).data(), static_cast<int>(m.cols()), std::move(note), cached};
    };
    std::vector<QkvRow> rows = {row("q", h.q, "used now, then dropped", false)};
    if (mla && h.latent.rows() > r) rows.push_back(row("c|kR", h.latent, to_cache + " (latent)", true));
    if (!mla && h.k_before_rope.rows() > r) rows.push_back(row("k0", h.k_before_rope, "before RoPE: not kept", false));
    rows.push_back(row("k", h.k, mla ? expanded : to_cache, !mla));
    rows.push_back(row("v", h.v, mla ? expanded : to_cache, !mla));
    return rows;
}

// The rows as strips on one colour scale (returned), a label before and the note after
// each; hovering a cell shows its value.
float draw_qkv_rows(const std::vector<QkvRow>& rows, const std::string& tok, int pos) {
    const Palette& pal = palette();
    const float fs = ImGui::GetFontSize();
    const float name_px = fs * 1.1f;  // the labels, in the big font
    float scale = 1e-6f, note_w = 0.f, label_w = fs * 2.2f;
    int widest = 1;
    for (const QkvRow& d : rows) {
        scale = std::max(scale, abs_max(d.x, d.n));
        widest = std::max(widest, d.n);
        note_w = std::max(note_w, ImGui::CalcTextSize(d.note.c_str()).x);
        label_w = std::max(label_w, big_font()->CalcTextSizeA(name_px, FLT_MAX, 0.f, d.name).x + fs * 0.4f);
    }
    note_w += fs * 0.6f;
    const float cell_w = std::clamp((ImGui::GetContentRegionAvail().x - label_w - note_w) / widest, 2.f, fs * 1.6f);
    const float cell_h = fs * 1.15f;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (const QkvRow& d : rows) {
        const ImVec2 p = ImGui::GetCursorScreenPos();
        dl->AddText(big_font(), name_px, ImVec2(p.x, p.y), pal.text, d.name);
        const int hov = draw_value_strip(dl, ImVec2(p.x + label_w, p.y), d.x, d.n, cell_w, cell_h, scale, pal.dark);
        const ImU32 nc = d.cached ? state_color(RowState::computed, pal.dark) : pal.text_dim;
        dl->AddText(ImVec2(p.x + label_w + cell_w * widest + fs * 0.5f, p.y), nc, d.note.c_str());
        ImGui::Dummy(ImVec2(label_w + cell_w * widest + note_w, cell_h + 2));
        if (hov >= 0) ImGui::SetTooltip("%s[%d] = %.4f\n(token '%s', position %d)", d.name, hov, d.x[hov], tok.c_str(), pos);
    }
    return scale;
}

}  // namespace

void draw_qkv_panel(AppState& app) {
    const Palette& pal = palette();
    const kv::StepTrace* t = app.main.last();
    if (!t) {
        text_wrapped("Press Space to run the prefill. Each token's hidden state is multiplied by three weight "
                           "matrices: q (the question it asks), k (the key it offers) and v (the value it carries).");
        return;
    }
    const kv::HeadTrace* h = t->find_head(app.vs.layer, app.vs.head);
    if (!h || h->q.rows() == 0) {
        text_wrapped("Layer %d head %d was not recorded at this step (large models record only the selected "
                           "head): step again to see it.", app.vs.layer, app.vs.head);
        return;
    }
    const int r = static_cast<int>(h->q.rows()) - 1;  // the newest token's row
    const int pos = h->first_pos + r;
    const int hd = static_cast<int>(h->q.cols());  // q and k width (MLA: d_n + d_R)
    const int n_in = static_cast<int>(t->input_ids.size());
    const int in_idx = pos - t->start_pos;  // the token that entered the model at pos (a draft may be rolled back since)
    const std::string tok = in_idx >= 0 && in_idx < n_in ? app.token_text(t->input_ids[size_t(in_idx)]) : "?";
    if (app.model && app.model->config.is_mla())
        text_wrapped("Layer %d, head %d, token '%s' at position %d: q and k %d wide, v %d.", h->layer, h->head,
                     tok.c_str(), pos, hd, static_cast<int>(h->v.cols()));
    else
        text_wrapped("Layer %d, head %d (kv head %d), token '%s' at position %d, head_dim %d.", h->layer, h->head,
                     h->kv_head, tok.c_str(), pos, hd);
    if (n_in > 1) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(pal.text_dim));
        text_wrapped(t->phase == kv::Phase::prefill ? "(prefill: %d tokens at once; last shown)"
                           : t->cache_on                  ? "(%d tokens in one pass, drafts checked; last shown)"
                                                          : "(cache off: %d tokens again; last shown)",
                           n_in);
        ImGui::PopStyleColor();
    }
    const std::vector<QkvRow> rows = qkv_rows(app, *h, r, pos);
    const float scale = draw_qkv_rows(rows, tok, pos);
    draw_diverging_legend(scale, pal.dark, ImGui::GetFontSize() * 8);
    if (app.model && app.model->config.is_mla()) draw_mla_note(app.model->config, pos);
    else if (h->k_before_rope.rows() > r) draw_rope_note(pos);
    if (h->recompute_max_diff >= 0.f) {
        ImGui::PushStyleColor(ImGuiCol_Text, to_vec4(state_color(RowState::recomputed, pal.dark)));
        text_wrapped("recomputed K/V equal the cached ones: max |diff| = %.1e", h->recompute_max_diff);
        ImGui::PopStyleColor();
    }
}

}  // namespace kvui
