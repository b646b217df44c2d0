#!/usr/bin/env python3
"""Writes expected.json: GPT-2 ids for the test strings of tests/test_bpe.cpp.

Development-time tool, not run by the tests. The reference is OpenAI's gpt-2
src/encoder.py (bytes_to_unicode, get_pairs, bpe, encode), copied here with the
`regex` module it uses, over encoder.json + vocab.bpe:
    python3 make_expected.py DIR_WITH_vocab.json_AND_merges.txt > expected.json
The ids were also checked against the JS encoder of the npm package gpt-3-encoder
(see check_with_node.js beside this file).
"""
import json
import sys

import regex as re


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(n) for n in cs]))


def get_pairs(word):
    pairs = set()
    prev_char = word[0]
    for char in word[1:]:
        pairs.add((prev_char, char))
        prev_char = char
    return pairs


class Encoder:
    def __init__(self, encoder, bpe_merges):
        self.encoder = encoder
        self.byte_encoder = bytes_to_unicode()
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, token):
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        return " ".join(word)

    def encode(self, text):
        bpe_tokens = []
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.encoder[bpe_token] for bpe_token in self.bpe(token).split(" "))
        return bpe_tokens


STRINGS = [
    "Hello world",
    " Hello",
    "hello",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Python is a programming language",
    "I'm here",
    "don't",
    "they'll",
    "We've, you'd, she's, it's; I'M LOUD",
    "12345",
    "3.14",
    "pi = 3.14159265358979, e = 2.718",
    "1,000,000 and 2024-01-31",
    "a  b",
    "a\n\n b",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\tand\r\nCRLF",
    "\n",
    "\n\n",
    " ",
    "line one\nline two\n\n\nline five",
    "café naïve",
    "Ærøskøbing façade déjà vu",
    "Привет, мир",
    "你好世界",
    "日本語",
    "한국어 텍스트",
    "🙂👍🏽",
    "emoji 🙂 in text 👍🏽!",
    "mixed: ASCII, café, 日本語, 🙂 and 42",
    "<|endoftext|>",
    "def f(x):\n    return x ** 2  # square\n",
    "https://example.com/path?q=1&r=two",
    "non\u00a0breaking\u3000ideographic space",
    "supercalifragilisticexpialidocious",
]


def main():
    d = sys.argv[1]
    with open(f"{d}/vocab.json", encoding="utf-8") as f:
        encoder = json.load(f)
    with open(f"{d}/merges.txt", encoding="utf-8") as f:
        bpe_data = f.read()
    bpe_merges = [tuple(merge_str.split()) for merge_str in bpe_data.split("\n")[1:-1]]
    enc = Encoder(encoder, bpe_merges)
    cases = [{"text": s, "ids": enc.encode(s)} for s in STRINGS]
    # One case per line: readable diffs.
    print("[\n" + ",\n".join(" " + json.dumps(c, ensure_ascii=False) for c in cases) + "\n]")


if __name__ == "__main__":
    main()
