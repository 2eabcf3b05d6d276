"""jupyter-edge: run notebook code where the data lives.

A fleet of Dask workers (edge sites) that know their datasets, labels and GPUs;
:class:`Fleet` places work on exactly the sites that hold what it asks for.
"""

from __future__ import annotations

import importlib

from ._version import __version__

# The public names load on first use: a site's runner processes import this
# package too, and must not pay for Dask's client on every start.
_PUBLIC = {
    "Fleet": ".fleet",
    "FleetUnreachable": ".fleet",
    "Job": ".fleet",
    "ExecutionError": ".jobs",
    "JobError": ".jobs",
    "JobInterrupted": ".jobs",
    "SiteLost": ".jobs",
    "State": ".jobs",
    "PlacementError": ".placement",
    "JobResult": ".result",
    "SelectorError": ".selector",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "jupyter_edge"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """The REST routes the JupyterLab sidebar reads."""
    from .server.extension import load

    load(serverapp)


def _jupyter_labextension_paths() -> list[dict]:
    """The prebuilt sidebar, for ``jupyter labextension develop``."""
    return [{"src": "labextension", "dest": "jupyter-edge"}]


def load_ipython_extension(ipython) -> None:
    """``%load_ext jupyter_edge``: the ``%edge`` and ``%%edge`` magics."""
    from .magics import EdgeMagics

    ipython.register_magics(EdgeMagics)


def unload_ipython_extension(ipython) -> None:
    magics = ipython.magics_manager.registry.get("EdgeMagics")
    if magics is not None:
        magics._close()


__all__ = [
    "ExecutionError",
    "Fleet",
    "FleetUnreachable",
    "Job",
    "JobError",
    "JobInterrupted",
    "JobResult",
    "PlacementError",
    "SelectorError",
    "SiteLost",
    "State",
    "__version__",
]
