// compute_layout: the normal layout's slots from the window size, the font size and
// what each panel's content asks for (ui/state/layout.h has the rule). Pure: no ImGui.
// A column is a list of items; pinned ones stand alone, neighbours between them may
// share a slot as tabs. Every way of grouping a column is tried (at most 8): the one
// that fits with the most slots wins; among those, the one whose lone panels matter
// most to the lesson, then the one with the most room left for the plots.
#include "ui/state/layout.h"

#include <algorithm>
#include <cmath>

namespace kvui {

namespace {

constexpr float kGap = 4.f;

// A tab bar (framed row + spacing) stands where a title bar would: a little taller.
float tab_extra(float f) { return 0.32f * f; }

bool flexible(PanelId p) { return p == PanelId::cache || p == PanelId::work; }

// How much it matters to the lesson that a panel stands alone (not behind a tab).
int priority(PanelId p) {
    switch (p) {
    case PanelId::tokens: return 10;
    case PanelId::narration: return 9;
    case PanelId::cache: return 7;
    case PanelId::work: return 6;
    case PanelId::qkv: return 5;
    case PanelId::next_token: return 4;
    case PanelId::memory: return 3;
    case PanelId::timeline: return 1;
    }
    return 0;
}

struct Item {
    PanelId id;
    PanelNeed need;
};

struct Group {
    std::vector<PanelId> panels;
    PanelNeed need;
    float timeline_want = 0;  // the timeline scrolls on purpose below this
    bool flex = false;
    float h = 0;
};

struct Plan {
    bool fits = false;
    std::vector<Group> groups;
    int alone = 0;        // sum of the priorities of the panels that stand alone
    float leftover = 0;   // room left over the minimums
};

PanelNeed need_of(const LayoutInput& in, PanelId p, float w) {
    PanelNeed est = estimate_need(p, in.font_px, in.tall_work);
    if (!in.need) return est;
    PanelNeed n = in.need(p, w);
    if (flexible(p)) return {std::max(est.min, n.min), std::max(est.min, n.min)};
    if (n.min <= 0) n.min = est.min;
    if (n.want <= 0) n.want = std::max(est.want, n.min);
    n.want = std::max(n.want, n.min);
    if (p == PanelId::timeline) n.min = std::min(n.min, est.min);  // it scrolls to the newest step
    return n;
}

// The groups of items for one grouping: bit i of `cuts` set = a cut after item i.
// Pinned items always stand alone.
std::vector<Group> group_items(const std::vector<Item>& items, unsigned cuts, float f) {
    std::vector<Group> gs;
    for (size_t i = 0; i < items.size(); ++i) {
        const bool cut_before = i == 0 || panel_pinned(items[i].id) || panel_pinned(items[i - 1].id) ||
                                (cuts >> (i - 1) & 1u);
        if (cut_before) gs.emplace_back();
        Group& g = gs.back();
        g.panels.push_back(items[i].id);
        g.flex = g.flex || flexible(items[i].id);
        g.need.min = std::max(g.need.min, items[i].need.min);
        g.need.want = std::max(g.need.want, items[i].need.want);
        if (items[i].id == PanelId::timeline) g.timeline_want = items[i].need.want;
    }
    for (Group& g : gs) {
        if (g.panels.size() < 2) continue;
        g.need.min += tab_extra(f);
        g.need.want += tab_extra(f);
        if (g.timeline_want > 0) g.timeline_want += tab_extra(f);
        std::sort(g.panels.begin(), g.panels.end(),
                  [](PanelId a, PanelId b) { return panel_key_number(a) < panel_key_number(b); });
    }
    return gs;
}

bool better(const Plan& a, const Plan& b) {  // a better than b
    if (a.fits != b.fits) return a.fits;
    if (a.groups.size() != b.groups.size()) return a.groups.size() > b.groups.size();
    if (a.alone != b.alone) return a.alone > b.alone;
    return a.leftover > b.leftover;
}

// The best grouping of a column of height A; one_group: all unpinned items share one slot.
Plan plan_column(const std::vector<Item>& items, float A, float f, bool one_group) {
    Plan best;
    best.leftover = -1e9f;
    const unsigned n_cuts = items.empty() ? 0u : static_cast<unsigned>(items.size() - 1);
    for (unsigned cuts = 0; cuts < (1u << n_cuts); ++cuts) {
        if (one_group && cuts != 0) break;
        Plan p;
        p.groups = group_items(items, cuts, f);
        float sum = kGap * static_cast<float>(p.groups.size() - 1);
        for (const Group& g : p.groups) {
            sum += g.need.min;
            if (g.panels.size() == 1) p.alone += priority(g.panels[0]);
        }
        p.leftover = A - sum;
        p.fits = p.leftover >= 0;
        if (cuts == 0 || better(p, best)) best = p;
    }
    return best;
}

// Heights: every group its minimum; what is left raises the content panels to what
// they want (most important first), then goes to the plots. A column that does not
// fit keeps its plots at their minimum and shares the rest among the others by their
// minimums (those then scroll).
void size_column(Plan& p, float A) {
    float rest = p.leftover;
    for (Group& g : p.groups) g.h = g.need.min;
    if (rest < 0) {
        // The pinned panels (what the lesson is about) keep their minimum while the
        // others keep at least a seventh of the column (a tab bar and a line or two);
        // below that both share by their minimums. Whoever gets less than its minimum
        // scrolls.
        float pinned = 0, others = 0;
        for (const Group& g : p.groups) (panel_pinned(g.panels[0]) ? pinned : others) += g.need.min;
        const float room = std::max(0.f, A - kGap * static_cast<float>(p.groups.size() - 1));
        const float for_others = std::max(std::min(others, room / 7.f), room - pinned);
        const float kp = pinned > 0 ? std::min(1.f, (room - for_others) / pinned) : 0.f;
        const float ko = others > 0 ? for_others / others : 0.f;
        for (Group& g : p.groups) {
            const float k = panel_pinned(g.panels[0]) ? kp : ko;
            g.h = k >= 1.f ? g.need.min : std::floor(g.need.min * k);
        }
        return;
    }
    auto raise = [&rest](Group& g, float to) {
        const float add = std::min(rest, to - g.h);
        if (add > 0) g.h += add, rest -= add;
    };
    // The plots a quarter above their minimum; the narration's big font when all of it
    // fits (a part would be wasted); the other content panels what they want, most
    // important first (more next-token bars, timeline rows); the plots the rest.
    for (Group& g : p.groups)
        if (g.flex) raise(g, std::floor(g.need.min * 1.25f));
    for (Group& g : p.groups)
        if (g.panels[0] == PanelId::narration && g.need.want - g.h <= rest) raise(g, g.need.want);
    std::vector<Group*> order;
    for (Group& g : p.groups)
        if (!g.flex && g.panels[0] != PanelId::narration) order.push_back(&g);
    std::stable_sort(order.begin(), order.end(),
                     [](const Group* a, const Group* b) { return priority(a->panels[0]) > priority(b->panels[0]); });
    for (Group* g : order) raise(*g, g->need.want);
    int n_flex = 0;
    for (const Group& g : p.groups) n_flex += g.flex;
    if (n_flex == 0) {  // a column of content only: the last grows
        if (!p.groups.empty()) p.groups.back().h += rest;
        return;
    }
    for (Group& g : p.groups)
        if (g.flex) g.h += std::floor(rest / static_cast<float>(n_flex));
}

void emit(Layout& L, const Plan& p, float x, float y, float w) {
    for (const Group& g : p.groups) {
        Slot s;
        s.r = {x, y, w, g.h};
        s.panels = g.panels;
        s.scrolls = g.h + 0.5f < g.need.min || g.h + 0.5f < g.timeline_want;
        L.slots.push_back(s);
        y += g.h + kGap;
    }
}

std::vector<Item> items_of(const LayoutInput& in, std::initializer_list<PanelId> ids, float w) {
    std::vector<Item> items;
    for (PanelId p : ids) items.push_back({p, need_of(in, p, w)});
    return items;
}

// The focus layout with the narration beside the large slot instead of under it: the
// tokens across the top, then the large slot (64% of the width) and the narration's
// column. Taken when the narration under the slot leaves the slot less than its
// content needs (the cache picture's rows at a projector's font): the slot gets the
// whole height under the tokens, at least 26 fonts wide, and the narration is whole.
bool place_narration_beside(Layout& L, const LayoutInput& in, float W, float top, float A) {
    const float f = in.font_px;
    const float nw = std::floor((W - 3 * kGap) * 0.36f), bw = W - 3 * kGap - nw;
    if (bw < 26.f * f) return false;
    const float th = need_of(in, PanelId::tokens, W - 2 * kGap).min;
    const float below = A - th - kGap;
    const std::vector<Item> big = items_of(
        in, {PanelId::cache, PanelId::qkv, PanelId::work, PanelId::next_token, PanelId::memory, PanelId::timeline}, bw);
    const Group g = group_items(big, 0u, f).front();
    if (need_of(in, PanelId::narration, nw).min > below) return false;
    const float y = top + th + kGap;
    L.slots.push_back(Slot{{kGap, top, W - 2 * kGap, th}, {PanelId::tokens}, false});
    L.slots.push_back(Slot{{kGap, y, bw, below}, g.panels, g.need.min > below + 0.5f});
    L.slots.push_back(Slot{{2 * kGap + bw, y, nw, below}, {PanelId::narration}, false});
    L.fits = g.need.min <= below + 0.5f;
    return true;
}

// The slots under controls of height ch.
Layout place(const LayoutInput& in, float W, float H, float ch, bool compact) {
    const float f = in.font_px;
    Layout L;
    L.compact_controls = compact;
    L.controls = {kGap, kGap, W - 2 * kGap, ch};
    const float top = L.controls.y + ch + kGap;
    const float A = std::max(f, H - top - kGap);
    const float left_w = std::floor((W - 3 * kGap) * 0.61f);
    const float right_w = W - 3 * kGap - left_w;
    if (!in.force_focus && right_w >= 20.f * f) {
        Plan lp = plan_column(
            items_of(in, {PanelId::tokens, PanelId::qkv, PanelId::cache, PanelId::narration}, left_w), A, f, false);
        Plan rp = plan_column(
            items_of(in, {PanelId::work, PanelId::next_token, PanelId::memory, PanelId::timeline}, right_w), A, f,
            false);
        // Hysteresis: back from the focus layout only with a line to spare in both
        // columns, so a size at the border does not flip between the two each frame.
        const float margin = in.last_mode == LayoutMode::focus ? f : 0.f;
        if (lp.leftover >= margin && rp.leftover >= margin) {
            size_column(lp, A);
            size_column(rp, A);
            emit(L, lp, kGap, top, left_w);
            emit(L, rp, 2 * kGap + left_w, top, right_w);
            L.mode = L.tab_groups() == 0 ? LayoutMode::tiled : LayoutMode::tabbed;
            return L;
        }
    }
    const float w = W - 2 * kGap;
    Plan fp = plan_column(items_of(in,
                                   {PanelId::tokens, PanelId::cache, PanelId::qkv, PanelId::work, PanelId::next_token,
                                    PanelId::memory, PanelId::timeline, PanelId::narration},
                                   w),
                          A, f, true);
    L.mode = LayoutMode::focus;
    if (!fp.fits && in.narration_beside && place_narration_beside(L, in, W, top, A)) return L;
    L.fits = fp.fits;
    size_column(fp, A);
    emit(L, fp, kGap, top, w);
    return L;
}

int rank(const Layout& L) {
    return (L.fits ? 1000 : 0) + (L.mode == LayoutMode::tiled ? 200 : L.mode == LayoutMode::tabbed ? 100 : 0) +
           static_cast<int>(L.slots.size());
}

}  // namespace

const char* panel_tab_label(PanelId p) {
    switch (p) {
    case PanelId::tokens: return "Tokens";
    case PanelId::cache: return "KV cache + attention";
    case PanelId::qkv: return "Q, K, V";
    case PanelId::work: return "Work / Scaling";
    case PanelId::next_token: return "Next token";
    case PanelId::memory: return "Memory";
    case PanelId::timeline: return "Timeline";
    case PanelId::narration: return "What just happened";
    }
    return "";
}

const char* panel_tab_short(PanelId p) {
    switch (p) {
    case PanelId::cache: return "Cache";
    case PanelId::qkv: return "QKV";
    case PanelId::work: return "Work";
    case PanelId::next_token: return "Next";
    case PanelId::memory: return "Memory";
    case PanelId::timeline: return "Time";
    default: return panel_tab_label(p);
    }
}

int panel_key_number(PanelId p) {
    switch (p) {
    case PanelId::cache: return 1;
    case PanelId::qkv: return 2;
    case PanelId::work: return 3;
    case PanelId::next_token: return 4;
    case PanelId::memory: return 5;
    case PanelId::timeline: return 6;
    default: return 0;
    }
}

bool panel_pinned(PanelId p) { return p == PanelId::tokens || p == PanelId::narration; }

const char* layout_mode_name(LayoutMode m) {
    switch (m) {
    case LayoutMode::tiled: return "tiled";
    case LayoutMode::tabbed: return "tabbed";
    case LayoutMode::focus: return "focus";
    }
    return "";
}

// In font sizes f; a title bar is 1.45 f, the window padding 0.67 f, a text line
// 1.28 f, a framed row 1.72 f (ui/look/theme.cpp scales the style with the font).
PanelNeed estimate_need(PanelId p, float f, bool tall_work) {
    const float frame = 1.45f * f + 0.67f * f;  // title bar and padding
    switch (p) {
    case PanelId::tokens: return {frame + 5.2f * f, frame + 5.2f * f};       // position, chip, badge, key
    case PanelId::narration: return {frame + 4.f * f, frame + 5.6f * f};     // 3 lines regular, 4 big
    case PanelId::qkv: return {frame + 8.4f * f, frame + 8.4f * f};          // header, q k v, legend, diff
    case PanelId::next_token: return {frame + 6.4f * f, frame + 13.2f * f};  // the choice, 3 of 10 bars + "more"
    case PanelId::memory: return {frame + 9.6f * f, frame + 9.6f * f};       // now, slider, three formula rows
    case PanelId::timeline: return {frame + 3.5f * f, frame + 3.5f * f};     // two rows of steps
    case PanelId::cache: return {frame + 11.f * f, frame + 11.f * f};        // header, key, rows
    case PanelId::work: {
        const float h = frame + (tall_work ? 17.f : 15.f) * f;  // tabs, metric, legend, chart, totals
        return {h, h};
    }
    }
    return {};
}

const Slot* Layout::slot_of(PanelId p) const {
    for (const Slot& s : slots)
        if (std::find(s.panels.begin(), s.panels.end(), p) != s.panels.end()) return &s;
    return nullptr;
}

std::vector<Rect> Layout::all() const {
    std::vector<Rect> r = {controls};
    for (const Slot& s : slots) r.push_back(s.r);
    return r;
}

int Layout::tab_groups() const {
    return static_cast<int>(std::count_if(slots.begin(), slots.end(), [](const Slot& s) { return s.tabs(); }));
}

Layout compute_layout(const LayoutInput& in) {
    const float W = std::max(in.W, 200.f), H = std::max(in.H, 200.f), f = in.font_px;
    const float line = f * 1.55f;  // a framed widget plus spacing
    const float cap = std::max(2 * line, H * 0.3f);
    const int control_rows = W < 80.f * f ? 4 : 3;
    const float full = std::clamp(in.controls_h > 0 ? in.controls_h + 2.f : control_rows * line + 12.f, line, cap);
    const float compact =
        std::clamp(in.controls_compact_h > 0 ? in.controls_compact_h + 2.f : 1.5f * line + 12.f, line, cap);
    Layout a = place(in, W, H, full, false);
    if (in.controls_expanded || a.mode == LayoutMode::tiled) return a;
    // The controls fold to one row when that shows more, or when nothing fits anyway,
    // or in the focus layout.
    Layout b = place(in, W, H, compact, true);
    // In the focus layout the large slot gets what the folded controls leave.
    return rank(b) > rank(a) || (rank(b) == rank(a) && (!a.fits || a.mode == LayoutMode::focus)) ? b : a;
}

Layout compute_layout(float W, float H, float font_px, float controls_h, bool tall_work) {
    LayoutInput in;
    in.W = W;
    in.H = H;
    in.font_px = font_px;
    in.controls_h = controls_h;
    in.tall_work = tall_work;
    return compute_layout(in);
}

}  // namespace kvui
