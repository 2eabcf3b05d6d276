"""Configuration under ``dask.config``'s ``edge.`` prefix.

Defaults ship in ``edge.yaml`` beside this module, as Dask ships its own; user
files and ``DASK_EDGE__*`` variables override them in the usual Dask way.
"""

from __future__ import annotations

import os
import pathlib

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

SCHEDULER_ENV = "JUPYTER_EDGE_SCHEDULER"

_defaults_file = pathlib.Path(__file__).with_name("edge.yaml")
dask.config.update_defaults(yaml.safe_load(_defaults_file.read_text()))


def get(key: str, default=None):
    """The value of ``edge.<key>``."""
    return dask.config.get(f"edge.{key}", default=default)


def seconds(key: str) -> float:
    """A duration setting (``"30s"``, ``"2 minutes"`` or a number) in seconds."""
    return parse_timedelta(get(key), default="seconds")


def nbytes(key: str) -> int:
    """A size setting (``"8MiB"`` or a number) in bytes."""
    value = get(key)
    return parse_bytes(value) if isinstance(value, str) else int(value)


def size_at_least(value, minimum: int, what: str, example: str, minimum_says: str) -> int:
    """``value`` (bytes, or a size such as ``"512MiB"``) in bytes, at least ``minimum``;
    a ``ValueError`` naming ``what`` (and the minimum, as ``minimum_says``) otherwise."""
    try:
        n = parse_bytes(value) if isinstance(value, str) else value
    except (ValueError, OverflowError):
        raise ValueError(f"{what} must be a size such as '{example}' or a number of bytes, not {value!r}") from None
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"{what} must be at least {minimum_says}, not {value!r}")
    return n


def scheduler_address(explicit: str | None = None) -> str | None:
    """The fleet's address: the argument, else ``$JUPYTER_EDGE_SCHEDULER``,
    else ``edge.scheduler-address``; ``None`` when none is set."""
    return explicit or os.environ.get(SCHEDULER_ENV) or get("scheduler-address")


def tls_files(
    tls_dir: str | None = None, ca_file: str | None = None, cert: str | None = None, key: str | None = None
) -> dict[str, str] | None:
    """The CA, certificate and key to use (arguments, else ``edge.tls.*``), or
    ``None`` for no TLS. A ``--tls-dir`` folder supplies whichever files are not named."""
    if not any((tls_dir, ca_file, cert, key)):
        tls_dir, ca_file, cert, key = (get(f"tls.{k}") for k in ("dir", "ca-file", "cert", "key"))
    if not any((tls_dir, ca_file, cert, key)):
        return None
    files = {"ca_file": ca_file, "cert": cert, "key": key}
    if tls_dir:
        defaults = {"ca_file": "ca.pem", "cert": "cert.pem", "key": "key.pem"}
        files = {k: v or os.path.join(os.path.expanduser(tls_dir), defaults[k]) for k, v in files.items()}
    missing = [f"--tls-{k.replace('_', '-')}" for k, v in files.items() if not v]
    if missing:
        raise ValueError(
            f"TLS needs a CA file, a certificate and a key: {', '.join(missing)} missing "
            "(or give --tls-dir, a folder made by `jupyter-edge certs create`)"
        )
    absent = [v for v in files.values() if not os.path.isfile(os.path.expanduser(v))]
    if absent:
        raise ValueError(f"TLS file not found: {', '.join(absent)}")
    return {k: os.path.expanduser(v) for k, v in files.items()}


def security(tls_dir: str | None = None, ca_file: str | None = None, cert: str | None = None, key: str | None = None):
    """A ``distributed.Security`` requiring TLS with these files, or ``None``.
    One certificate serves every role a process plays (client, scheduler, worker)."""
    files = tls_files(tls_dir, ca_file, cert, key)
    if files is None:
        return None
    from distributed.security import Security

    roles = {
        f"tls_{role}_{part}": files[part] for role in ("client", "scheduler", "worker") for part in ("cert", "key")
    }
    return Security(tls_ca_file=files["ca_file"], require_encryption=True, **roles)


def owner_name() -> str:
    """Who this process acts for when there is no certificate to say it."""
    import getpass

    return get("owner") or os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
