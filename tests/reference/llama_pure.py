#!/usr/bin/env python3
"""An independent Llama forward pass in plain Python (no NumPy), for checking the
forward of kvscope's trainer on the folders it writes.

Reads a Hugging Face LlamaForCausalLM folder (config.json + model.safetensors, F32),
runs the token ids given on the command line and prints {"logits": [[...] per
position]} as JSON. Written from transformers' modeling_llama.py, sharing no code
with kvscope: LlamaRMSNorm (x * rsqrt(mean(x^2) + eps) * weight), the rotary
embedding (inv_freq = 1 / theta^(arange(0, hd, 2) / hd) and freqs = inv_freq * pos,
both float32 as transformers computes them; emb = cat(freqs, freqs);
q * cos(emb) + rotate_half(q) * sin(emb)), repeat_kv's grouping of query heads onto
kv heads, causal softmax(q k^T / sqrt(hd)) v, o_proj, LlamaMLP
(down(silu(gate(x)) * up(x))), the final norm and the head (embed_tokens when
tie_word_embeddings). nn.Linear weights are [out, in]. The rest runs in float64.
Pure Python: meant for tiny models (tiny-llama: a second for a few tokens).

usage: llama_pure.py MODEL_DIR 1,2,3
"""
import json
import math
import struct
import sys


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


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
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}; this reference reads F32 only")
        b, e = info["data_offsets"]
        vals = list(struct.unpack(f"<{(e - b) // 4}f", data[b:e]))
        shape = info["shape"]
        if len(shape) == 2:
            vals = [vals[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
        out[name] = vals
    return out


def linear(x, w):  # nn.Linear without bias: w is [out][in], y = x w^T
    return [sum(a * b for a, b in zip(x, row)) for row in w]


def rms_norm(x, w, eps):
    s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [wi * v * s for v, wi in zip(x, w)]


def rotate_half(x):
    h = len(x) // 2
    return [-v for v in x[h:]] + x[:h]


def apply_rope(x, pos, inv_freq):
    freqs = [f32(f32(pos) * f) for f in inv_freq]
    emb = freqs + freqs
    r = rotate_half(x)
    return [v * math.cos(a) + rv * math.sin(a) for v, rv, a in zip(x, r, emb)]


def forward(cfg, w, ids):
    for key, ok in (("rope_scaling", None), ("attention_bias", False), ("mlp_bias", False)):
        if cfg.get(key, ok) != ok:
            sys.exit(f"config.json: {key} {cfg[key]!r} is beyond this reference")
    if cfg.get("hidden_act", "silu") != "silu":
        sys.exit("config.json: hidden_act must be silu")
    C, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or C // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    inv_freq = [f32(1.0 / f32(theta ** (i / hd))) for i in range(0, hd, 2)]
    n_rep = H // Hkv
    emb = w["model.embed_tokens.weight"]
    head = emb if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    xs = [list(emb[i]) for i in ids]
    for l in range(L):
        p = f"model.layers.{l}."
        keys, values, out_rows = [], [], []
        for pos, x in enumerate(xs):
            h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
            q = linear(h, w[p + "self_attn.q_proj.weight"])
            k = linear(h, w[p + "self_attn.k_proj.weight"])
            v = linear(h, w[p + "self_attn.v_proj.weight"])
            q = [apply_rope(q[i * hd:(i + 1) * hd], pos, inv_freq) for i in range(H)]
            keys.append([apply_rope(k[g * hd:(g + 1) * hd], pos, inv_freq) for g in range(Hkv)])
            values.append([v[g * hd:(g + 1) * hd] for g in range(Hkv)])
            att = []
            for i in range(H):
                g = i // n_rep  # repeat_kv: kv head g serves query heads g*n_rep .. g*n_rep + n_rep - 1
                s = [sum(a * b for a, b in zip(q[i], keys[j][g])) / math.sqrt(hd) for j in range(pos + 1)]
                m = max(s)
                e = [math.exp(x_ - m) for x_ in s]
                z = sum(e)
                att += [sum(e[j] / z * values[j][g][c] for j in range(pos + 1)) for c in range(hd)]
            x2 = [a + b for a, b in zip(x, linear(att, w[p + "self_attn.o_proj.weight"]))]
            h2 = rms_norm(x2, w[p + "post_attention_layernorm.weight"], eps)
            gate = linear(h2, w[p + "mlp.gate_proj.weight"])
            up = linear(h2, w[p + "mlp.up_proj.weight"])
            act = [gv / (1.0 + math.exp(-gv)) * uv for gv, uv in zip(gate, up)]
            out_rows.append([a + b for a, b in zip(x2, linear(act, w[p + "mlp.down_proj.weight"]))])
        xs = out_rows
    return [linear(rms_norm(x, w["model.norm.weight"], eps), head) for x in xs]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    folder, ids = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
    with open(folder + "/config.json") as f:
        cfg = json.load(f)
    w = load_safetensors(folder + "/model.safetensors")
    json.dump({"logits": forward(cfg, w, ids)}, sys.stdout)


if __name__ == "__main__":
    main()
