"""End to end: CLI sites that find their GPUs with ``--gpus auto --host-root TREE``
(a Jetson, a machine with two AMD cards, one with an Intel and an AMD GPU), and one
that declares its GPU by hand; placement by vendor, memory and count; and the
environment each execution sees."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
from conftest import worker_usage
from host_trees import amd_card, intel_integrated, jetson_orin, meminfo

from jupyter_edge import PlacementError

pytestmark = pytest.mark.e2e

VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")


@pytest.fixture(scope="module")
def gpu_fleet(tmp_path_factory):
    from conftest import CliFleet

    tmp = tmp_path_factory.mktemp("gpu-fleet")
    jetson = jetson_orin(tmp / "jetson")
    amd2 = tmp / "amd2"
    meminfo(amd2, 128 * 1024 * 1024)
    amd_card(amd2, card=0)
    amd_card(amd2, card=1, slot="0000:04:00.0")
    mixed = tmp / "mixed"
    meminfo(mixed, 32 * 1024 * 1024)
    intel_integrated(mixed, card=0)
    amd_card(mixed, card=1)
    fleet = CliFleet(tmp)
    try:
        for name, root in (("jetson", jetson), ("amd2", amd2), ("mixed", mixed)):
            fleet.add_site(name, "--gpus", "auto", "--host-root", str(root))
        fleet.add_site(
            "declared", "--gpus", "1", "--gpu-vendor", "nvidia", "--gpu-model", "NVIDIA L4", "--gpu-memory", "24GiB"
        )
        with fleet.connect(4) as client:
            yield fleet, client
    finally:
        fleet.close()


def test_sites_find_and_label_their_gpus(gpu_fleet):
    cli, fleet = gpu_fleet
    sites = {s.name: s for s in fleet.sites()}
    assert {n: s.gpu_state for n, s in sites.items()} == {
        "jetson": "jetson",
        "amd2": "amdgpu",
        "mixed": "amdgpu+intel",
        "declared": "declared",
    }
    jetson = sites["jetson"].gpus[0]
    assert (jetson.vendor, jetson.unified, jetson.memory_total, jetson.utilization) == ("nvidia", True, 64 << 30, 41.7)
    assert {s["source"]: s["state"] for s in sites["jetson"].gpu_sources}["nvml"] == "skipped"
    for name, site in sites.items():
        assert site.labels["edge.arch"] == platform.machine() and site.labels["edge.os"] == "linux", name
    assert sites["mixed"].labels["edge.gpu.vendor"] == "amd,intel"
    assert sites["amd2"].labels["edge.gpu.count"] == "2"
    assert sites["declared"].labels["edge.gpu.memory"] == str(24 << 30)
    assert "jetson: found (NVIDIA Jetson AGX Orin Developer Kit, L4T R36.4.0" in cli.log("jetson")
    status = subprocess.run(
        [sys.executable, "-m", "jupyter_edge.cli", "status", "--scheduler-file", cli.scheduler_file],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for expected in (
        "2 x AMD Radeon PRO W7900 (amd, 51.5 GB)",
        "1 x NVIDIA Jetson AGX Orin Developer Kit (nvidia, 68.7 GB unified)",
        "1 x AMD Radeon PRO W7900 (amd, 51.5 GB); 1 x Intel GPU 0xa7a0 (intel, 34.4 GB unified)",
        "1 x NVIDIA L4 (nvidia, 25.8 GB, declared)",
    ):
        assert expected in status.stdout, f"{expected!r} missing from status:\n{status.stdout}"


def test_placement_by_vendor_memory_count_and_arch(gpu_fleet):
    _, fleet = gpu_fleet

    def where(**kw) -> list[str]:
        return sorted(fleet.run(lambda site: site.name, timeout=60, **kw))

    assert where(where="edge.gpu.vendor=amd", gpus=1) == ["amd2", "mixed"]
    assert where(where="edge.gpu.vendor=amd", gpus=2) == ["amd2"]
    assert where(gpus=2) == ["amd2", "mixed"], "two GPUs of any vendor"
    assert where(where="edge.gpu.memory>=32GiB") == ["amd2", "jetson", "mixed"]
    assert where(where="edge.gpu.memory>=32GiB,edge.gpu.vendor=nvidia") == ["jetson"]
    assert where(where="edge.gpu.vendor=nvidia,edge.gpu.memory<32GiB", gpus=1) == ["declared"]
    assert where(where=f"edge.arch={platform.machine()}") == ["amd2", "declared", "jetson", "mixed"]
    with pytest.raises(PlacementError, match=r"no site has 3 GPUs: .*amd2 \(2 GPUs\)"):
        fleet.run(lambda: None, gpus=3)


def test_an_execution_sees_only_its_own_devices(gpu_fleet):
    _, fleet = gpu_fleet

    def seen(site, variables=VARIABLES):
        """What an execution sees: the GPU variables, and the GPUs ``site.gpus`` says it holds."""
        import os

        return {v: os.environ.get(v) for v in variables}, [(g["vendor"], g["ordinal"]) for g in site.gpus]

    hidden = {"ROCR_VISIBLE_DEVICES": "-1", "HIP_VISIBLE_DEVICES": "-1", "ZE_AFFINITY_MASK": "999"}
    res = fleet.run(seen, sites=["mixed"], where="edge.gpu.vendor=intel", gpus=1, timeout=60)
    assert not res.errors, res.errors
    assert res["mixed"] == ({"CUDA_VISIBLE_DEVICES": None, **hidden, "ZE_AFFINITY_MASK": "0"}, [("intel", 0)])
    res = fleet.run(seen, sites=["mixed"], where="edge.gpu.vendor=amd", gpus=1, timeout=60)
    assert res["mixed"] == (
        {
            "CUDA_VISIBLE_DEVICES": None,
            "ROCR_VISIBLE_DEVICES": "0",
            "HIP_VISIBLE_DEVICES": "0",
            "ZE_AFFINITY_MASK": "999",
        },
        [("amd", 0)],
    )
    res = fleet.run(seen, sites=["mixed"], timeout=60)
    assert res["mixed"] == ({"CUDA_VISIBLE_DEVICES": None, **hidden}, []), "no GPU held: every vendor's hidden"
    res = fleet.run(seen, sites=["amd2"], gpus=2, timeout=60)
    assert res["amd2"] == (
        {
            "CUDA_VISIBLE_DEVICES": None,
            "ROCR_VISIBLE_DEVICES": "0,1",
            "HIP_VISIBLE_DEVICES": "0,1",
            "ZE_AFFINITY_MASK": None,
        },
        [("amd", 0), ("amd", 1)],
    )
    res = fleet.run(seen, sites=["jetson"], gpus=1, timeout=60)
    assert res["jetson"] == (
        {
            "CUDA_VISIBLE_DEVICES": "0",
            "ROCR_VISIBLE_DEVICES": None,
            "HIP_VISIBLE_DEVICES": None,
            "ZE_AFFINITY_MASK": None,
        },
        [("nvidia", 0)],
    )


def test_bad_gpu_options_are_usage_errors(tmp_path):
    for flags, message in (
        (("--gpus", "auto", "--gpu-vendor", "amd"), "describe GPUs declared by hand"),
        (("--gpus", "1", "--gpu-vendor", "matrox"), "'matrox' is not one of 'nvidia', 'amd', 'intel'"),
        (("--gpus", "1", "--gpu-memory", "lots"), "--gpu-memory takes a size like 16GiB"),
        (("--gpus", "auto", "--host-root", str(tmp_path / "nowhere")), "no such folder"),
    ):
        out = worker_usage("--name", "x", *flags)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (flags, out.stderr)
