"""The MLU style shared by the ops' mlu variants (`workbench/ops/variants/<op>_mlu.py`).

The style (docs/mlu.md): as many programs as fill the cores (not one per tile)
with a grid-stride loop over tiles, blocks sized from NRAM, num_warps 1 or 4, fp32 math for
transcendental functions, int64 offsets, no float64. Launch sizes come from `mlu_devices.target()`:
the real MLU on the mlu backend, else named device figures, so the same code runs (and is checked
against the MLU launch rules) on the cpu interpreter and on CUDA.

`sizing` sizes grids and blocks, `elementwise` holds the grid-stride unary/binary/ternary launchers (an op
brings only its math), `movement` the grid-stride copy and fill, `rows` tiles row-wise ops (softmax,
norms). The variant of a new op is one
module `workbench/ops/variants/<op>_mlu.py` that imports the op's SPEC and its `prepare` function or
jit math, launches an mlu-style kernel sized with these helpers and ends with
`SPEC.add_variant("mlu", fn)`; the variants package imports it.
"""
