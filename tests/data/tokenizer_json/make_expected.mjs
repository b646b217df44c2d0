// Writes expected.json: the ids that Hugging Face's own JavaScript tokenizer
// (@huggingface/tokenizers, which follows the Rust crate's Oniguruma regex semantics)
// gives for each test string, under each tokenizer.json variant below.
//   node make_expected.mjs TOKENIZERS_MJS DIR > expected.json
// TOKENIZERS_MJS: dist/tokenizers.mjs of @huggingface/tokenizers@0.2.0;
// DIR: what tests/fetch_tokenizer_json.sh fetched. make_expected.sh does all of it.
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";

const [tokenizersMjs, dir] = process.argv.slice(2);
const { Tokenizer } = await import(tokenizersMjs);

// A variant is a shipped file with some top-level keys replaced (the C++ test applies
// the same replacement before loading).
const smollm2PreTokenizer = {
  type: "Sequence",
  pretokenizers: [
    { type: "Digits", individual_digits: true },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  ],
};
const variants = [
  { name: "llama3", file: "llama3", replace: {} },
  { name: "qwen3", file: "qwen3", replace: {} },
  // SmolLM2's pre-tokenizer and normalizer over Qwen's vocabulary. Strings with
  // numbers other than 0-9 are left out: tokenizers.js's Digits splits on JavaScript's
  // \d (0-9 only), the Rust crate's on char::is_numeric (all of \p{N}), as kvscope does
  // (tests/test_tokenizer_json.cpp checks that by hand).
  { name: "smollm2-style", file: "qwen3", replace: { normalizer: null, pre_tokenizer: smollm2PreTokenizer },
    skip: (text) => /[^0-9\P{N}]/u.test(text) },
  // GPT-2 / RoBERTa style: ByteLevel alone, with a prefix space.
  { name: "prefix-space", file: "llama3",
    replace: { pre_tokenizer: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true } } },
];

const texts = [
  "", "Hello world", "Python is a programming language", "  two leading spaces", "trailing spaces   ",
  "tabs\tand\nnewlines\n\n\nend", "line\r\nwindows\r\n", "a  b   c    d", " \n \n", "x\u0085y", "x\uFEFFy",
  "\u00A0nbsp and\u3000ideographic space", "zero\u200Bwidth",
  "1", "12", "123", "1234", "12345678901", "3.14159", "2026-12-04", "$1,234,567.89", "v1.2.3",
  "x\u00B2+y\u00B3=z\u2074", "\u00BD \u2153 \u2167", "\u0663\u0664\u0665 Arabic-Indic", "\u0967\u0968\u0969",
  "I'm", "don't", "We'LL", "they've", "she'd", "IT'S", "rock 'n' roll", "O'Reilly's", "'s'", "it\u2019s",
  "caf\u00E9 na\u00EFve fa\u00E7ade", "cafe\u0301 (combining accent)", "\u212B angstrom sign", "\uFB01 ligature",
  "\u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8", "\u0395\u03BB\u03BB\u03B7\u03BD\u03B9\u03BA\u03AC",
  "\u043F\u0440\u0438\u0432\u0435\u0442 \u043C\u0438\u0440", "\u0928\u092E\u0938\u094D\u0924\u0947",
  "\u4F60\u597D\uFF0C\u4E16\u754C", "\uC548\uB155\uD558\uC138\uC694", "\u0645\u0631\u062D\u0628\u0627",
  "emoji \u{1F642}\u{1F44D}\u{1F3FD} test", "\u01C5emo Title", "Supercalifragilisticexpialidocious", "a".repeat(50),
  "def f(x):\n    return x**2  # square\n", "<div class=\"a\">&amp;</div>", "foo_bar.baz()", "https://example.com/a?b=c#d",
  "<|begin_of_text|>Hello<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
  "<|eot_id|><|eot_id|> x<|reserved_special_token_5|>y", "<|not_a_token|> and <|eot_id",
  "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<tool_call>{\"a\": 1}</tool_call><|endoftext|>",
  " <think>\n\n</think>\n\n", "<|endoftext|>", "<|im_start|><|im_start|>",
];

const out = [];
for (const v of variants) {
  const raw = readFileSync(`${dir}/${v.file}/tokenizer.json`);
  const json = JSON.parse(raw.toString("utf8"));
  Object.assign(json, v.replace);
  const tok = new Tokenizer(json, {});
  const cases = texts.filter((text) => !(v.skip && v.skip(text)))
    .map((text) => ({ text, ids: tok.encode(text, { add_special_tokens: false }).ids }));
  out.push({
    variant: v.name, file: v.file, sha256: createHash("sha256").update(raw).digest("hex"), replace: v.replace, cases,
  });
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
