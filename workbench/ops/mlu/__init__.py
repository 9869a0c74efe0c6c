"""The MLU place: the persistent launch style's sizing, the kernels of ops whose MLU algorithm differs,
and the MLU launch rules.

- `persistent`: the launch style switch (one tile per program, or persistent grid-stride programs) and
  the sizing of persistent launches from the target device's launch policy (cores, NRAM, num_warps).
  The shared launchers (`ops._elementwise`, `_movement`, `_reduce`, `_matmul`) read it, so every op
  built on them has its MLU form without a module of its own.
- `<op>.py`: a second kernel for an op whose MLU algorithm really differs from its generic one (rows
  packed into 2-D tiles, chunked rows merged by persistent programs, ...); each ends with
  `SPEC.add_variant("mlu", fn)`. `workbench.ops` imports them after the op modules.
- `rules` (+ `_kernel_trace`): the MLU launch-rules profile that judges launches on any backend.

This package's own import runs nothing: the launchers import `persistent` from below the op modules.
"""
