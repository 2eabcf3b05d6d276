"""Loading the server extension, with its own settings (traitlets)."""

from __future__ import annotations

from traitlets import Float, Unicode
from traitlets.config import Configurable

from .handlers import setup_handlers
from .manager import FleetManager


class JupyterEdge(Configurable):
    """``c.JupyterEdge.*`` in a Jupyter server config file."""

    scheduler_address = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The fleet the sidebar watches; wins over $JUPYTER_EDGE_SCHEDULER and edge.scheduler-address.",
    )
    connect_timeout = Float(5.0, config=True, help="Seconds to wait for the scheduler before saying it is unreachable.")
    tls_dir = Unicode(
        None,
        allow_none=True,
        config=True,
        help="TLS: a folder from `jupyter-edge certs create` for the server's own certificate "
        "(default: edge.tls.*); over TLS the sidebar acts as that certificate's identity.",
    )


def load(serverapp) -> None:
    settings = JupyterEdge(parent=serverapp)
    manager = FleetManager(
        settings.scheduler_address, connect_timeout=settings.connect_timeout, tls_dir=settings.tls_dir
    )
    setup_handlers(serverapp.web_app, manager)
    serverapp.log.info(
        "jupyter-edge: REST routes under /jupyter-edge/api/, watching %s", manager.address or "no fleet yet"
    )
