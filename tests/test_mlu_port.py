"""The MLU port's plumbing: named device figures, launch sizing of the mlu-style kernels, variant
registration and selection, check() of a named variant and under the launch rules, the CLI."""

import pytest
import torch

import workbench
from workbench import backends
from workbench.backends import mlu_devices
from workbench.cli import main
from workbench.ops import REGISTRY
from workbench.ops._matmul import PERSISTENT_CONFIGS as CONFIGS
from workbench.ops._matmul import nram_bytes, pick_config
from workbench.ops.mlu import persistent as sizing
from workbench.ops.mlu.rules import LaunchRules
from workbench.profiling import check, check_rules, failures

ELEMENTWISE = [
    "sub",
    "div",
    "neg",
    "pow",
    "rsqrt",
    "where",
    "masked_fill",
    "silu_and_mul",
    "copy",
    "fill",
    "rope",
]


def test_named_devices_and_overrides(monkeypatch):
    mlu590, mlu370 = mlu_devices.device("mlu590"), mlu_devices.device("MLU370")
    assert (mlu590.cores, mlu590.nram_bytes, mlu590.tf32) == (48, 512 * 1024, True)
    assert (mlu370.cores, mlu370.nram_bytes, mlu370.tf32) == (32, 768 * 1024, False)
    assert "core count unconfirmed" in mlu590.confirmed
    custom = mlu590.with_overrides(cores=20, nram_bytes=256 * 1024)
    assert (custom.name, custom.cores, custom.nram_bytes) == ("MLU590 cores=20 nram=256KiB", 20, 256 * 1024)
    assert mlu590.with_overrides() is mlu590
    with pytest.raises(ValueError, match="cores: expected a positive integer, got 0"):
        mlu590.with_overrides(cores=0)
    with pytest.raises(ValueError, match="MLU device: expected one of"):
        mlu_devices.device("mlu100")
    monkeypatch.setenv("WORKBENCH_MLU_DEVICE", "mlu370")
    assert mlu_devices.default_device() is mlu370
    if backends.active().name != "mlu":
        assert mlu_devices.target() is mlu370
        with mlu_devices.targeting(custom):
            assert mlu_devices.target() is custom
        assert mlu_devices.target() is mlu370


def test_launch_sizing_follows_the_target():
    dev = mlu_devices.device("mlu590")
    assert sizing.NUM_WARPS == 4 and sizing.max_programs(dev=dev) == 12  # 48 cores, 4 per program
    assert sizing.tile_elems(4, dev=dev) == sizing.MAX_TILE == 8192
    assert sizing.tile_elems(40, dev=dev) == 4096  # 256 KiB / 40 B -> 6553 -> power of two below
    assert sizing.programs(1000, dev=dev) == 12 and sizing.programs(1000, num_warps=1, dev=dev) == 48
    assert sizing.programs(3, dev=dev) == 3
    assert sizing.block_1d(10, 4, dev=dev) == sizing.MIN_TILE
    assert sizing.block_1d(12 * 2048, 4, dev=dev) == 2048  # every program gets one tile
    with mlu_devices.targeting(dev.with_overrides(cores=16)):
        t = sizing.row_tiles(1000, 128, one_tile_bytes=2, streamed_bytes=8)
        assert (t.block_r, t.block_c, t.one_tile, t.programs) == (64, 128, True, 4)
        t = sizing.row_tiles(3, 151936, one_tile_bytes=2, streamed_bytes=12)
        assert (t.block_r, t.block_c, t.one_tile, t.programs) == (1, 8192, False, 3)


def test_mm_configs_fit_nram_and_the_problem():
    with mlu_devices.targeting(mlu_devices.device("mlu590")):
        assert pick_config(2048, 4096, 2) == (128, 128, 64)
        assert pick_config(1, 4096, 2) == (16, 128, 128)
        assert pick_config(64, 48, 4) == (64, 64, 64)
    with mlu_devices.targeting(mlu_devices.device("mlu590").with_overrides(nram_bytes=64 * 1024)):
        assert nram_bytes(pick_config(2048, 4096, 4), 4) <= 32 * 1024
    tiny = mlu_devices.device("mlu590").with_overrides(nram_bytes=4 * 1024)
    with mlu_devices.targeting(tiny), pytest.raises(ValueError, match="no mm config fits"):
        pick_config(64, 64, 4)
    assert all(nram_bytes(c, 4) <= 256 * 1024 for c in CONFIGS)


def test_every_op_has_an_mlu_variant_chosen_on_the_mlu_backend():
    for name, spec in REGISTRY.items():
        assert "mlu" in spec.variant_names(), f"{name} has no mlu form"
        assert spec.variant_name("mlu") == "mlu"
        assert spec.implementation("mlu") is spec.variant("mlu") is not spec.impl
        assert spec.variant("generic") is spec.impl
    expected = "variant: expected one of \\['generic', 'mlu'\\] for op 'add', got 'x'"
    with pytest.raises(ValueError, match=expected):
        REGISTRY["add"].variant("x")
    with pytest.raises(ValueError, match="already has a 'mlu' variant"):
        REGISTRY["softmax"].add_variant("mlu", lambda *a: None)
    # the ops on the shared launchers take them in the persistent style; only a different algorithm is written
    written = sorted(name for name, spec in REGISTRY.items() if "mlu" in spec.variants)
    assert "add" not in written and "mm" not in written and "softmax" in written and len(written) <= 15


def test_public_functions_run_the_active_backends_variant(monkeypatch):
    x = torch.randn(8, device=backends.active().device())
    monkeypatch.setitem(REGISTRY["exp"].variants, backends.active().name, lambda t: t * 0 + 7)
    assert torch.equal(workbench.ops.exp(x), torch.full_like(x, 7))
    assert workbench.ops.exp.__name__ == "exp" and workbench.ops.exp.__wrapped__ is REGISTRY["exp"].impl


def test_check_a_named_variant_under_the_rules():
    df, rules = check_rules(
        ops=["silu", "softmax"],
        cases=["quick"],
        dtypes=["fp32"],
        variant="mlu",
        device="mlu370",
        seed=0,
        progress=False,
    )
    assert failures(df).empty and (df["variant"] == "mlu").all() and (df["violations"] == 0).all()
    assert rules.clean and rules.device.name == "MLU370"
    assert set(rules.launches()["kernel"]) == {
        "ops._elementwise._unary_persistent_kernel",
        "ops.mlu.softmax._softmax_kernel",
    }
    df, rules = check_rules(
        ops=["softmax"], cases=["quick"], dtypes=["fp32"], variant="generic", seed=0, progress=False
    )
    assert failures(df).empty and (df["violations"] == 1).all()  # one grid violation per case
    assert set(rules.violations()["rule"]) == {"grid"}


def test_grid_stride_loops_walk_every_tile():
    """One program on a tiny device walks many tiles: the loops the quick cases never take (there every
    program gets one tile) give the same results and keep to the rules."""
    df, rules = check_rules(
        ops=ELEMENTWISE,
        cases=["quick"],
        dtypes=["fp32"],
        variant="mlu",
        cores=4,
        nram_bytes=8 * 1024,
        seed=0,
        progress=False,
    )
    assert failures(df).empty and (df["violations"] == 0).all() and rules.clean
    launches = rules.launches()
    assert set(launches["tasks"]) == {4}  # one program of 4 tasks
    assert set(launches["op"]) == set(ELEMENTWISE)


def test_in_place_aten_overloads_use_the_variants_launcher():
    """aten::copy_ / aten::fill_.Scalar get the backend's implementation: the mlu one launches mlu kernels."""
    dev = backends.active().device()
    src, dst = torch.randn(5, 7, device=dev), torch.empty(7, 5, device=dev).t()
    copy_, fill_ = REGISTRY["copy"], REGISTRY["fill"]
    for variant, style in (("mlu", "_persistent"), ("generic", "")):
        rules = LaunchRules.for_device("mlu590")
        with rules:
            assert copy_.aten_impls["aten::copy_"](copy_.variant(variant), dst, src) is dst
            assert torch.equal(dst, src)
            assert fill_.aten_impls["aten::fill_.Scalar"](fill_.variant(variant), dst, 2.5) is dst
            assert (dst == 2.5).all()
        assert rules.launches()["kernel"].tolist() == [
            f"ops._movement._copy{style}_kernel",
            f"ops._movement._fill{style}_kernel",
        ]


def test_check_skips_ops_without_the_variant(monkeypatch):
    monkeypatch.setitem(REGISTRY["silu"].variants, "generic:again", REGISTRY["silu"].impl)
    df = check(ops=["exp", "silu"], cases=["quick"], dtypes=["fp32"], variant="generic:again", progress=False)
    assert (df[df.op == "exp"]["skipped"] == "no generic:again variant").all()
    assert df[df.op == "silu"]["passed"].all() and (df[df.op == "silu"]["variant"] == "generic:again").all()
    with pytest.raises(ValueError, match="variant: no selected op has a 'generic:again' variant"):
        check(ops=["exp"], variant="generic:again", progress=False)


def test_cli_profile_reports_violations(capsys, tmp_path):
    csv = tmp_path / "violations.csv"
    assert (
        main(
            [
                "check",
                "softmax",
                "--profile",
                "mlu",
                "--cases",
                "quick",
                "--dtype",
                "fp32",
                "--no-progress",
                "--rules-csv",
                str(csv),
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "MLU launch-rule violations:" in out and "64 programs x num_warps 4 = 256 > 48 cores" in out
    assert "2 violations in 1 kernels" in out and csv.read_text().count("\n") == 3
    assert (
        main(
            [
                "check",
                "softmax",
                "--profile",
                "mlu",
                "--cores",
                "4096",
                "--cases",
                "quick",
                "--dtype",
                "fp32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "MLU590 cores=4096" in capsys.readouterr().out
    assert (
        main(
            [
                "check",
                "softmax",
                "silu",
                "--profile",
                "MLU370",
                "--variant",
                "mlu",
                "--cases",
                "quick",
                "--dtype",
                "bf16",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "MLU370 (32 cores, 768 KiB NRAM): 4 launches checked, 0 violations" in capsys.readouterr().out


def test_cli_rejects_overrides_without_profile(capsys):
    assert main(["check", "silu", "--cores", "8", "--no-progress"]) == 2
    assert "--cores / --nram-kib: only with --profile" in capsys.readouterr().err


def test_rules_object_from_python():
    rules = LaunchRules.for_device("mlu", cores=16, nram_bytes=128 * 1024)
    x = torch.randn(64, 300, device=backends.active().device())
    with rules:
        workbench.ops.softmax(x)  # the generic kernel on cpu: one program per row
        REGISTRY["softmax"].variant("mlu")(x)
    v = rules.violations()
    assert v["kernel"].tolist() == ["ops.softmax._softmax_kernel"] and v["rule"].tolist() == ["grid"]
    assert set(rules.launches()["tasks"]) == {256, 16}  # generic: 64 rows x 4 warps; mlu: 4 programs x 4


@pytest.mark.parametrize("causal", [True, False])
def test_mlu_attention_tiles_that_span_packed_heads(causal):
    """GQA heads packed into one tile with tiles shorter than a group's rows (NRAM-limited): a tile
    mixes the end of one head's queries with the start of the next, and causal bounds must follow the
    per-row query index. The op's cases fit one tile per group, so they never reach this."""
    from workbench.ops.mlu import scaled_dot_product_attention as sdpa

    dev = backends.active().device()
    gen = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(2, 4, 60, 16, generator=gen, device=dev)
    k, v = (torch.randn(2, 2, 45, 16, generator=gen, device=dev) for _ in range(2))
    mask = None if causal else torch.randn(60, 45, generator=gen, device=dev)
    rules = LaunchRules.for_device("mlu590", nram_bytes=32 * 1024)  # also the launches' target
    with rules:
        assert sdpa.pick_config(2 * 60, 16, 16, 4, 4) == (16, 32)  # 8 tiles per packed pair of heads
        out = sdpa.scaled_dot_product_attention(q, k, v, mask, is_causal=causal, enable_gqa=True)
    want = torch.nn.functional.scaled_dot_product_attention(
        q.double(),
        k.double(),
        v.double(),
        None if mask is None else mask.double(),
        is_causal=causal,
        enable_gqa=True,
    )
    torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-5)
    assert rules.clean, rules.violations().to_string()
