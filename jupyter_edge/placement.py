"""Placement: which sites run a request, decided from a catalog snapshot alone.

A pure function, tested without a cluster. "No constraint" and "nowhere" are
kept apart: a request with no target is an error of its own, and a request that
no site can satisfy is a :class:`PlacementError` that names what is missing and
why each candidate was turned down.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .catalog import Catalog, Site
from .protocol import EXECUTOR_LABEL, GPU_VENDOR_LABEL
from .selector import Selector

__all__ = ["Placement", "PlacementError", "Request", "Target", "place"]

NO_TARGET = (
    "no target: name a dataset (data=NAME), sites (sites=[...]), a label "
    "selector (where='region=eu'), GPUs (gpus=N), or all=True"
)

#: The state of a site that has left the fleet and is still known (see scheduler.py).
OFFLINE = "offline"
#: How many rejected sites an error lists before summarising the rest.
_LISTED = 8


class PlacementError(LookupError):
    """No site can run the request; the message says what is missing."""


@dataclass(frozen=True)
class Request:
    """What a job asks for. Targets: ``data``, ``sites``, ``all``, or filters
    alone; filters (``where``, ``gpus``) narrow every target."""

    data: str | None = None
    where: Selector = field(default_factory=Selector)
    gpus: int = 0
    sites: tuple[str, ...] | None = None
    all: bool = False
    shards: tuple[str, ...] | None = None  # restrict ``data`` to these shards (retries)
    executor: str | None = None  # "docker", "wasm": only sites that run such work (a filter)

    @classmethod
    def build(
        cls,
        data: str | None = None,
        where: str | Selector | None = None,
        gpus: int | None = 0,
        sites: Sequence[str] | str | None = None,
        all: bool = False,
        executor: str | None = None,
    ) -> Request:
        """Validate user-facing arguments; bad ones raise ``ValueError``."""
        if data is not None and (not isinstance(data, str) or not data):
            raise ValueError(f"data must be a dataset name, not {data!r}")
        if isinstance(sites, str):
            sites = [s for s in sites.split(",") if s.strip()]
        if sites is not None:
            # Check types before .strip(): sites=[1] or sites=5 must be a ValueError,
            # not an AttributeError or TypeError from deep inside.
            names = list(sites) if isinstance(sites, Iterable) else [sites]
            sites = tuple(s.strip() if isinstance(s, str) else s for s in names)
            if not sites or not all_names(sites):
                raise ValueError(f"sites must be a non-empty list of site names, not {sites!r}")
        gpus = 0 if gpus is None else gpus
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus must be a whole number of GPUs per execution, not {gpus!r}")
        return cls(data=data, where=Selector.parse(where), gpus=gpus, sites=sites, all=bool(all), executor=executor)

    @property
    def gpu_vendors(self) -> tuple[str, ...] | None:
        """The GPU vendors ``where`` allows (``edge.gpu.vendor=amd``, ``... in (nvidia,amd)``),
        or ``None``: a site with GPUs of several vendors gives an execution only these."""
        allowed = None
        for r in self.where.requirements:
            if r.key == GPU_VENDOR_LABEL and r.op in ("=", "in"):
                allowed = [v for v in r.values if allowed is None or v in allowed]
        return tuple(allowed) if allowed is not None else None

    @property
    def has_target(self) -> bool:
        return bool(self.data or self.sites or self.all or self.where or self.gpus)

    def describe(self) -> str:
        parts = []
        if self.data:
            parts.append(f"data={self.data}")
        if self.sites:
            parts.append(f"sites={','.join(self.sites)}")
        if self.all:
            parts.append("all")
        if self.where:
            parts.append(f"where {self.where}")
        if self.gpus:
            parts.append(f"gpus={self.gpus}")
        if self.executor:
            parts.append(f"as {EXECUTOR_WORK.get(self.executor, self.executor)}")
        return ", ".join(parts) or "no target"

    def to_dict(self) -> dict:
        return {
            "data": self.data,
            "where": str(self.where) or None,
            "gpus": self.gpus,
            "sites": list(self.sites) if self.sites is not None else None,
            "all": self.all,
            "shards": list(self.shards) if self.shards is not None else None,
            "executor": self.executor,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Request:
        return cls(
            data=data.get("data"),
            where=Selector.parse(data.get("where")),
            gpus=data.get("gpus") or 0,
            sites=tuple(data["sites"]) if data.get("sites") is not None else None,
            all=bool(data.get("all")),
            shards=tuple(data["shards"]) if data.get("shards") is not None else None,
            executor=data.get("executor"),
        )


def all_names(names: Iterable[str]) -> bool:
    return all(isinstance(n, str) and n for n in names)


@dataclass(frozen=True)
class Target:
    """One execution's place: a site, and the shard it reads there."""

    site: str
    address: str
    dataset: str | None = None
    shard: str | None = None
    gpus: int = 0
    #: Offline sites it waits for (with a queue timeout): it runs at the first that rejoins.
    waiting_for: tuple[str, ...] = ()

    @property
    def queued(self) -> bool:
        return bool(self.waiting_for)


@dataclass(frozen=True)
class Placement:
    request: Request
    targets: tuple[Target, ...]


def place(
    request: Request,
    catalog: Catalog,
    exclude: Iterable[str] = (),
    load: Mapping[str, int] | None = None,
    queue: bool = False,
) -> Placement:
    """Decide where ``request`` runs, or raise :class:`PlacementError`.

    ``exclude`` names sites not to use (a retry avoiding a lost replica);
    ``load`` (site -> executions in flight) overrides the catalog's counts when
    choosing among replicas. With ``queue``, work that only offline sites could
    take waits for them (targets with ``waiting_for``) instead of failing.
    """
    if not request.has_target:
        raise PlacementError(NO_TARGET)
    excluded = frozenset(exclude)
    if request.sites is not None:
        targets = _place_named(request, catalog, excluded, queue)
    elif request.data is not None:
        targets = _place_dataset(request, catalog, excluded, load, queue)
    else:
        targets = _place_matching(request, catalog, excluded, queue)
    return Placement(request, tuple(targets))


def _waits_for(site: Site, request: Request, excluded: frozenset[str]) -> bool:
    """Whether ``site`` is offline and would otherwise take part."""
    return site.state == OFFLINE and (_rejection(site, request, excluded) or "").startswith(OFFLINE)


def _rejection(site: Site, request: Request, excluded: frozenset[str]) -> str | None:
    """Why ``site`` cannot take part in ``request`` apart from datasets, or None."""
    if site.name in excluded:
        return "excluded"
    unmet = request.where.unmet(site.labels)
    if unmet:
        shown = {r.key: _label_shown(r, site.labels) for r in unmet}
        return ", ".join(shown.values())
    if request.gpus:
        vendors = request.gpu_vendors
        usable = sum(1 for g in site.gpus if vendors is None or g.vendor in vendors)
        if usable < request.gpus:
            return f"{usable} {'/'.join(vendors) + ' ' if vendors else ''}GPU{'s' if usable != 1 else ''}"
    if request.executor and request.executor not in site.labels.get(EXECUTOR_LABEL, "").split(","):
        return f"runs no {EXECUTOR_WORK.get(request.executor, request.executor)}"
    # Last: a site that is not running but matches everything else would have qualified.
    if site.state == OFFLINE:
        since = time.strftime("%H:%M:%S", time.localtime(site.offline_since)) if site.offline_since else "?"
        return f"offline since {since}: {site.offline_reason or 'it left'}"
    if site.state != "running":
        return f"state {site.state}"
    return None


#: What each executor runs, in words, for placement's messages.
EXECUTOR_WORK = {"docker": "docker containers", "wasm": "WebAssembly modules"}


def _label_shown(requirement, labels: Mapping[str, str]) -> str:
    """The site's label a requirement failed on; bytes as bytes when it asked in bytes
    (``edge.gpu.memory=16.00 GiB``, not 17179869184)."""
    if requirement.key not in labels:
        return f"no {requirement.key}"
    value = labels[requirement.key]
    asked_in_bytes = requirement.op in (">", ">=", "<", "<=") and not requirement.values[0].replace(".", "").isdigit()
    if asked_in_bytes and value.isdigit():
        from dask.utils import format_bytes

        value = format_bytes(int(value))
    return f"{requirement.key}={value}"


def _filters(request: Request) -> str:
    parts = [str(request.where)] if request.where else []
    if request.gpus:
        parts.append(f"{request.gpus} GPU{'s' if request.gpus > 1 else ''}")
    if request.executor:
        work = EXECUTOR_WORK.get(request.executor, request.executor)
        parts.append(f"{work} (sites started with --{request.executor})")
    return " and ".join(parts)


def _listing(rejected: Sequence[tuple[str, str]]) -> str:
    shown = [f"{name} ({why})" for name, why in rejected[:_LISTED]]
    if len(rejected) > _LISTED:
        shown.append(f"and {len(rejected) - _LISTED} more")
    return ", ".join(shown)


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"no {kind} named {name!r}{hint} known: {', '.join(known) if known else 'none'}"


def _place_named(request: Request, catalog: Catalog, excluded: frozenset[str], queue: bool) -> list[Target]:
    targets, problems = [], []
    for name in dict.fromkeys(request.sites):
        site = catalog.sites.get(name)
        if site is None:
            problems.append(_unknown("site", name, catalog.sites))
            continue
        why = _rejection(site, request, excluded)
        if why and queue and _waits_for(site, request, excluded):
            held = site.datasets.get(request.data) if request.data is not None else None
            if request.data is None or held is not None:
                targets.append(
                    Target(
                        site.name,
                        "",
                        request.data,
                        held.shard if held else None,
                        request.gpus,
                        waiting_for=(site.name,),
                    )
                )
                continue
        if why:
            problems.append(f"site {name!r} does not match {_filters(request) or 'the request'}: {why}")
            continue
        shard = None
        if request.data is not None:
            held = site.datasets.get(request.data)
            if held is None:
                if request.data not in catalog.datasets():
                    problems.append(_unknown("dataset", request.data, catalog.datasets()))
                else:
                    problems.append(f"site {name!r} holds no shard of {request.data!r}")
                continue
            shard = held.shard
        targets.append(Target(site.name, site.address, request.data, shard, request.gpus))
    if problems:
        raise PlacementError("; ".join(dict.fromkeys(problems)))
    return targets


def _place_dataset(
    request: Request, catalog: Catalog, excluded: frozenset[str], load: Mapping[str, int] | None, queue: bool
) -> list[Target]:
    name = request.data
    shards = catalog.holders(name)
    if not shards:
        raise PlacementError(_unknown("dataset", name, catalog.datasets()))
    if request.shards is not None:
        shards = {k: v for k, v in shards.items() if k in request.shards}
        if not shards:
            # A retry of a shard whose every holder has left: say that, not "0 sites hold".
            wanted = ", ".join(repr(s) for s in request.shards)
            plural = "s" if len(request.shards) != 1 else ""
            raise PlacementError(f"no site holds shard{plural} {wanted} of {name!r}")
    load = {s.name: (s.running if load is None else load.get(s.name, 0)) for s in catalog}
    targets, rejected, stranded = [], [], []
    for shard, holders in sorted(shards.items()):
        fit = []
        for site in holders:
            why = _rejection(site, request, excluded)
            if why:
                rejected.append((site.name, why))
            else:
                fit.append(site)
        if not fit:
            waiting = sorted(s.name for s in holders if _waits_for(s, request, excluded))
            if waiting and queue:  # it waits for the first of them to rejoin
                targets.append(Target(waiting[0], "", name, shard, request.gpus, waiting_for=tuple(waiting)))
            elif waiting:  # it would run there, but they are away: not silently left out
                stranded.append(f"shard {shard!r} (held by {', '.join(waiting)}, offline)")
            continue
        chosen = fit if request.all else [min(fit, key=lambda s: (load[s.name], s.name))]
        for site in chosen:
            load[site.name] += 1  # spread shards that share replicas
            targets.append(Target(site.name, site.address, name, shard, request.gpus))
    if stranded:
        raise PlacementError(
            f"{name!r} has {len(stranded)} shard{'s' if len(stranded) != 1 else ''} whose every holder is "
            f"offline: {'; '.join(stranded)}. Nothing ran: {_listing(sorted(set(rejected)))}. "
            "A queue timeout (--queue-timeout, queue_timeout=) waits for them"
        )
    if not targets:
        holders = sorted({s.name for hs in shards.values() for s in hs})
        count = f"{len(holders)} site{'s' if len(holders) != 1 else ''} hold{'s' if len(holders) == 1 else ''}"
        wanted = _filters(request) or "the request"
        raise PlacementError(f"{count} {name!r}, none matches {wanted}: {_listing(sorted(set(rejected)))}")
    return targets


def _place_matching(request: Request, catalog: Catalog, excluded: frozenset[str], queue: bool) -> list[Target]:
    if not len(catalog):
        raise PlacementError("the fleet has no sites: start one with `jupyter-edge worker`")
    targets, rejected = [], []
    for site in sorted(catalog, key=lambda s: s.name):
        why = _rejection(site, request, excluded)
        if why and queue and _waits_for(site, request, excluded):
            targets.append(Target(site.name, "", None, None, request.gpus, waiting_for=(site.name,)))
        elif why:
            rejected.append((site.name, why))
        else:
            targets.append(Target(site.name, site.address, None, None, request.gpus))
    if not targets:
        if request.gpus and not request.where:
            raise PlacementError(
                f"no site has {request.gpus} GPU{'s' if request.gpus > 1 else ''}: {_listing(rejected)}"
            )
        raise PlacementError(f"no site matches {_filters(request) or 'the request'}: {_listing(rejected)}")
    return targets
