"""GPU-only: indexing past 2**31 elements and the llm (Qwen3-8B) shapes."""

import pytest
import torch

from workbench.ops import REGISTRY
from workbench.profiling.correctness import check_case


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["add", "exp", "softmax", "rms_norm"])
def test_llm_shapes_bf16(name):
    spec = REGISTRY[name]
    for case in spec.case_list("llm"):
        row = check_case(spec, case, torch.bfloat16, seed=7)
        assert row["passed"], (case.name, row.get("error"), row.get("rel_err"))
