"""Plain-text tables of a catalog, for the terminal (``jupyter-edge status``)."""

from __future__ import annotations

import time

from .catalog import Catalog
from .protocol import RESERVED_PREFIX


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    return "\n".join(lines)


def sites_table(catalog: Catalog) -> str:
    rows = []
    for site in sorted(catalog, key=lambda s: s.name):
        datasets = ",".join(f"{d.dataset}@{d.shard}" for d in site.datasets.values()) or "-"
        rows.append(
            [
                site.name,
                site.address,
                site_state(site),
                round_trip(site.rtt),
                labels_text(site),
                datasets,
                gpus_text(site),
                str(site.running),
            ]
        )
    return text_table(["SITE", "ADDRESS", "STATE", "RTT", "LABELS", "DATASETS", "GPUS", "RUNNING"], rows)


def labels_text(site) -> str:
    """The site's labels, those it was given first; its ``edge.gpu.*`` ones are in :func:`gpus_text`."""
    given = sorted((k, v) for k, v in site.labels.items() if not k.startswith(RESERVED_PREFIX))
    own = sorted(
        (k, v) for k, v in site.labels.items() if k.startswith(RESERVED_PREFIX) and not k.startswith("edge.gpu.")
    )
    return ",".join(f"{k}={v}" for k, v in given + own) or "-"


def gpus_text(site) -> str:
    """``2 x AMD Radeon PRO W7900 (amd, 51.5 GB)``, ``1 x GPU (declared)``: kinds of GPU
    apart; ``0`` and why when none."""
    if not site.gpus:
        return "0" if site.gpu_state in ("none", "") else f"0 ({site.gpu_state})"
    kinds: dict[tuple, int] = {}
    for gpu in site.gpus:
        kind = (gpu.model, gpu.vendor, gpu.memory_total, gpu.unified, gpu.source)
        kinds[kind] = kinds.get(kind, 0) + 1
    parts = []
    for (model, vendor, memory, unified, source), n in kinds.items():
        about = [vendor] if vendor != "unknown" else []
        if memory:
            about.append(human_bytes(memory) + (" unified" if unified else ""))
        if source == "declared":
            about.append("declared")
        parts.append(f"{n} x {'GPU' if model == 'declared' else model} ({', '.join(about)})")
    return "; ".join(parts)


def site_state(site, now: float | None = None) -> str:
    """``running``, or for a site that left: ``offline, seen 3 min ago``."""
    if site.state != "offline" or site.last_seen is None:
        return site.state
    return f"offline, seen {ago((now or time.time()) - site.last_seen)}"


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def holders_text(catalog: Catalog, holders: list[str]) -> str:
    """A shard's holders, each offline one marked: ``berlin,paris (offline)``."""
    return ",".join(f"{name} (offline)" if catalog.sites[name].state == "offline" else name for name in holders)


#: A dataset's row in the datasets table names this many shards, and a shard this
#: many holders; more are counted (``status --json`` and ``Fleet.datasets()`` have
#: them all), so a dataset sharded across a thousand sites stays one readable row.
SHARDS_NAMED = 5
HOLDERS_NAMED = 3


def shards_text(catalog: Catalog, shards: dict[str, list[str]]) -> str:
    """``eu: berlin,paris; us: boston``; past ``SHARDS_NAMED`` shards (or
    ``HOLDERS_NAMED`` holders), the first few and how many more."""
    named = list(shards.items())[:SHARDS_NAMED]
    parts = []
    for shard, holders in named:
        more = len(holders) - HOLDERS_NAMED + 1 if len(holders) > HOLDERS_NAMED else 0
        text = holders_text(catalog, holders[: len(holders) - more])
        parts.append(f"{shard}: {text} and {more} more" if more else f"{shard}: {text}")
    rest = [holders for _, holders in list(shards.items())[SHARDS_NAMED:]]
    if rest:
        offline = sum(all(catalog.sites[name].state == "offline" for name in holders) for holders in rest)
        parts.append(f"and {len(rest)} more shards" + (f" ({offline} held only offline)" if offline else ""))
    return "; ".join(parts)


def round_trip(seconds: float | None) -> str:
    """A site's round trip to the scheduler: ``4 ms``, ``310 ms``, ``1.2 s``, or ``?``."""
    if seconds is None:
        return "?"
    return f"{max(1, round(seconds * 1000))} ms" if seconds < 1 else f"{seconds:.1f} s"


def datasets_table(catalog: Catalog) -> str:
    rows = []
    for info in catalog.datasets().values():
        rows.append(
            [
                info.name,
                info.kind,
                str(len(info.shards)),
                shards_text(catalog, info.shards),
                human_bytes(info.bytes),
                "?" if info.files is None else str(info.files),
            ]
        )
    return text_table(["DATASET", "KIND", "SHARDS", "SITES", "BYTES", "FILES"], rows)
