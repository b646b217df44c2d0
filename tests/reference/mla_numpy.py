#!/usr/bin/env python3
"""An independent forward pass of multi-head latent attention (MLA) in NumPy, for
checking kvscope's engine on DeepSeek-V3-layout folders with dense MLPs.

Written from DeepSeek-V2's equations (arXiv 2405.04434, section 2.1) as transformers'
DeepseekV3Attention applies them, sharing no code with kvscope:
  c_KV = RMSNorm(W_DKV h)            (kv_a_proj_with_mqa's first kv_lora_rank outputs,
                                      then kv_a_layernorm)
  k_R  = RoPE(W_KR h)                (its last qk_rope_head_dim outputs; one per token,
                                      shared by every head)
  [k_C | v] per head = W_UKV c_KV    (kv_b_proj: qk_nope_head_dim + v_head_dim per head)
  q    = W_UQ RMSNorm(W_DQ h)        (q_a_proj, q_a_layernorm, q_b_proj) or q_proj h
  [q_C | q_R] per head, q_R rotated
  score = (q_C . k_C + q_R . k_R) / sqrt(qk_nope_head_dim + qk_rope_head_dim)
RoPE with rotate_half on the pairs (i, i + d/2), after de-interleaving both q_R and
k_R when rope_interleave is true (transformers' apply_rotary_pos_emb_interleave).
The blocks are Llama's otherwise: RMSNorm before attention and MLP, SwiGLU MLP.

--absorbed computes the same logits the other way: W_UK folded into the query
(q_C W_UK) so scores read the latent c_KV directly, and attention's weighted sum taken
over latents, projected by W_UV afterwards. The two must agree to rounding.

With --round f16|bf16 every weight matrix is first rounded to that type as kvscope
holds it (llama_numpy.round_weights).

usage: mla_numpy.py MODEL_DIR 1,2,3 [--absorbed] [--positions 0,1,2] [--round f16|bf16]
prints {"logits": [[...] per position]}. The forward runs in float64.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_numpy import load_safetensors  # noqa: E402  (the safetensors reader)
from llama_numpy import linear, rms_norm as rmsnorm, round_weights, silu  # noqa: E402  (shared with Llama)


def rope(x, pos, theta, interleave):
    """x (n, ..., d) rotated for positions pos (n), rotate_half convention."""
    d = x.shape[-1]
    if interleave:  # (d/2, 2) -> (2, d/2): even indices first, then odd
        x = x.reshape(*x.shape[:-1], d // 2, 2).swapaxes(-1, -2).reshape(x.shape)
    inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]  # (n, d/2)
    cos = np.concatenate([np.cos(ang)] * 2, -1)
    sin = np.concatenate([np.sin(ang)] * 2, -1)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (d,)
    cos, sin = cos.reshape(shape), sin.reshape(shape)
    half = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + half * sin


def rope_theta(cfg):
    params = cfg.get("rope_parameters") or {}
    kind = params.get("rope_type", (cfg.get("rope_scaling") or {}).get("type", "default"))
    if kind != "default":
        raise SystemExit(f"mla_numpy: rope type {kind} is not written here")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def attention(cfg, W, p, h, pos, absorbed):
    n, H = h.shape[0], cfg["num_attention_heads"]
    dc, dr = cfg["kv_lora_rank"], cfg["qk_rope_head_dim"]
    dn, dv = cfg["qk_nope_head_dim"], cfg["v_head_dim"]
    eps, theta = cfg["rms_norm_eps"], rope_theta(cfg)
    inter = cfg.get("rope_interleave", True)
    if cfg.get("q_lora_rank"):
        q = linear(W, p + "q_b_proj", rmsnorm(linear(W, p + "q_a_proj", h), W[p + "q_a_layernorm.weight"], eps))
    else:
        q = linear(W, p + "q_proj", h)
    q = q.reshape(n, H, dn + dr)
    q_c, q_r = q[..., :dn], rope(q[..., dn:], pos, theta, inter)
    ckv = linear(W, p + "kv_a_proj_with_mqa", h)
    c = rmsnorm(ckv[:, :dc], W[p + "kv_a_layernorm.weight"], eps)  # (n, dc): what the cache holds
    k_r = rope(ckv[:, dc:], pos, theta, inter)                       # (n, dr): and this
    w_ukv = W[p + "kv_b_proj.weight"].reshape(H, dn + dv, dc)
    w_uk, w_uv = w_ukv[:, :dn, :], w_ukv[:, dn:, :]                  # (H, dn, dc), (H, dv, dc)
    scale = 1.0 / np.sqrt(dn + dr)
    mask = np.tril(np.ones((n, n), dtype=bool))
    out = np.zeros((n, H, dv))
    for hh in range(H):
        if absorbed:
            s = (q_c[:, hh] @ w_uk[hh]) @ c.T                          # (n, n) over latents
        else:
            s = q_c[:, hh] @ (c @ w_uk[hh].T).T                        # k_C = W_UK c
        s = (s + q_r[:, hh] @ k_r.T) * scale
        s = np.where(mask, s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        out[:, hh] = (a @ c) @ w_uv[hh].T if absorbed else a @ (c @ w_uv[hh].T)
    return linear(W, p + "o_proj", out.reshape(n, H * dv))


def forward(cfg, W, ids, pos, absorbed):
    if cfg.get("n_routed_experts") and cfg.get("first_k_dense_replace", 0) < cfg["num_hidden_layers"]:
        raise SystemExit("mla_numpy: mixture-of-experts layers are not written here")
    eps = cfg["rms_norm_eps"]
    x = W["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        x = x + attention(cfg, W, p + "self_attn.", rmsnorm(x, W[p + "input_layernorm.weight"], eps), pos, absorbed)
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g, u = linear(W, p + "mlp.gate_proj", h), linear(W, p + "mlp.up_proj", h)
        x = x + linear(W, p + "mlp.down_proj", silu(g) * u)
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def main():
    args = sys.argv[1:]
    absorbed = "--absorbed" in args
    folder, ids = args[0], [int(t) for t in args[1].split(",")]
    pos = list(range(len(ids)))
    if "--positions" in args:
        pos = [int(t) for t in args[args.index("--positions") + 1].split(",")]
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    W = load_safetensors(os.path.join(folder, "model.safetensors"))
    if "--round" in args:
        round_weights(W, args[args.index("--round") + 1])
    logits = forward(cfg, W, np.array(ids), pos, absorbed)
    print(json.dumps({"logits": logits.tolist()}))


if __name__ == "__main__":
    main()
