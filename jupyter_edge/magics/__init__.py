"""IPython magics: ``%edge`` (connect, fleet, datasets, jobs, ...) and ``%%edge``."""

from __future__ import annotations

from .edge import EdgeMagics

__all__ = ["EdgeMagics", "connected_fleet"]


def connected_fleet(shell=None):
    """The :class:`~jupyter_edge.Fleet` this kernel's ``%edge`` magics use, for
    the Python API beside ``%%edge`` cells (connecting as ``%%edge`` would, if
    ``%edge connect`` has not run yet)."""
    from IPython import get_ipython
    from IPython.core.error import UsageError

    shell = shell or get_ipython()
    magics = shell.magics_manager.registry.get("EdgeMagics") if shell is not None else None
    if magics is None:
        raise UsageError("the %edge magics are not loaded: %load_ext jupyter_edge")
    return magics._connected()
