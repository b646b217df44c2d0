#!/usr/bin/env python3
"""Writes a random Llama-architecture GGUF of a given shape, for timing llama.cpp
beside kvscope (scripts/bench-llamacpp). Written from the GGUF v3 layout (ggml's
docs/gguf.md): header, metadata, tensor infos, data aligned to 32 bytes; tensor
names as llama.cpp's llama architecture reads them (token_embd, blk.N.attn_q, ...).
The weights are random (N(0, 0.02)): only the time per token is measured, and it does
not depend on the values. The vocabulary is a synthetic SentencePiece list of
vocab_size pieces (special, byte and made-up pieces), since the benchmark feeds token ids.

usage: write_gguf.py OUT.gguf f32|f16 [smollm2-135m]
"""
import struct
import sys

import numpy as np

SHAPES = {  # HuggingFaceTB/SmolLM2-135M's config.json (kvscope's random:smollm2-135m)
    "smollm2-135m": dict(vocab=49152, ctx=2048, C=576, L=30, H=9, Hkv=3, F=1536, theta=100000.0, eps=1e-5),
}
T_STRING, T_ARRAY, T_UINT32, T_FLOAT32, T_INT32 = 8, 9, 4, 6, 5
GGML_F32, GGML_F16 = 0, 1


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = s(key) + struct.pack("<I", vtype)
    if vtype == T_STRING:
        return out + s(value)
    if vtype == T_UINT32:
        return out + struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return out + struct.pack("<f", value)
    etype, items = value  # array
    out += struct.pack("<IQ", etype, len(items))
    if etype == T_STRING:
        return out + b"".join(s(x) for x in items)
    fmt = {T_FLOAT32: "<f", T_INT32: "<i"}[etype]
    return out + b"".join(struct.pack(fmt, x) for x in items)


def tensors(sh, rng):
    C, L, H, Hkv, F, V = sh["C"], sh["L"], sh["H"], sh["Hkv"], sh["F"], sh["vocab"]
    hd = C // H
    w = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * 0.02)  # noqa: E731
    yield "token_embd.weight", w(V, C)
    for i in range(L):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", np.ones(C, np.float32)
        yield p + "attn_q.weight", w(H * hd, C)
        yield p + "attn_k.weight", w(Hkv * hd, C)
        yield p + "attn_v.weight", w(Hkv * hd, C)
        yield p + "attn_output.weight", w(C, H * hd)
        yield p + "ffn_norm.weight", np.ones(C, np.float32)
        yield p + "ffn_gate.weight", w(F, C)
        yield p + "ffn_up.weight", w(F, C)
        yield p + "ffn_down.weight", w(C, F)
    yield "output_norm.weight", np.ones(C, np.float32)


def main():
    out, kind = sys.argv[1], sys.argv[2]
    sh = SHAPES[sys.argv[3] if len(sys.argv) > 3 else "smollm2-135m"]
    rng = np.random.default_rng(1)
    meta = [
        kv("general.architecture", T_STRING, "llama"),
        kv("general.name", T_STRING, "random smollm2-135m shape"),
        kv("general.alignment", T_UINT32, 32),
        kv("general.file_type", T_UINT32, 0 if kind == "f32" else 1),
        kv("llama.context_length", T_UINT32, sh["ctx"]),
        kv("llama.embedding_length", T_UINT32, sh["C"]),
        kv("llama.block_count", T_UINT32, sh["L"]),
        kv("llama.feed_forward_length", T_UINT32, sh["F"]),
        kv("llama.attention.head_count", T_UINT32, sh["H"]),
        kv("llama.attention.head_count_kv", T_UINT32, sh["Hkv"]),
        kv("llama.rope.dimension_count", T_UINT32, sh["C"] // sh["H"]),
        kv("llama.rope.freq_base", T_FLOAT32, sh["theta"]),
        kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, sh["eps"]),
        kv("llama.vocab_size", T_UINT32, sh["vocab"]),
        kv("tokenizer.ggml.model", T_STRING, "llama"),
        # <unk>, <s>, </s>, the 256 byte pieces SentencePiece vocabularies carry (llama.cpp
        # looks up <0x0A>), then synthetic pieces up to vocab_size.
        kv("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] +
                                             [f"\u2581t{i}" for i in range(259, sh["vocab"])])),
        kv("tokenizer.ggml.scores", T_ARRAY, (T_FLOAT32, [0.0] * sh["vocab"])),
        kv("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, [2, 3, 3] + [6] * 256 + [1] * (sh["vocab"] - 259))),
        kv("tokenizer.ggml.bos_token_id", T_UINT32, 1),
        kv("tokenizer.ggml.eos_token_id", T_UINT32, 2),
    ]
    infos, blobs, off = [], [], 0
    for name, a in tensors(sh, rng):
        # 1-D norms stay f32 (as llama.cpp's converter keeps them); matrices in the chosen type.
        a = a.astype(np.float16) if kind == "f16" and a.ndim == 2 else a
        gtype = GGML_F16 if a.dtype == np.float16 else GGML_F32
        dims = list(reversed(a.shape))  # ne[0] is the innermost (contiguous) dimension
        infos.append(s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) +
                     struct.pack("<IQ", gtype, off))
        b = a.tobytes()
        pad = (-len(b)) % 32
        blobs.append(b + b"\0" * pad)
        off += len(b) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * ((-len(head)) % 32)
    with open(out, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
