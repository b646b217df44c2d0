// Heat strips: a row of values drawn as coloured cells (gaps when the cells are wide
// enough, a solid strip when not), hover reports the value; and colour legends.
#pragma once
#include <imgui.h>

#include <string>

namespace kvui {

// Draws n values at pos, each cell (cell_w x cell_h), coloured by value/scale on
// the diverging map. Returns the hovered index or -1 (the caller shows a tooltip).
int draw_value_strip(ImDrawList* dl, ImVec2 pos, const float* vals, int n, float cell_w, float cell_h,
                     float scale, bool dark);
// A horizontal legend: "-scale [blue..white..orange] +scale", then a Dummy item.
void draw_diverging_legend(float scale, bool dark, float width);
// "0 [cividis ramp] 1" for attention weights.
void draw_sequential_legend(float width, const char* label);
// Largest |value| over rows, at least 1e-6 (shared colour scale).
float abs_max(const float* vals, int n);
// A dashed rectangle outline from a to b (a drafted token, a row written this round).
void dashed_rect(ImDrawList* dl, ImVec2 a, ImVec2 b, ImU32 col, float th);
// A small filled square in a colour followed by a text label, on one line.
void color_key(ImU32 color, const char* label);

}  // namespace kvui
