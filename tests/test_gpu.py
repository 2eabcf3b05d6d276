"""GPUs: every source --gpus auto reads (NVML; Jetson, amdgpu and Intel sysfs under
a host root), GPUs declared by hand, or none (a named state); what an execution sees."""

from __future__ import annotations

import platform

import pytest
from host_trees import GIB, amd_card, drm_card, intel_arc, intel_integrated, jetson_orin, meminfo, pci_ids, write

from jupyter_edge.site.gpu import GPUState, discover_gpus, parse_gpus_option
from jupyter_edge.site.gpu.visibility import container_devices, hidden, visible
from jupyter_edge.site.self_labels import label_value, self_labels


def nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def states(inventory) -> dict[str, str]:
    return {s.source: s.state for s in inventory.sources}


def test_declared_gpus_are_numbered_and_unmeasured():
    inventory = discover_gpus(2)
    assert inventory.state == GPUState.DECLARED
    assert [g.index for g in inventory.gpus] == [0, 1]
    assert inventory.sample() == [], "declared GPUs have nothing to sample"


def test_declared_gpus_can_be_described():
    inventory = discover_gpus(2, vendor="amd", model="Radeon PRO W7900", memory=48 * GIB)
    assert {(g.vendor, g.model, g.memory_total) for g in inventory.gpus} == {("amd", "Radeon PRO W7900", 48 * GIB)}
    labels = self_labels(inventory, ["python"])
    assert labels["edge.gpu.vendor"] == "amd" and labels["edge.gpu.count"] == "2"
    assert labels["edge.gpu.model"] == "radeon-pro-w7900" and labels["edge.gpu.memory"] == str(48 * GIB)
    with pytest.raises(ValueError, match="--gpu-vendor is one of nvidia, amd, intel"):
        discover_gpus(1, vendor="matrox")
    with pytest.raises(ValueError, match="declared by hand"):
        discover_gpus("auto", vendor="amd")


def test_no_gpus_is_a_normal_state():
    inventory = discover_gpus(None)
    assert (inventory.state, inventory.count) == (GPUState.NONE, 0)
    labels = self_labels(inventory, ["python", "docker"])
    assert labels == {"edge.arch": platform.machine(), "edge.os": "linux", "edge.executor": "python,docker"}


@pytest.mark.parametrize("text, parsed", [("auto", "auto"), ("3", 3), ("none", None), ("0", None), (None, None)])
def test_gpus_option(text, parsed):
    assert parse_gpus_option(text) == parsed


@pytest.mark.parametrize("text", ["lots", "-1", "1.5"])
def test_bad_gpus_option(text):
    with pytest.raises(ValueError, match="--gpus"):
        parse_gpus_option(text)


def test_auto_on_an_empty_host_names_every_source(tmp_path):
    if nvml_works():
        pytest.skip("this machine has a working NVIDIA driver; see test_auto_reads_nvml")
    inventory = discover_gpus("auto", host_root=str(tmp_path))
    assert (inventory.state, inventory.count, inventory.summary) == (GPUState.NOT_FOUND, 0, "not-found")
    assert states(inventory) == {
        "nvml": "library-not-found",
        "jetson": "absent",
        "amdgpu": "absent",
        "intel": "absent",
    }
    assert all(s.detail for s in inventory.sources), "every source must say why"
    assert "no NVIDIA driver" in inventory.detail and "not a Jetson" in inventory.detail


def test_a_jetson_orin(tmp_path):
    inventory = discover_gpus("auto", host_root=str(jetson_orin(tmp_path)))
    assert states(inventory)["jetson"] == "found" and states(inventory)["nvml"] == "skipped"
    assert inventory.summary == "jetson"
    (gpu,) = inventory.gpus
    assert gpu.vendor == "nvidia" and gpu.source == "jetson" and gpu.unified
    assert gpu.model == "NVIDIA Jetson AGX Orin Developer Kit", "the device-tree string, without its NUL"
    assert gpu.memory_total == 64 * GIB, "unified: the host's MemTotal"
    assert gpu.utilization == 41.7, "load is in tenths of a percent"
    assert "L4T R36.4.0" in inventory.detail and "17000000.gpu" in inventory.detail
    # Live: the next sample reads the load again.
    write(tmp_path, "/sys/class/devfreq/17000000.gpu/device/load", "990\n")
    assert inventory.sample() == [{"index": 0, "utilization": 99.0, "memory_used": None}]
    labels = self_labels(inventory, ["python"])
    assert labels["edge.gpu.vendor"] == "nvidia"
    assert labels["edge.gpu.model"] == "nvidia-jetson-agx-orin-developer-kit"
    assert labels["edge.gpu.memory"] == str(64 * GIB)


def test_a_jetson_on_jetpack_5_and_one_without_its_gpu_node(tmp_path):
    old = tmp_path / "jp5"
    write(old, "/etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    write(old, "/sys/class/devfreq/17000000.ga10b/device/load", "0\n")
    inventory = discover_gpus("auto", host_root=str(old))
    (gpu,) = inventory.gpus
    assert gpu.model == "NVIDIA Jetson (L4T R35.4.1)", "no device tree: named by its release"
    assert gpu.memory_total is None, "no /proc/meminfo: unknown, not a crash"
    bare = tmp_path / "bare"
    write(bare, "/etc/nv_tegra_release", "# R36 (release), REVISION: 3.0\n")
    inventory = discover_gpus("auto", host_root=str(bare))
    assert states(inventory)["jetson"] == "absent" and "no GPU devfreq node" in inventory.detail


@pytest.mark.parametrize(
    "path, text, named",
    [
        ("/etc/nv_tegra_release", "garbage\n", "nv_tegra_release"),
        ("/sys/class/devfreq/17000000.gpu/device/load", "high\n", "device/load"),
        ("/proc/meminfo", "MemTotal: lots\n", "meminfo"),
    ],
)
def test_a_malformed_jetson_file_is_named(tmp_path, path, text, named):
    jetson_orin(tmp_path)
    write(tmp_path, path, text)
    inventory = discover_gpus("auto", host_root=str(tmp_path))
    assert states(inventory)["jetson"] == "malformed" and inventory.count == 0
    assert named in inventory.detail, inventory.detail


def test_an_amd_card(tmp_path):
    amd_card(tmp_path)
    meminfo(tmp_path, 32 * 1024 * 1024)
    inventory = discover_gpus("auto", host_root=str(tmp_path))
    assert inventory.summary == "amdgpu"
    (gpu,) = inventory.gpus
    assert (gpu.vendor, gpu.model, gpu.memory_total, gpu.unified) == ("amd", "AMD Radeon PRO W7900", 48 * GIB, False)
    assert (gpu.utilization, gpu.memory_used, gpu.render_node) == (37.0, 3 * GIB, "renderD128")
    write(tmp_path, "/sys/class/drm/card0/device/gpu_busy_percent", "88\n")
    assert inventory.sample() == [{"index": 0, "utilization": 88.0, "memory_used": 3 * GIB}]


def test_an_amd_card_without_a_product_name_is_named_from_the_pci_database(tmp_path):
    amd_card(tmp_path, product_name=None, gpu_busy_percent=None)
    (gpu,) = discover_gpus("auto", host_root=str(tmp_path)).gpus
    assert gpu.model == "AMD GPU 0x7448" and gpu.utilization is None, "no name, no busy file: said so, no crash"
    pci_ids(tmp_path)
    (gpu,) = discover_gpus("auto", host_root=str(tmp_path)).gpus
    assert gpu.model == "AMD Navi 31 [Radeon Pro W7900]"


def test_intel_arc_on_both_drivers_and_an_integrated_gpu(tmp_path):
    meminfo(tmp_path / "xe", 16 * 1024 * 1024)
    intel_arc(tmp_path / "xe", driver="xe")
    pci_ids(tmp_path / "xe")
    (gpu,) = discover_gpus("auto", host_root=str(tmp_path / "xe")).gpus
    assert (gpu.vendor, gpu.model, gpu.memory_total, gpu.unified) == ("intel", "Intel DG2 [Arc A770]", 16 * GIB, False)
    intel_arc(tmp_path / "i915", driver="i915")
    (gpu,) = discover_gpus("auto", host_root=str(tmp_path / "i915")).gpus
    assert gpu.memory_total == 16 * GIB and gpu.model == "Intel GPU 0x56a0"
    meminfo(tmp_path / "igpu", 16 * 1024 * 1024)
    intel_integrated(tmp_path / "igpu")
    (gpu,) = discover_gpus("auto", host_root=str(tmp_path / "igpu")).gpus
    assert gpu.unified and gpu.memory_total == 16 * GIB, "slot 00:02.0 shares the host's memory"


def test_a_machine_with_two_vendors(tmp_path):
    meminfo(tmp_path, 32 * 1024 * 1024)
    intel_integrated(tmp_path, card=0)
    amd_card(tmp_path, card=1)
    amd_card(tmp_path, card=2, slot="0000:04:00.0")
    drm_card(tmp_path, 3, "1a03:2000", "ast", "0000:05:00.0")  # a server's BMC display: no GPU of ours
    inventory = discover_gpus("auto", host_root=str(tmp_path))
    assert inventory.summary == "amdgpu+intel"
    assert [(g.index, g.vendor, g.ordinal) for g in inventory.gpus] == [(0, "amd", 0), (1, "amd", 1), (2, "intel", 0)]
    assert inventory.vendors == {"amd": 2, "intel": 1}
    labels = self_labels(inventory, ["python"])
    assert labels["edge.gpu.vendor"] == "amd,intel" and labels["edge.gpu.count"] == "3"
    assert labels["edge.gpu.memory"] == str(48 * GIB), "the largest GPU's"


def test_one_malformed_card_hides_no_other(tmp_path):
    amd_card(tmp_path, card=0)
    write(tmp_path, "/sys/class/drm/card1/device/uevent", "DRIVER=amdgpu\nPCI_ID=not-an-id\n")
    inventory = discover_gpus("auto", host_root=str(tmp_path))
    assert inventory.count == 1 and states(inventory)["amdgpu"] == "found"
    assert "card1/device/uevent: expected PCI_ID=VVVV:DDDD" in inventory.detail
    write(tmp_path, "/sys/class/drm/card0/device/mem_info_vram_total", "48G\n")
    inventory = discover_gpus("auto", host_root=str(tmp_path))
    assert states(inventory)["amdgpu"] == "malformed" and inventory.count == 0
    assert "mem_info_vram_total: expected a whole number, found '48G'" in inventory.detail


def test_an_execution_sees_only_its_gpus_in_each_vendors_way(tmp_path):
    meminfo(tmp_path, 32 * 1024 * 1024)
    intel_integrated(tmp_path, card=0)
    for card in (1, 2, 3):
        amd_card(tmp_path, card=card, slot=f"0000:0{card + 2}:00.0")
    gpus = discover_gpus("auto", host_root=str(tmp_path)).gpus
    amd, intel = [g for g in gpus if g.vendor == "amd"], [g for g in gpus if g.vendor == "intel"]
    everything_hidden = {"ROCR_VISIBLE_DEVICES": "-1", "HIP_VISIBLE_DEVICES": "-1", "ZE_AFFINITY_MASK": "999"}
    assert hidden(gpus) == everything_hidden
    # ROCr keeps devices 1 and 2 and renumbers them 0 and 1, which HIP then names.
    assert visible(gpus, amd[1:]) == {
        "ROCR_VISIBLE_DEVICES": "1,2",
        "HIP_VISIBLE_DEVICES": "0,1",
        "ZE_AFFINITY_MASK": "999",
    }
    assert visible(gpus, intel) == {**everything_hidden, "ZE_AFFINITY_MASK": "0"}
    declared = discover_gpus(2).gpus
    assert hidden(declared) == {"CUDA_VISIBLE_DEVICES": ""}
    assert visible(declared, declared[1:]) == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    # In a container, the devices themselves.
    assert container_devices(amd[:2]) == {
        "devices": [
            "/dev/kfd:/dev/kfd:rwm",
            "/dev/dri/renderD129:/dev/dri/renderD129:rwm",
            "/dev/dri/renderD130:/dev/dri/renderD130:rwm",
        ]
    }
    assert container_devices(intel) == {"devices": ["/dev/dri/renderD128:/dev/dri/renderD128:rwm"]}
    (request,) = container_devices(declared[1:])["device_requests"]
    assert request["DeviceIDs"] == ["1"] and request["Capabilities"] == [["gpu"]]


def test_label_values_from_models():
    assert label_value("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert label_value("AMD Navi 31 [Radeon Pro W7900]") == "amd-navi-31-radeon-pro-w7900"
    assert label_value("???") == "unknown"


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
        assert (
            site.gpu_state == "nvml"
            and site.gpus[0].vendor == "nvidia"
            and site.gpus[0].memory_total
            and site.gpus[0].memory_used is not None
        )

        def visible(site):
            import os

            return os.environ["CUDA_VISIBLE_DEVICES"], [g["ordinal"] for g in site.gpus]

        # The labels it set itself, from what NVML found.
        assert site.labels["edge.gpu.vendor"] == "nvidia" and site.labels["edge.gpu.count"] == str(site.gpu_count)
        assert int(site.labels["edge.gpu.memory"]) == max(g.memory_total for g in site.gpus)
        assert [s["state"] for s in site.gpu_sources if s["source"] == "nvml"] == ["found"]
        res = fleet.run(visible, gpus=1, where="edge.gpu.vendor=nvidia,edge.gpu.memory>=1GiB", timeout=60)
        assert list(res) == ["gpu-site"]
        devices, held = res["gpu-site"]
        assert devices == str(held[0])
    cluster.close()
