// tokenizer.json (Hugging Face `tokenizers`) for byte-level BPE models, as Llama 3,
// Qwen2.5 and SmolLM2 ship it, read into the GPT-2 byte-level BPE tokenizer:
//   model        "BPE": vocab, merges ("a b" strings or ["a", "b"] pairs), ignore_merges
//   normalizer   none, or NFC (alone or in a Sequence)
//   pre_tokenizer ByteLevel (add_prefix_space, use_regex), after any Split (Regex or
//                String pattern, behaviour "Isolated") and Digits, in a Sequence
//   added_tokens matched in the text before anything else; `special` is kept
//   decoder      ByteLevel
//   post_processor  only the special tokens TemplateProcessing puts first (prefix_ids)
// Anything else that changes how text becomes ids (another model type, normalizer or
// pre-tokenizer, BPE dropout, byte fallback, subword prefixes, lstrip/rstrip/single_word
// added tokens) is refused with one line naming the file and the thing. The
// post-processor is not applied: encode() adds no BOS; rules().prefix_ids holds it.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "core/text/bpe_tokenizer.h"

namespace kv {

// Throws kv::Error naming `path` when the file is missing, not JSON, or asks for
// something kvscope does not support.
std::unique_ptr<Gpt2BpeTokenizer> load_tokenizer_json(const std::string& path);
// The same from the file's text; `path` names it in messages.
std::unique_ptr<Gpt2BpeTokenizer> parse_tokenizer_json(std::string_view text, const std::string& path);

// A regex of a tokenizer.json Split (Oniguruma syntax) as PCRE2 reads it the same way:
// \s and \S become Unicode White_Space classes (PCRE2's \s leaves out U+0085).
// Throws kv::Error naming `path` for \S inside a character class.
std::string split_regex_for_pcre2(std::string_view pattern, const std::string& path);

}  // namespace kv
