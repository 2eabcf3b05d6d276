"""File-descriptor level capture of each execution's stdout and stderr.

Runs inside a runner process, which executes one cell at a time, so pointing
fds 1 and 2 at pipes catches C code, subprocesses and the user's threads, and
nothing of any other execution. The pipes and the thread that forwards their
output in batches live as long as the runner; an execution only swaps the fds
in and out, and asks for a drain at its end.
"""

from __future__ import annotations

import codecs
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable

#: Forward output at least this often while a cell writes (seconds) ...
FLUSH_INTERVAL = 0.05
#: ... or as soon as this much is waiting (bytes).
FLUSH_SIZE = 64 * 1024

_STREAMS = {1: "stdout", 2: "stderr"}


class FDCapture:
    """``with capture.running(send):`` sends ``send(name, text)`` batches of
    what fds 1 and 2 receive while inside."""

    def __init__(self):
        self._pipes: dict[int, tuple[int, int]] = {}  # fd -> (read end, write end)
        self._saved: dict[int, int] = {}
        for fd in _STREAMS:
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self._pipes[fd] = (read_end, write_end)
            self._saved[fd] = os.dup(fd)
        self._wake_r, self._wake_w = os.pipe()
        self._send: Callable[[str, str], None] | None = None
        self._drained = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._forward, name="edge-capture", daemon=True).start()

    def running(self, send: Callable[[str, str], None]) -> _Running:
        return _Running(self, send)

    def _begin(self, send: Callable[[str, str], None]) -> None:
        _flush_python_streams()
        with self._lock:
            self._send = send
        for fd, (_, write_end) in self._pipes.items():
            os.dup2(write_end, fd)

    def _end(self) -> None:
        _flush_python_streams()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
        # Everything written before the fds were put back is in the pipes now.
        self._drained.clear()
        os.write(self._wake_w, b"d")
        self._drained.wait()
        with self._lock:
            self._send = None

    def _forward(self) -> None:
        decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in _STREAMS}
        pending: dict[int, list[str]] = {fd: [] for fd in _STREAMS}
        size, since = 0, None
        readers = {read_end: fd for fd, (read_end, _) in self._pipes.items()}
        with selectors.DefaultSelector() as selector:
            for read_end in readers:
                selector.register(read_end, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                timeout = None if since is None else max(0.0, since + FLUSH_INTERVAL - time.monotonic())
                drain = False
                for key, _ in selector.select(timeout):
                    if key.fd == self._wake_r:
                        os.read(self._wake_r, 64)
                        drain = True
                        continue
                    data = _read_available(key.fd)
                    if data:
                        fd = readers[key.fd]
                        pending[fd].append(decoders[fd].decode(data))
                        size += len(data)
                        since = since or time.monotonic()
                if drain:
                    for read_end, fd in readers.items():  # what arrived since select() looked
                        data = _read_available(read_end)
                        if data:
                            pending[fd].append(decoders[fd].decode(data))
                        tail = decoders[fd].decode(b"", final=True)
                        if tail:
                            pending[fd].append(tail)
                if drain or (since is not None and (size >= FLUSH_SIZE or
                                                    time.monotonic() - since >= FLUSH_INTERVAL)):
                    self._flush(pending)
                    size, since = 0, None
                if drain:
                    self._drained.set()

    def _flush(self, pending: dict[int, list[str]]) -> None:
        with self._lock:
            send = self._send
        for fd, parts in pending.items():
            if parts and send is not None:  # output of threads that outlived their cell is dropped
                send(_STREAMS[fd], "".join(parts))
            parts.clear()


class _Running:
    def __init__(self, capture: FDCapture, send: Callable[[str, str], None]):
        self.capture, self.send = capture, send

    def __enter__(self) -> FDCapture:
        self.capture._begin(self.send)
        return self.capture

    def __exit__(self, *exc) -> None:
        self.capture._end()


def _read_available(fd: int) -> bytes:
    """What is in the (non-blocking) pipe now."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or replaced stream must not break the capture
            pass
