"""Rich output at a site: ``display()``, IPython's own display machinery, and
matplotlib figures, as mime bundles sent to the cell that asked.

A runner runs one cell at a time, so each displayed object goes to one place:
the sink of the cell running now (:func:`displays_to`). Three ways lead there:

- the ``display`` a cell always has at a site (even without IPython installed):
  objects are formatted by their own ``_repr_*_`` methods, as IPython's
  formatters would;
- IPython's own ``display``/``clear_output`` (``from IPython.display import
  display, HTML``), where IPython is installed: a small shell
  (:mod:`.ipython_shell`) gives them IPython's formatters and this sink, as an
  engine's kernel does on ipyparallel;
- matplotlib: ``plt.show()`` sends the open figures at once
  (:mod:`.figures`, the runner's backend), and figures still open at the end
  of the cell are sent then, like the inline backend.
"""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_REPRS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_json_", "application/json"),
    ("_repr_latex_", "text/latex"),
)

_sink: Callable[[dict], None] | None = None


@contextmanager
def displays_to(emit: Callable[[dict], None]) -> Iterator[None]:
    """Send every display made while the block runs to ``emit`` (a mime bundle each)."""
    global _sink
    _sink = emit
    try:
        yield
    finally:
        _sink = None


def publish(data: dict) -> None:
    """Send one mime bundle to the cell running now (outside a cell there is none:
    the display is dropped, as a kernel drops output with no request)."""
    if _sink is not None:
        _sink({mime: _jsonable(value) for mime, value in data.items()})


def mimebundle(obj) -> dict:
    """What IPython would show for ``obj``, from its own repr methods."""
    figure = figure_png(obj)
    if figure is not None:
        return {"image/png": figure, "text/plain": repr(obj)}
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
            except Exception:  # a broken repr leaves the others, as in IPython
                continue
            if value is not None:
                data[mime] = value[0] if isinstance(value, tuple) else value
    data.setdefault("text/plain", repr(obj))
    return data  # made JSON-able (bytes as base64) where it is published


def _jsonable(value):
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def display(*objs, **kwargs) -> None:
    """``display(*objs)`` for a site without IPython; each object becomes one output."""
    for obj in objs:
        publish(mimebundle(obj))


def figure_png(obj) -> str | None:
    """A matplotlib figure as base64 PNG (``None`` for anything else)."""
    figure_module = sys.modules.get("matplotlib.figure")
    if figure_module is None or not isinstance(obj, figure_module.Figure):
        return None
    buffer = io.BytesIO()
    obj.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def flush_figures() -> None:
    """Send the cell's open matplotlib figures as PNG, then close them."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for number in plt.get_fignums():
        figure = plt.figure(number)
        publish({"image/png": figure_png(figure), "text/plain": repr(figure)})
    plt.close("all")
