"""Triton ops, one module per op, each declaring its OpSpec beside its kernel.

Importing this package fixes the process's backend first (see workbench.backends.active), so that
every kernel below is defined in the same mode: interpreted on cpu, compiled on cuda/mlu.
"""

from workbench import backends as _backends

_backends.active()

from . import add, exp, gelu, layer_norm, mm, mul, rms_norm, silu, softmax  # noqa: E402
from .spec import CASE_SETS, REGISTRY, Case, Cost, OpSpec, get, register  # noqa: E402

add = add.add
mul = mul.mul
exp = exp.exp
silu = silu.silu
gelu = gelu.gelu
softmax = softmax.softmax
rms_norm = rms_norm.rms_norm
layer_norm = layer_norm.layer_norm
mm = mm.mm

from . import mlu as _mlu_variants  # noqa: E402,F401  (registers OpSpec.variants["mlu"])
from .spec import dispatching as _dispatching  # noqa: E402

# The public functions run the active backend's variant where one is registered (mlu on an MLU).
for _name, _spec in REGISTRY.items():
    if callable(globals().get(_name)):
        globals()[_name] = _dispatching(_spec)

__all__ = ["REGISTRY", "CASE_SETS", "Case", "Cost", "OpSpec", "get", "register",
           "add", "mul", "exp", "silu", "gelu", "softmax", "rms_norm", "layer_norm", "mm"]
