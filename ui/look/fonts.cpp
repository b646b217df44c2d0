// Fonts are content: the text a class types (accents, Greek, Cyrillic, Devanagari,
// CJK) must be drawable. The atlas starts with DejaVu Sans for ASCII, Latin-1, general
// punctuation and U+FFFD (about 330 glyphs per size, as small as before). Every other
// character the window's text holds (prompt, tokens, unknown words) is added when it
// first appears, and the atlas is rebuilt before the next frame: from DejaVu (Latin
// extensions, Greek, Cyrillic, symbols), Lohit Devanagari merged in when the text has
// Devanagari, Droid Sans Fallback when it has CJK, kana or Hangul. A Japanese prompt
// adds its own characters, not the 20,000 of a CJK font.
// Whatever no font has is drawn as U+FFFD (ImGui's fallback when the atlas has it).
// ImWchar is 16-bit in Debian's ImGui 1.86: characters above U+FFFF (emoji) are
// drawn as U+FFFD; the tokens panel names their code point in its tooltip.
#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stb_truetype.h>
#include <set>

#include "core/text/utf8.h"
#include "ui/look/fonts.h"

namespace kvui {

namespace {

// Debian's paths (fonts-dejavu-core, fonts-lohit-deva, fonts-droid-fallback).
constexpr const char* kRegular = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
constexpr const char* kBold = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
constexpr const char* kDevanagari = "/usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf";
constexpr const char* kFallback = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf";

// Loaded at every start (pairs, inclusive, zero-terminated).
constexpr ImWchar kFixedRanges[] = {
    0x0020, 0x00FF,  // Basic Latin, Latin-1 (café, naïve)
    0x2000, 0x206F,  // General Punctuation
    0xFFFD, 0xFFFD,  // the replacement character: ImGui's fallback when present
    0,
};

// DejaVu Sans: (ascent - descent) / em = (1901 + 483) / 2048.
constexpr float kDejaVuHeightPerEm = (1901.f + 483.f) / 2048.f;

bool is_devanagari(char32_t c) { return (c >= 0x0900 && c <= 0x097F) || (c >= 0xA8E0 && c <= 0xA8FF); }
// CJK, kana, Hangul, full-width forms: the scripts DejaVu does not have.
bool is_cjk(char32_t c) { return (c >= 0x1100 && c <= 0x11FF) || c >= 0x2E80; }

// The atlas keeps pointers to the ranges until it is cleared: they live here.
ImVector<ImWchar> g_ranges;

// (ascent - descent) / em of a font file, as stb_truetype reads it (1.0 when unreadable);
// read once per path and process.
float height_per_em(const char* path) {
    static std::map<std::string, float> known;
    if (const auto it = known.find(path); it != known.end()) return it->second;
    float& out = known[path];
    out = 1.f;
    std::ifstream f(path, std::ios::binary);
    const std::vector<unsigned char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    stbtt_fontinfo info;
    const int off = data.empty() ? -1 : stbtt_GetFontOffsetForIndex(data.data(), 0);
    if (off < 0 || !stbtt_InitFont(&info, data.data(), off)) return out;
    int ascent = 0, descent = 0, gap = 0;
    stbtt_GetFontVMetrics(&info, &ascent, &descent, &gap);
    const float per_unit = stbtt_ScaleForMappingEmToPixels(&info, 1.f);  // 1 / units per em
    if (ascent > descent) out = float(ascent - descent) * per_unit;
    return out;
}

bool exists(const char* path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
}

void warn_missing(const char* path) {
    static std::set<std::string> told;  // once per path and process
    if (told.insert(path).second)
        std::fprintf(stderr, "kvscope: font %s not found; characters it covers are drawn as a replacement box\n",
                     path);
}

// One size of the UI font: the Latin font, then the others merged into it.
ImFont* add_font(ImFontAtlas& atlas, const char* main, float px, bool devanagari, bool cjk) {
    ImFont* f = nullptr;
    if (exists(main)) f = atlas.AddFontFromFileTTF(main, px, nullptr, g_ranges.Data);
    if (!f) {
        warn_missing(main);
        ImFontConfig cfg;
        cfg.SizePixels = std::max(8.f, px);
        return atlas.AddFontDefault(&cfg);
    }
    for (const char* extra : {devanagari ? kDevanagari : nullptr, cjk ? kFallback : nullptr}) {
        if (!extra) continue;
        if (!exists(extra)) {
            warn_missing(extra);
            continue;
        }
        ImFontConfig cfg;
        cfg.MergeMode = true;  // adds the glyphs the fonts before it lack, overwrites none
        // ImGui sizes a font by ascent - descent; Lohit Devanagari's is 1.6 em, DejaVu's
        // 1.16 em, so at the same px its letters would be a third smaller. Sized so
        // that its em matches DejaVu's.
        const float px_em = px / kDejaVuHeightPerEm;
        atlas.AddFontFromFileTTF(extra, px_em * height_per_em(extra), &cfg, g_ranges.Data);
    }
    return f;
}

}  // namespace

bool in_fixed_glyph_ranges(char32_t c) {
    for (size_t i = 0; kFixedRanges[i]; i += 2)
        if (c >= kFixedRanges[i] && c <= kFixedRanges[i + 1]) return true;
    return false;
}

void build_fonts(float px, const std::vector<char32_t>& extra) {
    ImGuiIO& io = ImGui::GetIO();
    io.Fonts->Clear();
    ImFontGlyphRangesBuilder b;
    b.AddRanges(kFixedRanges);
    bool devanagari = false, cjk = false;
    for (char32_t c : extra) {
        if (c > 0xFFFF) continue;  // not representable in 16-bit ImWchar
        b.AddChar(static_cast<ImWchar>(c));
        devanagari = devanagari || is_devanagari(c);
        cjk = cjk || is_cjk(c);
    }
    g_ranges.clear();
    b.BuildRanges(&g_ranges);
    add_font(*io.Fonts, kRegular, px, devanagari, cjk);
    add_font(*io.Fonts, kBold, px * 1.3f, devanagari, cjk);
    io.Fonts->Build();
}

bool note_glyphs_needed(AppState& app) {
    GlyphNeeds& g = app.vs.glyphs;
    const bool prompt_same = g.scanned_prompt == app.vs.prompt_text;
    const bool tokens_same = g.scanned_model == app.model && g.scanned_main == app.main.tokens &&
                             g.scanned_other == app.other.tokens;
    if (prompt_same && tokens_same) return false;
    std::string text = app.vs.prompt_text;
    if (app.model && app.model->tokenizer) {
        for (const auto* ids : {&app.main.tokens, &app.other.tokens})
            for (int id : *ids) text += app.model->tokenizer->token_bytes(id);
    }
    for (const std::string& w : app.unknown_words) text += w;
    std::vector<char32_t> add;
    for (char32_t c : kv::utf8_code_points(text))
        if (c <= 0xFFFF && !in_fixed_glyph_ranges(c) && !std::binary_search(g.loaded.begin(), g.loaded.end(), c))
            add.push_back(c);
    g.scanned_prompt = app.vs.prompt_text;
    g.scanned_model = app.model;
    g.scanned_main = app.main.tokens;
    g.scanned_other = app.other.tokens;
    if (add.empty() || g.loaded.size() >= GlyphNeeds::kMax) return false;
    g.loaded.insert(g.loaded.end(), add.begin(), add.end());
    std::sort(g.loaded.begin(), g.loaded.end());
    g.loaded.erase(std::unique(g.loaded.begin(), g.loaded.end()), g.loaded.end());
    if (g.loaded.size() > GlyphNeeds::kMax) g.loaded.resize(GlyphNeeds::kMax);
    app.vs.font_changed = true;
    return true;
}

ImFont* big_font() {
    ImGuiIO& io = ImGui::GetIO();
    return io.Fonts->Fonts.Size > 1 ? io.Fonts->Fonts[1] : io.Fonts->Fonts[0];
}

}  // namespace kvui
