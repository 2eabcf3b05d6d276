"""File-descriptor level capture of each execution's stdout and stderr.

Runs inside a runner process, which executes one cell at a time, so pointing
fds 1 and 2 at pipes catches C code, subprocesses and the user's threads, and
nothing of any other execution. The pipes and the thread that forwards their
output in batches live as long as the runner; an execution only swaps the fds
in and out, and takes what is left in the pipes at its end.
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
        self._send: Callable[[str, str], None] | None = None
        self._decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in _STREAMS}
        self._pending: dict[int, list[str]] = {fd: [] for fd in _STREAMS}
        self._size, self._since = 0, None
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
        # Everything written before the fds were put back is in the pipes now:
        # take it here rather than wait for the forwarding thread to.
        with self._lock:
            self._collect(final=True)
            self._flush()
            self._send = None

    def flush_now(self) -> None:
        """Send what fds 1 and 2 have received so far (before a rich output)."""
        _flush_python_streams()
        with self._lock:
            self._collect()
            self._flush()

    def _collect(self, final: bool = False) -> None:
        """Move what the pipes hold into ``_pending`` (under ``_lock``)."""
        for fd, (read_end, _) in self._pipes.items():
            data = _read_available(read_end)
            text = self._decoders[fd].decode(data, final=final) if data or final else ""
            if text:
                self._pending[fd].append(text)
                self._size += len(data)
                self._since = self._since or time.monotonic()

    def _flush(self) -> None:
        """Send ``_pending`` (under ``_lock``); output of threads that outlived
        their cell arrives with no execution to send it to, and is dropped."""
        for fd, parts in self._pending.items():
            if parts and self._send is not None:
                self._send(_STREAMS[fd], "".join(parts))
            parts.clear()
        self._size, self._since = 0, None

    def _forward(self) -> None:
        with selectors.DefaultSelector() as selector:
            for read_end, _ in self._pipes.values():
                selector.register(read_end, selectors.EVENT_READ)
            while True:
                since = self._since
                timeout = None if since is None else max(0.0, since + FLUSH_INTERVAL - time.monotonic())
                selector.select(timeout)
                with self._lock:
                    self._collect()
                    if self._since is not None and (
                        self._size >= FLUSH_SIZE or time.monotonic() - self._since >= FLUSH_INTERVAL
                    ):
                        self._flush()


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
