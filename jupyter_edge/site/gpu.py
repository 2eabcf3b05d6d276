"""A site's GPUs: found through NVML, declared by hand, or none.

No GPU is a normal state with a name (as in ``distributed.diagnostics.nvml``),
never an exception swallowed.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field

from ..catalog import GPU

__all__ = ["GPUInventory", "GPUState", "discover_gpus", "parse_gpus_option"]


class GPUState(str, enum.Enum):
    NONE = "none"  # the site asked for no GPUs
    DECLARED = "declared"  # a count given by hand (placement only; nothing measured)
    NVML = "nvml"  # found and sampled through NVML
    NVML_LIBRARY_NOT_FOUND = "nvml-library-not-found"
    NVML_NO_DEVICES = "nvml-no-devices"
    NVML_FAILED = "nvml-failed"


@dataclass
class GPUInventory:
    state: GPUState
    gpus: list[GPU] = field(default_factory=list)
    detail: str = ""

    @property
    def count(self) -> int:
        return len(self.gpus)

    def sample(self) -> list[dict]:
        """Live utilisation and memory use, for NVML GPUs; [] otherwise."""
        if self.state != GPUState.NVML:
            return []
        try:
            import pynvml

            samples = []
            for gpu in self.gpus:
                handle = pynvml.nvmlDeviceGetHandleByIndex(gpu.index)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                samples.append({"index": gpu.index, "utilization": float(rates.gpu), "memory_used": int(memory.used)})
            return samples
        except Exception:  # a GPU that falls off the bus must not take the heartbeat down
            return []


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


def discover_gpus(option: str | int | None) -> GPUInventory:
    """The GPUs this site offers for ``option`` (see :func:`parse_gpus_option`)."""
    if option is None:
        return GPUInventory(GPUState.NONE)
    if option != "auto":
        return GPUInventory(GPUState.DECLARED, [GPU(index=i) for i in range(int(option))], f"{option} declared by hand")
    return _from_nvml()


def _from_nvml() -> GPUInventory:
    try:
        import pynvml
    except ImportError as e:  # nvidia-ml-py is a core dependency; say so if it went missing
        return GPUInventory(GPUState.NVML_LIBRARY_NOT_FOUND, detail=str(e))
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return GPUInventory(GPUState.NVML_LIBRARY_NOT_FOUND, detail="no NVIDIA driver (libnvidia-ml) on this machine")
    except pynvml.NVMLError as e:
        return GPUInventory(GPUState.NVML_FAILED, detail=str(e))
    try:
        indices = range(pynvml.nvmlDeviceGetCount())
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and all(v.strip().isdigit() for v in visible.split(",") if v.strip()):
            allowed = {int(v) for v in visible.split(",") if v.strip()}
            indices = [i for i in indices if i in allowed]
        gpus = []
        for i in indices:
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GPU(index=i, model=name.decode() if isinstance(name, bytes) else name, memory_total=int(memory.total))
            )
    except pynvml.NVMLError as e:
        return GPUInventory(GPUState.NVML_FAILED, detail=str(e))
    if not gpus:
        return GPUInventory(GPUState.NVML_NO_DEVICES, detail="NVML found no devices")
    inventory = GPUInventory(GPUState.NVML, gpus, f"{len(gpus)} found through NVML")
    for gpu, live in zip(gpus, inventory.sample(), strict=False):
        gpu.utilization, gpu.memory_used = live["utilization"], live["memory_used"]
    return inventory
