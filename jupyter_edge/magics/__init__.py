"""IPython magics: ``%edge`` (connect, fleet, datasets, jobs, ...) and ``%%edge``."""

from .edge import EdgeMagics

__all__ = ["EdgeMagics"]
