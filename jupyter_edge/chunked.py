"""A large value, unpickled while its chunks arrive (see site/transfer.py).

Joining the chunks when the last one is in, then unpickling, would copy the
whole value twice after the transfer. Instead a thread unpickles from the
chunks as they come: the unpickler reads a file whose ``readinto`` fills each
large object (bytes, a NumPy array's buffer) straight from the chunks, waiting
for the next one when it has read them all. The copy overlaps the transfer, in
the pauses while the site waits for acknowledgements, and when the outcome
comes only the last chunk is left to read.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections import deque

from . import config


class ValueIncomplete(Exception):
    """Fewer bytes came than the site sent, or the pickle ended early."""


class _Chunks(io.RawIOBase):
    """The chunks of one value as one file; a read waits for the next chunk."""

    def __init__(self, stall: float):
        self.stall = stall
        self.received = 0
        self.consumed = 0
        self._queue: deque[memoryview] = deque()
        self._offset = 0
        self._ended = False  # no more chunks will come
        self._changed = threading.Condition()

    def readable(self) -> bool:
        return True

    def add(self, chunk) -> None:
        view = memoryview(chunk).cast("B")
        with self._changed:
            self._queue.append(view)
            self.received += len(view)
            self._changed.notify()

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify()

    def discard(self) -> None:
        with self._changed:
            self._ended = True
            self._queue.clear()
            self._changed.notify()

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        filled = 0
        with self._changed:
            while filled < len(out):
                if not self._queue:
                    # A short read only at the end (the unpickler takes one as truncation).
                    # The wait is bounded: a value whose job went away never holds a thread.
                    if self._ended or (not self._changed.wait(self.stall) and not self._queue):
                        break
                    continue
                chunk = self._queue[0]
                n = min(len(out) - filled, len(chunk) - self._offset)
                out[filled : filled + n] = chunk[self._offset : self._offset + n]
                filled += n
                self._offset += n
                self.consumed += n
                if self._offset == len(chunk):
                    self._queue.popleft()  # read: let it go
                    self._offset = 0
        return filled


class StreamingValue:
    """One execution's value, unpickled in a thread of its own as its chunks arrive."""

    def __init__(self):
        self._chunks = _Chunks(config.seconds("transfer.stall"))
        self._value = None
        self._error: BaseException | None = None
        self.chunks = 0  # how many have arrived
        self._thread = threading.Thread(target=self._unpickle, daemon=True, name="edge-value-unpickle")
        self._thread.start()

    def _unpickle(self) -> None:
        try:
            self._value = pickle.load(self._chunks)
        except BaseException as e:  # reported by result()
            self._error = e

    def add(self, chunk) -> None:
        """The next chunk (on the client's event loop)."""
        self._chunks.add(chunk)
        self.chunks += 1

    def result(self, size: int):
        """The value, once its ``size`` bytes are in (all its chunks came before its
        outcome, on the same stream). :class:`ValueIncomplete` if they are not; the
        unpickler's error if they cannot be unpickled here."""
        self._chunks.end()
        self._thread.join()
        if self._chunks.received != size or (self._error is None and self._chunks.consumed != size):
            raise ValueIncomplete(f"the value arrived incomplete: {self._chunks.received:,} of {size:,} bytes")
        if self._error is not None:
            raise self._error
        return self._value

    def discard(self) -> None:
        """Not wanted (its execution did not finish): the thread ends at once."""
        self._chunks.discard()
