"""jupyter-edge: run notebook code where the data lives.

A fleet of Dask workers (edge sites) that know their datasets, labels and GPUs;
:class:`Fleet` places work on exactly the sites that hold what it asks for.
"""

from ._version import __version__
from .fleet import Fleet, FleetUnreachable, Job
from .jobs import ExecutionError, JobError, JobInterrupted, SiteLost, State
from .placement import PlacementError
from .result import JobResult
from .selector import SelectorError


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
