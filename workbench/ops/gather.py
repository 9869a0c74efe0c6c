"""gather: `out[i][j][k] = x[i][index[i][j][k]][k]` along `dim` (torch.gather), tensors up to 4 dims.

Indices must lie in [0, x.size(dim)); an index outside raises as in torch (`_index_check`; with the
check off it reads nothing and gives 0).
"""

import torch

from ._common import check_same_device, check_tensor, new_output
from ._movement import INDEX_DTYPES, MOVE_DTYPES, gather_into
from ._reduce import normalize_dims
from .spec import Case, Cost, OpSpec, Unsupported, nbytes, randn, register


def prepare(x: torch.Tensor, dim: int, index: torch.Tensor) -> tuple:
    """Validate; the arguments of `gather_into` (out, x, dim, index). Shared by the generic and MLU
    launchers."""
    check_tensor("x", x, MOVE_DTYPES)
    check_tensor("index", index, INDEX_DTYPES)
    check_same_device(x=x, index=index)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected an int, got {type(dim).__name__}")
    if x.dim() == 0 or index.dim() != x.dim():
        raise ValueError(f"index: expected {max(x.dim(), 1)} dims like x, got shape {tuple(index.shape)}")
    (d,) = normalize_dims(x, dim)
    small = all(i <= s for k, (i, s) in enumerate(zip(index.shape, x.shape)) if k != d)
    if not small:
        raise ValueError(
            f"index: shape {tuple(index.shape)} exceeds x shape {tuple(x.shape)} outside dim {d}"
        )
    return new_output(index.shape, x.dtype, x.device), x, d, index


def gather(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return gather_into(*prepare(x, dim, index), "gather")


def _aten_gather(impl, self, dim, index, *, sparse_grad=False):
    if sparse_grad:
        raise Unsupported("sparse_grad=True")
    return impl(self, dim, index)


def _cost(x, dim, index):
    return Cost(bytes=2 * nbytes(index) + index.numel() * x.element_size(), flops=0)


def _case(name, shape, dim, index_shape, index_dtype=torch.int64, transform=None):
    def make(d, dev, g):
        x = randn(shape, d, dev, g)
        x = transform(x) if transform else x
        idx = torch.randint(0, x.shape[dim], index_shape, device=dev, generator=g, dtype=index_dtype)
        return (x, dim, idx), {}

    return Case(name, make)


SPEC = register(
    OpSpec(
        name="gather",
        reference=torch.gather,
        impl=gather,
        cases={
            "quick": lambda: [
                _case("64x300 dim 1, 64x20", (64, 300), 1, (64, 20)),
                _case("50x30 dim 0, 70x30", (50, 30), 0, (70, 30)),
            ],
            "edge": lambda: [
                _case("rank3 dim 1 smaller index 4x9x5", (4, 9, 5), 1, (3, 6, 2)),
                _case("rank4 dim -1", (2, 3, 4, 10), -1, (2, 3, 4, 7)),
                _case("int32 index", (12, 40), 1, (12, 8), index_dtype=torch.int32),
                _case("transposed x", (40, 30), 0, (30, 5), transform=lambda x: x.t()),
                _case("zero-size index 6x0", (6, 9), 1, (6, 0)),
                # past 2**31: index_select's big case runs the same gather kernel
            ],
            "llm": lambda: [
                _case("top-k probs 64x151936 -> 64x50", (64, 151936), 1, (64, 50)),
                _case("token log-probs 2048x151936 -> 2048x1", (2048, 151936), 1, (2048, 1)),
            ],
        },
        cost=_cost,
        aten_impls={"aten::gather": _aten_gather},
    )
)
