"""Tuned launches of kernels that have several candidate configs, with a persistent cache of the choice.

`Tuner(kernel, configs, key, prune)` stands where `triton.autotune(...)(kernel)` stood and keeps the same
call surface: `tuner[grid](*args, **meta)` launches with the config chosen for the call's tuning key,
after which `tuner.best_config` is that config. A key is chosen once per process; the choice comes from,
in order:
1. this process's memory;
2. the tuning cache: the results store's `tuning` table, keyed by (device name, kernel name, hash of the
   kernel's source with its jit dependencies and config list, tuning key, Triton version, workbench
   version). An entry of another Triton, another kernel source or a config no longer offered is not
   found, so it is ignored and the key is tuned afresh;
3. tuning: every candidate left by `prune` is compiled and run (one that cannot compile or launch is
   dropped), then `measure.choose(candidates)` times them in alternated rounds and keeps a candidate
   other than the first only when its advantage exceeds the measured spread. The choice is written to
   the cache and counted in `stats.tuned`.
A single candidate is simply used: nothing is timed or stored. `launches(meta)`, where given, makes one call
several launches of the kernel with one config, each with the extra constexprs of one of the dicts it
returns (the launches are tuned together).

The ops layer does not import the store or the timer: `configure(cache=..., measure=...)` hands them in
(`workbench.profiling.tuning.install` does, with the ResultStore at $WORKBENCH_STORE or the default path
and the alternated-rounds timer). `set_default(install)` names what the first tuning calls while either
is unconfigured: importing `workbench.profiling` or `workbench.dispatch` (`use_ops`, and the compile
backend through it) sets it, so the store opens only when a key is tuned. A process where nothing is
configured or set (only `workbench.ops` imported, its ops called directly) has no timer: each key takes
its first candidate, kept in memory. `cache=None` turns the persistent cache off; `measuring = False`
takes every key's first candidate untimed and forgets it (what `profiling.no_kernels` does).
$WORKBENCH_AUTOTUNE=0 (read at import; `AUTOTUNE`) keeps only the first candidate a prune leaves: nothing is
timed and one config per key compiles, for correctness runs where speed does not matter.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import triton

from workbench import backends

from ._launch import launch


class TuningCache(Protocol):
    """Where chosen configs persist: the results store implements these two methods."""

    def get_tuning(
        self,
        device: str,
        kernel: str,
        source_hash: str,
        key: str,
        triton_version: str,
        workbench_version: str,
    ) -> dict | None: ...

    def put_tuning(
        self,
        device: str,
        kernel: str,
        source_hash: str,
        key: str,
        triton_version: str,
        workbench_version: str,
        config: dict,
    ) -> None: ...


class Measure(Protocol):
    def choose(self, candidates: Sequence[Callable[[], object]]) -> int:
        """Index of the candidate to keep: 0 unless another one wins beyond the measured spread."""


@dataclass
class Stats:
    tuned: int = 0  # keys timed in this process (a cache hit or a single candidate times nothing)
    cache_hits: int = 0


stats = Stats()
measuring = True
AUTOTUNE = os.environ.get("WORKBENCH_AUTOTUNE", "1") != "0"
_UNSET = object()
_cache: Any = _UNSET  # TuningCache | None once configured
_measure: Measure | None = None
_default: Callable[[], None] | None = None  # configures the unset ones on the first tuning


def configure(cache: Any = _UNSET, measure: Measure | None = None) -> None:
    """Set the tuning cache (None: no persistent cache) and/or the candidate timer."""
    global _cache, _measure
    if cache is not _UNSET:
        _cache = cache
    if measure is not None:
        _measure = measure


def set_default(install: Callable[[], None]) -> None:
    """What the first tuning calls to configure the cache and the timer where they are still unset."""
    global _default
    _default = install


def _hooks() -> tuple[TuningCache | None, Measure | None]:
    if (_measure is None or _cache is _UNSET) and _default is not None:
        _default()
    return (None if _cache is _UNSET else _cache), _measure


def _version() -> str:
    import workbench

    return workbench.__version__


def _config_dict(config: triton.Config) -> dict:
    return {k: v for k, v in config.all_kwargs().items() if isinstance(v, (int, float, str, bool))}


class Tuner:
    """A kernel with candidate configs, chosen per tuning key; see the module docstring."""

    def __init__(
        self,
        kernel,
        configs: Sequence[triton.Config],
        key: Sequence[str],
        prune: Callable[..., list] | None = None,
        name: str | None = None,
        launches: Callable[[dict], Sequence[dict]] | None = None,
    ):
        self.kernel, self.configs, self.key, self.prune = kernel, list(configs), list(key), prune
        self.launches = launches
        fn = getattr(kernel, "fn", kernel)
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.arg_names = list(kernel.arg_names)
        self.best_config: triton.Config | None = None
        self._chosen: dict[str, triton.Config] = {}
        self._source_hash: str | None = None

    @property
    def source_hash(self) -> str:
        """The kernel's source with its jit dependencies (Triton's cache key where compiled; the function's
        own source in the interpreter) and the offered configs."""
        if self._source_hash is None:
            source = getattr(self.kernel, "cache_key", None) or inspect.getsource(self.kernel.fn)
            configs = json.dumps([_config_dict(c) for c in self.configs], sort_keys=True)
            self._source_hash = hashlib.sha256(f"{source}\n{configs}".encode()).hexdigest()[:16]
        return self._source_hash

    def tuning_key(self, named: dict) -> str:
        """The key's argument values and every tensor argument's dtype, as text (Triton's autotuner key)."""
        parts = [f"{name}={named[name]}" for name in self.key if name in named]
        for name, value in named.items():
            dtype = getattr(value, "dtype", None) or getattr(getattr(value, "base", None), "dtype", None)
            if dtype is not None:
                parts.append(f"{name}:{str(dtype).replace('torch.', '')}")
        return ",".join(parts)

    def __getitem__(self, grid):
        def run(*args, **meta):
            named = {**dict(zip(self.arg_names, args)), **meta}
            config = self.choose(named, grid, args, meta)
            self._launch(config, grid, named, args, meta)

        return run

    def _launch(self, config: triton.Config, grid, named: dict, args: tuple, meta: dict) -> None:
        kwargs = config.all_kwargs()
        if config.pre_hook is not None:
            config.pre_hook({**named, **kwargs})
        grid = grid({**meta, **kwargs}) if callable(grid) else grid
        for extra in self.launches(meta) if self.launches else ({},):
            launch(self.kernel, grid, *args, **meta, **extra, **kwargs)

    def choose(self, named: dict, grid, args: tuple, meta: dict) -> triton.Config:
        """The config for this call's key: memory, else cache, else tuned (runs the candidates)."""
        key = self.tuning_key(named)
        config = self._chosen.get(key)
        if config is None:
            candidates = self.prune(self.configs, named) if self.prune else self.configs
            if not AUTOTUNE:
                candidates = candidates[:1]
            if not measuring:  # not remembered: a later measuring call tunes this key
                config = candidates[0]
            else:
                config = self._chosen[key] = self._choose_new(key, candidates, named, grid, args, meta)
        self.best_config = config
        return config

    def _choose_new(
        self, key: str, candidates: list, named: dict, grid, args: tuple, meta: dict
    ) -> triton.Config:
        if len(candidates) == 1:
            return candidates[0]
        cache, measure = _hooks()
        if measure is None:  # nothing to time with (see the module docstring): the default config
            return candidates[0]
        ident = (
            backends.active().properties().name,
            self.name,
            self.source_hash,
            key,
            triton.__version__,
            _version(),
        )
        stored = cache.get_tuning(*ident) if cache is not None else None
        if stored is not None:
            match = next((c for c in candidates if _config_dict(c) == stored), None)
            if match is not None:
                stats.cache_hits += 1
                return match
        runnable, first_error = [], None
        for config in candidates:  # compiles each; a config the device cannot run is not a candidate
            try:
                self._launch(config, grid, named, args, meta)
                runnable.append(config)
            except Exception as e:  # noqa: BLE001 (out of shared memory, registers, ...: the next one)
                first_error = first_error or e
        if not runnable:
            raise first_error
        index = (
            measure.choose([lambda c=c: self._launch(c, grid, named, args, meta) for c in runnable])
            if len(runnable) > 1
            else 0
        )
        stats.tuned += 1
        if cache is not None:
            cache.put_tuning(*ident, _config_dict(runnable[index]))
        return runnable[index]
