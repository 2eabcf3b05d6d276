"""Rich output at a site: ``display()`` and matplotlib figures, as mime bundles.

The site needs no IPython: objects are formatted by their own ``_repr_*_``
methods, as IPython's formatters would, and figures are drawn with Agg and
sent as PNG at the end of the cell, like the inline backend.
"""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Callable

_REPRS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_json_", "application/json"),
    ("_repr_latex_", "text/latex"),
)


def mimebundle(obj) -> dict:
    """What IPython would show for ``obj``, from its own repr methods."""
    data: dict = {}
    method = getattr(obj, "_repr_mimebundle_", None)
    if callable(method):
        found = method()
        data.update(found[0] if isinstance(found, tuple) else (found or {}))
    for name, mime in _REPRS:
        method = getattr(obj, name, None)
        if mime not in data and callable(method) and not isinstance(obj, type):
            try:
                value = method()
            except Exception:
                continue
            if value is not None:
                data[mime] = value[0] if isinstance(value, tuple) else value
    data.setdefault("text/plain", repr(obj))
    return {mime: _jsonable(value) for mime, value in data.items()}


def _jsonable(value):
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def display_function(emit: Callable[[dict], None]) -> Callable:
    """A ``display(*objs)`` for cells at a site; each object becomes one output."""

    def display(*objs, **kwargs):
        for obj in objs:
            emit(mimebundle(obj))

    return display


def flush_figures(emit: Callable[[dict], None]) -> None:
    """Send the cell's open matplotlib figures as PNG, then close them."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for number in plt.get_fignums():
        figure = plt.figure(number)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        emit({"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": repr(figure)})
    plt.close("all")
