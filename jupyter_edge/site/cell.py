"""Run a notebook cell's source at a site, with IPython's value semantics: the
value of the cell's last expression (if it ends with one, and not with ``;``)
is its value.

The one home of those semantics for every executor: the runner processes
import it, and a container gets this file mounted beside its runner
(``container_runner.py``), so it uses Python's standard library only.
"""

from __future__ import annotations

import ast
import io
import itertools
import linecache
import tokenize

_counter = itertools.count(1)
_NOT_CODE = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT)


def ends_with_semicolon(source: str) -> bool:
    """Whether the cell's last token is ``;`` (comments and blank lines after it
    do not count), which IPython takes as "show no value"."""
    last = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type not in _NOT_CODE:
                last = token
    except (tokenize.TokenError, SyntaxError):
        return source.rstrip().endswith(";")
    return last is not None and last.type == tokenize.OP and last.string == ";"


def split_value(source: str, filename: str) -> tuple[ast.Module, ast.Expression | None]:
    """The cell's statements, and its last expression when that is its value."""
    tree = ast.parse(source, filename=filename, mode="exec")
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not ends_with_semicolon(source):
        return tree, ast.Expression(tree.body.pop().value)
    return tree, None


def run_cell(source: str, namespace: dict, label: str = "edge-cell", filename: str | None = None):
    """Execute ``source`` in ``namespace``; return the last expression's value
    (``None`` when the cell ends with a statement or a trailing ``;``).
    Tracebacks name ``filename`` (default: ``<label-N>``) and show the cell's lines."""
    filename = filename or f"<{label}-{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    statements, last = split_value(source, filename)
    exec(compile(statements, filename, "exec"), namespace)  # the user's own cell, at their request
    if last is None:
        return None
    return eval(compile(last, filename, "eval"), namespace)
