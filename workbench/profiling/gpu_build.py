"""Kernels built for a Hopper GPU on a machine without one: what a launch will cost before it runs.

`record_launches(call)` runs `call()` on the interpreter (the cpu backend) and returns each distinct launch
it made as plain data: module, kernel, argument types, constexprs, num_warps and num_stages, and the
first call's int arguments by name (`ints`: what a tuner's prune reads; not part of the build). With
`specialise=True` the types are those the JIT gives the same values on a GPU: a 16-byte aligned pointer
or an int divisible by 16 carries the divisibility hint, an int equal to 1 becomes a constant (except
`do_not_specialize` parameters): Triton's own rules, so a host tensor descriptor is typed as the JIT
types it too. Without the hints Triton neither vectorises nor pipelines the loads, so
the shared memory and registers of such a build are not the GPU's.

`build(launches)` compiles them for sm_90 with Triton's nvidia backend (the wheel ships its compiler),
in a subprocess where the kernels are defined in compiled mode. Each result holds the error (empty when
it built), the compile time, the TTIR, the shared memory the kernel asks for (a config above
`SM90_SHARED_LIMIT` fails at launch, and a tuner drops it without a word) and, with `resources=True`,
registers per thread and spilled bytes from `ptxas -v` (the ptxas Triton compiles with).
`with_config(launch, config)` is the launch with a tuner config's constexprs and options in place of
the interpreter's, to build the configs a GPU would tune.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import triton

SM90_SHARED_LIMIT = 232448  # bytes of shared memory a block may have on an H100 or H200 (227 KiB)


def _argument(value, specialise: bool) -> tuple[str, object]:
    """(signature type, divisibility hint, or the constant where the type is "constexpr") of one runtime
    argument, by Triton's own rules (its JIT's specialisation of the value)."""
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import native_specialize_impl

    kind, key = native_specialize_impl(BaseBackend, value, False, specialise, specialise)
    if kind == "constexpr":
        return kind, key
    return kind, 16 if key == "D" else None


def _constexpr(value):
    fn = getattr(value, "fn", None)
    if fn is not None and inspect.isfunction(fn):  # a jit function passed as a constexpr (FN=...)
        return {"jit": [fn.__module__, fn.__name__]}
    return value


def record_launches(call: Callable[[], object], specialise: bool = True) -> list[dict]:
    """The distinct launches `call()` makes on the interpreter, as data `build` takes."""
    from triton.runtime.interpreter import InterpretedFunction

    seen = {}
    original = InterpretedFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        params = inspect.signature(self.fn).parameters
        bound = {**dict(zip(params, args)), **{k: v for k, v in kwargs.items() if k in params}}
        free = {
            p if isinstance(p, str) else self.arg_names[p] for p in self.kwargs.get("do_not_specialize") or ()
        }
        signature, constexprs, hints, ints = {}, {}, {}, {}
        for name, p in params.items():
            if "constexpr" in str(p.annotation):
                signature[name], constexprs[name] = "constexpr", _constexpr(bound[name])
                continue
            if type(bound[name]) is int:
                ints[name] = bound[name]
            signature[name], hint = _argument(bound[name], specialise and name not in free)
            if signature[name] == "constexpr":
                constexprs[name] = hint
            elif hint:
                hints[name] = hint
        launch = {
            "module": self.fn.__module__,
            "kernel": self.fn.__name__,
            "signature": signature,
            "constexprs": constexprs,
            "hints": hints,
            "num_warps": kwargs.get("num_warps", 4),
            "num_stages": kwargs.get("num_stages", 3),
        }
        key = json.dumps(launch, sort_keys=True)  # the build's inputs: the values below do not change it
        seen.setdefault(key, {**launch, "ints": ints})
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = run
    try:
        call()
    finally:
        InterpretedFunction.run = original
    return list(seen.values())


class _Descriptor:
    """A host tensor descriptor's stand-in for a config's pre_hook, which sizes its tiles."""

    block_shape = None


def with_config(launch: dict, config: triton.Config) -> dict:
    """`launch` with `config`'s constexprs, num_warps and num_stages, and the tiles its pre_hook gives the
    host tensor descriptors (as a tuner's hook sizes them before the launch)."""
    constexprs = {**launch["constexprs"], **config.kwargs}
    signature = dict(launch["signature"])
    if config.pre_hook is not None:
        stand_ins = {
            name: _Descriptor() for name, kind in signature.items() if kind.startswith("tensordesc<")
        }
        config.pre_hook({**launch["ints"], **constexprs, **stand_ins})
        for name, desc in stand_ins.items():
            if desc.block_shape is not None:
                signature[name] = re.sub(r"\[[^]]*\]", str(list(desc.block_shape)), signature[name], count=1)
    return {
        **launch,
        "signature": signature,
        "constexprs": constexprs,
        "num_warps": config.num_warps,
        "num_stages": config.num_stages,
    }


_BUILD = """
import importlib, json, os, re, subprocess, sys, tempfile, time
from workbench.backends.cuda import CudaBackend
CudaBackend.missing = lambda self: None  # no GPU here: only Triton's compiler is used
import workbench.ops  # defines every kernel in compiled mode
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

request = json.load(sys.stdin)
bin_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
# the ptxas Triton compiles with: from Triton 3.7 its PTX needs ptxas-blackwell
ptxas = next(p for p in (os.path.join(bin_dir, n) for n in ("ptxas-blackwell", "ptxas")) if os.path.exists(p))

def usage(ptx):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        out = subprocess.run([ptxas, "-arch=sm_90a", "-v", path, "-o", os.devnull], capture_output=True,
                             text=True, check=True)
    text = out.stdout + out.stderr
    regs = re.search(r"Used (\\d+) registers", text)
    spills = re.search(r"(\\d+) bytes spill stores, (\\d+) bytes spill loads", text)
    return {"registers": int(regs.group(1)), "spill_stores": int(spills.group(1)),
            "spill_loads": int(spills.group(2))}

results = []
for launch in request["launches"]:
    fn = getattr(importlib.import_module(launch["module"]), launch["kernel"])
    index = {name: i for i, name in enumerate(launch["signature"])}
    constexprs = {}
    for name, value in launch["constexprs"].items():
        if isinstance(value, dict):
            value = getattr(importlib.import_module(value["jit"][0]), value["jit"][1])
        constexprs[(index[name],)] = value
    attrs = {(index[name],): [["tt.divisibility", hint]] for name, hint in launch["hints"].items()}
    signature = {name: ("constexpr" if name in launch["constexprs"] else kind)
                 for name, kind in launch["signature"].items()}
    start = time.time()
    result = {"kernel": launch["module"] + "." + launch["kernel"], "error": "", "ttir": "", "shared": None}
    try:
        options = {"num_warps": launch["num_warps"], "num_stages": launch["num_stages"]}
        kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                                options=options)
        result.update(ttir=kernel.asm["ttir"], shared=kernel.metadata.shared)
        if request["resources"]:
            result.update(usage(kernel.asm["ptx"]))
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"[:2000]
    result["seconds"] = time.time() - start
    results.append(result)
json.dump(results, sys.stdout)
"""


def build(
    launches: list[dict], resources: bool = False, cache_dir: str | Path | None = None, timeout: float = 1200
) -> list[dict]:
    """Compile each launch for sm_90 in a subprocess (see the module docstring); one result each, in order.
    `cache_dir`: Triton's cache for these builds (default: Triton's own)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(Path(__file__).resolve().parents[2])
    env.update(WORKBENCH_BACKEND="cuda", PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")]))
    if cache_dir is not None:
        env["TRITON_CACHE_DIR"] = str(cache_dir)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD],
        input=json.dumps({"launches": launches, "resources": resources}),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the GPU build process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)
