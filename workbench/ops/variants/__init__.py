"""Per-backend variants written by `workbench promote`: one module per (op, backend), `<op>_<backend>.py`.

Each module holds a candidate's kernel and wrapper followed by a footer that sets
`OpSpec.variants[backend]` (and its status). `workbench.ops` imports them, in name order, after every
op module and the MLU kernels, so a promoted variant overrides one declared for the same backend.
"""
