#!/usr/bin/env python3
"""An independent Llama-family forward pass in NumPy, for checking kvscope's engine.

Reads a Hugging Face LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM folder
(config.json in the transformers 4.x or 5.x form + model.safetensors, F32/F16/BF16),
runs the token ids given on the command line and prints {"logits": [[...] per
position]} as JSON. Written from the formulas of transformers' modeling_llama.py,
sharing no code with kvscope:

    RMSNorm(x)  = x / sqrt(mean(x^2) + eps) * w                       (LlamaRMSNorm)
    RoPE        q' = q cos + rotate_half(q) sin, rotate_half(x) = [-x2, x1],
                cos/sin of position * inv_freq, duplicated over both halves
                (LlamaRotaryEmbedding, apply_rotary_pos_emb)
    inv_freq    theta^(-2i/hd), "llama3" scaling as _compute_llama3_parameters
                (rope_numpy.py beside this file)
    MLP         down(silu(gate(x)) * up(x))                            (LlamaMLP)
    attention   grouped-query, causal, softmax(q k^T / sqrt(hd)) v, o_proj
    nn.Linear   y = x W^T + b, W stored (out, in)

With --round f16|bf16 every weight matrix (embed_tokens, lm_head and each layer's
q/k/v/o/gate/up/down projections) is first rounded to that type, round to nearest
even, as kvscope holds them with --weights. The forward runs in float64.

With --positions P0,P1,... token i sits at position Pi instead of i (causal order is
still the order of the ids): a gap or a shift shows what RoPE's angles depend on.

usage: llama_numpy.py MODEL_DIR 1,2,3 [--round f16|bf16] [--positions 0,1,2]
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_numpy import load_safetensors, round_bf16  # noqa: E402  (the file reader, bf16 rounding)
from rope_numpy import default_inv_freq, llama3_inv_freq  # noqa: E402


MATRICES = ("embed_tokens.weight", "lm_head.weight", "_proj.weight", "_proj_with_mqa.weight")  # the last: MLA


def round_weights(W, kind):
    for name in W:
        if name.endswith(MATRICES):
            a = W[name].astype(np.float32)
            a = a.astype(np.float16).astype(np.float32) if kind == "f16" else round_bf16(a)
            W[name] = a.astype(np.float64)


def rope_params(cfg):
    """(theta, scaling dict or None) from the 4.x (rope_theta, rope_scaling) or 5.x
    (rope_parameters) keys."""
    theta = cfg.get("rope_theta", 10000.0)
    scaling = cfg.get("rope_scaling")
    params = cfg.get("rope_parameters")
    if params:
        theta = params.get("rope_theta", theta)
        scaling = params
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = None
    return theta, scaling


def inv_freq_of(cfg, hd):
    theta, scaling = rope_params(cfg)
    inv = default_inv_freq(hd, theta)
    if scaling:
        assert scaling.get("rope_type", scaling.get("type")) == "llama3", scaling
        inv = llama3_inv_freq(inv, scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"],
                              scaling["original_max_position_embeddings"])
    return inv


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], -1)


def linear(W, prefix, x):
    y = x @ W[prefix + ".weight"].T
    if prefix + ".bias" in W:
        y = y + W[prefix + ".bias"]
    return y


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, W, ids, positions=None):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or C // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(ids)
    # Angles as transformers computes them: float32 inv_freq times float32 positions.
    inv = inv_freq_of(cfg, hd).astype(np.float32)
    pos = np.arange(T) if positions is None else np.asarray(positions)
    ang = (pos.astype(np.float32)[:, None] * inv[None, :]).astype(np.float64)
    emb = np.concatenate([ang, ang], -1)
    cos, sin = np.cos(emb), np.sin(emb)
    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(W, p + "self_attn.q_proj", h).reshape(T, H, hd)
        k = linear(W, p + "self_attn.k_proj", h).reshape(T, Hkv, hd)
        v = linear(W, p + "self_attn.v_proj", h).reshape(T, Hkv, hd)
        q = q * cos[:, None, :] + rotate_half(q) * sin[:, None, :]
        k = k * cos[:, None, :] + rotate_half(k) * sin[:, None, :]
        heads = []
        for i in range(H):
            g = i // (H // Hkv)
            s = q[:, i] @ k[:, g].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            heads.append(s @ v[:, g])
        x = x + linear(W, p + "self_attn.o_proj", np.concatenate(heads, -1))
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        f = silu(linear(W, p + "mlp.gate_proj", h)) * linear(W, p + "mlp.up_proj", h)
        x = x + linear(W, p + "mlp.down_proj", f)
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def main():
    model_dir, ids = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
    with open(f"{model_dir}/config.json") as f:
        cfg = json.load(f)
    W = load_safetensors(f"{model_dir}/model.safetensors")
    args = sys.argv[3:]
    if "--round" in args:
        round_weights(W, args[args.index("--round") + 1])
    positions = None
    if "--positions" in args:
        positions = [int(t) for t in args[args.index("--positions") + 1].split(",")]
        if len(positions) != len(ids):
            raise SystemExit("llama_numpy: --positions needs one position per id")
    print(json.dumps({"logits": forward(cfg, W, ids, positions).tolist()}))


if __name__ == "__main__":
    main()
