"""max along one dim: (values, indices) like torch.max(x, dim, keepdim);
NaN wins, ties give the first index."""

import torch

from ._reduce import reduce_max
from ._reduce_cases import reduce_cases, reduce_cost
from .spec import OpSpec, register


def max(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.return_types.max:
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
