"""A site's round trip to the scheduler, from the heartbeats its worker already sends.

Dask's worker times each heartbeat (a request on a connection the site opened)
but keeps only a slow moving average, ``worker.latency = 0.05 * sample + 0.95 *
latency``, which takes a minute of heartbeats to approach a far link's real
round trip. Each time the worker reports its metrics (once per heartbeat), the
last sample is recovered from how that average moved, and the median of the
last few samples is the site's round trip: no extra traffic, no timer.
"""

from __future__ import annotations

import statistics
from collections import deque

_WEIGHT = 0.05  # Dask's weight for a new latency sample (Worker._update_latency)


class RoundTrip:
    """``worker.metrics["edge-rtt"]``: seconds, or ``None`` before the first heartbeat."""

    def __init__(self, keep: int = 5):
        self._average: float | None = None
        self._samples: deque[float] = deque(maxlen=keep)

    def __call__(self, worker) -> float | None:
        average = worker.latency
        if self._average is not None and average != self._average:
            sample = (average - (1 - _WEIGHT) * self._average) / _WEIGHT
            # A sample out of bounds means the average moved some other way: fall back to it.
            self._samples.append(sample if 0 <= sample < 600 else average)
        self._average = average
        return statistics.median(self._samples) if self._samples else None
