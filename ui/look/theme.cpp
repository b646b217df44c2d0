// Themes: start from ImGui's dark/light styles, then enlarge and recolour.
#include "ui/look/theme.h"

#include <imgui_internal.h>

#include "ui/look/colormap.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace kvui {

namespace {
Palette g_palette;
bool g_software_gl = false;
}  // namespace

void set_software_renderer(bool software) { g_software_gl = software; }

const Palette& palette() { return g_palette; }

float window_font_px(float window_h, float font_scale) {
    return std::round(std::clamp(window_h / 50.f, 13.f, 44.f)) * font_scale;
}

bool presenter_font(float window_h, float font_px) { return window_h < 36.f * font_px; }

bool presenter_font() { return presenter_font(ImGui::GetIO().DisplaySize.y, ImGui::GetFontSize()); }

void apply_theme(bool dark, float ui_scale) {
    ImGuiStyle style;
    if (dark) ImGui::StyleColorsDark(&style);
    else ImGui::StyleColorsLight(&style);
    style.WindowRounding = 4.f;
    style.FrameRounding = 4.f;
    style.GrabRounding = 4.f;
    style.WindowPadding = ImVec2(8, 6);
    style.FramePadding = ImVec2(7, 4);
    style.ItemSpacing = ImVec2(8, 5);
    style.WindowBorderSize = 1.f;
    style.FrameBorderSize = dark ? 0.f : 1.f;
    style.ScrollbarSize = 14.f;
    style.AntiAliasedLines = style.AntiAliasedLinesUseTex = style.AntiAliasedFill = !g_software_gl;
    ImVec4* c = style.Colors;
    if (dark) {
        c[ImGuiCol_WindowBg] = ImVec4(0.09f, 0.10f, 0.12f, 1.f);
        c[ImGuiCol_ChildBg] = ImVec4(0.f, 0.f, 0.f, 0.f);  // children show the window (less fill for software GL)
        c[ImGuiCol_TitleBg] = ImVec4(0.15f, 0.17f, 0.21f, 1.f);
        c[ImGuiCol_TitleBgActive] = ImVec4(0.15f, 0.17f, 0.21f, 1.f);
        c[ImGuiCol_Text] = ImVec4(0.94f, 0.94f, 0.95f, 1.f);
    } else {
        c[ImGuiCol_WindowBg] = ImVec4(0.98f, 0.98f, 0.97f, 1.f);
        c[ImGuiCol_ChildBg] = ImVec4(0.f, 0.f, 0.f, 0.f);
        c[ImGuiCol_TitleBg] = ImVec4(0.86f, 0.88f, 0.91f, 1.f);
        c[ImGuiCol_TitleBgActive] = ImVec4(0.86f, 0.88f, 0.91f, 1.f);
        c[ImGuiCol_Text] = ImVec4(0.05f, 0.05f, 0.07f, 1.f);
    }
    c[ImGuiCol_TitleBgCollapsed] = c[ImGuiCol_TitleBg];
    // Panels tile the window, so the app clears to the panel colour and the panels
    // draw no background: half the fill work for software OpenGL (Xvfb, llvmpipe).
    const ImVec4 clear = c[ImGuiCol_WindowBg];
    c[ImGuiCol_WindowBg] = ImVec4(0.f, 0.f, 0.f, 0.f);
    if (ui_scale > 0.f && ui_scale != 1.f) style.ScaleAllSizes(ui_scale);
    ImGui::GetStyle() = style;

    Palette& p = g_palette;
    p.dark = dark;
    p.text = ImGui::ColorConvertFloat4ToU32(c[ImGuiCol_Text]);
    p.text_dim = dark ? IM_COL32(165, 168, 178, 255) : IM_COL32(85, 88, 98, 255);
    p.grid = dark ? IM_COL32(80, 84, 94, 255) : IM_COL32(190, 192, 200, 255);
    p.panel_bg = ImGui::ColorConvertFloat4ToU32(clear);
    p.clear = clear;
    p.accent = dark ? IM_COL32(120, 190, 255, 255) : IM_COL32(20, 90, 190, 255);
    p.good = dark ? IM_COL32(90, 200, 140, 255) : IM_COL32(0, 130, 80, 255);
    p.bad = dark ? IM_COL32(255, 110, 100, 255) : IM_COL32(200, 30, 30, 255);
    p.chip = dark ? IM_COL32(48, 52, 62, 255) : IM_COL32(225, 228, 235, 255);
    p.chip_current = dark ? IM_COL32(70, 95, 140, 255) : IM_COL32(175, 205, 245, 255);
    p.prefill = dark ? IM_COL32(150, 130, 230, 255) : IM_COL32(100, 70, 200, 255);
    p.decode = dark ? IM_COL32(90, 200, 140, 255) : IM_COL32(0, 130, 80, 255);
    p.cached_line = state_color(RowState::read, dark);
    p.uncached_line = state_color(RowState::recomputed, dark);
}

void flow(float w) {
    const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
    const float sp = ImGui::GetStyle().ItemSpacing.x;
    if (ImGui::GetItemRectMax().x + sp * 3 + w <= right) ImGui::SameLine(0, sp * 3);
}

namespace {

// One paragraph (no '\n') into lines no wider than w, breaking at spaces.
void wrap_paragraph(std::string& out, const char* b, const char* e, float w) {
    ImFont* font = ImGui::GetFont();
    const float size = ImGui::GetFontSize();
    auto width = [&](const char* x, const char* y) { return font->CalcTextSizeA(size, FLT_MAX, 0.f, x, y).x; };
    const char* line = b;  // the current line starts here
    const char* word = b;  // the next word starts here
    while (true) {
        const char* word_end = std::find(word, e, ' ');
        if (word == line) {  // first on its line: a word wider than the line breaks inside
            while (width(line, word_end) > w) {
                const char* cut = font->CalcWordWrapPositionA(size / font->FontSize, line, word_end, w);
                if (cut <= line) {  // not even one character fits: one code point per line
                    cut = line + 1;
                    while (cut < word_end && (*cut & 0xC0) == 0x80) ++cut;
                }
                if (cut >= word_end) break;
                out.append(line, cut).push_back('\n');
                line = word = cut;
            }
        } else if (width(line, word_end) > w) {  // the word goes to the next line
            out.append(line, word - 1).push_back('\n');
            line = word;
            continue;
        }
        if (word_end == e) break;
        word = word_end + 1;
    }
    out.append(line, e);
}

}  // namespace

namespace {

void text_wrapped_v(const char* fmt, va_list args) {
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    std::string text(n > 0 ? static_cast<size_t>(n) : 0, '\0');
    if (n > 0) std::vsnprintf(text.data(), text.size() + 1, fmt, args);
    // The width TextWrapped would use: the pushed wrap position (window coordinates),
    // else the end of the content region (or the table cell).
    const ImGuiWindow* win = ImGui::GetCurrentWindow();
    const float wrap = win->DC.TextWrapPos;
    const float right = wrap > 0.f ? wrap + win->Pos.x - win->Scroll.x
                                   : ImGui::GetCursorScreenPos().x + ImGui::GetContentRegionAvail().x;
    const std::string out = wrap_text(text, std::max(right - ImGui::GetCursorScreenPos().x, ImGui::GetFontSize()));
    ImGui::TextUnformatted(out.c_str(), out.c_str() + out.size());
}

}  // namespace

std::string wrap_text(const std::string& text, float width) {
    std::string out;
    const char* b = text.c_str();
    const char* end = b + text.size();
    while (true) {
        const char* nl = std::find(b, end, '\n');
        wrap_paragraph(out, b, nl, width);
        if (nl == end) break;
        out.push_back('\n');
        b = nl + 1;
    }
    return out;
}

void text_wrapped(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    text_wrapped_v(fmt, args);
    va_end(args);
}

void text_wrapped_colored(ImU32 col, const char* fmt, ...) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::ColorConvertU32ToFloat4(col));
    va_list args;
    va_start(args, fmt);
    text_wrapped_v(fmt, args);
    va_end(args);
    ImGui::PopStyleColor();
}

}  // namespace kvui
