// The browser page's side of the window: Emscripten's main loop and a few lines of
// JavaScript. The page shell (app/web/shell.html) keeps the canvas the size of the page.
#include "app/browser.h"

#include <emscripten.h>

namespace kvweb {

void page_size(int& w, int& h) {
    w = EM_ASM_INT({ return Math.round(window.innerWidth * (window.devicePixelRatio || 1)); });
    h = EM_ASM_INT({ return Math.round(window.innerHeight * (window.devicePixelRatio || 1)); });
}

void run_main_loop(void (*frame)(void*), void* arg) {
    emscripten_set_main_loop_arg(frame, arg, 0, true);  // 0: the browser's frame rate
    __builtin_unreachable();                              // simulate_infinite_loop throws
}

void download(const std::string& path) {
    EM_ASM({
        const name = UTF8ToString($0);
        const blob = new Blob([FS.readFile(name)], {type: 'image/png'});
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = name;
        a.click();
        setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    }, path.c_str());
}

}  // namespace kvweb
