#include "core/text/utf8.h"

#include <algorithm>

namespace kv {

std::size_t utf8_char_len(std::string_view s, std::size_t i, char32_t* out) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned c = b(i);
    std::size_t n;
    char32_t cp;
    if (c < 0x80) {
        n = 1, cp = c;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b(i + k) & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    if (out) *out = cp;
    return n;
}

bool is_valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_char_len(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

std::string utf8_encode(char32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

std::vector<char32_t> utf8_code_points(std::string_view s) {
    std::vector<char32_t> out;
    for (std::size_t i = 0; i < s.size();) {
        char32_t cp = 0xFFFD;
        const std::size_t n = utf8_char_len(s, i, &cp);
        out.push_back(n ? cp : char32_t(0xFFFD));
        i += n ? n : 1;
    }
    return out;
}

std::string display_bytes(std::string_view s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        if (const std::size_t n = utf8_char_len(s, i)) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            const auto c = static_cast<unsigned char>(s[i]);
            out += "<0x";
            out += hex[c >> 4];
            out += hex[c & 15];
            out += '>';
            ++i;
        }
    }
    return out;
}

std::vector<PieceGroup> group_pieces(std::span<const std::string> pieces) {
    const int n = static_cast<int>(pieces.size());
    std::string all;
    std::vector<int> owner;  // byte -> piece
    for (int k = 0; k < n; ++k) {
        all += pieces[size_t(k)];
        owner.insert(owner.end(), pieces[size_t(k)].size(), k);
    }
    // join_next[k]: a character's bytes run from piece k into piece k + 1
    std::vector<char> join_next(size_t(std::max(n, 1)), 0);
    for (std::size_t i = 0; i < all.size();) {
        const std::size_t len = std::max<std::size_t>(1, utf8_char_len(all, i));
        for (int k = owner[i]; k < owner[i + len - 1]; ++k) join_next[size_t(k)] = 1;
        i += len;
    }
    std::vector<PieceGroup> groups;
    for (int k = 0; k < n;) {
        PieceGroup g;
        g.first = k;
        std::string bytes = pieces[size_t(k)];
        while (k + 1 < n && join_next[size_t(k)]) bytes += pieces[size_t(++k)];
        g.count = k - g.first + 1;
        g.text = display_bytes(bytes);
        groups.push_back(std::move(g));
        ++k;
    }
    return groups;
}

}  // namespace kv
