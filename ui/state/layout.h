// The normal layout's rule, as a pure function of the window size, the font size and
// the heights the content asks for (no ImGui here; ui/state/layout.cpp).
//
// Controls on top; under them two columns. Left: tokens, Q/K/V, the KV cache,
// narration. Right: work (or Scaling), next token, memory, timeline. The tokens (with
// their recompute badges) and the narration are what the lesson is about: they are
// always on screen, at the height their content needs. The other panels each get at
// least a readable height; when a column cannot hold them all, neighbours share one
// slot as tabs, fewest tabs first (the most panels on screen that fit). When even that
// fails, or the teacher asks (F), one column: tokens, one large slot with every other
// panel as a tab, narration. The teacher picks a tab with its number key or Tab.
// Units: pixels; f is the font size, the style scales with it (ui/look/theme.cpp).
#pragma once
#include <array>
#include <functional>
#include <vector>

namespace kvui {

struct Rect {
    float x = 0, y = 0, w = 0, h = 0;
    bool overlaps(const Rect& o) const {
        return x < o.x + o.w && o.x < x + w && y < o.y + o.h && o.y < y + h;
    }
    bool inside(float W, float H) const { return x >= 0 && y >= 0 && x + w <= W + 0.5f && y + h <= H + 0.5f; }
};

// The panels of the normal layout, in the order of their number keys after tokens.
enum class PanelId { tokens, cache, qkv, work, next_token, memory, timeline, narration };
constexpr int kPanelCount = 8;
constexpr std::array<PanelId, kPanelCount> kAllPanels = {PanelId::tokens,     PanelId::cache,  PanelId::qkv,
                                                         PanelId::work,       PanelId::next_token, PanelId::memory,
                                                         PanelId::timeline,   PanelId::narration};
inline int panel_index(PanelId p) { return static_cast<int>(p); }
const char* panel_tab_label(PanelId p);  // short, for tabs: "KV cache", "Q/K/V", ...
const char* panel_tab_short(PanelId p);  // shorter, where the labels would not fit: "Cache", "QKV", ...
// The number key that shows a panel (1-6: cache .. timeline), 0 for the pinned ones.
int panel_key_number(PanelId p);
bool panel_pinned(PanelId p);  // tokens and narration: never in a tab group

enum class LayoutMode {
    tiled,   // every panel on screen
    tabbed,  // two columns, some panels share a slot as tabs
    focus    // one column: tokens, one large tabbed slot, narration
};
const char* layout_mode_name(LayoutMode m);

// A place on screen for one panel, or for several as tabs (one shown at a time).
struct Slot {
    Rect r;
    std::vector<PanelId> panels;
    bool scrolls = false;  // the layout could not give the content all it asks: it scrolls
    bool tabs() const { return panels.size() > 1; }
};

// min: the least height at which nothing is clipped (the panel may show less, e.g.
// the top 3 next tokens of 10, or scroll to its newest item); want: all of it.
struct PanelNeed {
    float min = 0, want = 0;
};

struct LayoutInput {
    float W = 1280, H = 720, font_px = 18;
    // The controls' height measured last frame, all of them and the compact row
    // (0: not measured yet, estimated).
    float controls_h = 0.f, controls_compact_h = 0.f;
    bool controls_expanded = false;  // the teacher asked for all controls (M)
    bool tall_work = false;          // the Work slot shows the Scaling plot
    bool force_focus = false;        // F: the one-column focus layout whatever fits
    LayoutMode last_mode = LayoutMode::tiled;  // what the last frame used (hysteresis)
    bool narration_beside = true;    // the focus layout may put the narration beside the large
                                     // slot (not with two caches side by side in that slot)
    // The window heights (title bar included) a panel's content asks for at window
    // width w; 0: not known, the layout estimates them from the font size. For cache
    // and work, which take what is left, only a minimum above the estimate counts.
    std::function<PanelNeed(PanelId, float w)> need;
};

struct Layout {
    LayoutMode mode = LayoutMode::tiled;
    bool fits = true;               // every slot got at least its minimum (else some scroll)
    bool compact_controls = false;  // only the first row of controls (More / M shows all)
    Rect controls;
    std::vector<Slot> slots;
    const Slot* slot_of(PanelId p) const;
    std::vector<Rect> all() const;  // controls and every slot
    int tab_groups() const;
};

// Estimated needs from the font size alone: the readable minimum of cache and work
// (which take what is left), and what the others ask when `need` does not know.
PanelNeed estimate_need(PanelId p, float font_px, bool tall_work = false);

Layout compute_layout(const LayoutInput& in);
// The old signature (tests, tools): no measurements.
Layout compute_layout(float W, float H, float font_px, float controls_h = 0.f, bool tall_work = false);

}  // namespace kvui
