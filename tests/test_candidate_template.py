"""The panel's template: every op's current kernel, on this backend and as its MLU variant, turned into a
candidate file that loads under the candidate format's rules (absolute imports, no SPEC)."""

import pytest

from workbench import backends
from workbench.ops import REGISTRY
from workbench.porting import candidate


@pytest.mark.parametrize("backend", sorted({backends.active().name, "mlu"}))
def test_every_template_loads_as_a_candidate(backend, tmp_path):
    for op in REGISTRY:
        source = candidate.template(op, backend)
        assert "from ." not in source and "SPEC" not in source, op
        path = tmp_path / f"{op}_{backend}.py"
        path.write_text(source)
        loaded = candidate.load(path, op, module_name=f"template_{op}_{backend}")
        assert not loaded.new_op and loaded.fn.__module__ == f"template_{op}_{backend}", op


def test_a_template_keeps_the_package_backward_operators(tmp_path):
    """Loading an op's source again (its template) must not define its backward operator anew: torch would
    drop the definition the package's module still calls (a use-after-free in the dispatcher)."""
    import sys

    import torch

    import workbench.ops

    module = sys.modules["workbench.ops.embedding"]
    before = torch.ops.workbench.embedding_backward.default
    path = tmp_path / "embedding.py"
    path.write_text(candidate.template("embedding", backends.active().name))
    loaded = candidate.load(path, "embedding", module_name="template_embedding_backward")
    assert loaded.module.embedding_backward is module.embedding_backward
    assert torch.ops.workbench.embedding_backward.default is before
    weight = torch.randn(5, 3, device=backends.active().device(), requires_grad=True)
    ids = torch.tensor([0, 4, 4], device=weight.device)
    workbench.ops.embedding(ids, weight).sum().backward()
    assert weight.grad.tolist() == [[1.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3, [2.0] * 3]
