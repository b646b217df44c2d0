#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.
Run once after changing it; the seeds are committed (small files only)."""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_model_io: u16 config length, config.json, model.safetensors
def config(V=4, T=2, C=2, L=1, H=1, **extra):
    c = {"model_type": "gpt2", "vocab_size": V, "n_positions": T, "n_embd": C, "n_layer": L,
         "n_head": H, "layer_norm_epsilon": 1e-5}
    c.update(extra)
    return json.dumps(c)


def tensors(V=4, T=2, C=2, L=1, untied=False, prefix=""):
    t = [("wte.weight", (V, C)), ("wpe.weight", (T, C))]
    for i in range(L):
        h = f"h.{i}."
        t += [(h + "ln_1.weight", (C,)), (h + "ln_1.bias", (C,)), (h + "attn.c_attn.weight", (C, 3 * C)),
              (h + "attn.c_attn.bias", (3 * C,)), (h + "attn.c_proj.weight", (C, C)),
              (h + "attn.c_proj.bias", (C,)), (h + "ln_2.weight", (C,)), (h + "ln_2.bias", (C,)),
              (h + "mlp.c_fc.weight", (C, 4 * C)), (h + "mlp.c_fc.bias", (4 * C,)),
              (h + "mlp.c_proj.weight", (4 * C, C)), (h + "mlp.c_proj.bias", (C,))]
    t += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    t = [(prefix + n, s) for n, s in t]
    if untied:
        t.append(("lm_head.weight", (V, C)))
    return t


def safetensors(ts, dtype="F32", nan=False, metadata=True):
    rng = np.random.default_rng(1)
    np_dtype = {"F32": np.float32, "F16": np.float16}.get(dtype)
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    for name, shape in ts:
        a = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if nan and name.endswith("wte.weight"):
            a.flat[1] = np.nan
        if dtype == "BF16":
            b = (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            b = a.astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def model_seed(cfg, st):
    c = cfg.encode()
    return struct.pack("<H", len(c)) + c + st


out("fuzz_model_io", "tiny_f32", model_seed(config(), safetensors(tensors())))
out("fuzz_model_io", "tiny_f16", model_seed(config(), safetensors(tensors(), "F16")))
out("fuzz_model_io", "tiny_bf16", model_seed(config(), safetensors(tensors(), "BF16")))
out("fuzz_model_io", "untied_prefix", model_seed(config(tie_word_embeddings=False),
                                                 safetensors(tensors(untied=True, prefix="transformer."))))
out("fuzz_model_io", "two_layers", model_seed(config(V=3, T=1, C=4, L=2, H=2, n_kv_head=1),
                                              safetensors(tensors(V=3, T=1, C=4, L=2))))
out("fuzz_model_io", "nan_weights", model_seed(config(), safetensors(tensors(), nan=True)))
out("fuzz_model_io", "wrong_dtype", model_seed(config(), safetensors(tensors(), "F32").replace(b'"F32"', b'"I32"', 1)))
full = safetensors(tensors())
out("fuzz_model_io", "truncated", model_seed(config(), full[: len(full) - 13]))
out("fuzz_model_io", "huge_header", model_seed(config(), struct.pack("<Q", 1 << 62) + full[8:]))
out("fuzz_model_io", "config_contradicts", model_seed(config(C=4), full))
out("fuzz_model_io", "no_metadata", model_seed(config(), safetensors(tensors(), metadata=False)))

# ---- fuzz_bpe: text (and merges.txt when it starts with '#')
for i, t in enumerate([
    "hello world", "Hello, World! It's 2024.", " the  theme  of   the\n\nhello\r\n",
    "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001F600 emoji", "don't we'll I'm you're they've he'd",
    "a\x00b\x7f\xc3", "<|endoftext|> aaaa aaa", "\t\u00a0\u2003 x",
]):
    out("fuzz_bpe", f"text{i}", t.encode("utf-8", "surrogatepass") if isinstance(t, str) else t)
out("fuzz_bpe", "invalid_utf8", b"\xff\xfe hello \xc3\x28 \xe2\x82 \xf0\x9f\x98 w\x80o")
out("fuzz_bpe", "merges", "#version: 0.2\nh e\nl o\nhe llo\nx y\n")

# ---- fuzz_word: text, also read as a vocab.txt
out("fuzz_word", "prompt", "Python is a programming language.")
out("fuzz_word", "punct", "(well-known) don't -x x- 'a' \"quoted\"; a,b.c!? 42_x caf\u00e9")
out("fuzz_word", "vocab", "<unk>\nthe\nThe\n.\nhello\r\nworld\n")
out("fuzz_word", "vocab_dup", "<unk>\na\nb\na\n")
out("fuzz_word", "bad_utf8", b"\xc3 \xe2\x82 abc\xff\xfedef \xf0\x9f\x98\x80")

# ---- fuzz_cli: '\0'-separated arguments
for i, args in enumerate([
    ["generate", "--model", "random:tiny", "--ids", "5,9,3,7", "--new", "4", "--json"],
    ["compare", "--prompt", "Python is a", "--new", "3"],
    ["logits", "--ids", "1, 2 ,3", "--no-cache", "--all-positions", "--backend", "cuda"],
    ["tokenize", "--text", "hello"],
    ["bench", "--prompt-len", "4", "--new", "8", "--threads", "2", "--json"],
    ["train", "--corpus", "c.txt", "--out", "d", "--steps", "10", "--seed", "3"],
    ["generate", "--new", "-1", "--temperature", "nan", "--top-k", "x"],
    ["--help"], ["nosuch"], ["generate", "--help"],
]):
    out("fuzz_cli", f"args{i}", "\0".join(args))
out("fuzz_cli", "ids", "1,2,,3")
out("fuzz_cli", "ids_big", "99999999999999999999,-1, 7")

# ---- fuzz_requests: a --requests file (JSON Lines)
out("fuzz_requests", "ids", '{"ids": [5, 9, 3, 7], "new": 4}\n{"ids": [5, 9, 3, 8], "new": 2, "arrive": 1}\n')
out("fuzz_requests", "prompt", '{"prompt": "the cat sat on", "new": 3}\n\n{"prompt": "a b", "new": 1, "arrive": 2}\n')
out("fuzz_requests", "fork", '{"ids": [1, 2, 3, 4, 5], "new": 6, "fork": 3}\r\n  \r\n{"ids": [1, 2, 3], "new": 2}\r\n')
out("fuzz_requests", "bad", '{"ids": [1, 2.5], "new": 0, "arrive": -1, "x": 1}\n{"prompt": "a", "ids": [1]}\n[1]\n{"ids": [1], "new": 2, "new": 3}\n{"ids": [99], "new": 40}\n{"ids"\n')

# ---- fuzz_tokenizer_json: a tokenizer.json, then optionally "\n\x01" and a text
def byte_key(b):
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for c in range(256):
        if c not in bs:
            bs.append(c)
            cs.append(256 + n)
            n += 1
    return chr(cs[bs.index(b)])


def tokenizer_json(pre, merges_as_pairs=False, normalizer=None, ignore_merges=False):
    vocab = {byte_key(b): b for b in range(256)}
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (byte_key(32), "w"), ("1", "2")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    return json.dumps({
        "version": "1.0",
        "added_tokens": [{"id": 300, "content": "<|eot|>", "special": True, "normalized": False},
                         {"id": 301, "content": "<tool>", "special": False, "normalized": False}],
        "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": ignore_merges, "vocab": vocab,
                  "merges": [[l, r] for l, r in merges] if merges_as_pairs else [l + " " + r for l, r in merges]},
    }, ensure_ascii=False)


llama3_re = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
out("fuzz_tokenizer_json", "llama3_form", tokenizer_json(
    {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": llama3_re}, "behavior": "Isolated",
                                            "invert": False}, byte_level]}, ignore_merges=True))
out("fuzz_tokenizer_json", "qwen_form", tokenizer_json(
    {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": llama3_re.replace("{1,3}", "")},
                                            "behavior": "Isolated", "invert": False}, byte_level]},
    merges_as_pairs=True, normalizer={"type": "NFC"}) + "\n\x01cafe\u0301 12345 <|eot|><tool>\u2028x")
out("fuzz_tokenizer_json", "smollm2_form", tokenizer_json(
    {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                           {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}))
out("fuzz_tokenizer_json", "prefix_space", tokenizer_json(
    {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}) + "\n\x01hello <|eot|>world")
out("fuzz_tokenizer_json", "split_string", tokenizer_json(
    {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": ". "}, "behavior": "Isolated"},
                                           byte_level]}) + "\n\x01a. b.. c\xff")
out("fuzz_tokenizer_json", "refused", tokenizer_json({"type": "Metaspace"}, normalizer={"type": "Lowercase"}))
