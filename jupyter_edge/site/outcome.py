"""How an execution ended at the site, as each executor says it (a runner
process, a container, a WebAssembly module): the one shape the plugin reads."""

from __future__ import annotations

import time


def outcome(
    state: str, error: str | None = None, error_type: str | None = None, value=None, started: float | None = None
) -> dict:
    """``value``: the pickled value (bytes), or ``None``; it ends now."""
    return {
        "op": "result",
        "state": state,
        "value": value,
        "error": error,
        "error_type": error_type,
        "started": started,
        "ended": time.time(),
    }
