"""Fusion patterns: chains of ATen ops in a traced model replaced by one fused workbench op.

Matched on the ATen graph with inductor's pattern matcher, so they serve any architecture whose code
computes the same chain (transformers' Llama, Qwen2/3, Mistral, ... share these forms), not class names:

- `rms_norm`: the decomposed RMSNorm, `w * (h * rsqrt(mean(h**2, -1) + eps)).to(dtype)` with h = x in
  float32 (the casts are part of the pattern; none in float32) -> `workbench.rms_norm(x, w, eps)`;
- `add_rms_norm`: a residual add feeding that norm -> `workbench.add_rms_norm(x, residual, w, eps)`,
  which returns the normalised sum and the sum (the next residual);
- `silu_and_mul`: `silu(gate) * up` -> `workbench.silu_and_mul(gate, up)`;
- `rope`: transformers' rotate-half rotary embedding of q and k with cos/sin unsqueezed at dim 1
  -> `workbench.rope(q, k, cos, sin)`;
- `repeat_kv` (coverage row "(pattern) repeat_kv"): key/value heads repeated for grouped-query attention
  (unsqueeze at dim 2, expand, contiguous copy, reshape: transformers' `repeat_kv`, which it uses whenever
  it passes SDPA a mask) feeding our attention -> our attention on the unrepeated heads with
  `enable_gqa=True`: no copy of the KV cache per layer and step, and each key/value head read once for
  its group of query heads. Folded on the graph (not by the matcher), on our attention nodes and on the
  native fused attention nodes (flash, memory-efficient, cuDNN) where ours was left out: with `fastest`
  the attention node is timed on the repeated heads, where ours and native read the same copy and run
  about as fast, so the fold must not depend on which one won there.

Patterns are traced once per (selection, dtype) with the backend's decomposition table, so they have
the form the graph has. A match becomes the fused op only where its kernel takes the inputs (checked on
real inputs shaped like the match's, as the backend checks nodes); the others stay as they are (and
their ops may still be taken one by one), with the reason in the coverage row "(pattern) <op>".
Patterns with a constant of the model in them are made for each value the graph holds: a rope pattern
for each half size that the graph slices a last dim at (the rotate-half slice points), the norm patterns
for each eps added under an rsqrt. The eps is the pattern's scalar argument only where it equals the
value the pattern was traced with (older torch hands the check a match without it otherwise).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import torch

from workbench.selection import Selection

from . import nodes

DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _parameters(fn) -> set[str]:
    import inspect

    return set(inspect.signature(fn).parameters)


class _Relayout:
    """Output strides of the chain a match replaces, set by the check when the fused kernel's differ: the
    replacement (traced right after) copies its outputs to them, as the rest of the graph expects."""

    strides: list | None = None


_relayout = _Relayout()


def _hint_strides(t):

    return (nodes.hint(s) for s in t.stride())


def _as_chain(*outs):
    if _relayout.strides is None:
        return outs[0] if len(outs) == 1 else outs
    fixed = tuple(torch.ops.prims.copy_strided.default(o, s) for o, s in zip(outs, _relayout.strides))
    return fixed[0] if len(fixed) == 1 else fixed


def _rms_norm(x, w, eps):
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def _rms_norm_fused(x, w, eps):
    return _as_chain(torch.ops.workbench.rms_norm.default(x, w, eps))


def _add_rms_norm(x, residual, w, eps):
    total = residual + x
    return _rms_norm(total, w, eps), total


def _add_rms_norm_fused(x, residual, w, eps):
    out, total = torch.ops.workbench.add_rms_norm.default(x, residual, w, eps)
    return _as_chain(out, total)


def _silu_and_mul(gate, up):
    return torch.nn.functional.silu(gate) * up


def _silu_and_mul_fused(gate, up):
    return _as_chain(torch.ops.workbench.silu_and_mul.default(gate, up))


def _rotate_half(x, half):
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(q, k, cos, sin, half):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q, half) * sin, k * cos + _rotate_half(k, half) * sin


def _rope_fused(q, k, cos, sin):
    q_out, k_out = torch.ops.workbench.rope.default(q, k, cos, sin, 1)
    return _as_chain(q_out, k_out)


def _examples(op: str, dtype: torch.dtype, constant: float | None):
    """(example inputs, scalar arguments) to trace `op`'s pattern with; `constant`: rope's half head size or
    the norms' eps."""

    def t(*shape):
        return torch.empty(shape, dtype=dtype)

    if op == "rms_norm":
        return [t(2, 8), t(8)], {"eps": constant}
    if op == "add_rms_norm":
        return [t(2, 8), t(2, 8), t(8)], {"eps": constant}
    if op == "silu_and_mul":
        return [t(2, 8), t(2, 8)], None
    half = int(constant)
    return [t(1, 2, 3, 2 * half), t(1, 1, 3, 2 * half), t(1, 3, 2 * half), t(1, 3, 2 * half)], None


_CHAINS = {
    "rms_norm": (_rms_norm, _rms_norm_fused),
    "add_rms_norm": (_add_rms_norm, _add_rms_norm_fused),
    "silu_and_mul": (_silu_and_mul, _silu_and_mul_fused),
    "rope": (_rope, _rope_fused),
}


class Patterns:
    """The pattern passes of one selection, in the order they must run."""

    def __init__(self, fused: tuple[str, ...], decompositions: dict):
        from torch._inductor.pattern_matcher import PatternMatcherPass

        self.fused = fused
        self.decompositions = decompositions
        # add_rms_norm first: its chain contains rms_norm's
        self.passes = {op: PatternMatcherPass() for op in fused}
        self.fired: dict[str, int] = {}
        self.refused: dict[str, dict[str, int]] = {}
        self.check: Callable | None = None
        self.registered: set[tuple[str, float | None]] = set()  # (op, the constant its pattern holds)
        if "silu_and_mul" in self.passes:
            self._register("silu_and_mul", None)

    def _register(self, op: str, constant: float | None) -> None:
        """Register `op`'s pattern for one value of its constant (none for silu_and_mul)."""
        from torch._inductor.pattern_matcher import fwd_only, register_replacement

        self.registered.add((op, constant))
        search, replace = _CHAINS[op]
        if op == "rope":
            chain = search

            def search(q, k, cos, sin):  # the matcher reads the search function's parameter names
                return chain(q, k, cos, sin, int(constant))

        def decompositions():
            return self.decompositions

        trace = functools.partial(fwd_only, get_decomp_fn=decompositions)
        # torch >= 2.8 also traces with register_replacement's own get_decomp_fn: the same table
        extra = (
            {"get_decomp_fn": decompositions} if "get_decomp_fn" in _parameters(register_replacement) else {}
        )
        for dtype in DTYPES:
            example, scalars = _examples(op, dtype, constant)
            register_replacement(
                search,
                replace,
                example,
                trace,
                self.passes[op],
                extra_check=functools.partial(self._accept, op, replace),
                scalar_workaround=scalars,
                skip_duplicates=True,
                **extra,
            )

    def _accept(self, op: str, replace: Callable, match) -> bool:
        """Whether the fused op's kernel takes the matched inputs (else the chain stays, with the reason)."""

        if not _parameters(replace) <= set(match.kwargs):
            return False  # a norm of another eps (older torch): that eps's own pattern takes it
        kwargs = {k: nodes.value(v) for k, v in match.kwargs.items()}
        outputs = [nodes.value(n) for n in match.output_nodes()]

        expected = outputs[0] if len(outputs) == 1 else outputs
        _relayout.strides = None  # the check runs the fused op as it is
        reason = self.check(f"(pattern) {op}", replace, (), kwargs, expected)
        _relayout.strides = [list(_hint_strides(e)) for e in outputs] if reason == nodes.RELAYOUT else None
        if reason and reason != nodes.RELAYOUT:
            reasons = self.refused.setdefault(op, {})
            reasons[reason] = reasons.get(reason, 0) + 1
            return False
        self.fired[op] = self.fired.get(op, 0) + 1
        return True

    @staticmethod
    def _norm_eps(graph: torch.fx.Graph) -> set[float]:
        """The constants the graph adds right under an rsqrt (the eps of its RMSNorm chains)."""
        eps = set()
        for node in graph.find_nodes(op="call_function", target=torch.ops.aten.rsqrt.default):
            add = node.args[0]
            if (
                isinstance(add, torch.fx.Node)
                and add.target in (torch.ops.aten.add.Tensor, torch.ops.aten.add.Scalar)
                and isinstance(add.args[1], float)
            ):
                eps.add(add.args[1])
        return eps

    def _rope_halves(self, graph: torch.fx.Graph) -> set[int]:
        """Half head sizes at which the graph slices a last dim in two (rotate-half candidates)."""

        halves = set()
        for node in graph.find_nodes(op="call_function", target=torch.ops.aten.slice.Tensor):
            source = nodes.value(node.args[0]) if node.args else None
            if (
                len(node.args) >= 4
                and node.args[2] == 0
                and isinstance(node.args[3], int)
                and isinstance(source, torch.Tensor)
                and source.shape[-1] == 2 * node.args[3]
            ):
                halves.add(node.args[3])
        return halves

    def apply(
        self, graph: torch.fx.Graph, check: Callable
    ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Run every pass on `graph`; (matches fused per op, {op: {reason: count}} of matches left)."""
        self.check, self.fired, self.refused = check, {}, {}
        constants = {"rope": self._rope_halves(graph), "rms_norm": self._norm_eps(graph)}
        constants["add_rms_norm"] = constants["rms_norm"]
        for op, pass_ in self.passes.items():
            for constant in constants.get(op, ()):
                if (op, constant) not in self.registered:
                    self._register(op, constant)
            pass_.apply(graph)
        if self.fired:
            from torch._inductor.pattern_matcher import stable_topological_sort

            # A match of several outputs (rope's q and k) goes where its first output was; an input of
            # it may be defined later in the graph (k's chain before q's).
            stable_topological_sort(graph)
        return self.fired, self.refused


@functools.cache
def _patterns(fused: tuple[str, ...], kept: frozenset) -> Patterns:

    return Patterns(fused, nodes.decompositions_keeping(kept))


PATTERN_OPS = ("add_rms_norm", "rms_norm", "silu_and_mul", "rope")  # in the order their passes run


def active(selection: Selection) -> tuple[str, ...]:
    """The ops whose patterns a selection switches on."""
    return tuple(op for op in PATTERN_OPS if op in selection.ops)


def apply(graph: torch.fx.Graph, selection: Selection, check: Callable):
    """The selection's fusion patterns on `graph` (passes cached per selection): (fired, refused)."""
    return _patterns(active(selection), frozenset(selection.adapters)).apply(graph, check)


_VIEWS = (torch.ops.aten.view.default, torch.ops.aten.reshape.default, torch.ops.aten._unsafe_view.default)


def _calls(node, *targets) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in targets


def _repeated_heads(node, heads: int):
    """The [B, Hkv, S, D] node whose heads `node` repeats, each one for `heads` // Hkv consecutive heads
    (unsqueeze(2), expand of that dim, an optional contiguous clone, a reshape to [B, heads, S, D]);
    None where `node` is not such a chain."""
    if not _calls(node, *_VIEWS):
        return None
    expand = node.args[0]
    if _calls(expand, torch.ops.aten.clone.default):
        expand = expand.args[0]
    if not _calls(expand, torch.ops.aten.expand.default):
        return None
    unsqueeze = expand.args[0]
    if not _calls(unsqueeze, torch.ops.aten.unsqueeze.default) or unsqueeze.args[1] != 2:
        return None
    kv = unsqueeze.args[0]
    shape = [nodes.hint(s) for s in nodes.value(kv).shape]
    if len(shape) != 4 or heads % shape[1]:
        return None
    b, kv_heads, s, d = shape
    expanded = [nodes.hint(n) for n in nodes.value(expand).shape]
    out = [nodes.hint(n) for n in nodes.value(node).shape]
    if expanded != [b, kv_heads, heads // kv_heads, s, d] or out != [b, heads, s, d]:
        return None
    return kv


def _erase_unused(node) -> None:
    """Erase `node` and, in turn, the inputs of the chain it ends that nothing else uses."""
    while (
        _calls(
            node,
            *_VIEWS,
            torch.ops.aten.clone.default,
            torch.ops.aten.expand.default,
            torch.ops.aten.unsqueeze.default,
        )
        and not node.users
    ):
        source = node.args[0]
        node.graph.erase_node(node)
        node = source


# ATen's fused attention kernels, which an attention call our kernel did not take becomes in the graph;
# their first output is the attention's (the others, log-sum-exp and RNG state, go unused in inference)
_NATIVE_ATTENTION = tuple(
    getattr(torch.ops.aten, name).default
    for name in (
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    )
    if hasattr(torch.ops.aten, name)
)


def _attention_call(node) -> tuple[tuple, dict, torch.fx.Node] | None:
    """(args, kwargs) of `aten::scaled_dot_product_attention` for an attention node, and the node that
    gives its output: the node itself where it is ours; for a native fused one, its first output (its
    only use). None where `node` is neither or its other outputs are used."""
    if node.target not in _NATIVE_ATTENTION:
        return node.args, dict(node.kwargs), node
    users = list(node.users)
    if len(users) != 1 or not _calls(users[0], operator.getitem) or users[0].args[1] != 0:
        return None
    schema = node.target._schema.arguments
    given = {a.name: v for a, v in zip(schema, node.args)} | dict(node.kwargs)
    bound = {a.name: given.get(a.name, a.default_value if a.has_default_value() else None) for a in schema}
    mask = bound.get("attn_bias", bound.get("attn_mask"))
    args = (bound["query"], bound["key"], bound["value"], mask, bound["dropout_p"], bound["is_causal"])
    return args, {"scale": bound["scale"]}, users[0]


def fold_repeated_kv(graph: torch.fx.Graph, check: Callable):
    """The `repeat_kv` pattern: attention nodes (ours, or native fused ones) reading key/value heads
    repeated for their query heads become our attention on the unrepeated ones with `enable_gqa=True`,
    where our kernel takes them so. Returns what `apply` does: ({"repeat_kv": folded}, {"repeat_kv":
    {reason: count}} of those left), empty where none."""
    from workbench.ops import _library

    attention = _library.twin("scaled_dot_product_attention", "aten::scaled_dot_product_attention")
    folded, refused = 0, {}
    if attention is None:
        return {}, {}
    candidates = [n for n in graph.nodes if _calls(n, attention, *_NATIVE_ATTENTION)]
    for node in candidates:
        call, query = _attention_call(node), nodes.value(node.args[0])
        if call is None or query.dim() != 4:
            continue
        (args, kwargs, result), heads = call, nodes.hint(query.shape[1])
        sources = [_repeated_heads(a, heads) for a in args[1:3]]
        if sources == [None, None]:
            continue
        repeated = args[1:3]
        args = (args[0], *(s or a for s, a in zip(sources, repeated)), *args[3:])
        kwargs = {**kwargs, "enable_gqa": True}
        expected = nodes.value(result)
        reason = check("(pattern) repeat_kv", attention, *nodes.traced(args, kwargs), expected)
        if reason and not (reason == nodes.RELAYOUT and node is not result):
            refused[reason] = refused.get(reason, 0) + 1
            continue
        if node is result:  # ours: the same node reads the unrepeated heads
            node.args, node.kwargs = args, kwargs
        else:  # native: our node in its place, in the layout the graph after it was traced for
            with graph.inserting_before(node):
                ours = graph.call_function(attention, args, kwargs)
            ours.meta["val"] = expected
            result.replace_all_uses_with(ours)
            graph.erase_node(result)
            graph.erase_node(node)
            if reason == nodes.RELAYOUT:
                nodes.restride(ours, expected)
        for chain in repeated:
            _erase_unused(chain)
        folded += 1
    return ({"repeat_kv": folded} if folded else {}), ({"repeat_kv": refused} if refused else {})
