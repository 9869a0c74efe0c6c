"""`%%candidate OP`: a notebook cell holds the candidate kernel, so JupyterLab's editor serves for it.

    %load_ext workbench.ui          # or: creating a PortingPanel registers the magic

    %%candidate rms_norm
    import triton ...
    def rms_norm(x, weight=None, eps=1e-6): ...

Running the cell hands its text to the panel displayed last (it becomes that panel's candidate for
OP; Check, Profile and Promote then use it) and keeps it in `CELLS[OP]` for code that has no panel.
The file written for the worker keeps the cell's line numbers (its first line stands for the magic's
line), and the panel shows tracebacks with the cell's name instead of that file's path.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CellCandidate:
    op: str
    source: str  # the cell's text below the %%candidate line
    label: str  # how the cell is named in tracebacks, e.g. "cell In[7]"

    def file_text(self) -> str:
        """The text of the worker's file: a first line for the magic's, so file line n = cell line n."""
        return f"# %%candidate {self.op} ({self.label})\n{self.source}"


CELLS: dict[str, CellCandidate] = {}
_panels: list = []  # the panel displayed last is the one a cell feeds


def attach(panel) -> None:
    """Make `panel` the one that `%%candidate` cells feed (the latest panel wins)."""
    _panels[:] = [panel]


def candidate(line: str, cell: str) -> None:
    """The cell magic: `%%candidate OP` (OP: a registered op or a new op's name)."""
    from IPython import get_ipython

    op = line.strip()
    if not op.isidentifier():
        raise ValueError(f"%%candidate: expected an op name such as 'rms_norm', got {line.strip()!r}")
    shell = get_ipython()
    # While a cell runs, IPython's counter already holds the next cell's number.
    count = getattr(shell, "execution_count", None)
    label = f"cell In[{count - 1}]" if isinstance(count, int) and count > 1 else "the candidate cell"
    found = CellCandidate(op=op, source=cell, label=label)
    CELLS[op] = found
    if _panels:
        _panels[0].use_cell(found)
        print(f"candidate for {op}: {found.label}, {cell.count(chr(10)) + 1} lines; press Check in the panel")
    else:
        print(
            f"candidate for {op} kept in workbench.ui.magics.CELLS[{op!r}]; create a PortingPanel to check it"
        )


def register(shell=None) -> None:
    """Register `%%candidate` with the running IPython (no-op outside IPython)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is not None:
        shell.register_magic_function(candidate, magic_kind="cell", magic_name="candidate")
