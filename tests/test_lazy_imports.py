"""`workbench`, `workbench.porting` and `workbench.ui` load their modules on first use
(workbench/_lazy.py)."""

import os
import subprocess
import sys
from pathlib import Path

_CHECK = """
import sys
import workbench
import workbench.porting as porting
import workbench.ui as ui

heavy = ("workbench.ops", "workbench.dispatch", "workbench.porting.promotion", "workbench.ui.panel", "pandas",
         "ipywidgets")
assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
assert porting.PromotionError is sys.modules["workbench.porting.promotion"].PromotionError
assert porting.candidate is sys.modules["workbench.porting.candidate"]
assert ui.magics is sys.modules["workbench.ui.magics"] and "workbench.ui.panel" not in sys.modules
assert workbench.use_ops is sys.modules["workbench.dispatch"].use_ops
assert sorted(workbench.__all__) == sorted(["backends", "ops", "profiling", "dispatch", "compile", "enable",
                                            "disable", "use_ops", "compile_coverage"])
for module in (workbench, porting, ui):
    try:
        module.no_such_name
    except AttributeError as error:
        assert str(error) == f"module {module.__name__!r} has no attribute 'no_such_name'", error
    else:
        raise AssertionError(f"{module.__name__}.no_such_name did not raise")
"""


def test_packages_load_their_modules_on_first_use():
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", _CHECK], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
