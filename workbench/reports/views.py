"""Tables and figures the panel and the regression report show, as plain functions of DataFrames.

No widgets here: the panel puts the HTML strings and PNG bytes these return into its widgets, the
regression report writes them to report.html, and tests assert on the DataFrames.
"""

from __future__ import annotations

import html
import io
import math

import pandas as pd

from workbench.profiling.correctness import failure_reason

_STYLE = (
    "<style>.wb-table{border-collapse:collapse;font:12px monospace}.wb-stale{opacity:.45}"
    ".wb-table td,.wb-table th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
    ".wb-table th{background:#f3f3f3}.wb-fail{color:#b00020;font-weight:bold}"
    ".wb-ok{color:#137333}</style>"
)


def failed_rows(check: pd.DataFrame) -> pd.DataFrame:
    from workbench.profiling.correctness import failures

    return failures(check)


def correctness_table(check: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, dtype, direction): what ran, its error against the reference, pass/fail and why."""
    rows = []
    for _, row in check.iterrows():
        if isinstance(row.get("skipped"), str) and row["skipped"]:
            verdict, why = "skipped", row["skipped"]
        elif row.get("passed"):
            verdict, why = "pass", ""
        else:
            verdict, why = "FAIL", failure_reason(row)
        rows.append(
            {
                "op": row["op"],
                "variant": row.get("variant"),
                "case": row["case"],
                "dtype": row["dtype"],
                "direction": row.get("direction") or "forward",
                "shape": row.get("shape"),
                "rel_err": row.get("rel_err"),
                "tol": row.get("tol"),
                "result": verdict,
                "why": why,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["op", "variant", "case", "dtype", "direction", "shape", "rel_err", "tol", "result", "why"],
    )


def table_html(df: pd.DataFrame, caption: str = "") -> str:
    """An HTML table with failures highlighted (cells holding FAIL / regression)."""

    def mark(value):
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        if isinstance(text, float):
            text = f"{text:.4g}"
        text = html.escape(str(text))
        if text in ("FAIL", "regression", "False"):
            return f'<span class="wb-fail">{text}</span>'
        if text in ("pass", "True", "ok"):
            return f'<span class="wb-ok">{text}</span>'
        return text

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{mark(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False)
    )
    cap = (
        f"<caption style='text-align:left;font-weight:bold'>{html.escape(caption)}</caption>"
        if caption
        else ""
    )
    return f'{_STYLE}<table class="wb-table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def error_summary_html(summary: str, status: str = "error") -> str:
    return (
        f'<div style="color:#b00020;font-family:monospace;white-space:pre-wrap">'
        f"<b>{html.escape(status)}</b>: {html.escape(summary)}</div>"
    )


def traceback_html(traceback: str, log: str = "") -> str:
    parts = []
    if traceback:
        parts.append(f"<pre style='font-size:11px'>{html.escape(traceback)}</pre>")
    if log:
        parts.append(f"<b>worker output (tail)</b><pre style='font-size:11px'>{html.escape(log)}</pre>")
    return "".join(parts) or "<i>no traceback</i>"


def figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib Figure (then closed, so that notebooks do not draw it twice)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# Column order: native, the peers (other libraries on the same inputs), then ours.
IMPL_ORDER = ("native", "inductor", "flaggems", "current", "candidate")
# The profile worker labels the op's registered kernel "promoted"; to the user it is the current kernel
# (what the package runs now), and "promoted" is kept for what a Promote wrote.
WORKER_IMPL_NAMES = {"promoted": "current"}


def comparison_table(bench: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, dtype): native, the peers and ours side by side (ms, speedup, error against
    float64, correct, and why an implementation did not run): `peer_table` with readable column names.

    `bench` holds `workbench.profiling.bench` rows: impl "native", a peer ("inductor", "flaggems"), and
    ours: the profile worker's "promoted" (shown as "current": the op's kernel in the package on this
    backend) and "candidate", or a bench's own variants ("generic", ...).
    """
    from workbench.profiling.bench import PEER_VALUES, peer_table

    bench = bench.replace({"impl": WORKER_IMPL_NAMES})
    key = ["op", "case", "dtype"]
    present = list(dict.fromkeys(bench["impl"]))
    order = [i for i in IMPL_ORDER if i in present] + [i for i in present if i not in IMPL_ORDER]
    out = bench.drop_duplicates(key)[key + ["shape"]].merge(peer_table(bench), on=key, how="left")
    labels = {"passed": "correct"}
    names = {
        f"{impl}_{value}": f"{impl} {labels.get(value, value)}"
        for impl in order
        for value in PEER_VALUES
        if not (impl == "native" and value in ("speedup", "passed"))
    }
    out = out[[*key, "shape", *(c for c in names if c in out)]].rename(columns=names)
    if "candidate ms" in out and "current ms" in out:
        out["candidate vs current"] = out["current ms"] / out["candidate ms"]
    for col in [c for c in out.columns if c.endswith((" error", " rel_err"))]:
        if out[col].isna().all() or (col.endswith(" error") and (out[col].fillna("") == "").all()):
            out = out.drop(columns=col)  # keep error columns only when something failed
    return out.reset_index(drop=True)


def comparison_figures(bench: pd.DataFrame) -> dict:
    """title -> Figure for a profile: the same set the report and `workbench bench --plot` draw."""
    from .figures import bench_figures

    bench = bench.replace({"impl": WORKER_IMPL_NAMES})
    return {name.removesuffix(".png").replace("_", " "): fig for name, fig in bench_figures(bench).items()}
