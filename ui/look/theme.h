// Dark and light themes sized for a classroom: large paddings, thick borders,
// high-contrast text. palette() gives the colours panels use beyond ImGui's style.
#pragma once
#include <imgui.h>

#include <string>

namespace kvui {

struct Palette {
    bool dark = true;
    ImU32 text, text_dim, grid, panel_bg, accent, good, bad, chip, chip_current, prefill, decode;
    ImU32 cached_line, uncached_line;  // work chart: with cache / without
    ImVec4 clear;                      // the app clears to this; panels are transparent over it
};

// ui_scale multiplies paddings, spacings and roundings (font px / 18).
// Software OpenGL (llvmpipe under Xvfb, remote desktops) pays per pixel: with it,
// apply_theme turns off anti-aliased lines and fills (about 15% of a frame there).
void set_software_renderer(bool software);
void apply_theme(bool dark, float ui_scale = 1.f);
// The window's text size in px: 1/50 of its height (13..44 px, rounded), times the
// user's font scale. The window and its headless tests both take it from here.
float window_font_px(float window_h, float font_scale);
// A projector's font: the window holds fewer than 36 lines of its text (1280x720 at
// font scale 1.5 holds 34, 1920x1080 at 2 holds 24). Panels then keep to one header
// line and drop the keys their tags already say (docs/design.md, "The presenter rule").
bool presenter_font(float window_h, float font_px);
bool presenter_font();  // of the current frame: the display's height, the current font
const Palette& palette();
// Puts the next item on the same line when `w` pixels still fit, else on a new one
// (rows of controls that wrap at a large font instead of being clipped).
void flow(float w);
// ImGui::TextWrapped, but lines break only at spaces (and at '\n'): 1.86 also breaks
// after '.', so "13.0 KiB" could end a line with "13." and start the next with "0 KiB".
// A word wider than the line is broken where ImGui would break it.
// It wraps where TextWrapped would: at a pushed PushTextWrapPos, else the content edge.
void text_wrapped(const char* fmt, ...) IM_FMTARGS(1);
void text_wrapped_colored(ImU32 col, const char* fmt, ...) IM_FMTARGS(2);
// What they draw: text with '\n' where its lines end, none wider than `width` pixels in
// the current font (a longer word is broken inside).
std::string wrap_text(const std::string& text, float width);

}  // namespace kvui
