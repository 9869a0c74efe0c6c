"""sum over dims, keepdim, optional output dtype (torch.sum with dim); fp32 accumulation."""

import torch

from ._reduce import reduce_sum
from ._reduce_cases import reduce_cases, reduce_cost
from .spec import OpSpec, register


def sum(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    return reduce_sum(x, dim, keepdim, dtype)


def _aten_sum(impl, self, dim=None, keepdim=False, *, dtype=None):
    """aten::sum.dim_IntList(self, dim, keepdim=False, *, dtype=None); dim None or [] means all dims."""
    return impl(self, dim, keepdim, dtype=dtype)


SPEC = register(OpSpec(
    name="sum",
    reference=torch.sum,
    impl=sum,
    cases=reduce_cases(with_dtype=True),
    cost=reduce_cost,
    aten_impls={"aten::sum.dim_IntList": _aten_sum},
))
