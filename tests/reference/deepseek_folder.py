#!/usr/bin/env python3
"""Writes a small random DeepseekV3ForCausalLM folder (config.json, model.safetensors)
the way a Hugging Face checkpoint lays it out, sharing no code with kvscope's writer:
dense MLPs (first_k_dense_replace = num_hidden_layers, n_routed_experts null), an untied
head, norm weights apart from 1, weights large enough that attention is not uniform.
kvscope must load it as written; tests/test_reference.cpp then holds the engine's
logits to mla_numpy.py's on it.

--shape v2-lite-attn writes DeepSeek-V2-Lite's attention widths (hidden 2048, 16 heads,
kv_lora_rank 512, qk_rope_head_dim 64, qk_nope_head_dim 128, v_head_dim 128) in 2 dense
layers (intermediate 1408, vocabulary 512, 2048 positions), for benchmarks of the two
ways to read the latent cache (docs/benchmarks.md, "MLA").

usage: deepseek_folder.py OUT_DIR [--q-lora-rank N] [--seed S] [--shape tiny|v2-lite-attn]
"""
import json
import os
import struct
import sys

import numpy as np


def main():
    args = sys.argv[1:]
    out = args[0]
    q_lora = int(args[args.index("--q-lora-rank") + 1]) if "--q-lora-rank" in args else 0
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
    rng = np.random.default_rng(seed)
    shape = args[args.index("--shape") + 1] if "--shape" in args else "tiny"
    V, C, L, H, F, T = 50, 32, 2, 4, 48, 64
    dc, dr, dn, dv = 16, 8, 8, 8
    std, emb_std = 0.2, 1.0
    if shape == "v2-lite-attn":
        V, C, L, H, F, T = 512, 2048, 2, 16, 1408, 2048
        dc, dr, dn, dv = 512, 64, 128, 128
        std, emb_std = 0.02, 0.02
    elif shape != "tiny":
        raise SystemExit(f"deepseek_folder.py: unknown --shape {shape} (tiny or v2-lite-attn)")
    cfg = dict(architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", vocab_size=V, hidden_size=C,
               intermediate_size=F, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=H,
               kv_lora_rank=dc, q_lora_rank=q_lora or None, qk_rope_head_dim=dr, qk_nope_head_dim=dn,
               v_head_dim=dv, head_dim=dr, max_position_embeddings=T, rms_norm_eps=1e-6, rope_theta=10000.0,
               rope_scaling=None, rope_interleave=True, first_k_dense_replace=L, n_routed_experts=None,
               tie_word_embeddings=False, attention_bias=False, hidden_act="silu")
    W = {}

    def mat(name, *dims, scale=std):
        W[name] = (rng.standard_normal(dims) * scale).astype(np.float32)

    def norm(name, n):
        W[name] = (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    mat("model.embed_tokens.weight", V, C, scale=emb_std)
    for l in range(L):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        if q_lora:
            mat(a + "q_a_proj.weight", q_lora, C)
            norm(a + "q_a_layernorm.weight", q_lora)
            mat(a + "q_b_proj.weight", H * (dn + dr), q_lora)
        else:
            mat(a + "q_proj.weight", H * (dn + dr), C)
        mat(a + "kv_a_proj_with_mqa.weight", dc + dr, C)
        norm(a + "kv_a_layernorm.weight", dc)
        mat(a + "kv_b_proj.weight", H * (dn + dv), dc)
        mat(a + "o_proj.weight", C, H * dv)
        mat(p + "mlp.gate_proj.weight", F, C)
        mat(p + "mlp.up_proj.weight", F, C)
        mat(p + "mlp.down_proj.weight", C, F)
        norm(p + "input_layernorm.weight", C)
        norm(p + "post_attention_layernorm.weight", C)
    norm("model.norm.weight", C)
    mat("lm_head.weight", V, C, scale=emb_std)
    header, blobs, off = {}, [], 0
    for name, v in W.items():
        b = v.tobytes()
        header[name] = dict(dtype="F32", shape=list(v.shape), data_offsets=[off, off + len(b)])
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main()
