// UTF-8 helpers shared by the tokenizers, the CLI's JSON writers and the window.
// Token pieces are byte strings: GPT-2's byte-level tokens often hold part of a
// character ("日" is E6 97 A5, three tokens in GPT-2). These functions say what is
// valid, write bytes in a form that is always valid UTF-8 ("<0xE6>"), and group a
// run of pieces by the characters they form, for display.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

// Length (1..4) of the valid UTF-8 character starting at s[i], or 0 if the bytes there
// are not one (stray continuation byte, truncated, overlong, surrogate, > U+10FFFF).
// The code point goes to *cp when given.
std::size_t utf8_char_len(std::string_view s, std::size_t i, char32_t* cp = nullptr);
bool is_valid_utf8(std::string_view s);
std::string utf8_encode(char32_t cp);
// The code points of s; each byte that does not start a valid character counts as one
// U+FFFD.
std::vector<char32_t> utf8_code_points(std::string_view s);

// Text that is always valid UTF-8: valid characters as they are, every other byte as
// "<0xE6>". Lossy only when s itself contains text like "<0xE6>"; the JSON writers
// therefore add the exact bytes next to it (docs/design.md, "Text in JSON").
std::string display_bytes(std::string_view s);

// A run of consecutive pieces that belong together on screen: `count` pieces starting
// at `first`, whose bytes, concatenated, are shown as `text` (display_bytes of them).
// Pieces are joined when a UTF-8 character's bytes are split between them; every
// other piece is a group of one. Groups cover all pieces, in order.
struct PieceGroup {
    int first = 0, count = 1;
    std::string text;
    bool joined() const { return count > 1; }
};
std::vector<PieceGroup> group_pieces(std::span<const std::string> pieces);

}  // namespace kv
