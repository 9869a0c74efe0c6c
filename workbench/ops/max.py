"""max along one dim: (values, indices) like torch.max(x, dim, keepdim);
NaN wins, ties give the first index."""

import torch

from . import _rows
from ._reduce import reduce_max
from ._reduce_cases import reduce_cases, reduce_cost
from .argmax import max_of_rows
from .mlu.persistent import persistent
from .spec import FLOAT_DTYPES, OpSpec, register


def _contiguous_rows(x, dim) -> bool:
    """Whether x is a float tensor (dtypes whose every value argmax's int32 ordering keys tell apart),
    contiguous, with `dim` (valid) its last dim."""
    if not isinstance(x, torch.Tensor) or type(dim) is not int:
        return False
    if x.dtype not in FLOAT_DTYPES or not x.numel():
        return False
    ndim = x.dim() or 1
    return -ndim <= dim < ndim and _rows.is_last_dim(x, dim) and x.is_contiguous()


def max(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.return_types.max:
    if not persistent() and _contiguous_rows(x, dim):  # argmax's one pass beats a reduction per tile
        return max_of_rows(x, dim, keepdim)
    return reduce_max(x, dim, keepdim)


SPEC = register(
    OpSpec(
        name="max",
        reference=torch.max,
        impl=max,
        cases=reduce_cases(single_dim=True),
        cost=reduce_cost,
        aten_impls={"aten::max.dim": lambda impl, self, dim, keepdim=False: impl(self, dim, keepdim)},
    )
)
