"""The ``site`` object user code receives: who and where it is running."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SiteHandle:
    """This site, as an execution sees it. ``gpus`` are the GPUs this execution
    holds (dicts: index, vendor, model, memory_total, unified, ordinal), the only
    ones its vendor's variable shows it (``CUDA_VISIBLE_DEVICES``,
    ``ROCR_VISIBLE_DEVICES``, ``ZE_AFFINITY_MASK``), not all the site's."""

    name: str
    address: str
    labels: dict = field(default_factory=dict)
    gpus: list = field(default_factory=list)

    def __repr__(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"<Site {self.name!r} {labels} gpus={len(self.gpus)}>"
