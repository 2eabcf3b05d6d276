"""The labels a site sets itself (``edge.*``): what it is and what it can run.

Selectors place work by them like any other label (``--where edge.arch=aarch64``,
``--where "edge.gpu.memory>=8GiB"``); ``--label`` cannot set them.
"""

from __future__ import annotations

import platform
import re

from ..protocol import (
    ARCH_LABEL,
    EXECUTOR_LABEL,
    GPU_COUNT_LABEL,
    GPU_MEMORY_LABEL,
    GPU_MODEL_LABEL,
    GPU_VENDOR_LABEL,
    OS_LABEL,
)
from .gpu import VENDORS, GPUInventory

__all__ = ["label_value", "self_labels"]


def label_value(text: str) -> str:
    """``text`` as a label value a selector can name: ``NVIDIA Jetson AGX Orin`` ->
    ``nvidia-jetson-agx-orin``."""
    return re.sub(r"[^a-z0-9._/]+", "-", text.lower()).strip("-._/") or "unknown"


def self_labels(gpus: GPUInventory, executors: list[str]) -> dict[str, str]:
    labels = {
        ARCH_LABEL: platform.machine() or "unknown",
        OS_LABEL: platform.system().lower() or "unknown",
        EXECUTOR_LABEL: ",".join(executors),
    }
    if gpus.count:
        labels[GPU_COUNT_LABEL] = str(gpus.count)
        vendors = [v for v in VENDORS if v in gpus.vendors]
        if vendors:
            labels[GPU_VENDOR_LABEL] = ",".join(vendors)
        models = dict.fromkeys(label_value(g.model) for g in gpus.gpus if g.model != "declared")
        if models:
            labels[GPU_MODEL_LABEL] = ",".join(models)
        memory = [g.memory_total for g in gpus.gpus if g.memory_total]
        if memory:
            labels[GPU_MEMORY_LABEL] = str(max(memory))
    return labels
