"""The shared figure set: speedup on a log axis centred on 1, in pages of bounded height."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workbench.reports import figures  # noqa: E402


def _bench(n_ops: int, speedups) -> pd.DataFrame:
    rows = []
    for i in range(n_ops):
        for case, s in zip(("small", "large"), speedups):
            rows.append(
                {"op": f"op{i}", "impl": "generic", "case": case, "dtype": "bf16", "speedup": s, "ms": 1.0}
            )
            rows.append(
                {"op": f"op{i}", "impl": "native", "case": case, "dtype": "bf16", "speedup": None, "ms": 1.0}
            )
    return pd.DataFrame(rows)


def test_speedup_pages_are_bounded_and_centred_on_parity():
    pages = figures.speedup_pages(_bench(40, (0.001, 3.0)))
    assert len(pages) == int(np.ceil(40 / figures.OPS_PER_PAGE))
    for fig in pages:
        assert fig.get_size_inches()[1] < 12  # the height does not grow with the number of ops
        axes = [ax for ax in fig.axes if ax.get_visible()]
        lo, hi = axes[0].get_xlim()
        assert axes[0].get_xscale() == "log" and np.isclose(np.log10(lo), -np.log10(hi))
        assert hi > 1000  # the 0.001 speedup is on the axis, as far from 1 as its inverse
        lines = {round(line.get_xdata()[0], 3) for line in axes[0].get_lines()}
        assert lines == {figures.PARITY, figures.TARGET}
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend[0].startswith("1.0") and legend[1].startswith("0.9")


def test_limits_hold_every_value_and_at_least_2x():
    assert np.allclose(
        figures.speedup_limits(pd.Series([1.0, 1.01])),
        (10 ** -(np.log10(2) * 1.15), 10 ** (np.log10(2) * 1.15)),
    )
    lo, hi = figures.speedup_limits(pd.Series([0.5, 40.0, np.nan, np.inf]))
    assert lo < 1 / 40 and hi > 40
