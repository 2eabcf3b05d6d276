"""The versions that must agree between a site and the notebook that sends it work
(a site reports them; ``%edge fleet`` flags the ones that differ from the kernel's)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

_VERSIONED = ("dask", "distributed", "pandas", "pyarrow", "cloudpickle", "fsspec", "s3fs", "jupyter-edge")


def versions() -> dict[str, str]:
    """Python's version and each package's that cloudpickled work depends on."""
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found
