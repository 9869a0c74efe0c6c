"""index_select: the slices of x at `index` along `dim` (torch.index_select); an embedding lookup at dim 0.

Rows of a 2-D tensor (dim 0, the embedding lookup) go through the embedding kernel's row tiles; other
cases through the gather kernel with the 1-D index broadcast over the other dims (stride 0).
An index outside [0, x.size(dim)) raises IndexError as in torch (with the check off it reads 0).
"""

import torch

from ._common import check_same_device, check_tensor, new_output
from ._movement import INDEX_DTYPES, MOVE_DTYPES, gather_into
from ._reduce import normalize_dims
from .embedding import gather_rows
from .spec import Case, Cost, OpSpec, nbytes, randn, register


def prepare(x: torch.Tensor, dim: int, index: torch.Tensor) -> tuple:
    """Validate; the arguments of `gather_into` (out, x, dim, index as a tensor of out's shape). Shared by
    the generic and MLU launchers."""
    check_tensor("x", x, MOVE_DTYPES)
    check_tensor("index", index, INDEX_DTYPES)
    check_same_device(x=x, index=index)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected an int, got {type(dim).__name__}")
    if x.dim() == 0:
        raise ValueError("x: expected at least 1 dim, got a 0-dim tensor")
    if index.dim() > 1:
        raise ValueError(f"index: expected 0 or 1 dims, got shape {tuple(index.shape)}")
    (d,) = normalize_dims(x, dim)
    shape = list(x.shape)
    shape[d] = index.numel()
    out = new_output(shape, x.dtype, x.device)
    # The index as a tensor of out's shape: its own stride along d, 0 elsewhere.
    view = index.reshape([1] * d + [-1] + [1] * (x.dim() - d - 1)).expand(shape)
    return out, x, d, view


def index_select(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    out, x, d, view = prepare(x, dim, index)
    if d == 0 and x.dim() == 2 and out.numel():  # whole rows of a table: the embedding kernel's 2-D tiles
        return gather_rows(out, x, index.reshape(-1).contiguous(), 0.0, "index_select")
    return gather_into(out, x, d, view, "index_select")


def _cost(x, dim, index):
    rows = x.numel() // max(1, x.shape[dim]) * index.numel()
    return Cost(bytes=nbytes(index) + 2 * rows * x.element_size(), flops=0)


def _case(name, shape, dim, n_index, index_dtype=torch.int64, transform=None, big=False):
    def make(d, dev, g):
        x = randn(shape, d, dev, g)
        x = transform(x) if transform else x
        idx = torch.randint(0, x.shape[dim], (n_index,), device=dev, generator=g, dtype=index_dtype)
        return (x, dim, idx), {}

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="index_select",
        reference=torch.index_select,
        impl=index_select,
        cases={
            "quick": lambda: [
                _case("rows of 100x64, 30 indices", (100, 64), 0, 30),
                _case("columns of 20x300, 50 indices", (20, 300), 1, 50),
            ],
            "edge": lambda: [
                _case("rank3 middle dim 4x9x5", (4, 9, 5), 1, 12),
                _case("rank4 last dim", (2, 3, 4, 10), -1, 7),
                _case("int32 index", (40, 12), 0, 16, index_dtype=torch.int32),
                _case("transposed x", (40, 30), 1, 9, transform=lambda x: x.t()),
                _case("empty index", (6, 9), 0, 0),
                _case("big table 524289x4096 rows", (524289, 4096), 0, 64, big=True),
            ],
            "llm": lambda: [
                _case("embedding prefill 151936x4096, 2048 tokens", (151936, 4096), 0, 2048),
                _case("embedding decode 151936x4096, 64 tokens", (151936, 4096), 0, 64),
            ],
        },
        cost=_cost,
        aten_impls={"aten::index_select": lambda impl, self, dim, index: impl(self, dim, index)},
    )
)
