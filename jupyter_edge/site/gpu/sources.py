"""Where a site's GPUs are found: NVML, Jetson's sysfs, amdgpu's and Intel's DRM sysfs.

Each source looks, and says what it saw as a :class:`SourceReport` with a named
state: ``found``, ``absent`` (no such hardware or driver here), ``skipped``,
``library-not-found``, ``failed`` or ``malformed`` (a file not in its documented
format, named in the detail). A source never raises.

The formats, and where they are documented:

- NVML: nvidia-ml-py (``pynvml``). Fields a GPU does not support raise
  ``NVMLError_NotSupported``; they are unknown, not errors.
- Jetson: ``/etc/nv_tegra_release`` (one line, ``# R36 (release), REVISION: 4.0, ...``)
  and ``/proc/device-tree/model`` (a NUL-terminated string) identify the board;
  the integrated GPU is a devfreq device, ``/sys/class/devfreq/<addr>.<name>``
  with name ``gpu`` (JetPack 6), ``ga10b`` (Orin on JetPack 5), ``gv11b``
  (Xavier), ``gp10b`` (TX2) or ``gm20b`` (Nano, TX1), whose ``device/load`` is the
  load in tenths of a percent (what jetson-stats reads). Its memory is the host's.
- DRM: ``/sys/class/drm/cardN/device/uevent`` is the PCI device's uevent
  (``DRIVER=``, ``PCI_ID=VVVV:DDDD``, ``PCI_SLOT_NAME=``), ``device/drm/renderD*``
  its render node. amdgpu adds ``mem_info_vram_total``, ``mem_info_vram_used``
  (bytes), ``gpu_busy_percent`` and ``product_name`` beside it (the kernel's
  amdgpu documentation; the same files ``amdsmi`` reads). Intel's ``xe`` driver
  gives ``device/tileN/physical_vram_size_bytes``, ``i915`` (Linux 6.2 and
  later) ``cardN/lmem_total_bytes``; an Intel GPU at PCI slot ``0000:00:02.0``
  is the processor's integrated one and shares the host's memory.
- Model names: ``product_name`` where the driver gives one, else the PCI ID
  database (``/usr/share/misc/pci.ids`` or ``/usr/share/hwdata/pci.ids``), else
  the PCI ID itself.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ...catalog import GPU
from .host import HostRoot, Malformed

__all__ = ["Found", "SourceReport", "amdgpu", "intel", "jetson", "nvml"]

#: Names of Jetson GPU devfreq devices, by generation.
JETSON_GPU_NODES = ("gpu", "ga10b", "gv11b", "gp10b", "gm20b")
AMD, INTEL = "0x1002", "0x8086"  # PCI vendor IDs
#: Where an Intel processor's integrated GPU always sits on the PCI bus.
INTEGRATED_SLOT = "0000:00:02.0"
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")


@dataclass
class SourceReport:
    source: str
    state: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {"source": self.source, "state": self.state, "detail": self.detail}


@dataclass
class Found:
    """What one source saw: its report, its GPUs, and how to sample each (by position)."""

    report: SourceReport
    gpus: list[GPU] = field(default_factory=list)
    samplers: list[Callable[[], dict]] = field(default_factory=list)


def nvml(host: HostRoot) -> Found:
    if host.text("/etc/nv_tegra_release") is not None:
        # A Jetson's integrated GPU is read from sysfs; NVML there says little or nothing.
        return Found(SourceReport("nvml", "skipped", "a Jetson: its GPU is read from sysfs"))
    try:
        import pynvml
    except ImportError as e:  # nvidia-ml-py is a core dependency; say so if it went missing
        return Found(SourceReport("nvml", "library-not-found", str(e)))
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return Found(SourceReport("nvml", "library-not-found", "no NVIDIA driver (libnvidia-ml) on this machine"))
    except pynvml.NVMLError as e:
        return Found(SourceReport("nvml", "failed", str(e)))
    try:
        indices = range(pynvml.nvmlDeviceGetCount())
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and all(v.strip().isdigit() for v in visible.split(",") if v.strip()):
            allowed = {int(v) for v in visible.split(",") if v.strip()}
            indices = [i for i in indices if i in allowed]
        found = Found(SourceReport("nvml", "found"))
        for i in indices:
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = _unless_unsupported(pynvml, lambda h=handle: pynvml.nvmlDeviceGetName(h))
            memory = _unless_unsupported(pynvml, lambda h=handle: pynvml.nvmlDeviceGetMemoryInfo(h))
            found.gpus.append(
                GPU(
                    index=i,
                    model=(name.decode() if isinstance(name, bytes) else name) or "NVIDIA GPU",
                    memory_total=int(memory.total) if memory is not None else None,
                    vendor="nvidia",
                    source="nvml",
                    ordinal=i,
                )
            )
            found.samplers.append(lambda i=i: _nvml_sample(pynvml, i))
    except pynvml.NVMLError as e:
        return Found(SourceReport("nvml", "failed", str(e)))
    if not found.gpus:
        return Found(SourceReport("nvml", "absent", "NVML found no devices"))
    found.report.detail = f"{len(found.gpus)} found"
    return found


def _unless_unsupported(pynvml, read):
    try:
        return read()
    except pynvml.NVMLError_NotSupported:
        return None


def _nvml_sample(pynvml, index: int) -> dict:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = _unless_unsupported(pynvml, lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
    rates = _unless_unsupported(pynvml, lambda: pynvml.nvmlDeviceGetUtilizationRates(handle))
    return {
        "utilization": float(rates.gpu) if rates is not None else None,
        "memory_used": int(memory.used) if memory is not None else None,
    }


def jetson(host: HostRoot) -> Found:
    try:
        release = host.text("/etc/nv_tegra_release")
        board = host.text("/proc/device-tree/model")
        if release is None and not (board or "").startswith("NVIDIA Jetson"):
            return Found(SourceReport("jetson", "absent", "not a Jetson (no /etc/nv_tegra_release)"))
        l4t = _l4t_version(release) if release is not None else None
        devfreq = host.path("/sys/class/devfreq")
        nodes = sorted(p for p in (devfreq.iterdir() if devfreq.is_dir() else ()) if _is_jetson_gpu(p.name))
        if not nodes:
            return Found(
                SourceReport("jetson", "absent", f"a Jetson ({l4t or board}) with no GPU devfreq node in {devfreq}")
            )
        load = nodes[0] / "device" / "load"
        host.integer(load)  # a load file that is there must be a number
        gpu = GPU(
            index=0,
            model=board or f"NVIDIA Jetson (L4T {l4t})",
            memory_total=host.memory_total(),
            vendor="nvidia",
            source="jetson",
            unified=True,
            ordinal=0,
        )
    except Malformed as e:
        return Found(SourceReport("jetson", "malformed", str(e)))
    detail = f"{board or 'a Jetson'}" + (f", L4T {l4t}" if l4t else "") + f", GPU {nodes[0].name}"
    return Found(SourceReport("jetson", "found", detail), [gpu], [lambda: _jetson_sample(host, load)])


def _is_jetson_gpu(name: str) -> bool:
    return name.rpartition(".")[2] in JETSON_GPU_NODES


def _l4t_version(release: str) -> str:
    """``R36.4.0`` from ``# R36 (release), REVISION: 4.0, ...``."""
    match = re.match(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    if not match:
        raise Malformed(
            f"/etc/nv_tegra_release: expected '# R36 (release), REVISION: 4.0, ...', found {release[:60]!r}"
        )
    return f"R{match.group(1)}.{match.group(2)}"


def _jetson_sample(host: HostRoot, load) -> dict:
    permille = host.integer(load)
    return {"utilization": permille / 10 if permille is not None else None, "memory_used": None}


@dataclass
class _Card:
    """One DRM card that is a PCI device."""

    path: object  # Path of /sys/class/drm/cardN
    driver: str
    vendor: str  # "0x1002"
    device: str  # "0x744c"
    slot: str
    render_node: str | None


@functools.lru_cache(maxsize=1)
def _drm_cards(host: HostRoot) -> tuple[list[_Card], list[str]]:
    """The DRM cards, in card order (``card2`` before ``card10``), and what was
    wrong with those that could not be read (one bad card hides no other). Read
    once per discovery (each makes its own HostRoot): amdgpu and intel both ask."""
    drm = host.path("/sys/class/drm")
    if not drm.is_dir():
        return [], []
    names = sorted((p for p in drm.iterdir() if re.fullmatch(r"card\d+", p.name)), key=lambda p: int(p.name[4:]))
    cards, problems = [], []
    for card in names:
        try:
            uevent = host.keyed(card / "device" / "uevent")
        except Malformed as e:
            problems.append(str(e))
            continue
        if uevent is None:  # not a PCI device (a virtual card): not a GPU of ours
            continue
        pci_id = uevent.get("PCI_ID", "")
        if not re.fullmatch(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}", pci_id):
            problems.append(f"{card / 'device' / 'uevent'}: expected PCI_ID=VVVV:DDDD, found {pci_id!r}")
            continue
        vendor, device = (f"0x{part.lower()}" for part in pci_id.split(":"))
        drm_dir = card / "device" / "drm"
        renders = sorted(p.name for p in drm_dir.iterdir() if p.name.startswith("renderD")) if drm_dir.is_dir() else []
        cards.append(
            _Card(
                card, uevent.get("DRIVER", ""), vendor, device, uevent.get("PCI_SLOT_NAME", ""), (renders or [None])[0]
            )
        )
    return cards, problems


def _without_cards(source: str, drivers: str, problems: list[str]) -> Found:
    if problems:
        return Found(SourceReport(source, "malformed", "; ".join(problems)))
    return Found(SourceReport(source, "absent", f"no card with the {drivers} driver in /sys/class/drm"))


def _pci_name(host: HostRoot, vendor: str, device: str) -> str | None:
    """The device's name in the PCI ID database, if the host has one."""
    for where in PCI_IDS:
        path = host.path(where)
        if path.is_file():
            return _pci_devices(str(path), vendor).get(device)
    return None


@functools.lru_cache(maxsize=4)
def _pci_devices(path: str, vendor: str) -> dict[str, str]:
    """A vendor's devices in the PCI ID database (``0x56a0`` -> ``DG2 [Arc A770]``),
    read once for all of that vendor's cards."""
    devices, in_vendor = {}, False
    with open(path, encoding="utf-8", errors="replace") as ids:
        for line in ids:
            if not line.strip() or line.startswith("#"):
                continue
            if not line.startswith("\t"):
                if in_vendor:
                    break
                in_vendor = line[:4].lower() == vendor[2:]
            elif in_vendor and not line.startswith("\t\t"):
                devices[f"0x{line[1:5].lower()}"] = line[5:].strip()
    return devices


def amdgpu(host: HostRoot) -> Found:
    try:
        cards, problems = _drm_cards(host)
        cards = [c for c in cards if c.vendor == AMD and c.driver == "amdgpu"]
        if not cards:
            return _without_cards("amdgpu", "amdgpu", problems)
        found = Found(SourceReport("amdgpu", "found", "; ".join([f"{len(cards)} found", *problems])))
        for ordinal, card in enumerate(cards):
            device = card.path / "device"
            model = host.text(device / "product_name") or _pci_name(host, card.vendor, card.device)
            found.gpus.append(
                GPU(
                    index=ordinal,
                    model=f"AMD {model}"
                    if model and not model.startswith("AMD")
                    else model or f"AMD GPU {card.device}",
                    memory_total=host.integer(device / "mem_info_vram_total"),
                    vendor="amd",
                    source="amdgpu",
                    ordinal=ordinal,
                    render_node=card.render_node,
                )
            )
            host.integer(device / "gpu_busy_percent")  # there, it must be a number
            found.samplers.append(lambda device=device: _amdgpu_sample(host, device))
    except Malformed as e:
        return Found(SourceReport("amdgpu", "malformed", str(e)))
    return found


def _amdgpu_sample(host: HostRoot, device) -> dict:
    busy = host.integer(device / "gpu_busy_percent")
    return {
        "utilization": float(busy) if busy is not None else None,
        "memory_used": host.integer(device / "mem_info_vram_used"),
    }


def intel(host: HostRoot) -> Found:
    try:
        cards, problems = _drm_cards(host)
        cards = [c for c in cards if c.vendor == INTEL and c.driver in ("i915", "xe")]
        if not cards:
            return _without_cards("intel", "i915 or xe", problems)
        found = Found(SourceReport("intel", "found", "; ".join([f"{len(cards)} found", *problems])))
        unknown_memory = []
        for ordinal, card in enumerate(cards):
            integrated = card.slot == INTEGRATED_SLOT
            if integrated:
                memory = host.memory_total()
            elif card.driver == "xe":
                tiles = sorted((card.path / "device").glob("tile*/physical_vram_size_bytes"))
                sizes = [host.integer(t) for t in tiles]
                memory = sum(sizes) if sizes else None
            else:
                memory = host.integer(card.path / "lmem_total_bytes")
            if memory is None:
                unknown_memory.append(card.path.name)
            model = _pci_name(host, card.vendor, card.device)
            found.gpus.append(
                GPU(
                    index=ordinal,
                    model=f"Intel {model}" if model else f"Intel GPU {card.device}",
                    memory_total=memory,
                    vendor="intel",
                    source="intel",
                    unified=integrated,
                    ordinal=ordinal,
                    render_node=card.render_node,
                )
            )
            found.samplers.append(lambda: {"utilization": None, "memory_used": None})
        if unknown_memory:
            found.report.detail += f" (memory not exposed for {', '.join(unknown_memory)})"
    except Malformed as e:
        return Found(SourceReport("intel", "malformed", str(e)))
    return found
