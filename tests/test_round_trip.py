"""The round trip a site reports, recovered from Dask's moving average of its heartbeats."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jupyter_edge.site.round_trip import RoundTrip


def heartbeats(samples: list[float], start: float = 0.001) -> list[float | None]:
    """What the metric reports before each heartbeat, as the worker's average takes ``samples``."""
    worker = SimpleNamespace(latency=start)
    metric = RoundTrip()
    reported = [metric(worker)]
    for sample in samples:
        worker.latency = 0.05 * sample + 0.95 * worker.latency  # what Dask's worker does
        reported.append(metric(worker))
    return reported


def test_the_first_heartbeat_gives_the_real_round_trip():
    reported = heartbeats([0.3])
    assert reported[0] is None, "nothing is known before the first heartbeat"
    assert reported[1] == pytest.approx(0.3), f"expected 0.3 s at once, Dask's own average says {0.05 * 0.3:.3f}"


def test_jitter_is_smoothed_by_the_median():
    reported = heartbeats([0.1, 0.1, 0.9, 0.1, 0.1])
    assert reported[-1] == pytest.approx(0.1)


def test_an_average_that_moved_another_way_is_reported_as_it_is():
    worker = SimpleNamespace(latency=0.2)
    metric = RoundTrip()
    metric(worker)
    worker.latency = 50.0  # not a weighted step of Dask's average
    assert metric(worker) == 50.0
