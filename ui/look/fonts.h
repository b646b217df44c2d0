// Fonts are content: the window's atlas (ui/look/fonts.cpp) holds the glyphs of
// the text a class types, rebuilt when new characters appear.
#pragma once
#include <vector>

#include "ui/state/app_state.h"

struct ImFont;

namespace kvui {

// Rebuilds the atlas: DejaVu Sans at px (and a bold one 1.3x) for the fixed ranges
// (Latin and its extensions, Greek, Cyrillic, punctuation, U+FFFD), Lohit Devanagari
// merged in, and for `extra` code points (those the text needs beyond the fixed
// ranges: CJK, kana, Hangul ...) Droid Sans Fallback too. Falls back to ImGui's
// default font when DejaVu is missing. The GL backend must re-create its texture after.
void build_fonts(float px, const std::vector<char32_t>& extra = {});
ImFont* big_font();
bool in_fixed_glyph_ranges(char32_t c);
// Adds to app.vs.glyphs the characters of the prompt, the tokens and the unknown
// words that are beyond the fixed ranges and not loaded yet; when there are any, sets
// app.vs.font_changed so the app rebuilds the atlas before the next frame. Cheap when
// nothing changed (it compares with what it scanned last).
bool note_glyphs_needed(AppState& app);

}  // namespace kvui
