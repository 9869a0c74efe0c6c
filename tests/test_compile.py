"""torch.compile with workbench's ops: custom operators, the "workbench" backend, fusion patterns, coverage.

Tiny one-layer transformers models of three architectures (Qwen3, Llama, Mistral) compile with
`fullgraph=True`; the backend's inner compiler is "eager" here (our kernels run in the Triton
interpreter either way; one test runs inductor, and on CUDA a decode step replays as a CUDA graph) so
that the module stays quick.
"""

import pytest
import torch

import workbench
import workbench.compile
from workbench import backends, ops
from workbench.models.build import seeded_init
from workbench.ops import REGISTRY

EAGER = {"inner": "eager"}


@pytest.fixture(autouse=True)
def fresh():
    torch._dynamo.reset()
    workbench.compile.reset_coverage()
    yield
    torch._dynamo.reset()


def t(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=backends.active().device_type).to(dtype)


def tiny(arch: str, eps: float = 1e-5) -> torch.nn.Module:
    import transformers

    sizes = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 256,
        "max_position_embeddings": 256,
        "rms_norm_eps": eps,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    }
    config = getattr(transformers, f"{arch}Config")(**sizes)
    config._attn_implementation = "sdpa"
    with torch.device(backends.active().device_type):
        model = getattr(transformers, f"{arch}ForCausalLM")(config).to(torch.bfloat16)
    seeded_init(model, seed=1)
    return model.eval()


def coverage():
    return workbench.compile_coverage().set_index("aten_op")


def test_custom_ops_trace_without_graph_breaks_and_export():
    x, w = t(4, 8), t(8)

    def f(x, w):
        return ops.add(ops.rms_norm(x, w, 1e-5), 2.0) * 3

    expected = f(x, w)
    for backend in ("eager", "inductor"):
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(f, backend=backend, fullgraph=True)(x, w), expected)

    class Norm(torch.nn.Module):
        def forward(self, x, w):
            return ops.rms_norm(x, w, 1e-5)

    program = torch.export.export(Norm(), (x, w))
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert targets == [torch.ops.workbench.rms_norm.default]
    torch.testing.assert_close(program.module()(x, w), ops.rms_norm(x, w, 1e-5))


def test_calls_that_need_a_gradient_are_refused_by_name_where_the_op_has_no_backward():
    x = t(4, 8).requires_grad_()
    assert REGISTRY["cumsum"].backward is None
    with pytest.raises(RuntimeError, match="workbench op 'cumsum' has no backward"):
        ops.cumsum(x, 1)
    with pytest.raises(RuntimeError, match="workbench op 'cumsum' has no backward"):
        torch.ops.workbench.cumsum(x, 1)
    with torch.no_grad():
        torch.testing.assert_close(ops.cumsum(x, 1), torch.cumsum(x, 1))


@pytest.mark.parametrize("arch", ["Qwen3", "Llama", "Mistral"])
def test_models_compile_fullgraph_with_our_ops_and_patterns(arch):
    model = tiny(arch)
    gen = torch.Generator().manual_seed(0)
    compiled = torch.compile(
        model, backend="workbench", fullgraph=True, options={**EAGER, "exclude": ["topk"]}
    )
    with torch.inference_mode():
        for length in (7, 12):  # the second length recompiles (a shape guard), then runs symbolic
            ids = torch.randint(0, 256, (1, length), generator=gen).to(model.device)
            native = model(input_ids=ids, use_cache=False).logits.float()
            ours = compiled(input_ids=ids, use_cache=False).logits.float()
            assert float((ours - native).norm() / native.norm()) < 2e-2
    cov = coverage()
    assert cov.loc["aten::linear", "handled"] > 0 and cov.loc["aten::embedding", "handled"] > 0
    for op in ("rms_norm", "add_rms_norm", "silu_and_mul", "rope"):
        assert cov.loc[f"(pattern) {op}", "handled"] > 0, workbench.compile_coverage()
    assert set(workbench.compile_coverage().columns) == {
        "aten_op",
        "op",
        "nodes",
        "handled",
        "fallback",
        "reasons",
    }


@pytest.mark.parametrize("arch, eps", [("Llama", 1e-5), ("Qwen3", 1e-6), ("Qwen3", 3e-6)])
def test_norm_patterns_fire_at_the_models_eps(monkeypatch, arch, eps):
    """Older torch (2.11) hands a pattern's check the match re-traced at the graph's constants, whose
    kwargs hold a scalar argument only where it equals the value the pattern was traced with (newer torch
    fills it in from the first match): emulated here. The norm patterns fire at any model's eps."""
    from torch._inductor import pattern_matcher

    unflatten = getattr(pattern_matcher, "_unflatten_match_kwargs", None)
    if unflatten is not None:  # else this torch behaves so already

        def older_torch(kwargs, arg_info, defaults=None):
            return unflatten(kwargs, arg_info) if defaults is None else dict(kwargs)

        monkeypatch.setattr(pattern_matcher, "_unflatten_match_kwargs", older_torch)
    model = tiny(arch, eps)
    ids = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(4)).to(model.device)
    compiled = torch.compile(model, backend="workbench", fullgraph=True, options=EAGER)
    with torch.inference_mode():
        native = model(input_ids=ids, use_cache=False).logits.float()
        ours = compiled(input_ids=ids, use_cache=False).logits.float()
    assert float((ours - native).norm() / native.norm()) < 2e-2
    cov = coverage()
    for op in ("rms_norm", "add_rms_norm"):
        row = cov.loc[f"(pattern) {op}"]
        assert row.handled > 0 and row.fallback == 0, workbench.compile_coverage()


def _heads_repeated(x, n, dim=2):
    """Each head of [B, H, S, D] repeated n times: consecutive copies (transformers' repeat_kv) at dim 2,
    the whole set tiled n times at dim 1."""
    b, h, s, d = x.shape
    sizes = (b, h, n, s, d) if dim == 2 else (b, n, h, s, d)
    return x.unsqueeze(dim).expand(*sizes).reshape(b, h * n, s, d)


def native_wins_every_timing(monkeypatch) -> None:
    """`fastest`'s timings all say native is faster (the rounds are given: a unit test times nothing)."""
    from workbench.profiling import timing

    native_faster = timing.Rounds([[1.0, 1.1, 1.0, 1.0, 1.05], [2.0, 2.1, 2.0, 2.2, 2.0]])
    monkeypatch.setattr(timing, "alternated_rounds", lambda fns, **_: native_faster)


@pytest.mark.parametrize("fastest", [False, True], ids=["ours took attention", "native kept attention"])
@pytest.mark.parametrize("dim, folds", [(2, True), (1, False)], ids=["dim 2 folds", "dim 1 tiled not"])
def test_repeated_key_value_heads_fold_into_grouped_attention(monkeypatch, dim, folds, fastest):
    """Attention on key/value heads repeated for their query heads runs on the unrepeated heads with
    enable_gqa (no copy); heads tiled in another order are no GQA grouping and stay as they are. The fold
    also takes a native fused attention node: with `fastest`, where native won the node's timing."""
    native_wins_every_timing(monkeypatch)
    q, k, v = t(2, 4, 1, 16), t(2, 2, 9, 16), t(2, 2, 9, 16)
    mask = torch.arange(9, device=q.device) < torch.tensor([[6], [9]], device=q.device)
    mask = mask[:, None, None, :]

    def f(q, k, v, mask):
        kr, vr = _heads_repeated(k, 2, dim), _heads_repeated(v, 2, dim)
        return torch.nn.functional.scaled_dot_product_attention(q, kr, vr, attn_mask=mask)

    with torch.no_grad():
        expected = f(q.double(), k.double(), v.double(), mask).float()
        options = {**EAGER, "fastest": fastest}
        ours = torch.compile(f, backend="workbench", fullgraph=True, options=options)(q, k, v, mask)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    cov = coverage()
    assert cov.loc["aten::scaled_dot_product_attention", "handled"] == (0 if fastest else 1)
    assert ("(pattern) repeat_kv" in cov.index) == folds, workbench.compile_coverage()
    if folds:
        assert cov.loc["(pattern) repeat_kv", "handled"] == 1


@pytest.mark.parametrize(
    "native, masked",
    [
        ("_scaled_dot_product_efficient_attention", True),  # (q, k, v, attn_bias, compute_log_sumexp)
        ("_scaled_dot_product_cudnn_attention", True),
        ("_scaled_dot_product_flash_attention", False),  # (q, k, v): no mask
    ],
)
def test_the_repeat_kv_fold_reads_each_cuda_fused_attention_signature(native, masked):
    """The CUDA fused attention kernels that inductor's ATen graph holds where ours left attention native
    map onto our attention: an ATen graph built by hand around one (it never runs: the fold replaces it),
    its key/value heads repeated as transformers does, runs ours on the unrepeated heads, exact against
    float64, and keeps none of the repeat's copy."""
    import operator

    from workbench.compile import nodes, patterns

    q, k, v = t(2, 4, 1, 16), t(2, 2, 9, 16), t(2, 2, 9, 16)
    bias = torch.where(torch.arange(9) < torch.tensor([[6], [9]]), 0.0, float("-inf"))[:, None, None, :]
    bias = bias.to(q.device)
    graph = torch.fx.Graph()

    def add(target, args, val):
        node = graph.call_function(target, args)
        node.meta["val"] = val
        return node

    inputs = {}
    for name, value in (("q", q), ("k", k), ("v", v), ("bias", bias)):
        inputs[name] = graph.placeholder(name)
        inputs[name].meta["val"] = value
    aten = torch.ops.aten
    repeated = []
    for name in ("k", "v"):
        x = add(aten.unsqueeze.default, (inputs[name], 2), inputs[name].meta["val"].unsqueeze(2))
        x = add(aten.expand.default, (x, [2, 2, 2, 9, 16]), x.meta["val"].expand(2, 2, 2, 9, 16))
        x = add(aten.clone.default, (x,), x.meta["val"].clone())
        repeated.append(add(aten.view.default, (x, [2, 4, 9, 16]), x.meta["val"].view(2, 4, 9, 16)))
    args = (inputs["q"], *repeated, *((inputs["bias"], False) if masked else ()))
    fused = graph.call_function(getattr(aten, native).default, args)
    with torch.no_grad():
        reference = torch.nn.functional.scaled_dot_product_attention(
            q.double(),
            *(_heads_repeated(x.double(), 2) for x in (k, v)),
            attn_mask=bias.double() if masked else None,
        )
    out = graph.call_function(operator.getitem, (fused, 0))
    out.meta["val"] = reference.to(q.dtype)
    graph.output(out)

    fired, refused = patterns.fold_repeated_kv(graph, nodes.Checker())
    assert (fired, refused) == ({"repeat_kv": 1}, {}), refused
    targets = {n.target for n in graph.nodes if n.op == "call_function"}
    assert getattr(aten, native).default not in targets and aten.clone.default not in targets, graph
    ours = torch.fx.GraphModule(torch.nn.Module(), graph)(q, k, v, bias)
    torch.testing.assert_close(ours, reference.to(q.dtype), atol=1e-4, rtol=1e-4)


def test_a_decode_step_folds_repeated_heads_where_native_won_the_attention_timing(monkeypatch):
    """The benchmark's setting (`fastest`, OVER_INDUCTOR) on a tiny Qwen3 decode step with a mask on a
    static cache: native wins every node's timing, and the step still reads the unrepeated KV heads."""
    from workbench.models.measure import _static_cache, cache_kwarg

    native_wins_every_timing(monkeypatch)
    model = tiny("Qwen3")
    batch, prompt = 2, 8
    device = model.device
    ids = torch.randint(0, 256, (batch, prompt), generator=torch.Generator().manual_seed(0)).to(device)
    cache = _static_cache(model, batch, prompt + 1)
    kw = {cache_kwarg(model): cache, "use_cache": True, "logits_to_keep": 1}
    options = {**EAGER, "fastest": True, "include": list(workbench.compile.OVER_INDUCTOR)}
    compiled = torch.compile(model, backend="workbench", dynamic=False, options=options)
    position = torch.full((batch, 1), prompt, device=device)
    mask = (torch.arange(prompt + 1, device=device)[None, :] <= position)[:, None, None, :]
    step = {"input_ids": ids[:, -1:], "position_ids": position, "attention_mask": mask, **kw}
    logits = {}
    with torch.inference_mode():
        for name, forward in (("native", model), ("ours", compiled)):
            cache.reset()
            model(input_ids=ids, cache_position=torch.arange(prompt, device=device), **kw)
            logits[name] = forward(cache_position=position[0], **step).logits.float()
    native, ours = logits["native"], logits["ours"]
    assert float((ours - native).norm() / native.norm()) < 2e-2
    cov = coverage()
    assert cov.loc["aten::scaled_dot_product_attention", "handled"] == 0
    assert cov.loc["(pattern) repeat_kv", "handled"] == 1, workbench.compile_coverage()


def test_inductor_compiles_around_our_ops():
    model = tiny("Qwen3")
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(2)).to(model.device)
    with torch.inference_mode():
        native = model(input_ids=ids, use_cache=False).logits.float()
        ours = torch.compile(model, backend="workbench", fullgraph=True)(
            input_ids=ids, use_cache=False
        ).logits.float()
    assert float((ours - native).norm() / native.norm()) < 2e-2
    assert coverage().loc["(pattern) rms_norm", "handled"] > 0


def test_inductor_meets_our_ops_with_their_fallbacks_already_made(monkeypatch):
    """Inductor makes a fallback for an operator it has no lowering for, but first formats the node's
    inputs for a log line (torch 2.11 even with the log off): a residual stream's expression DAG, printed
    as a tree, took minutes on an 18-layer model. The backend makes those fallbacks before inductor runs,
    so inductor's own path never meets our operators."""
    from torch._inductor import graph, lowering

    from workbench.ops import _library

    for op in _library.overloads():  # as in a process where inductor has not met them yet
        if op in lowering.lowerings:
            monkeypatch.delitem(lowering.lowerings, op)
    implicit = []
    make_fallback = graph.make_fallback

    def spy(op, *args, **kwargs):
        implicit.append(op)
        return make_fallback(op, *args, **kwargs)

    monkeypatch.setattr(graph, "make_fallback", spy)

    def f(x, w):
        for _ in range(6):  # a chain inductor fuses, unrealised where our op reads it
            x = x + torch.sin(x)
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), w, 1e-6)

    x, w = t(4, 64), t(64)
    ours = torch.compile(f, backend="workbench", fullgraph=True)(x, w)
    assert not [op for op in implicit if op.namespace == "workbench"], implicit
    assert coverage().loc["aten::rms_norm", "handled"] > 0
    torch.testing.assert_close(ours, f(x, w), rtol=1e-4, atol=1e-4)


def test_a_node_our_kernel_refuses_stays_native_with_its_reason():
    def f(a, b):
        return torch.softmax(a * b, -1), (a.double() * 2).sum(-1)

    a, b = t(3, 5), t(3, 5)
    out = torch.compile(f, backend="workbench", fullgraph=True, options=EAGER)(a, b)
    for got, expected in zip(out, f(a, b)):
        torch.testing.assert_close(got, expected)
    cov = coverage()
    assert cov.loc["aten::_softmax", "handled"] == 1
    row = cov.loc["aten::mul.Tensor"]
    assert row.handled == 1 and row.fallback == 1 and "got float64" in row.reasons


def test_selection_and_grad_rule():
    def f(a):
        return torch.exp(a) + a

    a = t(4, 4)
    with torch.no_grad():
        torch.compile(f, backend="workbench", options={**EAGER, "include": ["exp"]})(a)
    assert list(coverage().index) == ["aten::exp"]
    torch._dynamo.reset()
    workbench.compile.reset_coverage()
    g = a.clone().requires_grad_()
    out = torch.compile(f, backend="workbench", options=EAGER)(g)
    out.sum().backward()
    torch.testing.assert_close(g.grad, torch.exp(a) + 1)
    # training: the forward graph's nodes and the backward graph's (exp' = grad * exp) are ours too
    cov = coverage()
    assert cov.loc["aten::exp", "handled"] == 1 and cov.loc["aten::mul.Tensor", "handled"] >= 1
    assert (cov["fallback"] == 0).all(), workbench.compile_coverage()
    with pytest.raises(Exception, match="options: unknown"):
        torch.compile(f, backend="workbench", options={"speed": 11})(a)


def test_a_kernel_that_fails_costs_its_node_not_the_graph(monkeypatch):
    good = REGISTRY["exp"].implementation(backends.active().name)

    def broken(x):
        if x.shape[-1] == 5:
            raise RuntimeError("boom")
        return good(x)

    monkeypatch.setitem(REGISTRY["exp"].variants, backends.active().name, broken)

    def f(a, b):
        return torch.exp(a).sum() + torch.exp(b).sum()

    a, b = t(2, 5), t(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(f, backend="workbench", options=EAGER)(a, b), f(a, b))
    row = coverage().loc["aten::exp"]
    assert row.handled == 1 and row.fallback == 1
    assert "(exp): kernel failed: RuntimeError: boom" in row.reasons and row.reasons.startswith("node ")


def test_a_node_check_takes_broadcast_inputs():
    """The compile-time check of a node draws real inputs shaped and strided like the traced ones; a
    broadcast input (stride 0, as a model's expanded masks and positions are) must not fail it."""
    from workbench.compile.nodes import real as real_like

    expanded = torch.ones(3, 1).expand(3, 4)
    real = real_like(expanded)
    assert real.shape == (3, 4) and real.stride() == expanded.stride()
    assert torch.isfinite(real).all() and torch.equal(real[:, 0], real[:, 3])
    assert real_like(torch.ones(0, 5).expand(0, 5)).shape == (0, 5)


def test_a_tiny_qwen3_trains_through_the_backend():
    """loss.backward() through torch.compile(model, backend="workbench"): the gradients of every parameter
    match native autograd's (fp32, within a few times the ops' fp32 tolerance), and our ops ran in the
    forward (composites with a backward, through their custom operators) and in the backward graph."""
    native = tiny("Qwen3").float().train()
    ours = tiny("Qwen3").float().train()
    ids = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(3)).to(native.device)
    native(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    compiled = torch.compile(ours, backend="workbench", fullgraph=True, options=EAGER)
    loss = compiled(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    for (name, p), q in zip(native.named_parameters(), ours.parameters()):
        assert q.grad is not None, f"{name}: no gradient"
        err = float((q.grad - p.grad).norm() / p.grad.norm())
        assert err < 1e-4, f"{name}: rel_err {err:.3g}"
    cov = coverage()
    for overload in (
        "aten::linear",
        "aten::scaled_dot_product_attention",
        "aten::embedding",
        "aten::_log_softmax",
    ):
        assert cov.loc[overload, "handled"] > 0, workbench.compile_coverage()
    assert "no backward" not in " ".join(cov["reasons"])


def test_fastest_keeps_a_node_native_unless_ours_is_faster_on_its_inputs(monkeypatch):
    """`fastest`: each node our kernel takes is timed against its ATen op on the node's inputs, in
    alternated rounds; the node stays native (both times in its reason) unless the rounds show ours faster
    beyond their spread. The rounds are given here (a unit test times nothing); both callables run."""
    from workbench.profiling import timing

    def f(a):
        return torch.exp(a) * 2

    a = t(64, 64)
    options = {**EAGER, "include": ["exp"], "fastest": True}
    timed = []

    def given(rounds):
        def alternated_rounds(fns, **_):
            timed.append([fn() for fn in fns])  # native, ours: each runs on the node's inputs
            return rounds

        return alternated_rounds

    native_faster = timing.Rounds(
        [[1.0, 1.1, 1.0, 1.0, 1.05], [2.0, 2.1, 2.0, 2.2, 2.0]]
    )  # native, ours (ms)
    monkeypatch.setattr(timing, "alternated_rounds", given(native_faster))
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(f, backend="workbench", options=options)(a), f(a))
    row = coverage().loc["aten::exp"]
    assert row.handled == 0 and row.fallback == 1 and "native as fast or faster here" in row.reasons
    assert len(timed) == 1 and len(timed[0]) == 2
    torch.testing.assert_close(timed[0][0], timed[0][1])

    torch._dynamo.reset()
    workbench.compile.reset_coverage()
    ours_faster = timing.Rounds([[2.0, 2.1, 2.0, 2.2, 2.0], [1.0, 1.1, 1.0, 1.0, 1.05]])
    monkeypatch.setattr(timing, "alternated_rounds", given(ours_faster))
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(f, backend="workbench", options=options)(a), f(a))
    row = coverage().loc["aten::exp"]
    assert row.handled == 1 and row.fallback == 0


@pytest.mark.gpu
def test_a_compiled_decode_step_replays_as_a_cuda_graph():
    """`cudagraphs` on CUDA: a decode step on a static cache warms up, records and replays with our ops
    (CUDA graph trees refuse a tensor of the graph's pool that outlives the call: the index check once
    kept the graph's copy of the token ids), each step's logits as eager's, fed eager's tokens."""
    from workbench.models.measure import _static_cache, cache_kwarg

    model = tiny("Qwen3")
    batch, prompt, steps = 2, 8, 5
    device = model.device
    ids = torch.randint(0, 256, (batch, prompt), generator=torch.Generator().manual_seed(0)).to(device)
    keys = torch.arange(prompt + steps, device=device)
    cache = _static_cache(model, batch, prompt + steps)
    kw = {cache_kwarg(model): cache, "use_cache": True, "logits_to_keep": 1}
    compiled = torch.compile(
        model,
        backend="workbench",
        dynamic=False,
        options={"exclude": ["topk"], "cudagraphs": device.type == "cuda"},
    )

    def decode(forward, feed=None):
        """(logits of each step [steps, batch, vocab] in fp32, the greedy tokens [steps, batch, 1])."""
        cache.reset()
        logits = model(input_ids=ids, cache_position=torch.arange(prompt, device=device), **kw).logits
        tok, out, toks = logits[:, -1].argmax(-1, keepdim=True), [], []
        for i in range(steps):
            if feed is not None and i:
                tok = feed[i - 1]
            pos = torch.full((batch, 1), prompt + i, device=device)
            mask = (keys[None, :] <= pos)[:, None, None, :]
            step = forward(input_ids=tok, position_ids=pos, attention_mask=mask, cache_position=pos[0], **kw)
            out.append(step.logits[:, -1].float())  # a copy: a replay overwrites the graph's output
            tok = step.logits[:, -1].argmax(-1, keepdim=True)
            toks.append(tok)
        return torch.stack(out), toks

    with torch.inference_mode():
        native, tokens = decode(model)
        ours, _ = decode(compiled, feed=tokens)
        ours_again, _ = decode(compiled, feed=tokens)  # replays only
    for step, (n, o) in enumerate(zip(native, ours)):
        assert float((o - n).norm() / n.norm()) < 2e-2, f"step {step}"
    torch.testing.assert_close(ours_again, ours, rtol=0, atol=0)
    cov = coverage()
    assert cov.loc["aten::embedding", "handled"] > 0
    assert cov.loc["(pattern) repeat_kv", "handled"] > 0  # the masked step's repeated KV heads
