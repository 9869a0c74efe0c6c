"""Triton ops, one module per op, each declaring its OpSpec beside its kernel.

Importing this package fixes the process's backend first (see workbench.backends.active), so that
every kernel below is defined in the same mode: interpreted on cpu, compiled on cuda/mlu.
"""

from workbench import backends as _backends

_backends.active()

from . import add, exp, gelu, layer_norm, mm, mul, rms_norm, silu, softmax  # noqa: E402
from . import add_rms_norm, argmax, cross_entropy, cumsum, embedding, log_softmax  # noqa: E402
from . import rope, scaled_dot_product_attention, silu_and_mul, topk  # noqa: E402
from . import addmm, bmm, div, linear, masked_fill, max, mean, neg, pow, rsqrt, sub, sum, where  # noqa: E402
from . import cat, copy, fill, gather, index_select  # noqa: E402
from . import linear_cross_entropy  # noqa: E402
from .spec import CASE_SETS, REGISTRY, Case, Cost, OpSpec, get, register  # noqa: E402
from .spec import Unsupported  # noqa: E402

add = add.add
mul = mul.mul
exp = exp.exp
silu = silu.silu
gelu = gelu.gelu
softmax = softmax.softmax
rms_norm = rms_norm.rms_norm
layer_norm = layer_norm.layer_norm
mm = mm.mm
sub = sub.sub
div = div.div
neg = neg.neg
pow = pow.pow
rsqrt = rsqrt.rsqrt
where = where.where
masked_fill = masked_fill.masked_fill
bmm = bmm.bmm
addmm = addmm.addmm
linear = linear.linear
sum = sum.sum
mean = mean.mean
max = max.max
index_select = index_select.index_select
gather = gather.gather
cat = cat.cat
copy = copy.copy
fill = fill.fill
scaled_dot_product_attention = scaled_dot_product_attention.scaled_dot_product_attention
rope = rope.rope
silu_and_mul = silu_and_mul.silu_and_mul
add_rms_norm = add_rms_norm.add_rms_norm
log_softmax = log_softmax.log_softmax
cross_entropy = cross_entropy.cross_entropy
argmax = argmax.argmax
topk = topk.topk
cumsum = cumsum.cumsum
embedding = embedding.embedding

__all__ = ["REGISTRY", "CASE_SETS", "Case", "Cost", "OpSpec", "Unsupported", "get", "register",
           "add", "mul", "exp", "silu", "gelu", "softmax", "rms_norm", "layer_norm", "mm"]
__all__ += ["sub", "div", "neg", "pow", "rsqrt", "where", "masked_fill", "bmm", "addmm", "linear", "sum", "mean",
            "max", "index_select", "gather", "cat", "copy", "fill"]
__all__ += ["scaled_dot_product_attention", "rope", "silu_and_mul", "add_rms_norm", "log_softmax", "cross_entropy",
            "argmax", "topk", "cumsum", "embedding"]

# Op modules not listed above (new ops written by `workbench promote`), then promoted backend variants.
import importlib as _importlib  # noqa: E402
import pkgutil as _pkgutil  # noqa: E402
import sys as _sys  # noqa: E402

for _module in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name.startswith("_") or _module.name in ("spec", "variants") \
            or f"{__name__}.{_module.name}" in _sys.modules:
        continue
    _loaded = _importlib.import_module(f"{__name__}.{_module.name}")
    if callable(getattr(_loaded, _module.name, None)):  # `workbench.ops.<op>` is the op, as above
        globals()[_module.name] = getattr(_loaded, _module.name)
        __all__.append(_module.name)

from . import variants  # noqa: E402,F401

# The public functions of the registered ops run the active backend's variant where one is registered
# (the mlu one on an MLU), else the generic kernel.
from .spec import dispatching as _dispatching  # noqa: E402

for _name, _spec in REGISTRY.items():
    if callable(globals().get(_name)):
        globals()[_name] = _dispatching(_spec)
