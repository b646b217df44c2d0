// The lesson chapters' live text: each function writes one chapter's explanation
// from the numbers on screen (the engine's counters, bytes and logits of the state the
// chapter set up), so no figure in a chapter is typed by hand. lesson.cpp's chapter
// table points at them.
#pragma once
#include <string>

#include "ui/state/app_state.h"

namespace kvui::lesson_text {

std::string text_tokens(const AppState& app);
std::string text_prefill(const AppState& app);
std::string text_decode(const AppState& app);
std::string text_cache_off(const AppState& app);
std::string text_work(const AppState& app);
std::string text_time(const AppState& app);
std::string text_memory(const AppState& app);
std::string text_stale(const AppState& app);
std::string text_window(const AppState& app);
std::string text_storage(const AppState& app);
std::string text_gqa(const AppState& app);
std::string text_spec(const AppState& app);
std::string text_paged(const AppState& app);
std::string text_prefix(const AppState& app);
std::string text_batching(const AppState& app);
std::string text_rope(const AppState& app);
std::string text_mla(const AppState& app);
std::string text_next(const AppState& app);

}  // namespace kvui::lesson_text
