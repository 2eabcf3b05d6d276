"""GPUs: NVML when there is a driver, declared by hand, or none (a named state)."""

from __future__ import annotations

import pytest

from jupyter_edge.site.gpu import GPUState, discover_gpus, parse_gpus_option


def nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def test_declared_gpus_are_numbered_and_unmeasured():
    inventory = discover_gpus(2)
    assert inventory.state == GPUState.DECLARED
    assert [g.index for g in inventory.gpus] == [0, 1]
    assert inventory.sample() == [], "declared GPUs have nothing to sample"


def test_no_gpus_is_a_normal_state():
    inventory = discover_gpus(None)
    assert (inventory.state, inventory.count) == (GPUState.NONE, 0)


@pytest.mark.parametrize("text, parsed", [("auto", "auto"), ("3", 3), ("none", None), ("0", None), (None, None)])
def test_gpus_option(text, parsed):
    assert parse_gpus_option(text) == parsed


@pytest.mark.parametrize("text", ["lots", "-1", "1.5"])
def test_bad_gpus_option(text):
    with pytest.raises(ValueError, match="--gpus"):
        parse_gpus_option(text)


def test_auto_without_a_driver_says_why():
    if nvml_works():
        pytest.skip("this machine has a working NVIDIA driver; see test_auto_reads_nvml")
    inventory = discover_gpus("auto")
    assert inventory.count == 0
    assert inventory.state in (GPUState.NVML_LIBRARY_NOT_FOUND, GPUState.NVML_NO_DEVICES, GPUState.NVML_FAILED)
    assert inventory.detail, "the reason must be reported"


@pytest.mark.gpu
def test_auto_reads_nvml():
    if not nvml_works():
        pytest.skip("needs a physical NVIDIA GPU and driver (NVML did not initialise here)")
    inventory = discover_gpus("auto")
    assert inventory.state == GPUState.NVML and inventory.count > 0
    assert all(g.model and g.memory_total for g in inventory.gpus)
    samples = inventory.sample()
    assert len(samples) == inventory.count
    assert all(0 <= s["utilization"] <= 100 and s["memory_used"] >= 0 for s in samples)


@pytest.mark.gpu
def test_gpu_execution_sees_only_its_gpu(tmp_path):
    if not nvml_works():
        pytest.skip("needs a physical NVIDIA GPU and driver (NVML did not initialise here)")
    from distributed import Client

    from jupyter_edge import Fleet
    from jupyter_edge.local import SiteSpec, local_cluster

    cluster = local_cluster([SiteSpec("gpu-site", gpus="auto"), SiteSpec("cpu-site")])
    with Fleet(Client(cluster, set_as_default=False)) as fleet:
        fleet.wait_for_sites(2)
        import time

        deadline = time.monotonic() + 30
        while True:  # live samples ride on the site's heartbeats
            site = {s.name: s for s in fleet.sites()}["gpu-site"]
            if site.gpus and site.gpus[0].utilization is not None:
                break
            assert time.monotonic() < deadline, f"no live GPU sample in 30 s: {site.gpus}"
            time.sleep(0.2)
        assert site.gpu_state == "nvml" and site.gpus[0].memory_total and site.gpus[0].memory_used is not None

        def visible(site):
            import os

            return os.environ["CUDA_VISIBLE_DEVICES"], [g["index"] for g in site.gpus]

        res = fleet.run(visible, gpus=1, timeout=60)
        assert list(res) == ["gpu-site"]
        devices, held = res["gpu-site"]
        assert devices == str(held[0])
    cluster.close()
