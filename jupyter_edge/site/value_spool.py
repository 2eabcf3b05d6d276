"""An execution's value, from its runner to its site without a copy through the socket.

The runner pickles the value straight into a spool: memory while the pickle is
small, anonymous shared memory (a memfd) once it grows past ``INLINE_RESULT``.
A large value's memfd crosses the runner's socket as a file descriptor
(SCM_RIGHTS), and the site maps it and sends its chunks from the mapping. So the
bytes are written once, by the pickler, and read once, by the site's socket to
the scheduler: no pickle in the runner's memory, no copy through the socket, no
second one in the site's memory. A memfd is not limited by the size of
``/dev/shm`` (64 MiB in a Docker container by default). Where ``memfd_create``
is missing (not Linux) the spool stays in memory and its bytes follow the
outcome on the socket.
"""

from __future__ import annotations

import mmap
import os
import pickle
import socket
from multiprocessing.connection import Connection

import cloudpickle

from ..protocol import INLINE_RESULT

#: How the value follows an outcome on the runner's socket (its ``value_follows``).
IN_BAND = "bytes"
SHARED = "memfd"

_SHARED_MEMORY = hasattr(os, "memfd_create")


class ResultTooLarge(Exception):
    """The value is bigger than the site lets an execution return."""


class ValueSpool:
    """Where a value is pickled (the pickler's file): memory, then a memfd."""

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self._memory = bytearray()
        self._fd: int | None = None

    @property
    def over_limit(self) -> bool:
        return self.size > self.limit

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if self.over_limit or self.size + len(data) > self.limit:
            # Over the limit: only count, to say how large the value is, and keep
            # nothing, so a value too large to return never fills the site's memory.
            self.close()
            self._memory = bytearray()
            self.size += len(data)
            return len(data)
        if self._fd is None and _SHARED_MEMORY and self.size + len(data) > INLINE_RESULT:
            self._fd = os.memfd_create("jupyter-edge-value", os.MFD_CLOEXEC)
            _write_all(self._fd, memoryview(self._memory))
            self._memory = bytearray()
        if self._fd is None:
            self._memory += data
        else:
            _write_all(self._fd, data)
        self.size += len(data)
        return len(data)

    def send(self, conn: Connection) -> None:
        """The value's bytes on the runner's socket, right after the outcome that said how."""
        if self._fd is None:
            conn.send_bytes(self._memory)
            return
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            socket.send_fds(sock, [b"v"], [self._fd])

    @property
    def follows(self) -> str:
        return IN_BAND if self._fd is None else SHARED

    def close(self) -> None:
        """Let go of the memfd: the memory is freed once the site has let go too."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def pickle_value(value, limit: int) -> ValueSpool:
    """``value`` pickled into a spool; :class:`ResultTooLarge` past ``limit`` bytes,
    ``TypeError`` if it cannot be pickled."""
    spool = ValueSpool(limit)
    try:
        cloudpickle.dump(value, spool, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        spool.close()
        raise TypeError(f"the value ({type(value).__name__}) cannot be sent back: {e}") from None
    if spool.over_limit:
        raise ResultTooLarge(
            f"the value is {spool.size:,} bytes, over this site's result limit of {limit:,} bytes "
            "(edge.result-limit); reduce it at the site, e.g. aggregate before returning"
        )
    return spool


def receive_value(conn: Connection, follows: str, size: int) -> bytes | memoryview:
    """The value that follows an outcome on the runner's socket (at the site): the
    bytes, or a read-only view of the runner's memfd (unmapped once no view is left).
    ``EOFError`` if the runner died before it was sent."""
    if follows == IN_BAND:
        return conn.recv_bytes()
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        raise EOFError("the runner's socket closed before its value")
    try:
        return memoryview(mmap.mmap(fds[0], size, prot=mmap.PROT_READ))
    finally:
        os.close(fds[0])  # the mapping keeps the memory


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]
