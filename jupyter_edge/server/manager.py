"""The fleet the Jupyter server watches, as JSON models for the sidebar.

The Fleet API blocks, so every call runs in a thread: the server's event loop
never waits on a scheduler. An unreachable scheduler is a state in the answer
(bounded by a connect timeout), not an error and not a hang.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from .. import config
from ..fleet import Fleet
from ..protocol import CATALOG_HANDLER

logger = logging.getLogger(__name__)


class FleetManager:
    def __init__(self, address: str | None = None, connect_timeout: float = 5.0, tls_dir: str | None = None):
        self.address = config.scheduler_address(address)
        self.connect_timeout = connect_timeout
        self.tls_dir = tls_dir
        self._fleet: Fleet | None = None
        self._error: str | None = None
        self._lock = asyncio.Lock()

    # --- the connection ------------------------------------------------------

    def connections(self) -> list[dict]:
        """Fleets the kernels on this machine are connected to, to choose from."""
        from ..announce import announced

        return announced()

    def connection(self) -> dict:
        if self.address is None:
            status = "unset"
        elif self._fleet is not None:
            status = "connected"
        else:
            status = "unreachable" if self._error else "disconnected"
        return {"address": self.address, "status": status, "error": self._error}

    async def set_address(self, address: str) -> dict:
        async with self._lock:
            await asyncio.to_thread(self._close)
            self.address, self._error = address, None
        await self._connected()
        return self.connection()

    def _close(self) -> None:
        if self._fleet is not None:
            try:
                self._fleet.close()
            except Exception:  # a scheduler that is already gone
                logger.debug("closing the fleet connection failed", exc_info=True)
            self._fleet = None

    async def _connected(self) -> Fleet | None:
        async with self._lock:
            if self._fleet is None and self.address is not None:
                try:
                    self._fleet = await asyncio.to_thread(
                        Fleet.connect, self.address, timeout=self.connect_timeout, tls_dir=self.tls_dir
                    )
                    self._error = None
                except (OSError, TimeoutError, ValueError) as e:
                    self._error = f"{type(e).__name__}: {e}"
            return self._fleet

    async def _ask(self, method: str, *args, **kwargs):
        """Call a Fleet method in a thread; a lost scheduler becomes a state."""
        fleet = await self._connected()
        if fleet is None:
            return None
        try:
            return await asyncio.to_thread(getattr(fleet, method), *args, **kwargs)
        except (OSError, TimeoutError) as e:
            async with self._lock:
                self._error = f"{type(e).__name__}: {e}"
                await asyncio.to_thread(self._close)
            return None

    # --- models ----------------------------------------------------------------

    async def fleet(self) -> dict:
        # The scheduler's own JSON, passed through: no objects built and taken apart again.
        model = await self._ask("_call", CATALOG_HANDLER)
        sites = [] if model is None else sorted(model["sites"], key=lambda s: s["name"])
        # The server's own versions, for the sidebar to flag sites that differ.
        return {"connection": self.connection(), "sites": sites, "versions": _server_versions(), "time": time.time()}

    async def datasets(self) -> dict:
        catalog = await self._ask("catalog")
        datasets = (
            []
            if catalog is None
            else [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "shards": d.shards,
                    "sites": d.sites,
                    "bytes": d.bytes,
                    "files": d.files,
                }
                for d in catalog.datasets().values()
            ]
        )
        return {"connection": self.connection(), "datasets": datasets}

    async def jobs(self, limit: int = 50) -> dict:
        records = await self._ask("jobs", limit=limit)
        return {"connection": self.connection(), "jobs": [r.to_dict() for r in records or []]}

    async def job(self, job_id: str) -> dict | None:
        """One job, or ``None`` when the registry has no such job."""
        fleet = await self._connected()
        if fleet is None:
            return None
        try:
            record = await asyncio.to_thread(fleet.job, job_id, wait=0)
        except KeyError:
            return None
        return {"connection": self.connection(), "job": record.to_dict()}

    async def cancel(self, job_id: str) -> dict | None:
        """Cancel a job as this server's identity (its certificate over TLS);
        ``None`` when the registry has no such job, ``PermissionError`` when
        the job is someone else's."""
        fleet = await self._connected()
        if fleet is None:
            return None
        try:
            cancelled = await asyncio.to_thread(fleet.cancel_job, job_id)
        except KeyError:
            return None
        return {"connection": self.connection(), "job": job_id, "cancelled": cancelled}

    async def close(self) -> None:
        await asyncio.to_thread(self._close)


@functools.cache
def _server_versions() -> dict[str, str]:
    from ..versions import versions

    return versions()
