"""The profiling side of kernel tuning: the cache and the timer that `workbench.ops._tuning` is handed
(`workbench.models.pretune` tunes a model's shapes ahead of a run with them: `workbench tune`).

`install()` gives the ops layer the ResultStore at $WORKBENCH_STORE (else out/workbench.db) as its tuning
cache and `AlternatedChoice` as its timer: candidates timed in alternated rounds, and a candidate other
than the first kept only when its speedup over the first exceeds the spread of that speedup. Importing this
module makes `install(replace=False)` the ops layer's default: the first tuning of a process that installed
nothing runs it (so the store opens only where a key is tuned).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from workbench.ops import _tuning
from workbench.store import ResultStore, default_store_path

from .timing import alternated_rounds


class AlternatedChoice:
    """Times candidates in alternated rounds; the fastest wins only beyond the spread, else the first."""

    def __init__(self, rep_ms: float = 40.0, min_rounds: int = 10):
        self.rep_ms, self.min_rounds = rep_ms, min_rounds

    def choose(self, candidates: Sequence[Callable[[], object]]) -> int:
        rounds = alternated_rounds(candidates, warmup_ms=5.0, rep_ms=self.rep_ms, min_rounds=self.min_rounds)
        medians = [rounds.kernel_time(i).ms for i in range(len(candidates))]
        best = min(range(len(candidates)), key=medians.__getitem__)
        return best if best and rounds.ratio(best, reference=0).beyond_spread else 0


def default_store() -> ResultStore:
    return ResultStore(default_store_path())


def install(cache: ResultStore | str | Path | bool | None = True, replace: bool = True) -> None:
    """Hand the ops layer its tuning cache (True: the default store; a path: that store; None or False:
    none) and its timer. `replace=False` keeps whichever of the two was configured already."""
    if replace or _tuning._cache is _tuning._UNSET:
        if cache is True:
            cache = default_store()
        elif isinstance(cache, (str, Path)):
            cache = ResultStore(cache)
        _tuning.configure(cache=cache or None)
    if replace or _tuning._measure is None:
        _tuning.configure(measure=AlternatedChoice())


_tuning.set_default(lambda: install(replace=False))
