"""Live output in the cell that asked: every line whole and labelled with its
site, however the sites' batches interleave (a pure test of the splitting, then
eight real sites printing a thousand lines each at once)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from distributed import Client
from IPython.utils.capture import capture_output

from jupyter_edge import Fleet
from jupyter_edge.local import SiteSpec, local_cluster
from jupyter_edge.magics.live import LiveOutput

LINE = re.compile(r"^\[stdout:(site-\d\d)\] edge-line (\d+) payload-0123456789abcdef$")


def test_a_sites_unfinished_line_never_takes_another_sites_text(capsys):
    live = LiveOutput(None)
    live.write("site-05", "stdout", "edge-line 599 payload\nedge-line 600")  # the batch ends mid-line
    live.write("site-06", "stdout", "edge-line 0 payload\n")
    live.write("site-05", "stdout", " payload\n")
    live.write("site-06", "stderr", "no newline at the end")
    live.write("site-05", "stdout", "edge-line 601")
    assert capsys.readouterr().out == (
        "[stdout:site-05] edge-line 599 payload\n"
        "[stdout:site-06] edge-line 0 payload\n"
        "[stdout:site-05] edge-line 600 payload\n"
    )
    live.finish(_empty_result())
    captured = capsys.readouterr()
    assert captured.out == "[stdout:site-05] edge-line 601\n", "the job's end shows a line held for its newline"
    assert captured.err == "[stderr:site-06] no newline at the end\n"


def _empty_result():
    from jupyter_edge.result import JobResult

    return JobResult("job", [], {}, set())


@pytest.fixture(scope="module")
def eight_sites():
    cluster = local_cluster([SiteSpec(f"site-{i:02d}", {"fleet": "eight"}) for i in range(8)])
    fleet = Fleet(Client(cluster, set_as_default=False))
    fleet.wait_for_sites(8)
    yield fleet
    fleet.close()
    cluster.close()


@pytest.mark.timeout(240)
def test_a_thousand_lines_from_each_of_eight_sites_arrive_whole(eight_sites, ipshell):
    ipshell.run_line_magic("load_ext", "jupyter_edge")
    with capture_output():
        ipshell.run_line_magic("edge", f"connect {eight_sites.address}")
    try:
        with capture_output() as out:
            ipshell.run_cell_magic(
                "edge",
                "--all --timeout 180",
                "for i in range(1000):\n    print('edge-line', i, 'payload-0123456789abcdef')",
            )
    finally:
        with capture_output():
            ipshell.run_line_magic("edge", "disconnect")
    seen: dict[str, list[int]] = defaultdict(list)
    spliced = []
    for line in out.stdout.splitlines():
        if line.startswith("[stdout:"):
            match = LINE.match(line)
            if match is None:
                spliced.append(line)
            else:
                seen[match.group(1)].append(int(match.group(2)))
    assert not spliced, f"{len(spliced)} line(s) were not whole and labelled, e.g. {spliced[:3]}"
    assert sorted(seen) == [f"site-{i:02d}" for i in range(8)], f"output came from {sorted(seen)}"
    for site, numbers in seen.items():
        assert numbers == list(range(1000)), f"{site}: expected lines 0..999 in order, got {len(numbers)} lines"
