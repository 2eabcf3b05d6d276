"""Values too large for an outcome go to the notebook in chunks, over the site's own connection.

A site behind NAT or a firewall cannot be dialled, so nothing gathers a value
from it (Dask's gather would dial it). The site sends its value in chunks on
its worker stream; the scheduler relays each to the job's client and keeps
none; the client acknowledges each chunk, and the scheduler relays the
acknowledgement back on the site's stream. At most ``edge.transfer.window``
chunks are ever on their way, so the scheduler never holds more than that of
one transfer, and a notebook that stops reading (or goes away) stops the site.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from .. import config, protocol


def chunk_count(nbytes: int, size: int) -> int:
    """How many chunks of ``size`` carry ``nbytes``: a remainder under a quarter of
    a chunk rides with the last one (a pickle is a little longer than its data, and
    a tail of a few bytes would cost a round trip of its own)."""
    count = max(1, math.ceil(nbytes / size))
    if count > 1 and nbytes - (count - 1) * size < size // 4:
        count -= 1
    return count


class TransferStopped(Exception):
    """The value could not be delivered; the message says why."""


class ValueSender:
    """The chunked transfers of one site; ``send`` runs in the execution's thread,
    ``acknowledged`` and ``stop`` on the worker's event loop."""

    def __init__(self, post: Callable[[dict], None]):
        self._post = post  # puts a message on the site's stream (thread-safe)
        self._changed = threading.Condition()
        self._acked: dict[str, int] = {}  # execution -> highest chunk acknowledged
        self._stopped: dict[str, str] = {}  # execution -> why its transfer must stop

    def expect(self, execution: str) -> None:
        """An execution that may send a value: a stop for it counts from now on."""
        with self._changed:
            self._acked[execution] = -1

    def done(self, execution: str) -> None:
        with self._changed:
            self._acked.pop(execution, None)
            self._stopped.pop(execution, None)

    def acknowledged(self, execution: str, seq: int) -> None:
        with self._changed:
            if execution in self._acked and seq > self._acked[execution]:
                self._acked[execution] = seq
                self._changed.notify_all()

    def stop(self, execution: str, why: str) -> None:
        with self._changed:
            if execution in self._acked:
                self._stopped[execution] = why
                self._changed.notify_all()

    def send(self, job: str, execution: str, site: str, value: bytes | memoryview, deadline: float | None) -> None:
        """Send ``value`` in chunks, never more than the window ahead of the client;
        :class:`TransferStopped` if it is stopped, the deadline passes, or the
        client takes nothing for ``edge.transfer.stall``."""
        size = max(1, config.nbytes("transfer.chunk"))
        window = max(1, int(config.get("transfer.window")))
        stall = config.seconds("transfer.stall")
        view = memoryview(value).cast("B")
        count = chunk_count(len(view), size)
        for seq in range(count):
            self._wait_for_room(execution, seq - window, deadline, stall)
            # A view, not a copy: the site's socket writes it from the runner's memfd.
            data = view[seq * size : (seq + 1) * size if seq < count - 1 else len(view)]
            self._post(protocol.value_chunk(job, execution, site, seq, data, last=seq == count - 1))

    def _wait_for_room(self, execution: str, needed: int, deadline: float | None, stall: float) -> None:
        """Wait until chunk ``needed`` is acknowledged (or it is below zero)."""
        last_progress, acked = time.monotonic(), None
        with self._changed:
            while True:
                if execution in self._stopped:
                    raise TransferStopped(self._stopped[execution])
                if self._acked.get(execution, -1) >= needed:
                    return
                now = time.monotonic()
                if self._acked.get(execution) != acked:
                    last_progress, acked = now, self._acked.get(execution)
                if deadline is not None and time.time() >= deadline:
                    raise TransferStopped("the job's deadline passed while its value was on its way")
                if now - last_progress > stall:
                    raise TransferStopped(
                        f"the notebook took no chunk of the value for {stall:g} s (edge.transfer.stall)"
                    )
                left = stall - (now - last_progress)
                if deadline is not None:
                    left = min(left, deadline - time.time())
                self._changed.wait(max(0.01, min(left, 1.0)))
