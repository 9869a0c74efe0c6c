"""Full-model runs: transformers Qwen3 models with workbench kernels swapped in through the ATen dispatcher.

`build_model(preset)` makes a Qwen3ForCausalLM (presets: qwen3-8b, qwen3-0.6b, tiny) with seeded random
weights on the active backend's device, or loads a local checkpoint. `run_model(...)` measures it natively
and with our ops (compiled with the workbench backend, or eagerly through `workbench.use_ops`: see
side.py), side by side; `bisect(...)` finds which of our ops cause a loss.
"""

from workbench import backends as _backends

_backends.active()  # before transformers, which imports triton (see workbench.backends.active)

import workbench.profiling  # noqa: E402, F401 (model runs tune through the store's tuning cache)

from . import plots  # noqa: E402
from .bisect import BisectResult, bisect  # noqa: E402
from .build import build_model, seeded_init  # noqa: E402
from .presets import PRESETS, parameter_count, preset_config  # noqa: E402
from .run import MODES, TARGETS, ModelRun, run_model, save, write_tables  # noqa: E402
from .train import TrainRun, train_both  # noqa: E402

__all__ = [
    "MODES",
    "PRESETS",
    "TARGETS",
    "BisectResult",
    "ModelRun",
    "TrainRun",
    "bisect",
    "build_model",
    "parameter_count",
    "plots",
    "preset_config",
    "run_model",
    "save",
    "seeded_init",
    "train_both",
    "write_tables",
]
