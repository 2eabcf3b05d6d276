"""Which of the notebook's names a cell needs at the sites, and packing them.

Found from the cell's AST: names it reads that the notebook defines. Modules
travel by name (cloudpickle re-imports them at the site) and ``dataset``/``site``
never travel: at a site they are always that site's own handles.
"""

from __future__ import annotations

import ast
import builtins
import types

import cloudpickle

from . import config

RESERVED = frozenset({"dataset", "site"})


class NamesTooLarge(ValueError):
    """The names a cell would send are over ``edge.push-limit``."""


def used_names(source: str) -> set[str]:
    """Names the cell reads (loads), whether or not it also assigns them."""
    tree = ast.parse(source)
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def names_to_send(source: str, namespace: dict, push: list[str] | None = None, no_push: bool = False) -> dict:
    """The notebook's values for the names ``source`` uses; ``push`` names them
    explicitly instead, ``no_push`` sends none."""
    if no_push:
        return {}
    if push is not None:
        missing = [name for name in push if name not in namespace]
        if missing:
            raise NameError(f"--push: the notebook defines no {', '.join(missing)}")
        chosen = {name: namespace[name] for name in push if name not in RESERVED}
    else:
        # Private names and IPython's own helpers mean nothing at a site.
        chosen = {
            name: namespace[name]
            for name in sorted(used_names(source) - RESERVED)
            if name in namespace and not name.startswith("_") and not _is_shell_machinery(namespace[name])
        }
    return {name: value for name, value in chosen.items() if not _is_builtin(name, value)}


def pack_names(names: dict) -> bytes | None:
    """cloudpickle ``names`` once for every site, within ``edge.push-limit``."""
    if not names:
        return None
    limit = config.nbytes("push-limit")
    try:
        packed = cloudpickle.dumps(names)
    except Exception:  # a socket, a kernel object, a lock: say which name, as a usage problem
        for name, value in names.items():
            try:
                cloudpickle.dumps(value)
            except Exception as e:
                raise ValueError(
                    f"the name {name!r} cannot be sent to the sites ({type(e).__name__}: {e}); "
                    "leave it out with --push a,b / --no-push"
                ) from None
        raise
    if len(packed) > limit:
        sizes = sorted(((len(cloudpickle.dumps(v)), k) for k, v in names.items()), reverse=True)
        biggest = ", ".join(f"{k} ({size:,} bytes)" for size, k in sizes[:3])
        raise NamesTooLarge(
            f"the names this cell sends are {len(packed):,} bytes, over edge.push-limit ({limit:,}): "
            f"{biggest}. Keep data at the sites (read it there through `dataset`), or choose what "
            "to send with --push a,b / --no-push"
        )
    return packed


def _is_builtin(name: str, value) -> bool:
    return getattr(builtins, name, object()) is value


def _is_shell_machinery(value) -> bool:
    """IPython's own helpers: exit, get_ipython, In/Out."""
    module = getattr(value, "__module__", "") or ""
    if isinstance(value, types.MethodType) and module.startswith("IPython"):
        return True
    return type(value).__module__.startswith("IPython.")
