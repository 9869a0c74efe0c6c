"""Argument checks that fail on every rank at once instead of hanging or corrupting memory.

A bad argument seen by one rank only (a tensor on the wrong device, a size that differs between ranks)
is the classic way to hang a collective job, or — with gloo — to abort the process when the received
byte count does not match. So before each collective every rank describes its call in a small
fixed-size host tensor (op, reduce op, dtype, element counts, root, its own local problems as text)
and all ranks exchange these over a gloo group. Every rank then sees the same table and either all
proceed or all raise the same `CollectiveError`. The exchange is a blocking call on a group with a
timeout, so a rank that never arrives turns into an error on the others, not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

OPS = ("all_reduce", "reduce_scatter", "all_gather", "broadcast", "all_to_all", "send", "recv", "barrier")
REDUCE_OPS = ("sum", "avg", "max", "min")
DTYPES = (
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.bool,
)
_TORCH_REDUCE = {
    dist.ReduceOp.SUM: "sum",
    dist.ReduceOp.AVG: "avg",
    dist.ReduceOp.MAX: "max",
    dist.ReduceOp.MIN: "min",
}

_FIELDS = ("seq", "op", "reduce", "dtype", "numel_in", "numel_out", "root", "problem")
_INT_BYTES = 8 * len(_FIELDS)
_MSG_BYTES = 448
META_BYTES = _INT_BYTES + _MSG_BYTES


class CollectiveError(ValueError):
    """Bad arguments to a collective; raised with the same message on every rank of the call."""


def reduce_name(op) -> str | None:
    """'sum' / 'avg' / 'max' / 'min' for a name or a torch ReduceOp; None when unsupported."""
    if isinstance(op, str):
        return op.lower() if op.lower() in REDUCE_OPS else None
    try:
        return _TORCH_REDUCE.get(op)
    except TypeError:  # unhashable
        return None


@dataclass
class Call:
    """One rank's view of a collective call: what it asks for and what is wrong with it locally."""

    op: str
    tensors: dict[str, object] = field(default_factory=dict)  # argument name -> tensor (first = data)
    reduce: object = None
    root: int | None = None
    problems: list[str] = field(default_factory=list)


def local_problems(call: Call, device: torch.device, world_size: int, rank: int) -> list[str]:
    """What is wrong with `call` on this rank alone (wrong device, bad reduce op, sizes, ...)."""
    problems = []
    tensors = {}
    for name, t in call.tensors.items():
        if not isinstance(t, torch.Tensor):
            problems.append(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
            continue
        tensors[name] = t
        if t.device != device:
            problems.append(f"{name}: expected a tensor on {device}, got one on {t.device}")
        if not t.is_contiguous():
            problems.append(f"{name}: expected a contiguous tensor, got strides {tuple(t.stride())}")
        if t.dtype not in DTYPES:
            problems.append(f"{name}: expected dtype in {[str(d) for d in DTYPES]}, got {t.dtype}")
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        problems.append(
            "dtypes: expected one dtype for all tensors, got "
            + ", ".join(f"{n}={t.dtype}" for n, t in tensors.items())
        )
    if call.op in ("all_reduce", "reduce_scatter"):
        name = reduce_name(call.reduce)
        if name is None:
            problems.append(f"op: expected one of {list(REDUCE_OPS)}, got {call.reduce!r}")
        elif name == "avg" and tensors and not next(iter(tensors.values())).is_floating_point():
            problems.append(f"op: 'avg' needs a floating dtype, got {next(iter(tensors.values())).dtype}")
    out, inp = tensors.get("output"), tensors.get("input")
    if out is not None and inp is not None:
        if call.op == "reduce_scatter" and inp.numel() != world_size * out.numel():
            problems.append(
                f"output: expected {inp.numel()} / {world_size} ranks elements, got {out.numel()}"
            )
        if call.op == "all_gather" and out.numel() != world_size * inp.numel():
            problems.append(
                f"output: expected {world_size} ranks x {inp.numel()} elements, got {out.numel()}"
            )
        if call.op == "all_to_all":
            if out.numel() != inp.numel():
                problems.append(f"output: expected {inp.numel()} elements like input, got {out.numel()}")
            if inp.numel() % world_size:
                problems.append(
                    f"input: expected a multiple of {world_size} ranks elements, got {inp.numel()}"
                )
    if call.root is not None:
        what = "src" if call.op in ("broadcast", "recv") else "dst"
        if not _is_rank(call.root, world_size):
            problems.append(f"{what}: expected a rank in [0, {world_size}), got {call.root!r}")
        elif call.op in ("send", "recv") and call.root == rank:
            problems.append(f"{what}: expected another rank than this one ({rank})")
    return problems


def _is_rank(value, world_size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < world_size


def valid_peer(peer, rank: int, world_size: int) -> bool:
    """Whether `peer` names another rank, i.e. whether a send/recv can swap descriptions with it."""
    return _is_rank(peer, world_size) and peer != rank


def encode(call: Call, seq: int) -> torch.Tensor:
    """The fixed-size host tensor that describes `call` (see the module docstring)."""
    data = next((t for t in call.tensors.values() if isinstance(t, torch.Tensor)), None)
    out = call.tensors.get("output")
    reduce = reduce_name(call.reduce) if call.op in ("all_reduce", "reduce_scatter") else None
    ints = [
        seq,
        OPS.index(call.op),
        REDUCE_OPS.index(reduce) if reduce else -1,
        DTYPES.index(data.dtype) if data is not None and data.dtype in DTYPES else -1,
        data.numel() if data is not None else -1,
        out.numel() if isinstance(out, torch.Tensor) else -1,
        call.root if _is_rank(call.root, 1 << 62) else -1,
        1 if call.problems else 0,
    ]
    buf = torch.zeros(META_BYTES, dtype=torch.uint8)
    buf[:_INT_BYTES] = torch.tensor(ints, dtype=torch.int64).view(torch.uint8)
    text = "; ".join(call.problems).encode()[:_MSG_BYTES]
    if text:
        buf[_INT_BYTES : _INT_BYTES + len(text)] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    return buf


def decode(buf: torch.Tensor) -> dict:
    ints = buf[:_INT_BYTES].clone().view(torch.int64).tolist()
    row = dict(zip(_FIELDS, ints))
    row["message"] = bytes(buf[_INT_BYTES:].tolist()).rstrip(b"\0").decode(errors="replace")
    return row


def _describe(field_name: str, value: int) -> str:
    if field_name == "op":
        return OPS[value] if 0 <= value < len(OPS) else "?"
    if field_name == "reduce":
        return REDUCE_OPS[value] if value >= 0 else "?"
    if field_name == "dtype":
        return str(DTYPES[value]).replace("torch.", "") if value >= 0 else "?"
    return str(value)


_COMPARED = {
    "seq": "call number",
    "op": "collective",
    "reduce": "reduce op",
    "dtype": "dtype",
    "numel_in": "element count",
    "numel_out": "output element count",
    "root": "root rank",
}


def disagreements(rows: list[dict], ranks: list[int], fields: tuple[str, ...]) -> list[str]:
    """One line per field on which the ranks' rows differ."""
    lines = []
    for f in fields:
        values = [r[f] for r in rows]
        if len(set(values)) > 1:
            detail = ", ".join(f"rank {rk}: {_describe(f, v)}" for rk, v in zip(ranks, values))
            lines.append(f"ranks disagree on the {_COMPARED[f]} ({detail})")
    return lines


def collective_fields(op: str) -> tuple[str, ...]:
    """Fields that must agree across ranks for `op` (the reduce op only where there is one)."""
    fields = ["seq", "op", "dtype", "numel_in", "numel_out"]
    if op in ("all_reduce", "reduce_scatter"):
        fields.append("reduce")
    if op == "broadcast":
        fields.append("root")
    return tuple(fields)


def check_collective(call: Call, seq: int, group, ranks: list[int]) -> None:
    """Exchange call descriptions over the gloo `group` (global `ranks` in group order); raise on trouble."""
    mine = encode(call, seq)
    bufs = [torch.empty_like(mine) for _ in ranks]
    dist.all_gather(bufs, mine, group=group)
    rows = [decode(b) for b in bufs]
    fields = collective_fields(call.op) if len({r["op"] for r in rows}) == 1 else ("seq", "op")
    lines = [f"rank {rk}: {row['message']}" for rk, row in zip(ranks, rows) if row["problem"]]
    lines += disagreements(rows, ranks, fields)
    if lines:
        raise CollectiveError(f"{call.op}: " + "; ".join(lines))


def check_p2p(call: Call, rank: int, group) -> None:
    """Send/recv: the two ranks swap descriptions, then both raise or both go on."""
    peer = call.root
    mine = encode(call, 0)
    theirs = torch.empty_like(mine)
    work = dist.isend(mine, peer, group=group)
    dist.recv(theirs, peer, group=group)
    work.wait()
    rows = {rank: decode(mine), peer: decode(theirs)}
    lo, hi = sorted(rows)
    lines = [f"rank {rk}: {rows[rk]['message']}" for rk in (lo, hi) if rows[rk]["problem"]]
    kinds = {rows[rank]["op"], rows[peer]["op"]}
    if kinds != {OPS.index("send"), OPS.index("recv")}:
        lines.append(
            f"expected one send and one recv, got rank {lo}: {_describe('op', rows[lo]['op'])}, "
            f"rank {hi}: {_describe('op', rows[hi]['op'])}"
        )
    else:
        lines += disagreements([rows[lo], rows[hi]], [lo, hi], ("dtype", "numel_in"))
    if lines:
        raise CollectiveError(f"{call.op}: " + "; ".join(lines))
