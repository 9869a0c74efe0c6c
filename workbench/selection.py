"""Which ATen overloads and fused ops workbench takes: one selection for `use_ops` and the compile backend.

`include` / `exclude` name registry ops ("add") or ATen overloads ("aten::add.Tensor"); None includes every
op. An op with ATen overloads (`OpSpec.aten_impls`) selects them; a fused op (rope, silu_and_mul,
add_rms_norm: no ATen overload, it replaces a chain) is selected for the compile backend's graph patterns.
An adapter bound here gets the op's implementation for the active backend (a variant or the generic
kernel); the error types in `FALLBACK_ERRORS` are how an adapter or wrapper says "not these inputs".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from workbench import backends
from workbench.ops.spec import FALLBACK_ERRORS, REGISTRY, aten_overload

__all__ = ["FALLBACK_ERRORS", "Selection", "aten_overload", "claims", "fused_ops", "select"]

Names = Iterable[str] | str | None


@dataclass(frozen=True)
class Selection:
    # ATen overload -> (op name, adapter, the op's implementation for the backend): adapter(impl, *args)
    adapters: dict[str, tuple[str, Callable[..., Any], Callable[..., Any]]]
    fused: tuple[str, ...]  # selected ops that have no ATen overload (served by graph patterns)

    @property
    def ops(self) -> set[str]:
        """Every selected registry op: the owners of the selected overloads and the fused ops."""
        return {name for name, _, _ in self.adapters.values()} | set(self.fused)


def claims() -> dict[str, str]:
    """Every ATen overload some registered op can replace -> that op's name."""
    owner: dict[str, str] = {}
    for spec in REGISTRY.values():
        for overload in spec.aten_impls:
            if overload in owner:
                raise ValueError(
                    f"ATen overload {overload} is claimed by both {owner[overload]!r} and {spec.name!r}"
                )
            owner[overload] = spec.name
    return owner


def fused_ops() -> list[str]:
    """Registered ops with no ATen overload: they replace a chain of ATen ops (graph patterns)."""
    return [name for name, spec in REGISTRY.items() if not spec.aten_impls]


def _resolve(argument: str, names, owner: dict[str, str], fused: list[str]) -> tuple[set[str], set[str]]:
    if isinstance(names, str):
        names = [names]
    overloads: set[str] = set()
    chosen_fused: set[str] = set()
    for name in names:
        if name in owner:
            overloads.add(name)
        elif name in fused:
            chosen_fused.add(name)
        elif name in REGISTRY:
            overloads |= set(REGISTRY[name].aten_impls)
        else:
            raise ValueError(
                f"{argument}: expected op names or ATen overloads (e.g. 'add', 'aten::add.Tensor'), "
                f"got {name!r}; ops with overloads: {sorted(set(owner.values()))}; "
                f"fused ops: {fused}"
            )
    return overloads, chosen_fused


def select(include: Names = None, exclude: Names = None, fused_ok: bool = True) -> Selection:
    """The overloads (with bound adapters) and fused ops that `include` minus `exclude` switches on.

    fused_ok=False (the eager override, which has no graph to fuse in): naming a fused op in `include`
    is an error rather than a selection that does nothing.
    """
    owner, fused = claims(), fused_ops()
    if include is None:
        overloads, chosen_fused = set(owner), set(fused)
    else:
        overloads, chosen_fused = _resolve("include", include, owner, fused)
        if not fused_ok and chosen_fused:
            raise ValueError(
                f"include: {sorted(chosen_fused)} have no ATen overloads to replace (fused ops "
                "replace a chain of ATen ops: torch.compile(backend='workbench') fuses them)"
            )
    if exclude is not None:
        out, out_fused = _resolve("exclude", exclude, owner, fused)
        overloads -= out
        chosen_fused -= out_fused
    backend = backends.active().name
    adapters = {}
    for overload in sorted(overloads):
        spec = REGISTRY[owner[overload]]
        adapters[overload] = (spec.name, spec.aten_impls[overload], spec.implementation(backend))
    return Selection(adapters, tuple(f for f in fused if f in chosen_fused))
