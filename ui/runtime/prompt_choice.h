// The prompt the window runs: as typed, or the app's default one, and what a model
// without a tokenizer gets instead (token ids; the default prompt falls back to
// 5,9,3,7 without a word, a typed one with an error in the window).
#pragma once
#include <string>
#include <vector>

#include "core/session/session.h"

namespace kvui {

// "5, 9,3 7" -> {5, 9, 3, 7} (kv::parse_token_ids); throws kv::Error starting with
// "prompt: " naming the bad piece or an id >= vocab_size.
std::vector<int> parse_prompt_ids(const std::string& text, int vocab_size);

// What setting a prompt produced, for the tokens panel.
struct PromptPieces {
    std::vector<std::string> unknown, pieces;  // empty for token ids
};

// Text through the tokenizer, or token ids for a model without one. Throws kv::Error.
PromptPieces set_session_prompt(kv::Session& s, const std::string& text);

class PromptChoice {
public:
    // From Controller::open: typed false marks the app's default prompt.
    void open(const std::string& text, bool typed);
    // The teacher typed a prompt (set_prompt command).
    void type(const std::string& text);
    const std::string& text() const { return text_; }

    // The prompt on a freshly loaded model's session. A default prompt suits any model
    // quietly (5,9,3,7 without a tokenizer, with `note` set); a typed one that a random
    // model cannot read sets `error` and uses 5,9,3,7. Throws when a model with a
    // tokenizer cannot take it.
    PromptPieces apply_on_load(kv::Session& s, std::string& error, std::string& note);

private:
    std::string text_;           // as typed (or the fallback in use)
    bool typed_ = true;          // false: the app's default prompt, never edited
    std::string default_text_;   // that default, for models with a tokenizer
};

}  // namespace kvui
