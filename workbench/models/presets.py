"""Qwen3 dense model presets: the public dimensions of Qwen3-8B and Qwen3-0.6B, and `tiny` for CPU tests.

A preset is a dict of `transformers.Qwen3Config` arguments; every preset runs the same transformers code
path (per-head q/k RMSNorm, GQA, RoPE, SwiGLU MLP), only the sizes differ.
"""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, Any] = {
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "attention_bias": False,
    "use_sliding_window": False,
    "initializer_range": 0.02,
}

PRESETS: dict[str, dict[str, Any]] = {
    "qwen3-8b": dict(
        _COMMON,
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        tie_word_embeddings=False,
    ),
    "qwen3-0.6b": dict(
        _COMMON,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        _COMMON,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=512,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    ),
}


def preset_config(name: str, **overrides: Any):
    """A `transformers.Qwen3Config` for preset `name`;
    `overrides` replace single fields (e.g. num_hidden_layers)."""
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    from transformers import Qwen3Config

    unknown = [k for k in overrides if k not in PRESETS[name] and not hasattr(Qwen3Config(), k)]
    if unknown:
        raise ValueError(f"overrides: {unknown} are not Qwen3Config fields")
    return Qwen3Config(**{**PRESETS[name], **overrides})


def parameter_count(name: str) -> int:
    """Parameters of preset `name` (embedding counted once when tied), without building the model."""
    p = PRESETS[name]
    h, i, n, v, d = (
        p["hidden_size"],
        p["intermediate_size"],
        p["num_hidden_layers"],
        p["vocab_size"],
        p["head_dim"],
    )
    q, kv = p["num_attention_heads"] * d, p["num_key_value_heads"] * d
    layer = h * (q + 2 * kv) + q * h + 3 * h * i + 2 * h + 2 * d
    return v * h * (1 if p["tie_word_embeddings"] else 2) + n * layer + h
