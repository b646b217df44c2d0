// The window's prompt and its fallback for models without a tokenizer.
#include "ui/runtime/prompt_choice.h"

#include "core/error.h"
#include "core/model/model_io.h"
#include "core/text/tokenizer.h"

namespace kvui {

std::vector<int> parse_prompt_ids(const std::string& text, int vocab_size) {
    std::vector<int> ids;
    try {
        ids = kv::parse_token_ids(text);
    } catch (const kv::Error& e) {
        throw kv::Error("prompt: " + std::string(e.what()) +
                        " (this model has no tokenizer: type ids like 5,9,3,7)");
    }
    for (int id : ids)
        if (id >= vocab_size)
            throw kv::Error("prompt: token id " + std::to_string(id) + " is not below the vocabulary size " +
                            std::to_string(vocab_size));
    return ids;
}

PromptPieces set_session_prompt(kv::Session& s, const std::string& text) {
    const kv::Model& m = s.model();
    if (!m.tokenizer) {
        s.set_prompt_ids(parse_prompt_ids(text, m.config.vocab_size));
        return {};
    }
    kv::Encoding e = s.set_prompt_text(text);
    return {e.unknown, e.pieces};
}

void PromptChoice::open(const std::string& text, bool typed) {
    typed_ = typed;
    if (!typed) default_text_ = text;
    text_ = text;
}

void PromptChoice::type(const std::string& text) {
    text_ = text;
    typed_ = true;
}

PromptPieces PromptChoice::apply_on_load(kv::Session& s, std::string& error, std::string& note) {
    const bool tokenizer = s.model().tokenizer != nullptr;
    if (!typed_ && tokenizer) text_ = default_text_;
    try {
        return set_session_prompt(s, text_);
    } catch (const kv::Error& e) {
        if (tokenizer) throw;
        if (typed_) error = std::string(e.what()) + " (using 5,9,3,7)";
        PromptPieces p = set_session_prompt(s, "5,9,3,7");
        text_ = "5,9,3,7";
        note = "random model, no tokenizer: the prompt is token ids";
        return p;
    }
}

}  // namespace kvui
