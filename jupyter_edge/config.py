"""Configuration under ``dask.config``'s ``edge.`` prefix.

Defaults ship in ``edge.yaml`` beside this module, as Dask ships its own; user
files and ``DASK_EDGE__*`` variables override them in the usual Dask way.
"""

from __future__ import annotations

import os
import pathlib

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

SCHEDULER_ENV = "JUPYTER_EDGE_SCHEDULER"

_defaults_file = pathlib.Path(__file__).with_name("edge.yaml")
dask.config.update_defaults(yaml.safe_load(_defaults_file.read_text()))


def get(key: str, default=None):
    """The value of ``edge.<key>``."""
    return dask.config.get(f"edge.{key}", default=default)


def seconds(key: str) -> float:
    """A duration setting (``"30s"``, ``"2 minutes"`` or a number) in seconds."""
    return parse_timedelta(get(key), default="seconds")


def nbytes(key: str) -> int:
    """A size setting (``"8MiB"`` or a number) in bytes."""
    value = get(key)
    return parse_bytes(value) if isinstance(value, str) else int(value)


def scheduler_address(explicit: str | None = None) -> str | None:
    """The fleet's address: the argument, else ``$JUPYTER_EDGE_SCHEDULER``,
    else ``edge.scheduler-address``; ``None`` when none is set."""
    return explicit or os.environ.get(SCHEDULER_ENV) or get("scheduler-address")
