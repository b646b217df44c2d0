// The serving view's other panels (ui/state/serve_view.h has the model): the selected
// sequence's block table with arrows into the pool grid, the contiguous reservation
// strip beside the paged pool, the step's counters, and the request list (the grid's
// legend, and its edit buffer).
#include <imgui.h>
#include <imgui_internal.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ui/look/colormap.h"
#include "ui/look/theme.h"
#include "ui/panels/panels.h"

namespace kvui {

namespace {

std::string seq_name(const kv::SeqSnap& q) {
    return "r" + std::to_string(q.request) + (q.fork > 0 ? " f" + std::to_string(q.fork) : "");
}

const char* state_word(kv::SeqState s) {
    switch (s) {
    case kv::SeqState::pending: return "not arrived";
    case kv::SeqState::waiting: return "waiting";
    case kv::SeqState::running: return "running";
    case kv::SeqState::finished: return "finished";
    }
    return "";
}

void arrow(ImDrawList* dl, ImVec2 a, ImVec2 b, ImU32 col, float t) {
    dl->AddLine(a, b, col, t);
    const float dx = b.x - a.x, dy = b.y - a.y, n = std::sqrt(dx * dx + dy * dy);
    if (n < 1.f) return;
    const float ux = dx / n, uy = dy / n, h = t * 4.f;
    dl->AddTriangleFilled(b, ImVec2(b.x - ux * h - uy * h * 0.6f, b.y - uy * h + ux * h * 0.6f),
                          ImVec2(b.x - ux * h + uy * h * 0.6f, b.y - uy * h - ux * h * 0.6f), col);
}

}  // namespace

void draw_serve_table(AppState& app) {
    ServeView& v = app.serve;
    const kv::PoolSnapshot* s = v.pool();
    if (!s) {
        text_wrapped("Step (Space) to admit the first requests.");
        return;
    }
    // The sequences to pick from, as buttons in their colours.
    for (const kv::SeqSnap& q : s->seqs) {
        const std::string name = seq_name(q);
        flow(ImGui::CalcTextSize(name.c_str()).x + ImGui::GetStyle().FramePadding.x * 2);
        ImGui::PushStyleColor(ImGuiCol_Button, request_color(q.request, q.id == v.selected ? 1.f : 0.35f));
        ImGui::PushStyleColor(ImGuiCol_Text, q.id == v.selected ? IM_COL32(0, 0, 0, 255) : palette().text);
        if (ImGui::Button((name + "##seq" + std::to_string(q.id)).c_str())) v.selected = q.id;
        ImGui::PopStyleColor(2);
    }
    v.selected = std::clamp(v.selected, 0, int(s->seqs.size()) - 1);
    const kv::SeqSnap& q = s->seqs[size_t(v.selected)];
    text_wrapped("%s: %s, %d positions held, %d prefix blocks hit, %d preemptions", seq_name(q).c_str(),
                 state_word(q.state), q.n_pos, q.prefix_blocks_hit, q.preemptions);
    if (q.table.empty()) return;
    const float f = ImGui::GetFontSize();
    ImDrawList* fg = ImGui::GetForegroundDrawList();
    const ServeDrawn& d = app.serve_drawn;
    for (size_t i = 0; i < q.table.size(); ++i) {
        char cell[32];
        std::snprintf(cell, sizeof cell, "%zu -> #%d", i, q.table[i]);
        flow(ImGui::CalcTextSize(cell).x + f);
        ImGui::PushStyleColor(ImGuiCol_Button, request_color(q.request, 0.85f));
        ImGui::PushStyleColor(ImGuiCol_Text, IM_COL32(0, 0, 0, 255));
        ImGui::Button(cell);
        ImGui::PopStyleColor(2);
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip("logical block %zu (positions %zu-%zu) lives in physical block #%d", i,
                              i * size_t(s->block_size), (i + 1) * size_t(s->block_size) - 1, q.table[i]);
        // An arrow from the entry into its block in the grid (drawn this frame, above).
        const int b = q.table[i];
        if (d.drawn && size_t(b) < d.blocks.size() && d.blocks[size_t(b)].y < ImGui::GetItemRectMin().y) {
            const Rect& r = d.blocks[size_t(b)];
            const ImVec2 from((ImGui::GetItemRectMin().x + ImGui::GetItemRectMax().x) * 0.5f, ImGui::GetItemRectMin().y);
            arrow(fg, from, ImVec2(r.x + r.w * 0.5f, r.y + r.h), request_color(q.request, 0.7f), std::max(2.f, f * 0.1f));
        }
    }
}

void draw_serve_strip(AppState& app) {
    const ContiguousStrip c = contiguous_strip(app.serve);
    if (!app.serve.run || c.pool_bytes == 0) return;
    const Palette& pal = palette();
    text_wrapped("Contiguous reserves %s (p + N slots a sequence) for %d sequences and uses %s of it (%.0f%% waste); "
                 "this pool's %s holds %d of their reservations at once. Paged: %s in blocks.",
                 human_bytes(double(c.reserved_bytes)).c_str(), c.running, human_bytes(double(c.used_bytes)).c_str(),
                 c.waste_share() * 100.0, human_bytes(double(c.pool_bytes)).c_str(), c.fit,
                 human_bytes(double(c.paged_bytes)).c_str());
    const float f = ImGui::GetFontSize();
    const float label_w = ImGui::CalcTextSize("contiguous ").x;
    const float w = ImGui::GetContentRegionAvail().x - label_w;
    const double scale = w / double(std::max(c.pool_bytes, c.reserved_bytes));
    ImDrawList* dl = ImGui::GetWindowDrawList();
    // One bar a line: its label, the pool's bytes as the track (a line at its end), the segments.
    auto bar = [&](const char* label, auto&& body) {
        ImGui::TextUnformatted(label);
        ImGui::SameLine(label_w + ImGui::GetStyle().WindowPadding.x);
        const ImVec2 p = ImGui::GetCursorScreenPos();
        const float h = f * 1.05f, x_end = p.x + float(double(c.pool_bytes) * scale);
        dl->AddRectFilled(p, ImVec2(x_end, p.y + h), pal.chip);
        body(p, h);
        dl->AddLine(ImVec2(x_end, p.y - 2), ImVec2(x_end, p.y + h + 2), pal.text, 2.f);
        ImGui::Dummy(ImVec2(w, h));
    };
    const int64_t slot = app.serve.run->slot_bytes;
    bar("contiguous", [&](ImVec2 p, float h) {
        double x = p.x;
        for (const StripSeq& s : c.seqs) {
            const double rw = double(s.reserved_slots * slot) * scale, uw = double(s.used_slots * slot) * scale;
            dl->AddRectFilled(ImVec2(float(x), p.y), ImVec2(float(x + uw), p.y + h), request_color(s.request));
            dl->AddRect(ImVec2(float(x), p.y), ImVec2(float(x + rw), p.y + h), request_color(s.request), 0, 0, 2.f);
            x += rw;
        }
    });
    bar("paged", [&](ImVec2 p, float h) {
        dl->AddRectFilled(p, ImVec2(p.x + float(double(c.paged_bytes) * scale), p.y + h), pal.text_dim);
    });
}

void draw_serve_counters(AppState& app) {
    const ServeCounters c = serve_counters(app.serve);
    if (!app.serve.step()) {
        text_wrapped("Before the first step: the pool is empty.");
        return;
    }
    const std::pair<const char*, std::string> rows[] = {
        {"tokens (seqs)", std::to_string(c.tokens) + " (" + std::to_string(c.batch) + ")"},
        {"used / free", std::to_string(c.blocks.used) + " / " + std::to_string(c.blocks.free)},
        {"cached / shared", std::to_string(c.blocks.cached) + " / " + std::to_string(c.blocks.shared)},
        {"waste slots", std::to_string(c.waste_slots)},
        {"prefix hits", std::to_string(c.prefix_hits)},
        {"copies now", std::to_string(c.copies)},
        {"preempted", std::to_string(c.preempted) + " (all " + std::to_string(c.preemptions) + ")"},
        {"ms batch", ms_text(c.ms)},
        {"ms one alone", ms_text(c.single_ms)},
    };
    const float f = ImGui::GetFontSize();
    if (ImGui::GetContentRegionAvail().x > 30.f * f) {  // a wide panel: the pairs flow along lines
        for (const auto& [name, value] : rows) {
            const std::string pair = std::string(name) + " " + value;
            flow(ImGui::CalcTextSize(pair.c_str()).x + f);
            ImGui::TextColored(to_vec4(palette().text_dim), "%s", name);
            ImGui::SameLine();
            ImGui::TextUnformatted(value.c_str());
            ImGui::SameLine(0, f);
            ImGui::Dummy(ImVec2(0, 0));
        }
        return;
    }
    if (!ImGui::BeginTable("##serve_counters", 2, ImGuiTableFlags_RowBg | ImGuiTableFlags_SizingStretchProp)) return;
    for (const auto& [name, value] : rows) {
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::TextColored(to_vec4(palette().text_dim), "%s", name);
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(value.c_str());
    }
    ImGui::EndTable();
}

std::string ms_text(double ms) {
    char b[32];
    std::snprintf(b, sizeof b, ms < 1.0 ? "%.3f" : "%.2f", ms);
    return b;
}

}  // namespace kvui
