"""WebAssembly executions at sites started with --wasm: real modules (from C with
Debian's clang for wasm32-wasi, and from WAT text) run by wasmtime at real sites.

Without wasmtime or the C toolchain these skip, unless ``JUPYTER_EDGE_REQUIRE_WASM=1``
(as in CI), which makes them fail instead."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import kernel_outputs, run_in_kernel, stream_text, worker_usage

from jupyter_edge import PlacementError

pytestmark = pytest.mark.wasm

REPO = Path(__file__).resolve().parent.parent
SCAN_SOURCE = REPO / "jupyter_edge" / "demo_wasm" / "scan.c"
SCAN_COMMITTED = REPO / "jupyter_edge" / "demo_wasm" / "scan.wasm"
HERE = Path(__file__).resolve().parent / "wasm"
REQUIRED = os.environ.get("JUPYTER_EDGE_REQUIRE_WASM") == "1"

LOOP = '(module (func (export "_start") (loop $forever (br $forever))))'
DIVIDE_BY_ZERO = '(module (func (export "_start") (drop (i32.div_s (i32.const 1) (i32.const 0)))))'
#: Grows its memory by 100 pages (6.25 MiB), and traps if it cannot.
GROW = """(module (memory (export "memory") 1)
  (func (export "_start") (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))))"""
#: Starts with 40 pages (2.5 MiB) of memory.
LARGE_MEMORY = '(module (memory (export "memory") 40) (func (export "_start")))'


def missing(what: str):
    if REQUIRED:
        pytest.fail(f"{what} (JUPYTER_EDGE_REQUIRE_WASM=1: .ci/run installs it)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def wasmtime():
    try:
        import wasmtime
    except ImportError:
        missing("needs wasmtime (pip install 'jupyter-edge[wasm]')")
    return wasmtime


@pytest.fixture(scope="module")
def built(tmp_path_factory, wasmtime) -> dict[str, Path]:
    """The C modules, built now with clang for wasm32-wasi, and the WAT ones."""
    clang = shutil.which("clang")
    if clang is None:
        missing("needs Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32")
    out = tmp_path_factory.mktemp("modules")
    modules = {}
    for name, source in (("scan", SCAN_SOURCE), ("probe", HERE / "probe.c"), ("live", HERE / "live.c")):
        target = out / f"{name}.wasm"
        done = subprocess.run(
            [clang, "--target=wasm32-wasi", "-O2", "-Wl,--strip-all", "-o", str(target), str(source)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            missing(f"clang could not build {source.name} for wasm32-wasi: {done.stderr.strip()[-500:]}")
        modules[name] = target
    for name, text in (("loop", LOOP), ("trap", DIVIDE_BY_ZERO), ("grow", GROW), ("large", LARGE_MEMORY)):
        modules[name] = out / f"{name}.wasm"
        modules[name].write_bytes(wasmtime.wat2wasm(text))
    return modules


def write_logs(folder: Path, seed: int) -> Path:
    """Log files like the demo's: a level per line, some of them ERROR."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for day in range(3):
        with open(folder / f"2026-11-0{day + 1}.log", "w") as f:
            for minute in range(200 + 50 * seed):
                level = rng.choice(["INFO", "INFO", "WARN", "ERROR"])
                f.write(f"2026-11-0{day + 1}T{minute // 60:02d}:{minute % 60:02d}:00 {level} site line={minute}\n")
    return folder


@pytest.fixture(scope="module")
def wasm_fleet(tmp_path_factory, built, wasmtime):
    """north and south run modules and hold their own shards of ``logs``; plain does not
    run modules; strict accepts only the scan module (its policy); north keeps ``scan``
    as a site module."""
    import dask
    from distributed import Client

    from jupyter_edge import Fleet
    from jupyter_edge.local import SiteSpec, local_cluster
    from jupyter_edge.site.dataset import DatasetDeclaration
    from jupyter_edge.site.policy import Policy

    root = tmp_path_factory.mktemp("wasm-fleet")
    kept = root / "modules"
    kept.mkdir()
    shutil.copy(built["scan"], kept / "scan.wasm")
    scan_hash = hashlib.sha256(built["scan"].read_bytes()).hexdigest()
    numbers = root / "numbers"
    numbers.mkdir()
    values = [f"{v:.3f}" for v in np.random.default_rng(3).uniform(-5000, 5000, 20_000)]
    values += ["+12", "-0.5", ".25", "1e3", "-2.5E-2", "123456789012345678901", "7.000000000000000000001"]
    (numbers / "column.txt").write_text("\n".join(values) + "\n")
    sites = [
        SiteSpec(
            name,
            wasm=name != "plain",
            datasets=[DatasetDeclaration("logs", str(write_logs(root / name, seed)), name)]
            + ([DatasetDeclaration("numbers", str(numbers), "all")] if name == "north" else []),
            audit_log=str(root / f"audit-{name}.jsonl"),
            policy=Policy.from_dict({"wasm": [f"sha256:{scan_hash}"]}) if name == "strict" else None,
        )
        for seed, name in enumerate(("north", "south", "plain", "strict"))
    ]
    with dask.config.set({"edge.wasm.modules": str(kept)}):
        cluster = local_cluster(sites)
    with Fleet(Client(cluster, set_as_default=False)) as fleet:
        fleet.wait_for_sites(4)
        fleet.root, fleet.cluster = root, cluster
        yield fleet
    cluster.close()


def outputs_text(result, site: str, stream: str = "stdout") -> str:
    return "".join(o["text"] for o in result.outputs[site] if o.get("name") == stream)


def expected_counts(folder: Path, word: str) -> dict[str, tuple[int, int]]:
    """The same computation in pandas: lines per file, and lines whose level is ``word``."""
    counts = {}
    for path in sorted(folder.glob("*.log")):
        frame = pd.read_csv(path, sep=" ", header=None, names=["time", "level", "site", "line"])
        counts[path.name] = (len(frame), int((frame.level == word).sum()))
    return counts


def scan_counts(text: str) -> dict[str, tuple[int, int]]:
    rows = [line.split() for line in text.strip().splitlines()]
    return {name: (int(lines), int(matches)) for name, lines, matches in rows}


def running_modules(fleet, site: str) -> dict:
    return fleet.cluster.workers[site].plugins["jupyter-edge-site"].wasm._running


def wait_until_running(fleet, site: str, running: bool, timeout: float, failure: str) -> None:
    """Wait until ``site`` runs a module (``running``) or runs none; fail with ``failure`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while bool(running_modules(fleet, site)) != running:
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def test_a_c_module_reads_every_file_of_its_shard_and_agrees_with_pandas(wasm_fleet, built):
    result = wasm_fleet.run_wasm(built["scan"], ["count", "ERROR"], data="logs", timeout=60)
    # plain's shard is held by no site that runs modules: it is skipped, as for any filter.
    assert sorted(result.executions) == ["north", "south", "strict"], result.executions
    for site in ("north", "south", "strict"):
        assert result[site] == 0, result.errors
        counts = scan_counts(outputs_text(result, site))
        expected = expected_counts(wasm_fleet.root / site, "ERROR")
        assert counts.pop("total") == tuple(map(sum, zip(*expected.values(), strict=True)))
        assert counts == expected, f"{site}: the module counted {counts}, pandas {expected}"


def test_a_column_summed_by_the_module_agrees_with_pandas(wasm_fleet, built):
    result = wasm_fleet.run_wasm(built["scan"], ["sum"], data="numbers", timeout=60)
    name, lines, total = outputs_text(result, "north").splitlines()[-1].split()
    expected = pd.read_csv(wasm_fleet.root / "numbers" / "column.txt", header=None)[0].sum()
    assert (name, int(lines)) == ("total", 20_007)
    assert float(total) == pytest.approx(expected, rel=1e-12), (total, expected)


def test_the_committed_module_is_the_source_built(wasm_fleet, built):
    """jupyter_edge/demo_wasm/scan.wasm (what the demo notebook sends) does what its source does."""
    fresh = wasm_fleet.run_wasm(built["scan"], ["count", "WARN"], sites=["north"], data="logs", timeout=60)
    committed = wasm_fleet.run_wasm(SCAN_COMMITTED, ["count", "WARN"], sites=["north"], data="logs", timeout=60)
    assert outputs_text(committed, "north") == outputs_text(fresh, "north") != ""


def test_a_module_is_confined_to_its_read_only_shard(wasm_fleet, built):
    result = wasm_fleet.run_wasm(built["probe"], sites=["north"], data="logs", env={"GREETING": "hello"}, timeout=60)
    said = outputs_text(result, "north")
    assert result["north"] == 0, f"the module reached what it must not: {said}"
    assert "write /data/logs/written-by-a-module.txt: refused" in said and "read /etc/passwd: refused" in said, said
    assert "GREETING=hello" in said, f"--env passes variables: {said}"
    assert not (wasm_fleet.root / "north" / "written-by-a-module.txt").exists()


def test_output_streams_back_while_the_module_runs(wasm_fleet, built):
    arrived = []

    def on_output(site, outputs):
        arrived.extend((time.monotonic(), out.get("text", "")) for out in outputs)

    result = wasm_fleet.run_wasm(built["live"], sites=["south"], timeout=60, on_output=on_output)
    ended = time.monotonic()
    first = [t for t, text in arrived if "first" in text]
    assert first and ended - first[0] > 1.0, (
        f"the first line came {ended - first[0] if first else None}s before the end"
    )
    assert "second after" in outputs_text(result, "south")


def test_the_exit_code_is_the_value_and_nonzero_fails(wasm_fleet, built):
    # No --data: the module says what it needs on stderr and exits 2.
    result = wasm_fleet.run_wasm(built["scan"], ["count", "ERROR"], sites=["north"], timeout=60)
    error = result.errors["north"]
    assert error.args[1] == "failed" and "the module exited with code 2" in error.args[2], error
    assert "EDGE_DATASET_PATH is not set" in outputs_text(result, "north", "stderr")


def test_a_trap_is_reported_with_its_message(wasm_fleet, built):
    result = wasm_fleet.run_wasm(built["trap"], sites=["north"], timeout=60)
    assert "wasm trap: integer divide by zero" in result.errors["north"].args[2], result.errors


def test_memory_over_the_cap_fails_clearly(wasm_fleet, built):
    grew = wasm_fleet.run_wasm(built["grow"], sites=["north"], memory="1MiB", timeout=60)
    message = grew.errors["north"].args[2]
    assert "wasm trap: wasm `unreachable` instruction executed" in message, message
    assert "its memory was 64.00 kiB, capped at 1.00 MiB by --memory (growing past it fails)" in message, message
    assert wasm_fleet.run_wasm(built["grow"], sites=["north"], memory="16MiB", timeout=60)["north"] == 0
    large = wasm_fleet.run_wasm(built["large"], sites=["north"], memory="1MiB", timeout=60)
    assert "needs more memory than the cap of 1.00 MiB (--memory)" in large.errors["north"].args[2], large.errors


def test_a_timeout_stops_a_module_in_an_endless_loop(wasm_fleet, built):
    started = time.monotonic()
    result = wasm_fleet.run_wasm(built["loop"], sites=["south"], timeout=1.5)
    took = time.monotonic() - started
    assert result.errors["south"].args[1] == "timed-out" and took < 15, (result.errors, took)
    # The site stops it at the same deadline: its only thread is free again at once.
    wait_until_running(wasm_fleet, "south", False, 5, "the module still runs 5 s after its deadline")
    assert (
        wasm_fleet.run_wasm(built["scan"], ["count", "ERROR"], sites=["south"], data="logs", timeout=30)["south"] == 0
    )


def test_cancel_stops_a_module_in_an_endless_loop(wasm_fleet, built):
    job = wasm_fleet.submit_wasm(built["loop"], sites=["south"])
    wait_until_running(wasm_fleet, "south", True, 30, "the module never started")
    job.cancel()
    result = job.result(timeout=30)
    assert result.executions["south"].state.value == "cancelled", result.executions
    wait_until_running(wasm_fleet, "south", False, 10, "the module still runs after its job was cancelled")
    assert (
        wasm_fleet.run_wasm(built["scan"], ["count", "ERROR"], sites=["south"], data="logs", timeout=30)["south"] == 0
    )


def test_a_kernel_interrupt_stops_the_module(wasm_fleet, built):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        _, status = run_in_kernel(kc, f"%load_ext jupyter_edge\n%edge connect {wasm_fleet.client.scheduler.address}")
        assert status == "ok"
        msg_id = kc.execute(f"%edge run --wasm {built['loop']} --sites north -o stopped --")
        wait_until_running(wasm_fleet, "north", True, 60, "the module never started")
        km.interrupt_kernel()
        outputs, status = kernel_outputs(kc, msg_id, timeout=60)
        errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
        assert status == "error" and [e["ename"] for e in errors] == ["JobInterrupted"], [
            (e["ename"], e["evalue"]) for e in errors
        ]
        outputs, _ = run_in_kernel(kc, "print(sorted({ex.state.value for ex in stopped.executions.values()}))")
        assert stream_text(outputs).strip() == "['cancelled']", stream_text(outputs)
        wait_until_running(wasm_fleet, "north", False, 10, "the module still runs after the interrupt")
        # The magic, end to end: a module file sent from the kernel, its arguments, --env.
        outputs, status = run_in_kernel(
            kc, f"%edge run --wasm {SCAN_COMMITTED} --data logs --sites north,south -- count ERROR"
        )
        text = stream_text(outputs)
        assert status == "ok" and "[stdout:north] total" in text and "[stdout:south] total" in text, text
        outputs, status = run_in_kernel(
            kc, f"%edge run --wasm {built['probe']} --data logs --sites north --env GREETING=hi --"
        )
        assert status == "ok" and "GREETING=hi" in stream_text(outputs), stream_text(outputs)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_site_without_wasm_never_receives_modules(wasm_fleet, built):
    with pytest.raises(PlacementError, match=r"site 'plain' does not match .*: runs no WebAssembly modules"):
        wasm_fleet.run_wasm(built["scan"], ["count", "ERROR"], sites=["plain"], timeout=30)
    everywhere = wasm_fleet.run_wasm(built["scan"], ["count", "ERROR"], all=True, data="logs", timeout=60)
    assert sorted(everywhere.executions) == ["north", "south", "strict"], everywhere.executions


def test_a_policy_refuses_a_module_by_hash_before_it_runs(wasm_fleet, built):
    refused = wasm_fleet.run_wasm(built["loop"], sites=["strict"], timeout=30)
    message = refused.errors["strict"].args[2]
    loop_hash = hashlib.sha256(built["loop"].read_bytes()).hexdigest()
    assert f"rule wasm: module sha256:{loop_hash} is not among the 1 this site accepts" in message, message
    allowed = wasm_fleet.run_wasm(built["scan"], ["count", "ERROR"], sites=["strict"], data="logs", timeout=30)
    assert allowed["strict"] == 0, allowed.errors
    from jupyter_edge.site.audit import read

    entries = [e for e in read(str(wasm_fleet.root / "audit-strict.jsonl")) if e["kind"] == "wasm"]
    assert [(e["cell_hash"], e["state"], e["refused"]) for e in entries[-2:]] == [
        (loop_hash, "failed", "wasm"),
        (hashlib.sha256(built["scan"].read_bytes()).hexdigest(), "done", None),
    ]


def test_a_module_kept_at_the_site(wasm_fleet):
    result = wasm_fleet.run_wasm("site:scan", ["count", "ERROR"], sites=["north"], data="logs", timeout=30)
    assert result["north"] == 0 and "total" in outputs_text(result, "north"), result.errors
    unknown = wasm_fleet.run_wasm("site:nope", sites=["north"], timeout=30)
    assert "module site:nope: No such file or directory; kept here: scan" in unknown.errors["north"].args[2]
    from jupyter_edge.site.audit import read

    audit = read(str(wasm_fleet.root / "audit-north.jsonl"))
    assert any(e["module"] == "site:scan" and e["state"] == "done" for e in audit), audit[-3:]


@pytest.mark.parametrize(
    "module, options, message",
    [
        (b"(module)", {}, "not a WebAssembly binary: it does not start with \\0asm (WebAssembly text?"),
        ("/nowhere/m.wasm", {}, "cannot read the module /nowhere/m.wasm: No such file or directory"),
        ("site:", {}, "site:NAME names a module kept at the sites"),
        (b"\0asm\1\0\0\0", {"memory": "1KiB"}, "at least 64 KiB"),
        (b"\0asm\1\0\0\0", {"env": {"A=B": "x"}}, "env: names like NAME"),
        (b"\0asm\1\0\0\0", {"args": "count"}, "args must be a list of strings"),
    ],
)
def test_bad_modules_and_options_fail_before_anything_is_sent(wasm_fleet, module, options, message):
    args = options.pop("args", ())
    with pytest.raises(ValueError) as info:
        wasm_fleet.submit_wasm(module, args, all=True, **options)
    assert message in str(info.value), str(info.value)


def test_a_module_over_the_limit_is_refused_here(wasm_fleet, tmp_path):
    import dask

    big = tmp_path / "big.wasm"
    big.write_bytes(b"\0asm" + b"\0" * 2048)
    with (
        dask.config.set({"edge.wasm.module-limit": "1KiB"}),
        pytest.raises(ValueError, match=r"over edge\.wasm\.module-limit"),
    ):
        wasm_fleet.submit_wasm(big, all=True)


def test_the_worker_says_when_wasmtime_is_missing(tmp_path):
    """``--wasm`` where wasmtime cannot be imported: a usage error at once, naming the extra."""
    (tmp_path / "wasmtime.py").write_text("raise ImportError('no wasmtime here')\n")
    out = worker_usage("--name", "x", "--wasm", env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 2 and "pip install 'jupyter-edge[wasm]'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
