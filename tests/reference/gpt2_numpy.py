#!/usr/bin/env python3
"""An independent GPT-2 forward pass in NumPy, for checking kvscope's engine.

Reads a Hugging Face GPT-2 folder (config.json + model.safetensors, F32/F16/BF16,
optional "transformer." prefix, optional untied lm_head.weight), runs the token ids
given on the command line and prints {"logits": [[...] per position]} as JSON.
Written from the GPT-2 definition (pre-LayerNorm blocks, learned positions, GELU
tanh approximation, Conv1D weights stored (in, out)), sharing no code with kvscope.

With --round f16|bf16 the weight matrices (wte, lm_head and each layer's c_attn,
attn c_proj, c_fc, mlp c_proj) are first rounded to that type, round to nearest
even (f16 by NumPy's own cast, bf16 by bit arithmetic), as kvscope holds them with
--weights; biases, LayerNorms and wpe stay as stored. The forward runs in float64.

usage: gpt2_numpy.py MODEL_DIR 1,2,3 [--round f16|bf16]
"""
import json
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = data[b:e]
        dt = info["dtype"]
        if dt == "F32":
            a = np.frombuffer(buf, dtype="<f4")
        elif dt == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"unsupported dtype {dt}")
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        out[key] = a.reshape(info["shape"]).astype(np.float64)
    return out


MATRICES = ("wte.weight", "lm_head.weight", "attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
            "mlp.c_proj.weight")


def round_bf16(a):
    """float32 -> nearest bfloat16 (ties to even), returned as float32."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def round_weights(W, kind):
    for name in W:
        if name.endswith(MATRICES):
            a = W[name].astype(np.float32)
            a = a.astype(np.float16).astype(np.float32) if kind == "f16" else round_bf16(a)
            W[name] = a.astype(np.float64)


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(cfg, W, ids):
    C, H = cfg["n_embd"], cfg["n_head"]
    Hkv = cfg.get("n_kv_head", H)
    hd = C // H
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = len(ids)
    x = W["wte.weight"][ids] + W["wpe.weight"][:T]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["n_layer"]):
        p = f"h.{l}."
        h = layernorm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = qkv[:, :C], qkv[:, C:C + Hkv * hd], qkv[:, C + Hkv * hd:]
        heads = []
        for i in range(H):
            g = i // (H // Hkv)
            qi, ki, vi = q[:, i * hd:(i + 1) * hd], k[:, g * hd:(g + 1) * hd], v[:, g * hd:(g + 1) * hd]
            s = qi @ ki.T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            heads.append(s @ vi)
        x = x + np.concatenate(heads, -1) @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = layernorm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        f = gelu(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + f @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = layernorm(x, W["ln_f.weight"], W["ln_f.bias"], eps)
    head = W.get("lm_head.weight", W["wte.weight"])
    return x @ head.T


def main():
    model_dir, ids = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
    with open(f"{model_dir}/config.json") as f:
        cfg = json.load(f)
    W = load_safetensors(f"{model_dir}/model.safetensors")
    if len(sys.argv) > 4 and sys.argv[3] == "--round":
        round_weights(W, sys.argv[4])
    print(json.dumps({"logits": forward(cfg, W, ids).tolist()}))


if __name__ == "__main__":
    main()
