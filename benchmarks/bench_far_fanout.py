"""A fan-out to far sites costs one round trip to the farthest, not one per site.

One CLI scheduler and N process sites (default 16), each connected through its
own delaying relay (tests/netns.py's ``DelayRelay``). The same sites are
measured at 0 ms (loopback, through the relay) and then at the round trip
asked (default 50 ms), in one run: ``Fleet.run_cell("1", all=True)``, what a
trivial ``%%edge --all`` cell runs, p50 and p90 of ``--repeat`` calls.

    python benchmarks/bench_far_fanout.py [--sites 16] [--rtt-ms 50] [--repeat 30]

Goal (issue 12): p50 at the round trip <= one round trip + the loopback p50 + 10 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=16)
    parser.add_argument("--rtt-ms", type=float, default=50)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    from netns import DelayRelay
    from processes import stop_all

    from jupyter_edge import Fleet

    root = Path(tempfile.mkdtemp(prefix="bench-far-"))
    procs: list[subprocess.Popen] = []
    relays: list[DelayRelay] = []

    def start(command: list[str], name: str) -> None:
        with open(root / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    try:
        scheduler_file = root / "scheduler.json"
        start(
            [
                sys.executable,
                "-m",
                "jupyter_edge.cli",
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--scheduler-file",
                str(scheduler_file),
            ],
            "scheduler",
        )
        while not scheduler_file.exists():
            time.sleep(0.05)
        port = int(json.loads(scheduler_file.read_text())["address"].rsplit(":", 1)[1])
        for i in range(args.sites):
            relay = DelayRelay("127.0.0.1", port, 0.0)
            relays.append(relay)
            start(
                [
                    sys.executable,
                    "-m",
                    "jupyter_edge.cli",
                    "worker",
                    relay.address,
                    "--name",
                    f"far-{i:02d}",
                    "--host",
                    "127.0.0.1",
                ],
                f"far-{i:02d}",
            )
        fleet = Fleet.connect(f"tcp://127.0.0.1:{port}")
        fleet.wait_for_sites(args.sites, timeout=180)
        figures = {}
        for label, one_way in (("loopback", 0.0), (f"{args.rtt_ms:g} ms", args.rtt_ms / 2000)):
            for relay in relays:
                relay.one_way = one_way
            times = []
            for i in range(args.repeat + 3):
                t0 = time.perf_counter()
                result = fleet.run_cell("1", all=True, timeout=60)
                took = time.perf_counter() - t0
                assert result.ok and len(result) == args.sites, result.errors
                if i >= 3:  # warm-up
                    times.append(took)
                time.sleep(0.05)
            times.sort()
            figures[label] = {"p50": statistics.median(times), "p90": times[int(0.9 * (len(times) - 1))]}
            print(
                f"{label:>10}: p50 {figures[label]['p50'] * 1000:7.1f} ms  p90 {figures[label]['p90'] * 1000:7.1f} ms"
            )
        fleet.close()
        far = figures[f"{args.rtt_ms:g} ms"]["p50"]
        bound = args.rtt_ms / 1000 + figures["loopback"]["p50"] + 0.010
        print(
            f"goal: p50 {far * 1000:.1f} ms <= {bound * 1000:.1f} ms (one round trip + loopback p50 + 10 ms): "
            f"{'met' if far <= bound else 'NOT met'}"
        )
        return 0 if far <= bound else 1
    finally:
        stop_all(procs)
        for relay in relays:
            relay.close()


if __name__ == "__main__":
    sys.exit(main())
