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
