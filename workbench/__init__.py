"""workbench: port LLM operators from native vendor libraries to Triton, check and profile them.

Subpackages load on first use. The first one that defines kernels (`workbench.ops`) binds the process
to one backend: $WORKBENCH_BACKEND, else mlu > cuda > cpu (see workbench.backends.active).
"""

from workbench._lazy import attach

__version__ = "0.1.0"

# The ATen dispatch override (workbench.dispatch): `with workbench.use_ops() as cov: ...`; the
# torch.compile backend (workbench.compile): importing it registers backend="workbench".
__getattr__, __all__ = attach(
    __name__,
    ["backends", "ops", "profiling", "dispatch", "compile"],
    {"enable": "dispatch", "disable": "dispatch", "use_ops": "dispatch", "compile_coverage": "compile"},
)
