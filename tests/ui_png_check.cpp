// ui_png_check FILE.png W H: the UI smoke test's second half. Loads the screenshot
// kvscope wrote and checks its size and that it is not blank (many distinct colours).
#include <stb_image.h>

#include <cstdio>
#include <cstdlib>
#include <set>

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: ui_png_check FILE.png WIDTH HEIGHT\n");
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
    stbi_image_free(px);
    std::printf("%s: %dx%d, %zu distinct colours (sampled)\n", argv[1], w, h, colours.size());
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
