"""When a site's link to its scheduler breaks, or the scheduler restarts, the site
rejoins by itself: under the same name, without a human and without restarting
its process. Dask's worker closes for good when its connection to the scheduler
breaks ("Worker reconnection is not supported"), so ``jupyter-edge worker``
starts a new worker for the same site, once the scheduler answers again.

Attempts are spaced by an exponential backoff with jitter (``edge.rejoin.*``), so
that a hundred sites coming back after a hub restart do not all knock at the
same instant.
"""

from __future__ import annotations

import json
import random

from distributed.comm import connect

from .. import config


class Backoff:
    """Delays between attempts: ``initial * factor**n``, capped at ``max``, each
    drawn at random from its upper half (``jitter`` 0.5) so that sites spread out."""

    def __init__(
        self, initial: float, maximum: float, factor: float = 2.0, jitter: float = 0.5, rng: random.Random | None = None
    ):
        if not (0 < initial <= maximum) or factor < 1 or not (0 <= jitter <= 1):
            raise ValueError(f"bad backoff: initial={initial}, max={maximum}, factor={factor}, jitter={jitter}")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    @classmethod
    def from_config(cls) -> Backoff:
        return cls(
            config.seconds("rejoin.initial"),
            config.seconds("rejoin.max"),
            float(config.get("rejoin.factor")),
            float(config.get("rejoin.jitter")),
        )

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return ceiling * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0


def scheduler_address(address: str | None, scheduler_file: str | None) -> str | None:
    """The address to join: given, or read anew from the scheduler's file (a
    restarted scheduler may have written another)."""
    if address:
        return address
    try:
        with open(scheduler_file) as f:
            return json.load(f)["address"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def answers(address: str, timeout: float, security=None) -> bool:
    """Whether the scheduler at ``address`` accepts a connection now (opened by the site)."""
    args = security.get_connection_args("worker") if security is not None else {}
    try:
        comm = await connect(address, timeout=timeout, **args)
    except (OSError, TimeoutError):
        return False
    await comm.close()
    return True
