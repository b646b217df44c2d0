// Colour maps and the three cache-row state colours. All colour-blind safe:
// a blue-white-orange diverging map (PuOr-like) for q/k/v values, a cividis-like
// sequential map for attention weights, and Okabe-Ito hues for row states.
#pragma once
#include <imgui.h>

#include "ui/state/app_state.h"

namespace kvui {

// t in [-1, 1]: -1 blue, 0 near white (or near black on dark themes), +1 orange.
ImU32 diverging(float t, bool dark);
// t in [0, 1]: dark blue -> grey -> yellow (cividis-like, monotone lightness).
ImU32 sequential(float t);
ImVec4 to_vec4(ImU32 c);
ImU32 with_alpha(ImU32 c, float a);
// Read from cache: blue; computed now: orange; recomputed: magenta; evicted: grey.
ImU32 state_color(RowState s, bool dark);
// The label drawn next to a row, e.g. "cache", "new", "recomputed".
const char* state_label(RowState s);

}  // namespace kvui
