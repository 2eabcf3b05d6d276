"""The matplotlib backend of a site's runners (``MPLBACKEND=module://jupyter_edge.site.figures``).

Figures are drawn off-screen with Agg; ``plt.show()`` sends the open figures to
the cell that asked at that moment, so they arrive in order with what the cell
prints, as the inline backend shows them in a notebook.
"""

from __future__ import annotations

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

from .display import flush_figures

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args, **kwargs) -> None:
    flush_figures()
