// The browser page's side of the window (the web build only, Emscripten): the page's
// size, the frame loop as the browser's animation callback, and PNG downloads.
// docs/design.md, "In the browser".
#pragma once
#include <string>

namespace kvweb {

// The browser window's inner size in device pixels (CSS pixels times the
// devicePixelRatio): the canvas fills the page at the screen's own resolution.
void page_size(int& w, int& h);
// Calls frame(arg) once per animation frame, for as long as the page is open; never
// returns (the caller's stack is kept, so its locals stay valid).
[[noreturn]] void run_main_loop(void (*frame)(void*), void* arg);
// Offers the file at path (in the page's memory file system) as a download.
void download(const std::string& path);

}  // namespace kvweb
