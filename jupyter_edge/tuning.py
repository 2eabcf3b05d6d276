"""Dask's periodic work, tuned for an edge fleet: most sites are idle most of the time.

An idle Dask worker is never quite idle: it samples its own threads for the
dashboard's profiler every 10 ms, measures its event loop every 20 ms, reads
its memory every 100 ms and the system's every 500 ms. On a small board that is
power and heat for nothing, and on one host with many sites it is what stops a
fleet from growing. A site has no dashboard, and nothing at a site needs those
figures more often than its heartbeat carries them, so a site process sets
these defaults for itself before its worker starts. The hub (``jupyter-edge
scheduler``) does the same for its own. A value set in Dask's own configuration
(a YAML file, a ``DASK_*`` variable, ``dask.config.set``) wins.
"""

from __future__ import annotations

import dask.config

#: What a site process changes, and why (see docs/scale.md for the measurements).
SITE_DEFAULTS = {
    # The dashboard's profiler: no dashboard at a site.
    "distributed.worker.profile.enabled": False,
    # How often the event loop is timed, to warn when something blocks it for
    # longer than distributed.admin.tick.limit (3 s): a blocked loop is still told.
    "distributed.admin.tick.interval": "1s",
    # CPU, memory and network figures, sent with each heartbeat (0.5 s to a few s).
    "distributed.admin.system-monitor.interval": "2s",
    # The worker's memory limits (spill, pause) are checked this often.
    "distributed.worker.memory.monitor-interval": "1s",
}

#: What the hub changes.
HUB_DEFAULTS = {
    # Every edge task is pinned to its site (no other worker holds its data), so
    # work stealing only spends the hub's time looking for moves it cannot make.
    "distributed.scheduler.work-stealing": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


def _chosen_by_user(key: str, user: dict, shipped: dict) -> bool:
    """Set in a Dask YAML file or a ``DASK_*`` variable (even to Dask's own default),
    or in this process to another value than the one Dask (or jupyter-edge) ships."""
    return dask.config.get(key, config=user, default=None) is not None or dask.config.get(key, None) != dask.config.get(
        key, config=shipped, default=None
    )


def _tune(defaults: dict) -> dict:
    user = dask.config.collect()  # the YAML files and DASK_* variables, without the defaults
    shipped = dask.config.merge(*dask.config.defaults)
    chosen = {key: value for key, value in defaults.items() if not _chosen_by_user(key, user, shipped)}
    dask.config.set(chosen)
    return chosen


def tune_for_sites() -> dict:
    """Apply :data:`SITE_DEFAULTS` where the user has not chosen a value; returns what
    was set. Call before the site's worker is made (Dask reads these as it starts)."""
    return _tune(SITE_DEFAULTS)


def tune_for_hub() -> dict:
    """Apply :data:`HUB_DEFAULTS` likewise, before the scheduler is made."""
    return _tune(HUB_DEFAULTS)
