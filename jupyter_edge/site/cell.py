"""Run a notebook cell's source at a site, with IPython's value semantics:
the value of the cell's last expression (if it ends with one) is its value."""

from __future__ import annotations

import ast
import itertools
import linecache

_counter = itertools.count(1)


def run_cell(source: str, namespace: dict, label: str = "edge-cell"):
    """Execute ``source`` in ``namespace``; return the last expression's value
    (``None`` when the cell ends with a statement or a trailing ``;``)."""
    filename = f"<{label}-{next(_counter)}>"
    # Tracebacks show the cell's lines, as IPython's do.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    tree = ast.parse(source, filename=filename, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), namespace)
    if last is None:
        return None
    return eval(compile(last, filename, "eval"), namespace)
