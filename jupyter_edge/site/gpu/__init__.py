"""A site's GPUs: found (NVML, Jetson, amdgpu, Intel), declared by hand, or none.

No GPU is a normal state with a name (as in ``distributed.diagnostics.nvml``),
never an exception swallowed; with ``--gpus auto`` every source says what it saw
(:mod:`.sources`). The host's files are read under a root (``--host-root``): a
site in a container whose host is mounted there, or a fake tree in the tests.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ...catalog import GPU
from . import sources
from .host import HostRoot, Malformed
from .sources import SourceReport

__all__ = [
    "VENDORS",
    "GPUInventory",
    "GPUState",
    "HostRoot",
    "Malformed",
    "declared_description",
    "discover_gpus",
    "parse_gpus_option",
]

#: The vendors a GPU can be declared as (``--gpu-vendor``), and found as.
VENDORS = ("nvidia", "amd", "intel")


class GPUState(str, enum.Enum):
    NONE = "none"  # the site asked for no GPUs
    DECLARED = "declared"  # given by hand (placement only; nothing measured)
    FOUND = "found"  # --gpus auto found some: see the sources
    NOT_FOUND = "not-found"  # --gpus auto found none: each source says why


@dataclass
class GPUInventory:
    state: GPUState
    gpus: list[GPU] = field(default_factory=list)
    detail: str = ""
    sources: list[SourceReport] = field(default_factory=list)
    samplers: dict[int, Callable[[], dict]] = field(default_factory=dict)  # GPU index -> its live sample

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def summary(self) -> str:
        """How the GPUs were found, in a word: ``none``, ``declared``, ``not-found``,
        or the sources that found them (``nvml``, ``amdgpu+intel``)."""
        if self.state == GPUState.FOUND:
            return "+".join(s.source for s in self.sources if s.state == "found")
        return self.state.value

    @property
    def vendors(self) -> dict[str, int]:
        """How many GPUs of each known vendor."""
        counts: dict[str, int] = {}
        for gpu in self.gpus:
            if gpu.vendor in VENDORS:
                counts[gpu.vendor] = counts.get(gpu.vendor, 0) + 1
        return counts

    def sample(self) -> list[dict]:
        """Live utilisation and memory in use of the GPUs whose platform exposes them."""
        samples = []
        for index, sampler in self.samplers.items():
            try:
                samples.append({"index": index, **sampler()})
            except Exception:  # a GPU that falls off the bus must not take the heartbeat down
                continue
        return samples


def parse_gpus_option(value: str | int | None) -> str | int | None:
    """``--gpus``: ``auto``, a count, or ``none``/``0``."""
    if value is None or value in ("none", "0", 0):
        return None
    if value == "auto":
        return "auto"
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--gpus takes 'auto', a number or 'none', not {value!r}") from None
    if count < 0:
        raise ValueError(f"--gpus cannot be negative ({count})")
    return count or None


def declared_description(
    option: str | int | None, vendor: str | None = None, model: str | None = None, memory: int | str | None = None
) -> dict:
    """``--gpu-vendor``, ``--gpu-model`` and ``--gpu-memory`` (bytes, or a size such
    as ``16GiB``) checked against ``option``: they describe GPUs declared by hand.
    The description, its memory in bytes; ``ValueError`` saying what is wrong."""
    if isinstance(memory, str):
        from dask.utils import parse_bytes

        try:
            memory = parse_bytes(memory)
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"--gpu-memory takes a size like 16GiB or 8GB, not {memory!r}") from None
    if (vendor or model or memory) and not isinstance(option, int):
        raise ValueError("--gpu-vendor, --gpu-model and --gpu-memory describe GPUs declared by hand (--gpus N)")
    if vendor is not None and vendor not in VENDORS:
        raise ValueError(f"--gpu-vendor is one of {', '.join(VENDORS)}, not {vendor!r}")
    return {"vendor": vendor, "model": model, "memory": memory}


def discover_gpus(
    option: str | int | None,
    *,
    host_root: str = "/",
    vendor: str | None = None,
    model: str | None = None,
    memory: int | str | None = None,
) -> GPUInventory:
    """The GPUs this site offers for ``option`` (see :func:`parse_gpus_option`).
    ``vendor``, ``model`` and ``memory`` describe GPUs declared by hand
    (:func:`declared_description`)."""
    memory = declared_description(option, vendor, model, memory)["memory"]
    if option is None:
        return GPUInventory(GPUState.NONE)
    if option != "auto":
        gpus = [
            GPU(index=i, model=model or "declared", memory_total=memory, vendor=vendor or "unknown", ordinal=i)
            for i in range(int(option))
        ]
        return GPUInventory(GPUState.DECLARED, gpus, f"{option} declared by hand")
    return _found(HostRoot(host_root))


def _found(host: HostRoot) -> GPUInventory:
    """Every source, in turn; the site's GPUs are numbered across them."""
    inventory = GPUInventory(GPUState.NOT_FOUND)
    for look in (sources.nvml, sources.jetson, sources.amdgpu, sources.intel):
        found = look(host)
        inventory.sources.append(found.report)
        for gpu, sampler in zip(found.gpus, found.samplers, strict=True):
            gpu.index = len(inventory.gpus)
            inventory.gpus.append(gpu)
            inventory.samplers[gpu.index] = sampler
    if inventory.gpus:
        inventory.state = GPUState.FOUND
        inventory.detail = ", ".join(f"{s.source}: {s.detail}" for s in inventory.sources if s.state == "found")
        for live in inventory.sample():
            gpu = inventory.gpus[live["index"]]
            gpu.utilization, gpu.memory_used = live["utilization"], live["memory_used"]
    else:
        inventory.detail = "; ".join(
            f"{s.source} {s.state}" + (f": {s.detail}" if s.detail else "") for s in inventory.sources
        )
    return inventory
