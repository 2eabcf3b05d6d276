"""End to end in a real kernel: a notebook run by nbclient against a fleet of
CLI processes; the assertions read the outputs as saved in the notebook."""

from __future__ import annotations

import base64
import time

import nbformat
import pytest
from conftest import kernel_outputs, run_in_kernel, stream_text, write_sensors
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e


def notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for source, tags in cells:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)}))
    return nb


def streams(cell, name="stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_notebook_outputs_are_labelled_rich_and_in_the_cell_that_asked(cli_fleet, tmp_path, monkeypatch):
    fleet_procs = cli_fleet()
    for name, region in (("berlin", "eu"), ("paris", "eu"), ("boston", "us")):
        folder = write_sensors(tmp_path / name / "sensors", name)
        fleet_procs.add_site(name, "--label", f"region={region}", "--dataset", f"sensors={folder}")
    fleet_procs.connect(3).close()
    address = open(fleet_procs.scheduler_file).read()
    import json

    monkeypatch.setenv("JUPYTER_EDGE_SCHEDULER", json.loads(address)["address"])
    nb = notebook(
        ("%load_ext jupyter_edge\n%edge connect", ()),
        (
            "%%edge --data sensors -o res\nframe = dataset.read_parquet()\nprint('rows at', site.name, len(frame))\n"
            "frame.head(2)",
            (),
        ),
        ("%%edge --sites boston\nimport matplotlib.pyplot as plt\nplt.bar([1, 2], [3, 4])", ()),
        (
            "%%edge --where region=eu\nif site.name == 'paris':\n    raise ValueError('paris sensor bus down')\n"
            "site.name",
            ("raises-exception",),
        ),
        ("%%edge --sites berlin --noblock -o later\nimport time\ntime.sleep(2)\nprint('late line from berlin')", ()),
        ("import time\ntime.sleep(5)\nprint('the next cell')", ()),
        ("sorted(res.to_frame().site.unique())", ()),
    )
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False).execute()
    connect, rich, figure, failing, noblock, nextcell, frame = nb.cells

    assert "connected to tcp://" in streams(connect) and "3 site(s)" in streams(connect)

    text = streams(rich)
    for site in ("berlin", "paris", "boston"):
        assert f"[stdout:{site}] rows at {site} 50" in text
    html = [o for o in rich.outputs if o.output_type == "display_data" and "jupyter_edge" in o.metadata]
    assert len(html) == 3 and all("<table" in o.data["text/html"] for o in html)
    summary = [o for o in rich.outputs if o.output_type == "display_data" and "jupyter_edge" not in o.metadata]
    assert len(summary) == 1 and "edge job" in summary[0].data["text/html"], summary
    assert summary[0].data["text/html"].count(">done<") == 3, "the progress view ends as a static summary"
    for cell in nb.cells:
        for output in cell.outputs:
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}), (
                "a saved notebook must hold no dead widget"
            )
    assert sorted(o.metadata["jupyter_edge"]["site"] for o in html) == ["berlin", "boston", "paris"]
    assert "3 ok" in text and "stayed at the sites" in text

    png = [o for o in figure.outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(png) == 1 and base64.b64decode(png[0].data["image/png"]).startswith(b"\x89PNG")

    errors = [o for o in failing.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "EdgeCellError"
    assert "[paris] failed: ValueError: paris sensor bus down" in "\n".join(errors[0].traceback)
    assert "paris sensor bus down" in streams(failing, "stderr")
    assert any("Out[berlin]: 'berlin'" in o.get("data", {}).get("text/plain", "") for o in failing.outputs)
    assert "1 ok, 1 failed" in streams(failing)

    shown = "".join(o.data.get("text/plain", "") for o in noblock.outputs if o.output_type == "display_data")
    assert "[stdout:berlin] late line from berlin" in shown, (
        "a --noblock job's late output must land in the cell that started it"
    )
    assert "late line" not in str(nextcell.outputs) and "the next cell" in streams(nextcell)
    assert frame.outputs[0].data["text/plain"] == "['berlin', 'boston', 'paris']"


def test_an_embedded_demo_keeps_dask_and_s3_logs_out_of_the_cell():
    """``%edge connect --demo`` starts a fleet inside the kernel: the cell says it
    connected, without a line of the scheduler's, sites' or S3 server's logging."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        outputs, status = run_in_kernel(kc, "%load_ext jupyter_edge\n%edge connect --demo")
        assert status == "ok" and "site(s)" in stream_text(outputs), outputs
        logged = [
            line
            for line in stream_text(outputs, "stderr").splitlines()
            if " - INFO - " in line or ' HTTP/1.1" ' in line
        ]
        assert not logged, f"expected no log lines in the cell; it shows {len(logged)}, e.g. {logged[:3]}"
        outputs, status = run_in_kernel(kc, "%%edge --data archive\nprint(sorted(dataset.files()))")
        assert status == "ok" and "2024.csv" in stream_text(outputs), "the embedded demo's S3 dataset is unreadable"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_kernel_interrupt_stops_every_site_and_the_next_cell_runs(tmp_path):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        _, status = run_in_kernel(kc, "%load_ext jupyter_edge\n%edge connect --demo")
        assert status == "ok"
        run_in_kernel(kc, "%%edge --where region=eu\nkept = site.name")
        marker = tmp_path / "after-the-loop"
        msg_id = kc.execute(
            f"%%edge --where region=eu -o stopped\nwhile True:\n    pass\nopen({str(marker)!r} + site.name, 'w')"
        )
        deadline = time.monotonic() + 30
        while True:  # wait until the cell is running at the sites
            msg = kc.get_iopub_msg(timeout=30)
            if (
                msg["msg_type"] == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "busy"
            ):
                break
            assert time.monotonic() < deadline
        time.sleep(2)
        km.interrupt_kernel()
        outputs, status = kernel_outputs(kc, msg_id, timeout=30)
        assert status == "error"
        said = stream_text(outputs)
        assert "2 cancelled" in said and "names there are kept" in said, said
        assert any(m["msg_type"] == "error" and m["content"]["ename"] == "JobInterrupted" for m in outputs)

        outputs, status = run_in_kernel(kc, "print({s: ex.state.value for s, ex in stopped.executions.items()})")
        assert "'berlin': 'cancelled'" in stream_text(outputs) and "'paris': 'cancelled'" in stream_text(outputs)
        outputs, status = run_in_kernel(kc, "%%edge --where region=eu\nprint('still', kept)")
        assert status == "ok"
        said = stream_text(outputs)
        assert "[stdout:berlin] still berlin" in said and "[stdout:paris] still paris" in said
        assert not list(tmp_path.glob("after-the-loop*")), "the loop went on after the interrupt"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
