"""The server extension's routes, through a real Jupyter server (pytest-jupyter)
with authentication on, against a real fleet."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import tornado.httpclient

from jupyter_edge import __version__

# No asyncio mark: pytest-jupyter runs these coroutines on the server's own loop
# (pytest-asyncio, in strict mode, leaves unmarked ones alone).


@pytest.fixture
def jp_server_config(fleet):
    # allow_unauthenticated_access=False: jupyter_server then warns (an error
    # here, with filterwarnings=error) about any route without an auth rule.
    # (jupyter_server_terminals has such a route of its own: it is left out here.)
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_edge": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
        "JupyterEdge": {"scheduler_address": fleet.address},
    }


async def test_every_route_has_an_authentication_rule(jp_serverapp):
    import warnings

    from jupyter_server.utils import JupyterServerAuthWarning

    from jupyter_edge.server.handlers import setup_handlers

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup_handlers(jp_serverapp.web_app, jp_serverapp.web_app.settings["jupyter_edge_manager"])
    auth = [str(w.message) for w in caught if issubclass(w.category, JupyterServerAuthWarning)]
    assert auth == [], f"routes without an authentication rule: {auth}"


async def get(jp_fetch, *path, **params):
    response = await jp_fetch("jupyter-edge", "api", *path, params=params or None)
    return json.loads(response.body)


async def test_fleet_and_datasets(jp_fetch, fleet):
    model = await get(jp_fetch, "fleet")
    assert model["connection"]["status"] == "connected"
    assert model["connection"]["address"] == fleet.address
    sites = {s["name"]: s for s in model["sites"]}
    assert set(sites) == {"berlin", "paris", "boston", "tokyo"}
    assert sites["boston"]["gpus"][0]["index"] == 0 and len(sites["boston"]["gpus"]) == 2
    assert sites["berlin"]["datasets"]["sensors"]["files"] == 1 and sites["berlin"]["last_seen"]
    # The server's own versions, for the sidebar to flag sites that differ: here they match.
    assert model["versions"]["jupyter-edge"] == sites["berlin"]["versions"]["jupyter-edge"] == __version__
    assert model["versions"]["distributed"] == sites["berlin"]["versions"]["distributed"]
    datasets = {d["name"]: d for d in (await get(jp_fetch, "datasets"))["datasets"]}
    assert datasets["weather"]["shards"] == {"eu": ["berlin", "paris"], "us": ["boston"]}


async def test_jobs_and_one_job(jp_fetch, fleet):
    res = fleet.run(lambda: 1, sites=["paris"])
    jobs = (await get(jp_fetch, "jobs", limit="5"))["jobs"]
    assert res.job in [j["id"] for j in jobs]
    job = (await get(jp_fetch, "jobs", res.job))["job"]
    assert job["state"] == "done" and [e["site"] for e in job["executions"]] == ["paris"]


async def test_callers_mistakes_are_4xx_with_a_message(jp_fetch):
    with pytest.raises(tornado.httpclient.HTTPClientError) as missing:
        await jp_fetch("jupyter-edge", "api", "jobs", "abcdef12")
    assert missing.value.code == 404 and b"no job 'abcdef12'" in missing.value.response.body
    with pytest.raises(tornado.httpclient.HTTPClientError) as bad_limit:
        await jp_fetch("jupyter-edge", "api", "jobs", params={"limit": "lots"})
    assert bad_limit.value.code == 400
    with pytest.raises(tornado.httpclient.HTTPClientError) as bad_body:
        await jp_fetch("jupyter-edge", "api", "connection", method="PUT", body=json.dumps({"addr": 1}))
    assert bad_body.value.code == 400 and b"tcp://host:port" in bad_body.value.response.body


async def test_routes_need_authentication(jp_fetch, jp_http_port, jp_base_url):
    await get(jp_fetch, "fleet")  # the server is up
    client = tornado.httpclient.AsyncHTTPClient()
    for path in ("fleet", "datasets", "jobs", "connection"):
        response = await client.fetch(
            f"http://localhost:{jp_http_port}{jp_base_url}jupyter-edge/api/{path}", raise_error=False
        )
        assert response.code == 403, f"{path} answered {response.code} without a token"
    for method, path, body in (("POST", "jobs/abcdef12/cancel", ""), ("PUT", "connection", '{"address": "tcp://x:1"}')):
        response = await client.fetch(
            f"http://localhost:{jp_http_port}{jp_base_url}jupyter-edge/api/{path}",
            method=method,
            body=body,
            raise_error=False,
        )
        assert response.code == 403, f"{method} {path} answered {response.code} without a token"


async def test_writes_from_a_browser_session_need_the_xsrf_token(jp_fetch, jp_http_port, jp_base_url, jp_serverapp):
    """A cookie session (how the sidebar talks) must send the XSRF token on writes."""
    await get(jp_fetch, "fleet")
    client = tornado.httpclient.AsyncHTTPClient()
    base = f"http://localhost:{jp_http_port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token
    login = await client.fetch(f"{base}tree?token={token}", follow_redirects=False, raise_error=False)
    cookies = {}
    for header in login.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        cookies[name] = rest.split(";")[0]
    assert "_xsrf" in cookies and len(cookies) >= 2, f"no session from the token login: {cookies}"
    jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
    url = f"{base}jupyter-edge/api/jobs/abcdef12/cancel"
    bare = await client.fetch(url, method="POST", body="", headers={"Cookie": jar}, raise_error=False)
    assert bare.code == 403 and b"_xsrf" in bare.body, (bare.code, bare.body[:200])
    signed = await client.fetch(
        url, method="POST", body="", raise_error=False, headers={"Cookie": jar, "X-XSRFToken": cookies["_xsrf"]}
    )
    assert signed.code == 404, f"with its XSRF token the session reaches the route: {signed.code}"


async def test_an_unreachable_scheduler_is_a_state_not_an_error(jp_fetch, fleet):
    started = time.monotonic()
    changed = json.loads(
        (
            await jp_fetch(
                "jupyter-edge", "api", "connection", method="PUT", body=json.dumps({"address": "tcp://127.0.0.1:9"})
            )
        ).body
    )
    model = await get(jp_fetch, "fleet")
    assert time.monotonic() - started < 30, "an unreachable scheduler must answer in bounded time"
    assert changed["status"] == "unreachable" and changed["error"]
    assert model["connection"]["status"] == "unreachable" and model["sites"] == []
    back = json.loads(
        (
            await jp_fetch(
                "jupyter-edge", "api", "connection", method="PUT", body=json.dumps({"address": fleet.address})
            )
        ).body
    )
    assert back["status"] == "connected"


async def test_cancel_a_job_another_client_started(jp_fetch, fleet):
    job = fleet.submit(lambda: __import__("time").sleep(30), sites=["tokyo"], timeout=60)
    deadline = time.monotonic() + 30
    while fleet.job(job.id).executions[0].state != "running":
        assert time.monotonic() < deadline, "the job never started running"
        await asyncio.sleep(0.05)  # the server runs on this loop
    answer = json.loads((await jp_fetch("jupyter-edge", "api", "jobs", job.id, "cancel", method="POST", body="")).body)
    assert answer["cancelled"] == [f"{job.id}.0"]
    assert job.wait(20), "the job's own client did not see the cancel"
    assert job.executions[0].state == "cancelled"
    assert "cancelled by" in fleet.job(job.id).executions[0].error
    with pytest.raises(tornado.httpclient.HTTPClientError) as missing:
        await jp_fetch("jupyter-edge", "api", "jobs", "abcdef12", "cancel", method="POST", body="")
    assert missing.value.code == 404


async def test_cancel_of_another_owners_job_is_403(jp_fetch, fleet, ipshell):
    import dask.config
    from distributed import Client
    from IPython.core.error import UsageError

    from jupyter_edge import Fleet

    with dask.config.set({"edge.owner": "someone-else"}):
        other = Fleet(Client(fleet.address, set_as_default=False))
    try:
        job = other.submit(lambda: __import__("time").sleep(30), sites=["berlin"], timeout=60)
        other.job(job.id)  # registered (it trails the submit by milliseconds)
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await jp_fetch("jupyter-edge", "api", "jobs", job.id, "cancel", method="POST", body="")
        assert refused.value.code == 403
        assert f"job {job.id} belongs to someone-else".encode() in refused.value.response.body
        ipshell.run_line_magic("load_ext", "jupyter_edge")
        ipshell.run_line_magic("edge", f"connect {fleet.address}")
        with pytest.raises(UsageError, match=f"cannot cancel: job {job.id} belongs to someone-else"):
            ipshell.run_line_magic("edge", f"cancel {job.id}")
        ipshell.run_line_magic("edge", "disconnect")
        assert other.cancel_job(job.id) == [f"{job.id}.0"]
    finally:
        other.close()


async def test_a_kernels_fleet_is_announced_for_the_sidebar(jp_fetch, fleet, ipshell, monkeypatch, tmp_path):
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    shell = ipshell
    shell.run_line_magic("load_ext", "jupyter_edge")
    with capture_output():
        shell.run_line_magic("edge", f"connect {fleet.address}")
    try:
        listed = json.loads((await jp_fetch("jupyter-edge", "api", "connection")).body)["announced"]
        assert [(e["address"], e["embedded"]) for e in listed] == [(fleet.address, False)]
    finally:
        shell.run_line_magic("edge", "disconnect")
    listed = json.loads((await jp_fetch("jupyter-edge", "api", "connection")).body)["announced"]
    assert listed == [], "a disconnected kernel withdraws its announcement"
    (tmp_path / "jupyter-edge-fleet-999999999.json").write_text(json.dumps({"address": "tcp://x:1", "pid": 999999999}))
    listed = json.loads((await jp_fetch("jupyter-edge", "api", "connection")).body)["announced"]
    assert listed == [] and not (tmp_path / "jupyter-edge-fleet-999999999.json").exists(), (
        "a dead process's announcement is dropped"
    )
