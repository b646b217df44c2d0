// Text beyond ASCII in the window (issue 17), under a headless ImGui context: with a
// Japanese, a Greek and a Devanagari prompt on a GPT-2-layout folder, every character
// of the prompt has a real glyph in the built atlas (not the fallback), what no font
// has falls back to U+FFFD rather than "?", only the characters the text needs are
// loaded beyond the fixed ranges (and the CJK font only for CJK), and the tokens panel
// groups GPT-2's byte pieces under their characters.
#include <doctest/doctest.h>
#include <imgui.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "core/model/model_io.h"
#include "core/text/utf8.h"
#include "test_helpers.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"

namespace fs = std::filesystem;
using namespace kvui;

namespace {

// GPT-2's vocabulary with a small random model, in the layout of a Hub download.
std::string gpt2_folder(std::string* why) {
    static std::string reason;
    static const std::string dir = [] {
        const std::string vocab = kvtest::gpt2_vocab_dir(&reason);
        if (vocab.empty()) return std::string();
        static const kvtest::TempDir tmp("kvscope_ui_text");
        auto m = kvtest::random_model(50257, 64, 64, 1, 4, 4, 5);
        kv::save_model_folder(tmp.path.string(), m->config, m->weights, nullptr);
        fs::copy_file(vocab + "/vocab.json", tmp.path / "vocab.json", fs::copy_options::overwrite_existing);
        fs::copy_file(vocab + "/merges.txt", tmp.path / "merges.txt", fs::copy_options::overwrite_existing);
        return tmp.path.string();
    }();
    *why = reason;
    return dir;
}

// The fonts the window merges (scripts/deps.sh installs them).
bool fonts_installed(std::string* missing) {
    for (const char* f : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                          "/usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf",
                          "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"})
        if (!fs::exists(f)) *missing += std::string(missing->empty() ? "" : ", ") + f;
    return missing->empty();
}

struct Frame {
    Frame() {
        ImGui::CreateContext();
        ImGuiIO& io = ImGui::GetIO();
        io.IniFilename = nullptr;
        io.DisplaySize = ImVec2(1280, 720);
        io.DeltaTime = 1.f / 60.f;
        apply_theme(true);
    }
    ~Frame() { ImGui::DestroyContext(); }
    void fonts(float px, const std::vector<char32_t>& extra) {
        build_fonts(px, extra);
        unsigned char* data = nullptr;
        int w = 0, h = 0;
        ImGui::GetIO().Fonts->GetTexDataAsRGBA32(&data, &w, &h);
    }
    void draw(AppState& app) {
        ImGui::NewFrame();
        draw_app(app);
        ImGui::Render();
    }
};

using Groups = std::vector<std::tuple<int, int, std::string>>;

Groups groups_of(const AppState& app) {
    Groups out;
    for (const kv::PieceGroup& g : token_groups(app, app.main)) out.emplace_back(g.first, g.count, g.text);
    return out;
}

}  // namespace

TEST_CASE("window: Japanese and Greek prompts get real glyphs and grouped byte pieces") {
    std::string why, missing;
    const std::string dir = gpt2_folder(&why);
    KVTEST_SKIP_UNLESS(!dir.empty(), "GPT-2 vocabulary unavailable: " + why);
    KVTEST_SKIP_UNLESS(fonts_installed(&missing), "fonts missing: " + missing);
    struct Case {
        std::string prompt;
        Groups first_groups;  // the first groups the panel must draw
        int joined;           // how many characters span several tokens
        int fonts_per_size;   // DejaVu, + Lohit Devanagari, + Droid Sans Fallback
    };
    // GPT-2 writes 日 (E6 97 A5) as [E6 97][A5], Ε (CE 95) as [CE][95], न (E0 A4 A8)
    // as [E0 A4][A8].
    const std::vector<Case> cases = {
        {"日本語のテキスト", {{0, 2, "日"}, {2, 2, "本"}, {4, 2, "語"}, {6, 1, "の"}}, 3, 2},
        {"Ελληνικά", {{0, 2, "Ε"}, {2, 1, "λ"}, {3, 1, "λ"}, {4, 2, "η"}}, 3, 1},
        {"नमस्ते", {{0, 2, "न"}, {2, 2, "म"}, {4, 2, "स"}}, 6, 2},
    };
    for (const Case& c : cases) {
        for (float px : {18.f, 27.f}) {  // --font-scale 1 and 1.5
            CAPTURE(c.prompt);
            CAPTURE(px);
            Controller ctl("never");
            AppState app;
            Frame f;
            f.fonts(px, {});
            ctl.open(app, dir, "cpu", c.prompt, true);
            REQUIRE(app.model != nullptr);
            REQUIRE(app.error.empty());
            app.vs.animate = false;
            f.draw(app);  // notes the characters the text needs
            CHECK(app.vs.font_changed);
            std::vector<char32_t> beyond;  // what the atlas must add: the prompt's non-Latin-1 characters
            for (char32_t cp : kv::utf8_code_points(c.prompt))
                if (!in_fixed_glyph_ranges(cp)) beyond.push_back(cp);
            std::sort(beyond.begin(), beyond.end());
            beyond.erase(std::unique(beyond.begin(), beyond.end()), beyond.end());
            CHECK(app.vs.glyphs.loaded == beyond);
            f.fonts(px, app.vs.glyphs.loaded);
            app.vs.font_changed = false;
            f.draw(app);
            CHECK_FALSE(app.vs.font_changed);  // nothing more needed

            ImFontAtlas& atlas = *ImGui::GetIO().Fonts;
            REQUIRE(atlas.Fonts.Size == 2);  // regular and big
            for (ImFont* font : {atlas.Fonts[0], atlas.Fonts[1]}) {
                CHECK(font->FallbackChar == 0xFFFD);  // a visible replacement, not '?'
                for (char32_t cp : kv::utf8_code_points(c.prompt)) {
                    CAPTURE(unsigned(cp));
                    CHECK(font->FindGlyphNoFallback(ImWchar(cp)) != nullptr);
                }
                CHECK(font->FindGlyph(0xE000)->Codepoint == 0xFFFD);  // private use: no font has it
                CHECK(font->Glyphs.Size < 400);                       // fixed ranges + this prompt only
            }
            // the other fonts are merged only when the text needs them
            CHECK(atlas.ConfigData.Size == 2 * c.fonts_per_size);
            MESSAGE(c.prompt << " at " << px << " px: " << atlas.Fonts[0]->Glyphs.Size << " + "
                             << atlas.Fonts[1]->Glyphs.Size << " glyphs, atlas " << atlas.TexWidth << "x"
                             << atlas.TexHeight << ", " << app.vs.glyphs.loaded.size() << " beyond the fixed ranges");

            const Groups g = groups_of(app);
            REQUIRE(g.size() >= c.first_groups.size());
            CHECK(Groups(g.begin(), g.begin() + long(c.first_groups.size())) == c.first_groups);
            int joined = 0;
            std::string text;
            for (const auto& [first, count, t] : g) {
                joined += count > 1;
                text += t;
            }
            CHECK(joined == c.joined);
            CHECK(text == c.prompt);

            app.push({CommandKind::step});  // the panel draws with a generated token too
            ctl.submit(app);
            ctl.wait();
            ctl.poll(app);
            f.draw(app);
        }
    }
}
