#!/usr/bin/env python
"""How fast the server extension answers ``GET fleet`` for a catalog of 200 sites.

Starts the 200 reporting sites of ``reporting_sites.py`` (a scheduler process
and a process of sites), a real ``jupyter server`` subprocess with the
extension pointed at them, and times authenticated ``GET
/jupyter-edge/api/fleet`` and ``GET datasets``. Goal: ``GET fleet`` answers
within 50 ms (p50 and p90).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from time import perf_counter

from reporting_sites import reporting_fleet

GOAL_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args(argv)

    with reporting_fleet(args.sites) as fleet:
        return serve_and_measure(fleet, args)


def serve_and_measure(fleet, args) -> int:
    root = tempfile.mkdtemp(prefix="jupyter-edge-bench-server-")
    server = None
    try:
        token, port = secrets.token_hex(16), free_port()
        env = {**os.environ, "JUPYTER_EDGE_SCHEDULER": fleet.address, "JUPYTER_RUNTIME_DIR": root}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                f"--port={port}",
                "--ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--allow-root",
                "--ServerApp.jpserver_extensions={'jupyter_edge': True}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def fetch(path: str) -> tuple[float, dict]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/jupyter-edge/api/{path}", headers={"Authorization": f"token {token}"}
            )
            t0 = perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
            return (perf_counter() - t0) * 1000, json.loads(body)

        deadline = time.monotonic() + 60
        while True:
            try:
                _, model = fetch("fleet")
                break
            except OSError:
                assert server.poll() is None, "jupyter server exited"
                assert time.monotonic() < deadline, "jupyter server did not answer in 60 s"
                time.sleep(0.3)
        assert len(model["sites"]) == args.sites, f"GET fleet listed {len(model['sites'])} sites"
        results = {}
        for path in ("fleet", "datasets"):
            for _ in range(5):
                fetch(path)
            samples = sorted(fetch(path)[0] for _ in range(args.repeat))
            size = len(json.dumps(fetch(path)[1]))
            results[path] = (samples[len(samples) // 2], samples[int(len(samples) * 0.9)], size)
        print(f"\nGET /jupyter-edge/api/... against {args.sites} sites, {args.repeat} requests each (ms):")
        for path, (p50, p90, size) in results.items():
            print(f"  {path:<9} p50 {p50:7.2f}   p90 {p90:7.2f}   body {size / 1000:.0f} kB")
        met = results["fleet"][1] <= GOAL_MS
        print(f"goal (GET fleet within {GOAL_MS:g} ms at p90): {'MET' if met else 'NOT MET'}")
        return 0 if met else 1
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
