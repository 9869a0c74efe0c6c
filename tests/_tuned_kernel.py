"""A toy kernel with two candidate configs for the tuning tests; run as a script, it tunes one key against
the tuning cache at argv[1] and prints what happened as JSON (a separate process sharing that cache)."""

import json
import sys

from workbench.ops import _tuning  # binds the backend before triton is imported

# isort: split
import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def scale_kernel(x, out, n, factor, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + i, tl.load(x + i, mask=i < n) * factor, mask=i < n)


CONFIGS = [triton.Config({"BLOCK": 16}), triton.Config({"BLOCK": 64})]


def tuner(kernel=scale_kernel, name: str = "tests.scale_kernel") -> _tuning.Tuner:
    return _tuning.Tuner(kernel, CONFIGS, key=["n"], name=name)


def run(t: _tuning.Tuner, n: int = 100):
    """out = 2 * x through the tuned kernel; returns (x, out)."""
    import torch

    x = torch.randn(n)
    out = torch.empty_like(x)
    t[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, out, n, 2.0)
    return x, out


if __name__ == "__main__":
    from workbench.profiling import tuning

    tuning.install(cache=sys.argv[1])
    t = tuner()
    x, out = run(t)
    print(
        json.dumps(
            {
                "tuned": _tuning.stats.tuned,
                "cache_hits": _tuning.stats.cache_hits,
                "block": t.best_config.kwargs["BLOCK"],
                "correct": bool((out == 2 * x).all()),
            }
        )
    )
