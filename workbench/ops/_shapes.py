"""Shape arithmetic for op wrappers on the hot path, in plain Python.

Decode calls each op thousands of times with small tensors, so the wrapper's own cost counts:
`triton.cdiv` / `triton.next_power_of_2` are ConstexprFunctions (~6 µs a call) and
`torch.broadcast_shapes` goes through symbolic-shape guards (~100 µs) and `Tensor.expand` makes a view
(several µs); these take well under 1 µs.
"""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def broadcast(*shapes) -> tuple[int, ...] | None:
    """torch's broadcast of `shapes`, or None when they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for i, size in enumerate(shape, ndim - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    return None
                out[i] = size
            elif out[i] == 1 and size == 0:
                out[i] = 0
    return tuple(out)


def broadcast_strides(t_shape, t_strides, shape) -> list[int]:
    """The strides of a tensor of `t_shape` and `t_strides` expanded to `shape` (0 along broadcast dims),
    without making the view."""
    lead = len(shape) - len(t_shape)
    return [0] * lead + [
        0 if size == 1 and shape[lead + i] != 1 else st
        for i, (size, st) in enumerate(zip(t_shape, t_strides))
    ]
