"""The torch.compile backend "workbench": our kernels in a model's ATen graph, the rest through inductor.

    torch.compile(model, backend="workbench", options={"include": None, "exclude": None,
                  "inner": "inductor", "patterns": True, "cudagraphs": False, "fastest": False})
    workbench.compile_coverage()      # aten_op, op, nodes, handled, fallback, reasons

What happens to a graph dynamo captured:
1. Composite ops that AOTAutograd would decompose (aten::scaled_dot_product_attention, linear, rms_norm,
   layer_norm, cross_entropy_loss: CompositeImplicitAutograd) are taken first, on dynamo's graph, where
   they are still one call each.
2. AOTAutograd traces the ATen graph with inductor's decompositions less the selected overloads (so
   aten::_softmax, silu, ... stay whole for our kernels).
3. On that graph (inductor's post-grad custom pass, or AOTAutograd's forward compiler for
   `inner="eager"`): the fusion patterns (`patterns.py`) replace chains by fused ops, then every node of
   a selected overload is checked and, if our kernel takes it, becomes the op's ATen twin
   (`torch.ops.workbench.<op>.<overload>`, same schema: see workbench.ops._library).
4. Inductor compiles the rest (our ops are opaque calls in its code), with CUDA graph trees when
   `cudagraphs` is on or `mode="reduce-overhead"`; `inner="eager"` runs the graph as it is.

The check is `use_ops`'s acceptance rule run at compile time: the op's adapter, through its twin, on
real inputs shaped like the node's (random floats, zero indices), once per distinct signature. A refusal
(`Unsupported`, TypeError, ValueError) keeps the node native with the message as its reason; a kernel
that fails in any other way, or returns another dtype, shape or layout than the ATen op, costs that
node only, and its reason names the node and the op. The selection is `use_ops`'s (workbench.selection).
With `fastest`, a node our kernel takes is also timed against its ATen op on those inputs (device time,
alternated rounds, forward only) and stays native, with both times as its reason, unless ours is faster
beyond the timing spread: the graph gets the faster kernel of each node. Fusion patterns replace chains of
nodes and are not timed.

Shapes: dynamo's guards. A new sequence length fails the shape guard and recompiles; from the second
length on, dynamo's automatic dynamic shapes make that dimension symbolic, and the checks run at the
size hint. Inputs our kernel refuses at run time (a size the check did not see) run the ATen op, with a
warning. Training (inputs that require grad under grad mode): a composite of step 1 is taken only where
its op has a backward (reason "no backward" otherwise): AOTAutograd then traces through the op's custom
operator and records our backward's custom operators. The graphs of step 3 are AOTAutograd's partitioned
forward and backward, plain computations on saved values, so their nodes are taken as at inference; the
fusion patterns stay off (a chain whose intermediates the backward saves is not one op).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Number
from typing import Any

import torch
import torch.fx
from torch._inductor.custom_graph_pass import CustomGraphPass

from workbench import dispatch
from workbench.ops import REGISTRY, _library
from workbench.selection import Selection, aten_overload, select

from . import nodes

INNER = ("inductor", "eager")
MODES = (None, "default", "reduce-overhead")
OPTIONS = ("include", "exclude", "inner", "patterns", "cudagraphs", "fastest")
# The ops to hand our kernels when inductor compiles the rest (options={"include": OVER_INDUCTOR}): the
# matmuls, attention, the lookup and the fused ops, where inductor calls a library kernel or emits separate
# small ones (the `fastest` option keeps a library kernel where it wins); the small elementwise ops stay
# with inductor, which fuses them into their neighbours as separate kernels cannot.
OVER_INDUCTOR = (
    "linear",
    "mm",
    "bmm",
    "addmm",
    "scaled_dot_product_attention",
    "embedding",
    "rms_norm",
    "add_rms_norm",
    "silu_and_mul",
    "rope",
)

_coverage = dispatch.Coverage(unit="nodes")


def compile_coverage():
    """For every graph compiled with the workbench backend in this process: per ATen overload (and per
    fusion pattern, "(pattern) <op>"), the nodes our ops took and those left native, with the reasons."""
    return _coverage.table()


def reset_coverage() -> None:
    global _coverage
    _coverage = dispatch.Coverage(unit="nodes")


@dataclass(frozen=True)
class Options:
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    inner: str = "inductor"
    patterns: bool = True
    cudagraphs: bool = False
    fastest: bool = False

    @classmethod
    def parse(cls, options: dict | None, mode: str | None) -> Options:
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(
                f"workbench backend options: unknown {unknown}; expected some of {list(OPTIONS)}"
            )
        if mode not in MODES:
            raise ValueError(f"workbench backend mode: expected one of {MODES}, got {mode!r}")
        names = {
            k: (
                None
                if options.get(k) is None
                else (options[k],)
                if isinstance(options[k], str)
                else tuple(options[k])
            )
            for k in ("include", "exclude")
        }
        opts = cls(
            **names,
            inner=options.get("inner", "inductor"),
            patterns=bool(options.get("patterns", True)),
            cudagraphs=bool(options.get("cudagraphs", mode == "reduce-overhead")),
            fastest=bool(options.get("fastest", False)),
        )
        if opts.inner not in INNER:
            raise ValueError(f"workbench backend option inner: expected one of {INNER}, got {opts.inner!r}")
        if opts.cudagraphs and opts.inner != "inductor":
            raise ValueError("workbench backend: cudagraphs need inner='inductor' (its CUDA graph trees)")
        return opts


# ---- the rewrite --------------------------------------------------------------------------------------

# Torch functions dynamo records for composite ATen ops (decomposed by AOTAutograd, so taken before it).
_COMPOSITES = {
    "aten::scaled_dot_product_attention": ("_C._nn.scaled_dot_product_attention",),
    "aten::linear": ("_C._nn.linear",),
    "aten::rms_norm": ("rms_norm",),
    "aten::layer_norm": ("layer_norm",),
    "aten::cross_entropy_loss": ("_C._nn.cross_entropy_loss",),
}


def _torch_attr(path: str):
    obj = torch
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


@functools.cache
def _composite_functions() -> dict[Any, str]:
    return {
        fn: overload
        for overload, paths in _COMPOSITES.items()
        for p in paths
        if (fn := _torch_attr(p)) is not None
    }


def _fits(overload: str, args: tuple, kwargs: dict) -> bool:
    """Whether no Python number sits in a Tensor argument of `overload`'s schema (custom operators,
    unlike ATen's, take no number for a Tensor)."""
    for i, arg in enumerate(aten_overload(overload)._schema.arguments):
        value = args[i] if i < len(args) else kwargs.get(arg.name)
        t = arg.type.getElementType() if isinstance(arg.type, torch.OptionalType) else arg.type
        if isinstance(t, torch.TensorType) and isinstance(value, Number):
            return False
    return True


class Rewrite:
    """Puts our ops into the graphs of one backend call, recording every decision in the coverage."""

    def __init__(self, selection: Selection, patterns: bool, needs_grad: bool, fastest: bool = False):
        self.selection, self.patterns, self.needs_grad = selection, patterns, needs_grad
        self.by_name = {aten_overload(ov): ov for ov in selection.adapters}
        self.check = nodes.Checker(fastest)

    def _take(self, node: torch.fx.Node, overload: str, retraced: bool = False) -> None:
        """Make `node` (ATen overload `overload`, or the torch function of a composite) our op's twin.
        `retraced`: AOTAutograd traces the graph after it from the twin's fake (strides need not match)."""
        op = self.selection.adapters[overload][0]
        if self.needs_grad and retraced and REGISTRY[op].backward is None:
            _coverage.record_fallback(overload, "no backward", op=op)
            return
        target = overload
        if not _fits(overload, node.args, node.kwargs):
            packet = aten_overload(overload).overloadpacket
            target = next(
                (
                    ov
                    for ov in self.selection.adapters
                    if aten_overload(ov).overloadpacket is packet and _fits(ov, node.args, node.kwargs)
                ),
                None,
            )
            if target is None:
                _coverage.record_fallback(
                    overload, "a Python number in a Tensor argument and no Scalar overload to take it", op=op
                )
                return
        twin = _library.twin(REGISTRY[op].name, target)
        if twin is None:
            _coverage.record_fallback(overload, "mutates or aliases an input (no custom operator)", op=op)
            return
        args, kwargs = nodes.traced(node.args, node.kwargs)
        expected = nodes.value(node)
        reason = self.check(
            target, twin, args, kwargs, expected, strides=not retraced, native=aten_overload(target)
        )
        if reason.startswith("kernel failed"):
            reason = f"node {node.name} ({op}): {reason}"
        if reason == nodes.RELAYOUT and isinstance(expected, (list, tuple)):
            reason = "output strides differ from the ATen op's (several outputs)"
        if reason and reason != nodes.RELAYOUT:
            _coverage.record_fallback(overload, reason, op=op)
            return
        node.target = twin
        if reason == nodes.RELAYOUT:  # the graph after this node was traced for the ATen op's strides
            nodes.restride(node, expected)
        _coverage.record_handled(overload, op=op)

    def composites(self, gm: torch.fx.GraphModule) -> None:
        """Step 1: composite ops in dynamo's graph (whose values are `example_value`s)."""
        functions = _composite_functions()
        for node in gm.graph.nodes:
            overload = functions.get(node.target) if node.op == "call_function" else None
            if overload in self.selection.adapters:
                self._take(node, overload, retraced=True)
        gm.recompile()

    def aten(self, graph: torch.fx.Graph) -> None:
        """Step 3: fusion patterns, then every node of a selected overload, on an ATen graph."""
        from . import patterns

        if self.patterns and patterns.active(self.selection) and not self.needs_grad:
            _record_patterns(*patterns.apply(graph, self.selection, self.check))
        for node in list(graph.nodes):
            if node.op == "call_function" and node.target in self.by_name:
                self._take(node, self.by_name[node.target])
        if self.patterns and not self.needs_grad and "scaled_dot_product_attention" in self.selection.ops:
            _record_patterns(*patterns.fold_repeated_kv(graph, self.check), op="scaled_dot_product_attention")
        graph.lint()


def _record_patterns(
    fired: dict[str, int], refused: dict[str, dict[str, int]], op: str | None = None
) -> None:
    """Coverage rows "(pattern) <name>": the matches fused, and those left with their reasons; `op`: the
    registry op serving a pattern not named after one."""
    for name, n in fired.items():
        _coverage.record_handled(f"(pattern) {name}", n, op=op or name)
    for name, reasons in refused.items():
        for reason, n in reasons.items():
            _coverage.record_fallback(f"(pattern) {name}", reason, n, op=op or name)


def _decompositions(selection: Selection) -> dict:
    return nodes.decompositions_keeping(frozenset(selection.adapters))


def workbench_backend(
    gm: torch.fx.GraphModule, example_inputs, mode: str | None = None, options: dict | None = None
):
    """The dynamo backend (registered as "workbench"); see the module docstring."""
    opts = Options.parse(options, mode)
    dispatch.compile_watch.by_workbench = True
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs
    )
    selection = select(opts.include, opts.exclude)
    rewrite = Rewrite(selection, opts.patterns, needs_grad, opts.fastest)
    rewrite.composites(gm)
    decompositions = _decompositions(selection)
    if opts.inner == "eager":
        from torch._functorch.aot_autograd import aot_module_simplified, make_boxed_func

        def compiler(g: torch.fx.GraphModule, _inputs):
            rewrite.aten(g.graph)
            g.recompile()
            return make_boxed_func(g.forward)

        return aot_module_simplified(
            gm, example_inputs, fw_compiler=compiler, bw_compiler=compiler, decompositions=decompositions
        )
    from torch._inductor.compile_fx import compile_fx

    _inductor_fallbacks()
    patches = {
        "post_grad_custom_pre_pass": _GraphPass(rewrite.aten),
        "fx_graph_cache": False,
        "triton.cudagraphs": opts.cudagraphs,
    }
    return compile_fx(gm, example_inputs, config_patches=patches, decompositions=decompositions)


def _inductor_fallbacks() -> None:
    """Inductor's fallback lowering (a call of the operator, as inductor would make it) for each of our
    custom operators that has none yet, made before inductor meets the operator in a graph. Inductor
    makes the same fallback on its own, but first formats the node's inputs for an info log line, even with
    the log off in torch 2.11: an input fed by the residual stream is an expression DAG as deep as the
    model, printed as a tree, and an 18-layer model's compile spent minutes in it. Where this torch's
    inductor lacks the functions used here, inductor's own path stays."""
    try:
        from torch._inductor import lowering
        from torch._library.utils import get_layout_constraint_tag

        constraint_of = lowering.tag_to_layout_constraint
    except (ImportError, AttributeError):
        return
    for op in _library.overloads():
        if op not in lowering.lowerings:
            # the layout rule inductor gives a custom operator without one of its own (torch's default)
            constraint = constraint_of(get_layout_constraint_tag(op, with_default=True))
            lowering.make_fallback(op, layout_constraint=constraint, warn=False)


class _GraphPass(CustomGraphPass):
    """Inductor's post-grad custom pass slot; uuid None: such a graph is never cached (the rewrite's
    checks and coverage must run)."""

    def __init__(self, fn: Callable[[torch.fx.Graph], None]):
        self.fn = fn

    def __call__(self, graph: torch.fx.Graph) -> None:
        self.fn(graph)

    def uuid(self):
        return None
