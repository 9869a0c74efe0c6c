"""Build a transformers Qwen3ForCausalLM on the active backend's device:
seeded random weights or a local checkpoint.

Random weights are made on the device itself, in the target dtype: the model is constructed under a
`torch.device` context with bf16 as the default dtype (so 8B parameters never pass through host memory
or fp32), then every parameter is refilled from a generator seeded by (seed, parameter name) — the same
seed gives the same weights on the same device whatever the construction order.
A checkpoint is read from a local directory only (`local_files_only`): no hub downloads.
"""

from __future__ import annotations

import contextlib
import copy
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


def _load_checkpoint(path: Path, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Construct from the directory's config on the device, then copy its weights in from device-side loads.

    No `device_map` (that needs accelerate, which the GPU image may lack) and no trip through host memory:
    safetensors shards load straight onto the device.
    """
    from transformers import Qwen3Config, Qwen3ForCausalLM

    shards = sorted(path.glob("*.safetensors"))
    bins = sorted(path.glob("pytorch_model*.bin"))
    if not shards and not bins:
        raise ValueError(
            f"checkpoint: expected *.safetensors or pytorch_model*.bin files in {str(path)!r}, found none"
        )
    config = Qwen3Config.from_pretrained(path, local_files_only=True)
    config._attn_implementation = ATTN_IMPLEMENTATION
    with torch.device(device), _default_dtype(dtype):
        model = Qwen3ForCausalLM(config)
    state: dict[str, torch.Tensor] = {}
    if shards:
        from safetensors.torch import load_file

        for shard in shards:
            state.update(load_file(shard, device=str(device)))
    else:
        for shard in bins:
            state.update(torch.load(shard, map_location=device, weights_only=True))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint: weights do not match Qwen3ForCausalLM: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def build_model(
    preset: str = "tiny",
    checkpoint: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    init_std: float | None = None,
    **overrides,
) -> torch.nn.Module:
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
        model = _load_checkpoint(path, device, dtype)
    else:
        config = preset_config(preset, **overrides)
        config._attn_implementation = ATTN_IMPLEMENTATION
        with torch.device(device), _default_dtype(dtype):
            model = Qwen3ForCausalLM(config)
        seeded_init(model, seed, init_std)
    if model.config._attn_implementation != ATTN_IMPLEMENTATION:
        raise ValueError(
            f"attention implementation: expected {ATTN_IMPLEMENTATION!r}, "
            f"got {model.config._attn_implementation!r}"
        )
    return model.eval()


def twin(model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A copy of `model` in `dtype` on the same device (e.g. the float32 reference of a bf16 model).

    Built from the model's config under a device context and filled from its state dict: the weights are
    the bf16 values exactly, converted; no copy passes through host memory.
    """
    from transformers import Qwen3ForCausalLM

    config = copy.deepcopy(model.config)
    config._attn_implementation = ATTN_IMPLEMENTATION
    with torch.device(model.device), _default_dtype(dtype):
        other = Qwen3ForCausalLM(config)
    other.load_state_dict(model.state_dict())
    return other.eval()
