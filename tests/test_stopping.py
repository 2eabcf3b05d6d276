"""Cancel and timeout really stop the work at the site, and the site stays usable."""

from __future__ import annotations

import os
import time

import dask.config
import pytest

from jupyter_edge import State

#: How long the stopped work would have run before writing its file.
WOULD_RUN = 6.0


def stubborn_work(marker_dir, seconds=WOULD_RUN):
    """berlin blocks in time.sleep, paris spins in a Python loop; both would
    write a file afterwards, which must never appear."""

    def work(site):
        import time

        if site.name == "berlin":
            time.sleep(seconds)
        else:
            end = time.time() + seconds
            while time.time() < end:
                pass
        with open(os.path.join(marker_dir, site.name), "w") as f:
            f.write("should never be written")
        return "finished"

    return work


def assert_never_written(marker_dir, started):
    time.sleep(max(0.0, started + WOULD_RUN + 1.5 - time.time()))
    assert os.listdir(marker_dir) == [], "the stopped work went on and wrote its file"


def test_timeout_stops_sleep_and_busy_loop(fleet, tmp_path):
    started = time.time()
    res = fleet.run(stubborn_work(str(tmp_path)), where="region=eu", timeout=1.5)
    took = time.time() - started
    assert took < 5, f"a 1.5 s timeout took {took:.1f} s to return"
    assert {s: ex.state for s, ex in res.executions.items()} == {"berlin": State.TIMED_OUT, "paris": State.TIMED_OUT}
    assert len(res) == 0
    assert_never_written(tmp_path, started)
    again = fleet.run(lambda site: site.name, where="region=eu", timeout=30)
    assert dict(again) == {"berlin": "berlin", "paris": "paris"}, "the sites must be ready for more work"


def test_cancel_stops_running_work_and_keeps_finished_results(fleet, tmp_path):
    def work(site):
        import time

        if site.name == "tokyo":
            return "quick"
        time.sleep(WOULD_RUN)
        open(os.path.join(str(tmp_path), site.name), "w").close()

    started = time.time()
    job = fleet.submit(work, sites=["berlin", "paris", "tokyo"])
    deadline = time.time() + 30
    while not any(ex.state == State.RUNNING for ex in fleet.job(job.id).executions):
        assert time.time() < deadline, "nothing started running in 30 s"
        time.sleep(0.05)
    time.sleep(0.5)
    job.cancel()
    res = job.result()
    assert res["tokyo"] == "quick", "a finished result must survive the cancel"
    assert res.executions["berlin"].state == State.CANCELLED
    assert res.executions["paris"].state == State.CANCELLED
    assert_never_written(tmp_path, started)
    record = fleet.job(job.id)
    assert {ex.site: ex.state for ex in record.executions}["berlin"] == State.CANCELLED


def test_code_that_ignores_interrupts_is_killed(fleet, tmp_path):
    def deaf(site):
        import signal
        import time

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(WOULD_RUN)
        open(os.path.join(str(tmp_path), site.name), "w").close()

    started = time.time()
    with dask.config.set({"edge.runner.interrupt-grace": "0.5s"}):
        res = fleet.run(deaf, sites=["tokyo"], timeout=1)
    ex = res.executions["tokyo"]
    assert ex.state == State.TIMED_OUT
    assert_never_written(tmp_path, started)
    assert dict(fleet.run(lambda: "alive", sites=["tokyo"], timeout=30)) == {"tokyo": "alive"}


def test_queued_execution_counts_against_the_timeout(fleet):
    # tokyo runs one execution at a time: the second job waits, then times out.
    first = fleet.submit(lambda: __import__("time").sleep(3), sites=["tokyo"])
    started = time.time()
    res = fleet.run(lambda: "late", sites=["tokyo"], timeout=1)
    assert time.time() - started < 4
    assert res.executions["tokyo"].state == State.TIMED_OUT
    assert first.wait(30)


@pytest.mark.parametrize("timeout", ["soon", -1, 0, True])
def test_bad_timeout(fleet, timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        fleet.submit(lambda: 1, sites=["tokyo"], timeout=timeout)
