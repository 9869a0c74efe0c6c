"""Build a transformers Qwen3ForCausalLM on the active backend's device: seeded random weights or a local checkpoint.

Random weights are made on the device itself, in the target dtype: the model is constructed under a
`torch.device` context with bf16 as the default dtype (so 8B parameters never pass through host memory
or fp32), then every parameter is refilled from a generator seeded by (seed, parameter name) — the same
seed gives the same weights on the same device whatever the construction order.
A checkpoint is read from a local directory only (`local_files_only`): no hub downloads.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path

import torch

from workbench import backends

from .presets import preset_config

ATTN_IMPLEMENTATION = "sdpa"  # torch's scaled_dot_product_attention: an ATen op the dispatcher can route


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _param_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


@torch.no_grad()
def seeded_init(model: torch.nn.Module, seed: int = 0, std: float | None = None) -> None:
    """Refill every parameter in place: norm weights 1, everything else N(0, std) (std: initializer_range)."""
    std = model.config.initializer_range if std is None else std
    for name, p in model.named_parameters():  # tied weights appear once
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            gen = torch.Generator(device=p.device).manual_seed(_param_seed(seed, name))
            p.normal_(0.0, std, generator=gen)


def _dtype_kwarg() -> str:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def build_model(preset: str = "tiny", checkpoint: str | Path | None = None, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.bfloat16, seed: int = 0, init_std: float | None = None,
                **overrides) -> torch.nn.Module:
    """A Qwen3ForCausalLM in eval mode with SDPA attention on `device` (default: the active backend's).

    preset: a name from PRESETS (random weights from `seed`); `overrides` change single config fields.
    checkpoint: a local directory written by `save_pretrained` (then preset, seed and overrides are unused).
    """
    backend = backends.active()  # before transformers, which imports triton (see backends.active)
    from transformers import Qwen3ForCausalLM

    device = torch.device(device) if device is not None else backend.device()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise ValueError(f"checkpoint: expected a local directory with config.json, got {str(path)!r}")
        model = Qwen3ForCausalLM.from_pretrained(path, local_files_only=True, device_map={"": device},
                                                 attn_implementation=ATTN_IMPLEMENTATION, **{_dtype_kwarg(): dtype})
        model = model.to(dtype)  # no-op unless this transformers ignored the dtype argument
    else:
        config = preset_config(preset, **overrides)
        config._attn_implementation = ATTN_IMPLEMENTATION
        with torch.device(device), _default_dtype(dtype):
            model = Qwen3ForCausalLM(config)
        seeded_init(model, seed, init_std)
    if model.config._attn_implementation != ATTN_IMPLEMENTATION:
        raise ValueError(f"attention implementation: expected {ATTN_IMPLEMENTATION!r}, "
                         f"got {model.config._attn_implementation!r}")
    return model.eval()
