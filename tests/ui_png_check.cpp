// ui_png_check FILE.png W H [FONT_PX]: the UI smoke tests' second half. Loads the
// screenshot kvscope wrote and checks its size and that it is not blank (many distinct
// colours). With FONT_PX (a presenter's screenshot of the cache off after 6 steps) it
// also finds the cache rows' tags by their colours (ui/look/colormap.cpp, dark theme)
// and checks the presenter rule in pixels: 8 rows of the "recomputed" colour and the
// "new" row under them, one above the other, each at least 0.8 FONT_PX tall.
#include <stb_image.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

namespace {

struct Run {
    int y0, len;
};

bool near(const unsigned char* p, const unsigned char (&c)[3]) {
    for (int k = 0; k < 3; ++k)
        if (std::abs(int(p[k]) - int(c[k])) > 12) return false;
    return true;
}

// Vertical runs of colour c in column x, at least min_len pixels long.
std::vector<Run> runs(const unsigned char* px, int w, int h, int x, const unsigned char (&c)[3], int min_len) {
    std::vector<Run> out;
    for (int y = 0; y < h;) {
        int e = y;
        while (e < h && near(px + 3 * (static_cast<long>(e) * w + x), c)) ++e;
        if (e - y >= min_len) out.push_back({y, e - y});
        y = e == y ? y + 1 : e;
    }
    return out;
}

// The longest chain of recomputed tags, each the next row down (pitch = row height of
// at least min_h, at most 2 of it), followed by one "new" tag. Returns the chain's
// length (recomputed rows) and its smallest pitch, over every column of the picture.
void tag_rows(const unsigned char* px, int w, int h, float font_px, int& best, int& best_pitch) {
    const unsigned char recomp[3] = {235, 80, 170}, fresh[3] = {240, 175, 30};
    const int min_h = static_cast<int>(std::ceil(0.8f * font_px));
    best = 0;
    best_pitch = 0;
    for (int x = 0; x < w; ++x) {
        const std::vector<Run> r = runs(px, w, h, x, recomp, min_h - 3);
        const std::vector<Run> n = runs(px, w, h, x, fresh, min_h - 3);
        for (size_t i = 0; i < r.size(); ++i) {
            size_t j = i;
            int pitch = 1 << 30;
            while (j + 1 < r.size() && r[j + 1].y0 - r[j].y0 >= min_h && r[j + 1].y0 - r[j].y0 <= 2 * min_h) {
                pitch = std::min(pitch, r[j + 1].y0 - r[j].y0);
                ++j;
            }
            const int last = r[j].y0;
            const bool new_under = std::any_of(n.begin(), n.end(), [&](const Run& q) {
                return q.y0 - last >= min_h && q.y0 - last <= 2 * min_h;
            });
            const int len = static_cast<int>(j - i + 1);
            if (new_under && len > best) {
                best = len;
                best_pitch = j > i ? pitch : 0;
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4 && argc != 5) {
        std::fprintf(stderr, "usage: ui_png_check FILE.png WIDTH HEIGHT [FONT_PX]\n");
        return 2;
    }
    int w = 0, h = 0, n = 0;
    unsigned char* px = stbi_load(argv[1], &w, &h, &n, 3);
    if (!px) {
        std::fprintf(stderr, "ui_png_check: %s: cannot read PNG (%s)\n", argv[1], stbi_failure_reason());
        return 1;
    }
    const int want_w = std::atoi(argv[2]), want_h = std::atoi(argv[3]);
    std::set<unsigned> colours;
    for (long i = 0; i < static_cast<long>(w) * h; i += 7)
        colours.insert(px[3 * i] << 16 | px[3 * i + 1] << 8 | px[3 * i + 2]);
    int rows = 0, pitch = 0;
    const float font_px = argc == 5 ? static_cast<float>(std::atof(argv[4])) : 0.f;
    if (font_px > 0) tag_rows(px, w, h, font_px, rows, pitch);
    stbi_image_free(px);
    std::printf("%s: %dx%d, %zu distinct colours (sampled)\n", argv[1], w, h, colours.size());
    if (font_px > 0) {
        std::printf("%s: %d recomputed rows above the new one, rows %d px apart (font %.0f px)\n", argv[1], rows,
                    pitch, font_px);
        if (rows < 8 || pitch < 0.8f * font_px) {
            std::fprintf(stderr, "ui_png_check: %s: want 8 recomputed cache rows of at least %.1f px above the new one\n",
                         argv[1], 0.8f * font_px);
            return 1;
        }
    }
    if (w != want_w || h != want_h) {
        std::fprintf(stderr, "ui_png_check: %s is %dx%d, expected %dx%d\n", argv[1], w, h, want_w, want_h);
        return 1;
    }
    if (colours.size() < 64) {
        std::fprintf(stderr, "ui_png_check: %s looks blank (%zu colours)\n", argv[1], colours.size());
        return 1;
    }
    return 0;
}
