"""Fleets a kernel is connected to, announced in Jupyter's runtime folder, so
the server extension (and its sidebar) can list them and pick one — the
embedded demo fleet of `%edge connect --demo` included."""

from __future__ import annotations

import json
import os
import time

PREFIX = "jupyter-edge-fleet-"


def _runtime_dir() -> str | None:
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:  # a plain IPython without Jupyter: nobody to tell
        return None
    return jupyter_runtime_dir()


def announce(address: str, embedded: bool) -> str | None:
    """Write this process's announcement; returns its path (``None`` if there is no runtime folder)."""
    folder = _runtime_dir()
    if folder is None:
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{PREFIX}{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump({"address": address, "pid": os.getpid(), "embedded": embedded, "since": time.time()}, f)
    return path


def withdraw() -> None:
    folder = _runtime_dir()
    if folder is not None:
        try:
            os.remove(os.path.join(folder, f"{PREFIX}{os.getpid()}.json"))
        except FileNotFoundError:
            pass


def announced() -> list[dict]:
    """The fleets live processes announced (files of dead ones are removed)."""
    folder = _runtime_dir()
    if folder is None or not os.path.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        if not (name.startswith(PREFIX) and name.endswith(".json")):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path) as f:
                entry = json.load(f)
            os.kill(int(entry["pid"]), 0)
        except ProcessLookupError:
            os.remove(path)
            continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append(entry)
    return found
