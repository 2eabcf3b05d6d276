"""Fake host trees (``/sys``, ``/proc``, ``/etc`` under a folder) for ``--host-root``.

Each file is written as the kernel or the vendor's software writes it; where
each format comes from:

- ``/etc/nv_tegra_release``: NVIDIA's L4T release file, one line
  (``# R36 (release), REVISION: 4.0, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ...``).
- ``/proc/device-tree/model``: the device tree's ``model`` property, a
  NUL-terminated string (Linux's ``Documentation/devicetree/usage-model.rst``).
- ``/sys/class/devfreq/17000000.gpu/device/load``: the Jetson GPU's load in tenths
  of a percent, the file jetson-stats reads (``ga10b`` on JetPack 5's Orin).
- ``/proc/meminfo``: ``MemTotal:       65870144 kB`` (``man 5 proc``).
- ``/sys/class/drm/cardN/device/uevent``: a PCI device's uevent, ``KEY=VALUE``
  lines with ``DRIVER``, ``PCI_ID=VVVV:DDDD``, ``PCI_SLOT_NAME`` (Linux's
  ``drivers/pci/pci-driver.c``, ``pci_uevent``).
- ``/sys/class/drm/cardN/device/{mem_info_vram_total,mem_info_vram_used,
  gpu_busy_percent,product_name}``: amdgpu's sysfs (Linux's
  ``Documentation/gpu/amdgpu/driver-misc.rst`` and ``thermal.rst``), bytes and a percent.
- ``/sys/class/drm/cardN/device/tile0/physical_vram_size_bytes``: Intel's ``xe``
  driver (IGT's ``xe_sysfs_tile`` test reads it); ``cardN/lmem_total_bytes``:
  ``i915`` on discrete cards.
- ``/usr/share/misc/pci.ids``: the PCI ID database (vendor lines, then
  tab-indented device lines).
"""

from __future__ import annotations

from pathlib import Path

GIB = 2**30


def write(root: Path, path: str, text: str | bytes) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)
    return target


def meminfo(root: Path, total_kb: int) -> None:
    write(root, "/proc/meminfo", f"MemTotal:       {total_kb} kB\nMemFree:         1234567 kB\n")


def jetson_orin(root: Path, load_permille: int = 417) -> Path:
    """A Jetson AGX Orin on JetPack 6 (L4T R36.4): 64 GiB shared by CPU and GPU."""
    write(
        root, "/etc/nv_tegra_release", "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n"
    )
    write(root, "/proc/device-tree/model", b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    write(root, "/sys/class/devfreq/17000000.gpu/device/load", f"{load_permille}\n")
    write(root, "/sys/class/devfreq/17000000.gpu/cur_freq", "1300500000\n")
    write(root, "/sys/class/devfreq/dla0/cur_freq", "0\n")  # another devfreq device, not the GPU
    meminfo(root, 64 * 1024 * 1024)
    return root


def drm_card(
    root: Path,
    card: int,
    pci_id: str,
    driver: str,
    slot: str,
    render: int | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """``/sys/class/drm/cardN`` with its PCI device's uevent, render node and ``files``
    (relative to the device folder; a name starting with ``../`` is beside it)."""
    device = root / "sys/class/drm" / f"card{card}" / "device"
    write(
        root,
        str(device.relative_to(root) / "uevent"),
        f"DRIVER={driver}\nPCI_CLASS=30000\nPCI_ID={pci_id}\nPCI_SLOT_NAME={slot}\n",
    )
    if render is not None:
        (device / "drm" / f"renderD{render}").mkdir(parents=True)
    # A connector of the card: /sys/class/drm also holds these, and they are no cards.
    (root / "sys/class/drm" / f"card{card}-DP-1").mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (device / name).resolve().parent.mkdir(parents=True, exist_ok=True)
        (device / name).resolve().write_text(text)
    return device


def amd_card(
    root: Path, card: int = 0, slot: str = "0000:03:00.0", busy: int = 37, used: int = 3 * GIB, **extra
) -> Path:
    """An AMD Radeon PRO W7900 (48 GiB) on the amdgpu driver."""
    files = {
        "mem_info_vram_total": str(48 * GIB),
        "mem_info_vram_used": str(used),
        "gpu_busy_percent": str(busy),
        "product_name": "AMD Radeon PRO W7900",
        **extra,
    }
    return drm_card(
        root,
        card,
        "1002:7448",
        "amdgpu",
        slot,
        render=128 + card,
        files={k: v for k, v in files.items() if v is not None},
    )


def intel_arc(root: Path, card: int = 0, slot: str = "0000:03:00.0", driver: str = "xe") -> Path:
    """An Intel Arc A770 (16 GiB): on ``xe`` its VRAM is per tile, on ``i915`` beside the card."""
    files = (
        {"tile0/physical_vram_size_bytes": str(16 * GIB)} if driver == "xe" else {"../lmem_total_bytes": str(16 * GIB)}
    )
    return drm_card(root, card, "8086:56A0", driver, slot, render=128 + card, files=files)


def intel_integrated(root: Path, card: int = 0) -> Path:
    """An Intel processor's integrated GPU: PCI slot 00:02.0, the host's memory."""
    return drm_card(root, card, "8086:A7A0", "i915", "0000:00:02.0", render=128 + card)


def pci_ids(root: Path) -> None:
    write(
        root,
        "/usr/share/misc/pci.ids",
        "# the PCI ID database (a few lines of it)\n"
        "1002  Advanced Micro Devices, Inc. [AMD/ATI]\n"
        "\t7448  Navi 31 [Radeon Pro W7900]\n"
        "\t744c  Navi 31 [Radeon RX 7900 XT/7900 XTX]\n"
        "\t\t1002 0e3b  Radeon RX 7900 GRE\n"
        "8086  Intel Corporation\n"
        "\t56a0  DG2 [Arc A770]\n"
        "\ta7a0  Raptor Lake-P [Iris Xe Graphics]\n",
    )
