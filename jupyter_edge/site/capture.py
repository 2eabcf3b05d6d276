"""File-descriptor level capture of one execution's stdout and stderr.

Runs inside a runner process, which executes one cell at a time, so pointing
fds 1 and 2 at pipes catches C code, subprocesses and the user's threads, and
nothing of any other execution. Output is forwarded in batches while it runs.
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


class FDCapture:
    """``with FDCapture(send):`` sends ``send(name, text)`` batches while inside."""

    def __init__(self, send: Callable[[str, str], None]):
        self._send = send
        self._streams = {1: "stdout", 2: "stderr"}
        self._saved: dict[int, int] = {}
        self._readers: dict[int, int] = {}
        self._stop = threading.Event()

    def __enter__(self) -> FDCapture:
        _flush_python_streams()
        for fd in self._streams:
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self._saved[fd] = os.dup(fd)
            os.dup2(write_end, fd)
            os.close(write_end)
            self._readers[read_end] = fd
        self._thread = threading.Thread(target=self._forward, name="edge-capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        _flush_python_streams()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._stop.set()
        self._thread.join()
        for read_end in self._readers:
            os.close(read_end)

    def _forward(self) -> None:
        decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in self._streams}
        pending: dict[int, list[str]] = {fd: [] for fd in self._streams}
        size, since = 0, None
        with selectors.DefaultSelector() as selector:
            for read_end in self._readers:
                selector.register(read_end, selectors.EVENT_READ)
            while True:
                stopping = self._stop.is_set()
                got = False
                ready = selector.select(0 if stopping else FLUSH_INTERVAL / 2) if selector.get_map() else []
                for key, _ in ready:
                    data, eof = _read_available(key.fd)
                    if eof:
                        selector.unregister(key.fd)
                    if data:
                        got = True
                        fd = self._readers[key.fd]
                        pending[fd].append(decoders[fd].decode(data))
                        size += len(data)
                        since = since or time.monotonic()
                if not ready and not stopping and not selector.get_map():
                    self._stop.wait(FLUSH_INTERVAL)
                if since and (stopping or size >= FLUSH_SIZE or time.monotonic() - since >= FLUSH_INTERVAL):
                    self._flush(pending)
                    size, since = 0, None
                if stopping and not got:
                    for fd, decoder in decoders.items():
                        tail = decoder.decode(b"", final=True)
                        if tail:
                            pending[fd].append(tail)
                    self._flush(pending)
                    return

    def _flush(self, pending: dict[int, list[str]]) -> None:
        for fd, parts in pending.items():
            if parts:
                self._send(self._streams[fd], "".join(parts))
                parts.clear()


def _read_available(fd: int) -> tuple[bytes, bool]:
    """What is in the pipe now, and whether its writers are all gone."""
    chunks, eof = [], False
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            eof = True
            break
        chunks.append(chunk)
    return b"".join(chunks), eof


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or replaced stream must not break the capture
            pass
