"""A site's append-only audit log: one JSON line per execution it ran or refused.

Fields: time, site, job, execution, owner, dataset, shard, kind (cell,
function, container cell, command, wasm), image, module (``site:NAME`` for a
module kept at the site), cell_hash (SHA-256 of what ran: a module's own hash),
state, bytes_returned, refused (the policy rule, if one refused it). Lines are
written whole with ``O_APPEND``, so concurrent executions never interleave.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

FIELDS = (
    "time",
    "site",
    "job",
    "execution",
    "owner",
    "dataset",
    "shard",
    "kind",
    "image",
    "module",
    "cell_hash",
    "state",
    "bytes_returned",
    "refused",
)


def default_path(site: str) -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "jupyter-edge", f"audit-{site}.jsonl")


def work_hash(spec: dict) -> str:
    """A fingerprint of what an execution ran: its cell source, command, or pickled function."""
    if "container" in spec:
        work = spec["container"]
        data = work["cell"] if work.get("cell") is not None else json.dumps(work["command"])
    elif "cell" in spec:
        data = spec["cell"]["source"]
    else:
        data = spec.get("payload", b"")
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def work_kind(spec: dict) -> str:
    if "wasm" in spec:
        return "wasm"
    if "container" in spec:
        return "container cell" if spec["container"].get("cell") is not None else "command"
    return "cell" if "cell" in spec else "function"


class AuditLog:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()

    def record(self, **entry) -> None:
        line = json.dumps({"time": time.time(), **{k: entry.get(k) for k in FIELDS if k != "time"}}) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
