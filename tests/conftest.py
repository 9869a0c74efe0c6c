"""Tests run on whatever backend this process binds to: cpu (Triton interpreter) without a GPU."""

import pytest

from workbench import backends

backends.active()  # binds the backend (and Triton's interpreter mode) before a test module imports triton


def pytest_collection_modifyitems(config, items):
    if not backends.active().interpreted:
        return
    skip = pytest.mark.skip(reason="needs a GPU backend (cuda or mlu); this process runs the cpu interpreter")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
