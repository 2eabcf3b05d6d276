"""Authenticated REST routes under ``{base_url}/jupyter-edge/api/``.

Thin handlers over :class:`~jupyter_edge.server.manager.FleetManager`: a caller's
mistake is a 4xx with a JSON message, raised outside any broad ``try``.
"""

from __future__ import annotations

import json

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .manager import FleetManager

MANAGER_KEY = "jupyter_edge_manager"


class EdgeHandler(APIHandler):
    @property
    def manager(self) -> FleetManager:
        return self.settings[MANAGER_KEY]


class FleetHandler(EdgeHandler):
    @tornado.web.authenticated
    async def get(self):
        self.finish(json.dumps(await self.manager.fleet()))


class DatasetsHandler(EdgeHandler):
    @tornado.web.authenticated
    async def get(self):
        self.finish(json.dumps(await self.manager.datasets()))


class JobsHandler(EdgeHandler):
    @tornado.web.authenticated
    async def get(self):
        limit = self.get_query_argument("limit", "50")
        if not limit.isdigit() or not 0 < int(limit) <= 1000:
            raise tornado.web.HTTPError(400, f"limit must be a whole number from 1 to 1000, not {limit!r}")
        self.finish(json.dumps(await self.manager.jobs(int(limit))))


class JobHandler(EdgeHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str):
        found = await self.manager.job(job_id)
        if found is None:
            raise tornado.web.HTTPError(404, f"no job {job_id!r} in the fleet's registry")
        self.finish(json.dumps(found))


class CancelHandler(EdgeHandler):
    @tornado.web.authenticated
    async def post(self, job_id: str):
        try:
            found = await self.manager.cancel(job_id)
        except PermissionError as e:  # the job is someone else's
            raise tornado.web.HTTPError(403, str(e)) from None
        if found is None:
            raise tornado.web.HTTPError(404, f"no job {job_id!r} in the fleet's registry")
        self.finish(json.dumps(found))


class ConnectionHandler(EdgeHandler):
    @tornado.web.authenticated
    async def get(self):
        self.finish(json.dumps({**self.manager.connection(), "announced": self.manager.connections()}))

    @tornado.web.authenticated
    async def put(self):
        body = self.get_json_body()
        address = body.get("address") if isinstance(body, dict) else None
        if not isinstance(address, str) or "://" not in address:
            raise tornado.web.HTTPError(400, 'expected {"address": "tcp://host:port"}')
        self.finish(json.dumps(await self.manager.set_address(address)))


def setup_handlers(web_app, manager: FleetManager) -> None:
    base = url_path_join(web_app.settings["base_url"], "jupyter-edge", "api")
    web_app.settings[MANAGER_KEY] = manager
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "fleet"), FleetHandler),
            (url_path_join(base, "datasets"), DatasetsHandler),
            (url_path_join(base, "jobs"), JobsHandler),
            (url_path_join(base, r"jobs/([0-9a-f]+)"), JobHandler),
            (url_path_join(base, r"jobs/([0-9a-f]+)/cancel"), CancelHandler),
            (url_path_join(base, "connection"), ConnectionHandler),
        ],
    )
