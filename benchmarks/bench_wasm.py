"""WebAssembly at a site, against a plain %%edge Python cell and a container, in one run.

One in-process fleet with one site that runs modules (``--wasm``) and, where a
Docker engine can be started here (root, Debian's ``dockerd``), containers too.
Its dataset is one column file of about 50 MB (a number per line). The same
sum is computed three ways at the site:

- the demo's C module ``scan sum`` (``jupyter_edge/demo_wasm/scan.c``, built for
  wasm32-wasi), sent from here;
- a ``%%edge``-style Python cell (``Fleet.run_cell``) in the site's runner;
- the same Python in a fresh container of a minimal Debian image with python3
  (``Fleet.run_command``).

Start-up is measured on a file of one line: ``cold`` is a module the site has not
seen (it compiles it), ``warm`` one it has (kept by hash). Medians of --repeat.

    python benchmarks/bench_wasm.py [--mb 50] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

PYTHON_SUM = (
    "import os\n"
    "total = 0.0\n"
    "root = os.environ.get('EDGE_DATASET_PATH') or dataset.path\n"
    "for name in sorted(os.listdir(root)):\n"
    "    with open(os.path.join(root, name)) as f:\n"
    "        total += sum(float(line) for line in f)\n"
    "print(f'total {total:.6f}')\n"
)


def column(folder: Path, megabytes: float, seed: int = 1) -> float:
    """A file of numbers, one per line, about ``megabytes`` big; their sum."""
    folder.mkdir(parents=True, exist_ok=True)
    count = int(megabytes * 1e6 / 9)  # "1234.567\n"
    values = np.round(np.random.default_rng(seed).uniform(1000, 9999, count), 3)
    np.savetxt(folder / "column.txt", values, fmt="%.3f")
    return float(np.loadtxt(folder / "column.txt").sum()) if megabytes < 1 else float(values.sum())


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def stdout(result, site: str) -> str:
    return "".join(o["text"] for o in result.outputs[site] if o.get("name") == "stdout")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    from distributed import Client

    from jupyter_edge import Fleet
    from jupyter_edge.demo import wasm_module
    from jupyter_edge.local import SiteSpec, local_cluster
    from jupyter_edge.site.dataset import DatasetDeclaration

    root = Path(tempfile.mkdtemp(prefix="bench-wasm-"))
    expected = column(root / "big", args.mb)
    column(root / "tiny", 0.000009)
    size = (root / "big" / "column.txt").stat().st_size
    engine = image = None
    if os.geteuid() == 0 and shutil.which("dockerd"):
        from dockerd import IMAGE, Engine, python_rootfs

        (root / "docker").mkdir()
        engine = Engine(root / "docker")
        engine.import_image(python_rootfs(), IMAGE)
        image = IMAGE
    site = SiteSpec(
        "gateway",
        wasm=True,
        docker=engine.url if engine else None,
        datasets=[
            DatasetDeclaration("column", str(root / "big"), "gateway"),
            DatasetDeclaration("tiny", str(root / "tiny"), "gateway"),
        ],
    )
    cluster = local_cluster([site])
    rows: dict[str, dict] = {}
    try:
        with Fleet(Client(cluster, set_as_default=False)) as fleet:
            fleet.wait_for_sites(1)
            scan = wasm_module("scan").read_bytes()

            def wasm(data: str, module: bytes = scan):
                res = fleet.run_wasm(module, ["sum"], data=data, timeout=600)
                assert res["gateway"] == 0, res.errors
                return float(stdout(res, "gateway").split()[-1])

            def cell(data: str):
                res = fleet.run_cell(PYTHON_SUM, data=data, fresh=True, timeout=600)
                assert not res.errors, res.errors
                return float(stdout(res, "gateway").split()[-1])

            def container(data: str):
                res = fleet.run_command(["python3", "-c", PYTHON_SUM], image=image, data=data, timeout=600)
                assert res["gateway"] == 0, res.errors
                return float(stdout(res, "gateway").split()[-1])

            # Start-up, on a file of one line. Cold: a module the site has not compiled
            # (the same code, one byte of a custom section apart, so its hash differs).
            cold = []
            for i in range(args.repeat):
                section = b"\x05bench" + bytes([i % 256])  # a custom section named "bench"
                fresh_module = scan + b"\0" + bytes([len(section)]) + section
                cold.append(timed(lambda m=fresh_module: wasm("tiny", m))[0])
            warm = [timed(lambda: wasm("tiny"))[0] for _ in range(args.repeat + 1)][1:]
            rows["start: wasm, cold (compiled at the site)"] = {"s": statistics.median(cold)}
            rows["start: wasm, warm (kept by hash)"] = {"s": statistics.median(warm)}
            rows["start: %%edge Python cell"] = {
                "s": statistics.median([timed(lambda: cell("tiny"))[0] for _ in range(args.repeat)])
            }
            if engine:
                rows["start: container"] = {
                    "s": statistics.median([timed(lambda: container("tiny"))[0] for _ in range(args.repeat)])
                }

            # Throughput: the whole column.
            for name, run in (
                ("wasm (C, scan sum)", wasm),
                ("%%edge Python cell", cell),
                ("container (Python)", container),
            ):
                if name.startswith("container") and not engine:
                    continue
                times = []
                for _ in range(args.repeat):
                    took, total = timed(lambda run=run: run("column"))
                    assert abs(total - expected) < 1e-6 * abs(expected), (name, total, expected)
                    times.append(took)
                rows[f"sum {size / 1e6:.0f} MB: {name}"] = {
                    "s": statistics.median(times),
                    "MB/s": size / 1e6 / statistics.median(times),
                }
    finally:
        cluster.close()
        if engine:
            engine.close()
    width = max(map(len, rows))
    for name, row in rows.items():
        extra = f"  {row['MB/s']:8.1f} MB/s" if "MB/s" in row else ""
        print(f"{name:<{width}}  {row['s'] * 1e3:9.1f} ms{extra}")
    if not engine:
        print("(no container figures: starting a Docker engine here needs root and Debian's dockerd)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
