"""The device folder that results go to, and the results directory built from it."""

import pytest

from workbench.store.meta import device_folder, results_dir


@pytest.mark.parametrize(
    "backend, device, folder",
    [
        ("cuda", "NVIDIA H100 80GB HBM3", "h100"),
        ("cuda", "NVIDIA H100 PCIe", "h100"),
        ("cuda", "NVIDIA H200", "h200"),
        ("cuda", "NVIDIA A100-SXM4-80GB", "a100"),
        ("cuda", "NVIDIA B200", "b200"),
        ("cuda", "Tesla V100-SXM2-16GB", "v100"),
        ("mlu", "MLU590-M9", "mlu590"),
        ("mlu", "Cambricon MLU370-X8", "mlu370"),
        ("cuda", "NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("cuda", "Some Accelerator (rev. B)", "some-accelerator-rev-b"),
        ("cuda", "", "cuda"),
        ("cpu", "cpu (x86_64, Triton interpreter)", "cpu"),
        ("cpu", "NVIDIA H100 80GB HBM3", "cpu"),
    ],
)
def test_device_folder(backend, device, folder):
    assert device_folder({"backend": backend, "device": device}) == folder


def test_results_dir_is_created_under_out(tmp_path):
    meta = {"backend": "cuda", "device": "NVIDIA H200"}
    path = results_dir(tmp_path, "peers", meta)
    assert path == tmp_path / "benchmarks" / "results" / "h200" / "peers"
    assert path.is_dir()
    assert results_dir(str(tmp_path), "peers", meta) == path  # a second call, and a str root, are fine
