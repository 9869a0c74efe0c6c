"""Tests run on whatever backend this process binds to: cpu (Triton interpreter) without a GPU."""

import pytest

from workbench import backends


def pytest_collection_modifyitems(config, items):
    if not backends.active().interpreted:
        return
    skip = pytest.mark.skip(reason="needs a GPU backend (cuda or mlu); this process runs the cpu interpreter")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
