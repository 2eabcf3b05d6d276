"""Site policy, enforced at the site, and the site's audit log: a refused
dataset and owner, cells refused where only images may run, a result over the
cap, images kept at the site; each refusal naming its rule with nothing run,
and every execution in each site's log with its bytes."""

from __future__ import annotations

import subprocess
import sys

import dask.config
import pytest
from conftest import worker_usage
from distributed import Client

from jupyter_edge import Fleet
from jupyter_edge.local import SiteSpec, local_cluster
from jupyter_edge.site.audit import read
from jupyter_edge.site.dataset import DatasetDeclaration
from jupyter_edge.site.policy import Policy, PolicyError, Refused


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """berlin: sensors only for ana, results up to 1 kB, no images out;
    paris: no arbitrary cells (container images only)."""
    root = tmp_path_factory.mktemp("guarded")
    sites = []
    for name, rules in (
        ("berlin", {"datasets": {"sensors": ["ana"]}, "result-limit": "1kB", "output-images": False}),
        ("paris", {"cells": False, "images": ["edge-python:3.11"]}),
    ):
        folder = root / name / "sensors"
        folder.mkdir(parents=True)
        (folder / "readings.csv").write_text("value\n1\n2\n")
        sites.append(
            SiteSpec(
                name,
                {"region": "eu"},
                datasets=[DatasetDeclaration("sensors", str(folder), name)],
                policy=Policy.from_dict(rules),
                audit_log=str(root / f"audit-{name}.jsonl"),
            )
        )
    cluster = local_cluster(sites)
    clients = {}
    for owner in ("ana", "eve"):
        with dask.config.set({"edge.owner": owner}):
            clients[owner] = Fleet(Client(cluster, set_as_default=False))
    clients["ana"].wait_for_sites(2, timeout=60)
    yield {"root": root, **clients}
    for fleet in clients.values():
        fleet.close()
    cluster.close()


def test_a_dataset_is_refused_to_an_owner_the_policy_does_not_name(guarded, tmp_path):
    marker = tmp_path / "ran"
    cell = f"open({str(marker)!r}, 'w').write('x')\nlen(dataset.files())"
    refused = guarded["eve"].run_cell(cell, data="sensors", sites=["berlin"], timeout=60)
    error = refused.errors["berlin"].args[2]
    assert "rule datasets.sensors: dataset 'sensors' is for ana; this job's owner is 'eve'" in error, error
    assert not marker.exists(), "the refused cell ran"
    allowed = guarded["ana"].run_cell("len(dataset.files())", data="sensors", sites=["berlin"], timeout=60)
    assert dict(allowed) == {"berlin": 1}


def test_cells_are_refused_where_only_images_may_run(guarded):
    refused = guarded["ana"].run_cell("1 + 1", sites=["paris"], timeout=60)
    assert (
        "rule cells: this site runs no arbitrary cells, only container images (edge-python:3.11)"
        in refused.errors["paris"].args[2]
    )
    function = guarded["ana"].run(lambda: 1, sites=["paris"], timeout=60)
    assert "rule cells" in function.errors["paris"].args[2]


def test_a_result_over_the_sites_cap_is_not_sent(guarded):
    big = guarded["ana"].run_cell("b'x' * 5000", sites=["berlin"], timeout=60)
    error = big.errors["berlin"].args[2]
    assert "over" in error and "1,000" in error, error
    assert big.executions["berlin"].bytes_returned == 0
    small = guarded["ana"].run_cell("b'x' * 100", sites=["berlin"], timeout=60)
    assert small["berlin"] == b"x" * 100


def test_images_stay_at_the_site_when_the_policy_says_so(guarded):
    cell = "class Picture:\n    def _repr_png_(self): return b'\\x89PNG\\r\\n\\x1a\\n' + b'0' * 64\ndisplay(Picture())"
    result = guarded["ana"].run_cell(cell, sites=["berlin"], timeout=60)
    displays = [o for o in result.outputs["berlin"] if o.get("name") == "display"]
    assert displays, result.outputs["berlin"]
    assert all(not any(k.startswith("image/") for k in o["data"]) for o in displays), displays
    assert "stayed at the site" in str(displays)


def test_every_execution_is_in_its_sites_audit_log(guarded):
    jobs = [
        guarded["ana"].run_cell("21 * 2", sites=["berlin"], timeout=60),
        guarded["eve"].run_cell("len(dataset.files())", data="sensors", sites=["berlin"], timeout=60),
        guarded["ana"].run_cell("1", sites=["paris"], timeout=60),
    ]
    for result in jobs:
        for site, execution in result.executions.items():
            entries = [e for e in read(guarded["root"] / f"audit-{site}.jsonl") if e["job"] == result.job]
            assert len(entries) == 1, f"job {result.job} at {site}: {entries}"
            entry = entries[0]
            assert entry["execution"] == execution.id and entry["state"] == execution.state.value
            assert entry["bytes_returned"] == execution.bytes_returned
            assert len(entry["cell_hash"]) == 64 and entry["kind"] == "cell"
    assert read(guarded["root"] / "audit-berlin.jsonl")[-2]["refused"] is None
    eve = next(e for e in read(guarded["root"] / "audit-berlin.jsonl") if e["job"] == jobs[1].job)
    assert eve["owner"] == "eve" and eve["refused"] == "datasets.sensors" and eve["dataset"] == "sensors"
    table = subprocess.run(
        [sys.executable, "-m", "jupyter_edge.cli", "audit", str(guarded["root"] / "audit-berlin.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0 and jobs[1].job in table.stdout and "datasets.sensors" in table.stdout, table.stdout


def test_a_bad_policy_is_a_clear_error(tmp_path):
    for rules, expected in (
        ({"datasets": ["ana"]}, "datasets: a mapping"),
        ({"cels": False}, "unknown policy rule"),
        ({"result-limit": "lots"}, "result-limit: a size"),
        ({"cells": "no"}, "cells: true or false"),
        ({"wasm": ["9f86d081"]}, "wasm: true, false, or a list of module hashes"),
        ({"wasm": "yes"}, "wasm: true, false, or a list of module hashes"),
    ):
        with pytest.raises(PolicyError, match=expected):
            Policy.from_dict(rules)
    bad = tmp_path / "policy.yaml"
    bad.write_text("cels: false\n")
    done = worker_usage("--name", "x", "--policy", str(bad))
    assert done.returncode == 2 and "unknown policy rule(s) cels" in done.stderr, done.stderr


def test_the_wasm_rule():
    """Any module by default; none with ``wasm: false``; else only the hashes listed.
    The ``cells`` rule does not govern modules: they are not arbitrary Python."""
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    Policy().check("ana", None, "wasm", module=digest)
    Policy.from_dict({"cells": False}).check("ana", None, "wasm", module=digest)
    with pytest.raises(Refused, match="rule wasm: this site runs no WebAssembly modules"):
        Policy.from_dict({"wasm": False}).check("ana", None, "wasm", module=digest)
    listed = Policy.from_dict({"wasm": [f"sha256:{digest.upper()}"]})
    listed.check("ana", None, "wasm", module=digest)
    with pytest.raises(Refused, match=f"rule wasm: module sha256:{'0' * 64} is not among the 1 this site accepts"):
        listed.check("ana", None, "wasm", module="0" * 64)
