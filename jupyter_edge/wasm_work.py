"""A WebAssembly execution's work, as the notebook sends it (``Fleet.run_wasm``,
``%edge run --wasm``): checked here, so that a bad module or option fails before
anything is sent. The site runs it (:mod:`jupyter_edge.site.wasm`)."""

from __future__ import annotations

import hashlib
import os
import re

from . import config

__all__ = ["SITE_MODULE", "WASM_PAGE", "module_sha256", "wasm_work"]

#: ``site:NAME`` names a module kept at each site instead of one sent from here.
SITE_MODULE = "site:"
#: Every WebAssembly binary starts with these four bytes.
_MAGIC = b"\0asm"
#: A page of WebAssembly linear memory: the smallest cap that leaves a module one.
WASM_PAGE = 64 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def wasm_work(
    module: str | os.PathLike | bytes,
    args=(),
    env: dict[str, str] | None = None,
    memory: int | str | None = None,
) -> tuple[dict, str]:
    """The work for the sites, and a line that describes it (the job's source).

    ``module``: a ``.wasm`` file here (its bytes travel, up to ``edge.wasm.module-limit``),
    its bytes, or ``"site:NAME"`` for a module each site keeps."""
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        raise ValueError(f"args must be a list of strings (the module's argv after its name), not {args!r}")
    env = dict(env or {})
    bad = [k for k, v in env.items() if not (isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str))]
    if bad:
        raise ValueError(f"env: names like NAME and string values, not {', '.join(map(repr, bad))}")
    if memory is not None:
        memory = config.size_at_least(memory, WASM_PAGE, "memory", "64MiB", "64 KiB (one WebAssembly page)")
    work = {"args": list(args), "env": env, "memory": memory}
    if isinstance(module, str) and module.startswith(SITE_MODULE):
        name = module[len(SITE_MODULE) :]
        if not name or "/" in name:
            raise ValueError(f"{module!r}: site:NAME names a module kept at the sites, without a folder")
        work.update(module=None, name=module, sha256=None)
    else:
        data, name = _module_bytes(module)
        work.update(module=data, name=name, sha256=module_sha256(data))
    return {"wasm": work}, " ".join([work["name"], *args])[:120]


def module_sha256(module: bytes) -> str:
    """What a module is known by: here, at the site, in its policy and its audit log."""
    return hashlib.sha256(module).hexdigest()


def _module_bytes(module) -> tuple[bytes, str]:
    limit = config.nbytes("wasm.module-limit")
    if isinstance(module, (bytes, bytearray, memoryview)):
        data, name = bytes(module), "module.wasm"
    elif isinstance(module, (str, os.PathLike)):
        path = os.fspath(module)
        name = os.path.basename(path)
        try:
            size = os.path.getsize(path)
            if size > limit:
                raise ValueError(
                    f"{path} is {size:,} bytes, over edge.wasm.module-limit ({limit:,}): "
                    "keep it at the sites and name it site:NAME"
                )
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(f"cannot read the module {path}: {e.strerror}") from None
    else:
        raise ValueError(f"module: a .wasm file, its bytes, or 'site:NAME', not {type(module).__name__}")
    if len(data) > limit:
        raise ValueError(f"the module is {len(data):,} bytes, over edge.wasm.module-limit ({limit:,})")
    if not data.startswith(_MAGIC):
        hint = " (WebAssembly text? compile it, e.g. with wasmtime.wat2wasm)" if data.lstrip()[:1] == b"(" else ""
        raise ValueError(f"{name} is not a WebAssembly binary: it does not start with \\0asm{hint}")
    return data, name
