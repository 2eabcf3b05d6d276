"""jupyter-edge: run notebook code where the data lives.

A fleet of Dask workers (edge sites) that know their datasets, labels and GPUs;
:class:`Fleet` places work on exactly the sites that hold what it asks for.
"""

from ._version import __version__
from .fleet import Fleet, Job
from .jobs import ExecutionError, JobError, SiteLost, State
from .placement import PlacementError
from .result import JobResult
from .selector import SelectorError

__all__ = [
    "__version__",
    "Fleet",
    "Job",
    "JobResult",
    "JobError",
    "ExecutionError",
    "PlacementError",
    "SelectorError",
    "SiteLost",
    "State",
]
