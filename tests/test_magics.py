"""%edge and %%edge through a real IPython shell, against a real fleet."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_edge import JobResult, State
from jupyter_edge.magics.display import EdgeCellError


@pytest.fixture(scope="module")
def ip(edge_shell):
    return edge_shell


def cell(ip, line, source):
    with capture_output() as out:
        ip.run_cell_magic("edge", line, source)
    return out


def values(out) -> list[str]:
    return [o.data["text/plain"] for o in out.outputs]


def test_usage_and_bad_input_are_usage_errors(ip):
    with capture_output() as out:
        ip.run_line_magic("edge", "")
    assert "%edge connect" in out.stdout and "%%edge --data NAME" in out.stdout
    with pytest.raises(UsageError, match="no command 'flet'"):
        ip.run_line_magic("edge", "flet")
    with pytest.raises(UsageError, match="names no target: add --data NAME"):
        ip.run_cell_magic("edge", "", "1")
    with pytest.raises(UsageError, match="bad selector 'region='"):
        ip.run_cell_magic("edge", "--where region=", "1")
    with pytest.raises(UsageError, match="unrecognized arguments: --dta"):
        ip.run_cell_magic("edge", "--dta sensors", "1")
    with pytest.raises(UsageError, match="did you mean 'sensors'"):
        ip.run_cell_magic("edge", "--data sensros", "1")
    with pytest.raises(UsageError, match=r"invalid syntax|was never closed"):
        ip.run_cell_magic("edge", "--all", "print((")


def test_outputs_are_labelled_and_values_shown(ip):
    out = cell(
        ip,
        "--data sensors --where region=eu -o res",
        "df = dataset.read_parquet()\nprint('rows', len(df))\nfloat(df.value.max())",
    )
    assert "[stdout:berlin] rows 50\n" in out.stdout and "[stdout:paris] rows 50\n" in out.stdout
    assert values(out) == ["Out[berlin]: 49.0", "Out[paris]: 49.0"]
    assert out.outputs[0].metadata == {"jupyter_edge": {"site": "berlin"}}
    assert "edge job " in out.stdout and "2 ok" in out.stdout and "stayed at the sites" in out.stdout
    res = ip.user_ns["res"]
    assert isinstance(res, JobResult) and dict(res) == {"berlin": 49.0, "paris": 49.0}


def test_the_magics_fleet_for_the_python_api(ip, fleet):
    from jupyter_edge.magics import connected_fleet

    mine = connected_fleet(ip)
    assert mine.address == fleet.address
    assert dict(mine.run(lambda site: site.name, sites=["paris"])) == {"paris": "paris"}


def test_quoted_options_are_read_as_a_shell_would(ip):
    # Quotes group words and are not part of the value: a selector with spaces works.
    out = cell(ip, '--where "region in (us, ap)" --all -o res', "site.name")
    assert sorted(ip.user_ns["res"]) == ["boston", "tokyo"], out.stdout
    out = cell(ip, "--where 'region=eu' --all -o res", "site.name")
    assert sorted(ip.user_ns["res"]) == ["berlin", "paris"], out.stdout
    with pytest.raises(UsageError, match="cannot read the options: No closing quotation"):
        ip.run_cell_magic("edge", '--where "region=eu', "1")


def test_names_are_sent_reserved_ones_never(ip):
    ip.user_ns.update(threshold=40, site="not the site", unused=object())
    out = cell(ip, "--sites tokyo", "(site.name, threshold + 2)")
    assert values(out) == ["Out[tokyo]: ('tokyo', 42)"]
    ip.user_ns["big"] = b"x" * 2_000_000
    with pytest.raises(UsageError, match=r"over edge.push-limit .*big \(2,0"):
        ip.run_cell_magic("edge", "--sites tokyo", "len(big)")
    out = cell(ip, "--sites tokyo --push threshold", "threshold")
    assert values(out) == ["Out[tokyo]: 40"]
    with pytest.raises(EdgeCellError):
        cell(ip, "--sites tokyo --no-push --fresh", "threshold")


def test_state_is_kept_per_notebook_until_fresh_or_reset(ip):
    cell(ip, "--sites paris", "counter = 1")
    out = cell(ip, "--sites paris", "counter += 1\ncounter")
    assert values(out) == ["Out[paris]: 2"]
    with pytest.raises(EdgeCellError) as fresh:
        cell(ip, "--sites paris --fresh", "counter")
    assert "NameError" in str(fresh.value)
    assert values(cell(ip, "--sites paris", "counter")) == ["Out[paris]: 2"], "--fresh must not clear the session"
    with capture_output() as out:
        ip.run_line_magic("edge", "reset")
    assert "forgot this notebook's names" in out.stdout
    with pytest.raises(EdgeCellError, match="NameError"):
        cell(ip, "--sites paris", "counter")


def test_failures_are_shown_then_raised_and_results_kept(ip):
    source = "if site.name == 'paris':\n    raise ValueError('paris is down')\nsite.name.upper()"
    failed = pytest.raises(EdgeCellError, match=r"\[paris\] failed: ValueError: paris is down")
    with capture_output() as out, failed:
        ip.run_cell_magic("edge", "--where region=eu -o partial", source)
    assert "[failed:paris] Traceback" in out.stderr and "raise ValueError('paris is down')" in out.stderr
    assert values(out) == ["Out[berlin]: 'BERLIN'"]
    assert "1 ok, 1 failed" in out.stdout
    assert dict(ip.user_ns["partial"]) == {"berlin": "BERLIN"}


def test_timeout_from_the_cell_and_from_config(ip, tmp_path):
    import time

    marker = tmp_path / "written-after-the-sleep"
    ip.user_ns["marker"] = str(marker)
    started = time.monotonic()
    with pytest.raises(EdgeCellError, match="timed-out"):
        cell(
            ip,
            "--sites tokyo,paris --timeout 1 -o slow",
            "import time\ntime.sleep(6)\nopen(marker + site.name, 'w').close()",
        )
    assert time.monotonic() - started < 5, "a 1 s timeout must end the cell in a few seconds"
    assert {s: ex.state for s, ex in ip.user_ns["slow"].executions.items()} == {
        "tokyo": State.TIMED_OUT,
        "paris": State.TIMED_OUT,
    }
    time.sleep(max(0.0, started + 7.5 - time.monotonic()))
    assert not list(tmp_path.glob("written-after-the-sleep*")), "the stopped cell went on and wrote its file"
    magics = ip.magics_manager.registry["EdgeMagics"]
    before = dict(magics.defaults)
    with capture_output():
        ip.run_line_magic("edge", "config --timeout 1")
    try:
        assert magics.defaults["timeout"] == 1
        with pytest.raises(EdgeCellError, match="timed-out"):
            cell(ip, "--sites tokyo", "import time\ntime.sleep(20)")
    finally:
        # What it was (no timeout), not some other value: later tests see this shell's defaults.
        magics.defaults.clear()
        magics.defaults.update(before)
    assert before["timeout"] is None, f"the shell started this test with a cell timeout: {before}"


def test_jobs_show_and_noblock(ip):
    cell(ip, "--sites berlin -o first", "print('again')\n7")
    job_id = ip.user_ns["first"].job
    with capture_output() as out:
        ip.run_line_magic("edge", "jobs")
    assert job_id in out.outputs[0].data["text/plain"]
    with capture_output() as out:
        ip.run_line_magic("edge", f"show {job_id}")
    assert "[stdout:berlin] again" in out.stdout and values(out) == ["Out[berlin]: 7"]
    out = cell(ip, "--sites berlin --noblock -o pending", "8")
    job = ip.user_ns["pending"]
    assert f"edge job {job.id} started" in out.stdout
    assert job.wait(60) and dict(job.result()) == {"berlin": 8}
    with pytest.raises(UsageError, match="no job 'nosuchjob'"):
        ip.run_line_magic("edge", "cancel nosuchjob")


def test_rich_output_and_figures_come_back_marked_with_their_site(ip):
    pytest.importorskip("matplotlib")
    source = (
        "class Badge:\n"
        "    def _repr_html_(self):\n"
        "        return '<b>' + site.name + '</b>'\n"
        "print('before')\n"
        "display(Badge())\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "print('after')\n"
    )
    out = cell(ip, "--sites berlin -o rich", source)
    kinds = [sorted(o.data) for o in out.outputs]
    assert kinds == [["text/html", "text/plain"], ["image/png", "text/plain"]], kinds
    assert out.outputs[0].data["text/html"] == "<b>berlin</b>"
    assert all(o.metadata == {"jupyter_edge": {"site": "berlin"}} for o in out.outputs)
    import base64

    assert base64.b64decode(out.outputs[1].data["image/png"]).startswith(b"\x89PNG")
    assert out.stdout.index("[stdout:berlin] before") < out.stdout.index("[stdout:berlin] after")
    names = [o["name"] for o in ip.user_ns["rich"].outputs["berlin"]]
    assert names == ["stdout", "display", "stdout", "display"], names


def test_output_of_c_code_and_threads_is_labelled(ip):
    source = (
        "import os, threading\n"
        "os.write(1, b'from C level\\n')\n"
        "t = threading.Thread(target=lambda: print('from a thread'))\n"
        "t.start(); t.join()\n"
    )
    out = cell(ip, "--sites berlin,paris", source)
    for site in ("berlin", "paris"):
        assert f"[stdout:{site}] from C level\n" in out.stdout
        assert f"[stdout:{site}] from a thread\n" in out.stdout


def test_fleet_table_flags_versions_that_differ_from_this_kernel(ip, fleet):
    from jupyter_edge.magics.display import sites_view

    catalog = fleet.catalog()
    catalog.sites["paris"].versions["distributed"] = "1999.1.0"
    view = sites_view(catalog)
    html = view._repr_html_()
    assert "distributed 1999.1.0 (here " in repr(view) and "! paris" in repr(view)
    assert html.count("var(--jp-warn-color3") == 1, "only the site that differs is flagged"
    with capture_output() as out:
        ip.run_line_magic("edge", "fleet")
    shown = out.outputs[0].data["text/plain"]
    assert all(name in shown for name in ("berlin", "paris", "boston", "tokyo")) and "!" not in shown
    with capture_output() as out:
        ip.run_line_magic("edge", "datasets")
    assert "weather" in out.outputs[0].data["text/plain"] and "eu: berlin,paris" in out.outputs[0].data["text/plain"]


def test_fleet_table_shows_each_sites_round_trip(ip, fleet):
    import re
    import time

    deadline = time.monotonic() + 30
    while any(site.rtt is None for site in fleet.sites()):  # known after each site's first heartbeat
        assert time.monotonic() < deadline, "no round trip reported within 30 s"
        time.sleep(0.5)
    with capture_output() as out:
        ip.run_line_magic("edge", "fleet")
    rows = [line for line in out.outputs[0].data["text/plain"].splitlines() if line.split()[:1] == ["berlin"]]
    assert "RTT" in out.outputs[0].data["text/plain"] and rows and re.search(r"\b\d+ ms\b", rows[0]), rows
    from jupyter_edge.magics.display import sites_view

    assert "<th>round trip</th>" in sites_view(fleet.catalog())._repr_html_()


def test_queue_timeout_option_and_default(ip):
    out = cell(ip, "--sites berlin --queue-timeout 30s", "site.name")
    assert values(out) == ["Out[berlin]: 'berlin'"]
    with pytest.raises(UsageError, match="--queue-timeout: invalid duration value: 'soon'"):
        ip.run_cell_magic("edge", "--sites berlin --queue-timeout soon", "1")
    magics = ip.magics_manager.registry["EdgeMagics"]
    before = dict(magics.defaults)
    try:
        with capture_output() as said:
            ip.run_line_magic("edge", "config --queue-timeout 2m")
        assert magics.defaults["queue_timeout"] == 120 and "queue_timeout=120" in said.stdout
    finally:
        magics.defaults.clear()
        magics.defaults.update(before)
