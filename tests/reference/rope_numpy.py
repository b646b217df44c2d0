#!/usr/bin/python3
"""RoPE inverse frequencies written from transformers' modeling_rope_utils
(_compute_default_rope_parameters and _compute_llama3_parameters), in float32 as torch
computes them, for tests/test_llama_config.cpp. Independent of kvscope's C++.

    rope_numpy.py HEAD_DIM THETA [FACTOR LOW_FREQ_FACTOR HIGH_FREQ_FACTOR ORIGINAL_MAX_POS]

Prints the HEAD_DIM/2 values as a JSON list ("llama3" scaling when the four factors
are given, "default" otherwise)."""
import json
import math
import sys

import numpy as np


def default_inv_freq(dim, base):
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    return (np.float32(1.0) / (np.float32(base) ** exponents)).astype(np.float32)


def llama3_inv_freq(inv_freq, factor, low_freq_factor, high_freq_factor, old_context_len):
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = np.float32(2 * math.pi) / inv_freq
    # longer than low_freq_wavelen: divided by factor; shorter than high_freq_wavelen: kept
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / np.float32(factor), inv_freq)
    smooth_factor = (np.float32(old_context_len) / wavelen - np.float32(low_freq_factor)) / np.float32(
        high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / np.float32(factor) + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium, smoothed, inv_freq_llama).astype(np.float32)


def main():
    dim, theta = int(sys.argv[1]), float(sys.argv[2])
    inv = default_inv_freq(dim, theta)
    if len(sys.argv) == 7:
        factor, low, high, old = (float(a) for a in sys.argv[3:7])
        inv = llama3_inv_freq(inv, factor, low, high, old)
    print(json.dumps([float(x) for x in inv]))


if __name__ == "__main__":
    main()
