"""MLU-style variants of the ops, registered as `OpSpec.variants["mlu"]` (chosen on the mlu backend).

The style (shared/MLU_PORTING.md, docs/mlu.md): as many programs as fill the cores (not one per tile)
with a grid-stride loop over tiles, blocks sized from NRAM, num_warps 1 or 4, fp32 math for
transcendental functions, int64
offsets, no float64. Launch sizes come from `mlu_devices.target()`: the real MLU on the mlu backend,
else named device figures, so the same code runs (and is checked against the MLU launch rules) on
the cpu interpreter and on CUDA.

Adding the variant of a new op: one module here that imports the op's SPEC and its jit math or
`prepare` function, launches an mlu-style kernel, and calls `SPEC.add_variant("mlu", fn)`; then one
import line below.
"""

from . import add, exp, gelu, layer_norm, mm, mul, rms_norm, silu, softmax  # noqa: F401
