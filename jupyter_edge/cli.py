"""``jupyter-edge``: scheduler, worker (a site), status, demo.

Shaped like Dask's own ``dask scheduler``/``dask worker`` (click, the same flag
names where they mean the same thing); ``jupyter edge ...`` works too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys

import click
import dask.config

from . import config
from ._version import __version__
from .site.gpu import VENDORS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jupyter-edge")
def main() -> None:
    """Run notebook code where the data lives: a fleet of Dask edge sites."""


def tls_options(fn):
    """Dask's TLS flags, and ``--tls-dir`` for a folder made by ``certs create``."""
    for option in reversed(
        [
            click.option("--tls-ca-file", default=None, help="The fleet's CA certificate (PEM)."),
            click.option("--tls-cert", default=None, help="This process's certificate (PEM)."),
            click.option("--tls-key", default=None, help="This process's private key (PEM)."),
            click.option(
                "--tls-dir", default=None, help="A folder from `jupyter-edge certs create` (ca.pem, cert.pem, key.pem)."
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _security(tls_ca_file, tls_cert, tls_key, tls_dir):
    """``distributed.Security`` from the flags (else ``edge.tls.*``), or ``None``."""
    try:
        return config.security(tls_dir, tls_ca_file, tls_cert, tls_key)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _raise_open_files_limit() -> None:
    """Raise this process's soft limit on open files towards the hard one, as
    ``dask scheduler`` does: the common soft limit (1,024) is below the connections
    of a fleet of a thousand sites."""
    try:
        import resource  # POSIX only
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _liveness_settings() -> dict:
    # Dask's own time-to-live backs up the plugin's finer liveness check.
    return {"distributed.scheduler.worker-ttl": f"{2 * config.seconds('liveness')}s"}


async def _until_signal_or_finished(server) -> None:
    """Return on Ctrl-C/SIGTERM or when ``server`` finishes by itself; the
    caller closes what it started, in its own order."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    finished = asyncio.ensure_future(server.finished())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([finished, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()


@main.command()
@click.option("--host", default="", help="Interface to listen on (default: all).")
@click.option("--port", default=8786, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--scheduler-file", default=None, help="Write the scheduler's address to this JSON file.")
@click.option("--dashboard-address", default=None, help="Serve Dask's dashboard here, e.g. :8787 (needs bokeh).")
@click.option(
    "--state-dir",
    default=None,
    metavar="DIR",
    help="Keep known sites and job records here across restarts (default: edge.state-dir, else a folder "
    "beside --scheduler-file, else ~/.local/state/jupyter-edge/hub-PORT; none with --port 0 alone).",
)
@tls_options
def scheduler(
    host: str, port: int, scheduler_file: str | None, dashboard_address: str | None, state_dir: str | None, **tls
) -> None:
    """Start the fleet's scheduler, with the catalog and job registry."""
    from distributed import Scheduler

    from .scheduler import EdgeSchedulerPlugin
    from .state import default_dir
    from .tuning import tune_for_hub

    security = _security(**tls)
    tune_for_hub()
    _raise_open_files_limit()  # one connection per site, and one per transfer
    state_dir = state_dir or config.get("state-dir")
    if state_dir is None and (scheduler_file or port):
        state_dir = default_dir(scheduler_file, port)

    async def run() -> None:
        with dask.config.set(_liveness_settings()):
            server = Scheduler(
                host=host or None,
                port=port,
                scheduler_file=scheduler_file,
                dashboard=dashboard_address is not None,
                security=security,
                protocol="tls" if security else None,
                dashboard_address=dashboard_address,
                plugins=[EdgeSchedulerPlugin(state_dir=state_dir)],
            )
            await server
            click.echo(f"jupyter-edge scheduler at {server.address}", err=True)
            click.echo(
                f"jupyter-edge scheduler: {'keeping its state in ' + state_dir if state_dir else 'keeping no state'}",
                err=True,
            )
            await _until_signal_or_finished(server)
            await server.close()

    asyncio.run(run())


@main.command()
@click.argument("address", required=False)
@click.option("--scheduler-file", default=None, help="Read the scheduler's address from this file.")
@click.option("--name", required=True, help="The site's name, unique in the fleet (e.g. berlin).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label, e.g. region=eu (repeatable).")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="NAME=PATH[@SHARD]",
    help="A dataset this site holds: a folder or an s3:// prefix (repeatable).",
)
@click.option(
    "--gpus",
    default="none",
    show_default=True,
    help="'auto' (NVML, Jetson, amdgpu and Intel sysfs), a number declared by hand, or 'none'.",
)
@click.option(
    "--gpu-vendor", default=None, type=click.Choice(VENDORS), help="The vendor of GPUs declared with --gpus N."
)
@click.option("--gpu-model", default=None, metavar="MODEL", help="The model of GPUs declared with --gpus N.")
@click.option(
    "--gpu-memory", default=None, metavar="BYTES", help="The memory of each GPU declared with --gpus N, e.g. 16GiB."
)
@click.option(
    "--host-root",
    default="/",
    show_default=True,
    metavar="DIR",
    help="Read the host's /sys, /proc and /etc under DIR (a site in a container with the host mounted there).",
)
@click.option("--nthreads", default=1, show_default=True, type=int, help="Executions the site runs at once.")
@click.option("--host", default=None, help="Interface to listen on.")
@click.option(
    "--docker",
    "docker_url",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ENGINE_URL]",
    help="Run container executions (%%edge --image, %edge run) through this Docker-compatible "
    "engine, e.g. unix:///var/run/docker.sock (alone: $DOCKER_HOST or the default socket).",
)
@click.option(
    "--wasm",
    is_flag=True,
    help="Run WebAssembly modules (%edge run --wasm, Fleet.run_wasm) through wasmtime: "
    "sandboxed, for sites that cannot run Docker.",
)
@click.option(
    "--policy",
    "policy_file",
    default=None,
    metavar="FILE",
    help="This site's policy (YAML): who may use which dataset, cells or images only, result cap.",
)
@click.option(
    "--audit-log",
    default=None,
    metavar="PATH",
    help="This site's audit log (JSON lines; default: edge.audit-log, else "
    "~/.local/state/jupyter-edge/audit-NAME.jsonl).",
)
@click.option(
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="K",
    help="Run K sites in this process, on one event loop: {n} in --name, --label, --dataset "
    "and --audit-log becomes 0..K-1 (e.g. --name shop-{n} --label slot={n}). Each site has "
    "its own name, labels, datasets and runners.",
)
@tls_options
def worker(
    address,
    scheduler_file,
    name,
    labels,
    datasets,
    gpus,
    gpu_vendor,
    gpu_model,
    gpu_memory,
    host_root,
    nthreads,
    host,
    docker_url,
    wasm,
    policy_file,
    audit_log,
    count,
    **tls,
) -> None:
    """Start an edge site (or --count K of them): a Dask worker with labels, datasets and GPUs."""
    from distributed import Worker

    from .selector import SelectorError, parse_label
    from .site.dataset import parse_dataset_option
    from .site.gpu import declared_description, discover_gpus, parse_gpus_option
    from .site.plugin import EdgeSitePlugin
    from .site.policy import Policy
    from .tuning import tune_for_sites

    address = address or (None if scheduler_file else config.scheduler_address())
    if not address and not scheduler_file:
        raise click.UsageError(f"give the scheduler's ADDRESS, --scheduler-file, or ${config.SCHEDULER_ENV}")
    if count > 1 and SITE_NUMBER not in name:
        raise click.UsageError(f"--count {count} needs {SITE_NUMBER} in --name, e.g. --name shop-{SITE_NUMBER}")
    if count > 1 and gpus == "auto":
        raise click.UsageError("--gpus auto with --count: the sites of one process would share its GPUs")
    if nthreads < 1:
        raise click.UsageError("--nthreads must be at least 1")
    try:
        inventory = parse_gpus_option(gpus)
        described = declared_description(inventory, gpu_vendor, gpu_model, gpu_memory)
        policy = Policy.load(policy_file) if policy_file else None
    except (ValueError, SelectorError) as e:
        raise click.UsageError(str(e)) from None
    if not os.path.isdir(host_root):
        raise click.UsageError(f"--host-root {host_root}: no such folder")
    if wasm:
        from .site.wasm import wasmtime_missing

        if wasmtime_missing():
            raise click.UsageError(f"--wasm: {wasmtime_missing()}")
    security = _security(**tls)
    if address:
        from .fleet import check_scheme

        try:
            check_scheme(address, security)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    tune_for_sites()  # before any worker exists: Dask reads these as a worker starts
    if count > 1:
        _raise_open_files_limit()  # each site's connections, and its runners' sockets

    sites: list[tuple[str, EdgeSitePlugin]] = []
    engines = []

    def close_all() -> None:
        for _, plugin in sites:
            plugin.close()
        for engine in engines:
            engine.close()

    try:
        for n in range(count):
            site_name = _numbered(name, n)
            try:
                parsed_labels = dict(parse_label(_numbered(text, n)) for text in labels)
                declared = [parse_dataset_option(_numbered(text, n), site_name) for text in datasets]
            except (ValueError, SelectorError) as e:
                raise click.UsageError(str(e)) from None
            site_inventory = discover_gpus(inventory, host_root=host_root, **described)
            engine = None
            if docker_url is not None:
                from .site.containers import ContainerEngine, ContainerError

                try:  # connect here, to fail clearly rather than in the worker's plugin setup; the site keeps it
                    engine = ContainerEngine(site_name, docker_url or None)
                except ContainerError as e:
                    raise click.ClickException(str(e)) from None
                engines.append(engine)
                click.echo(f"site {site_name}: containers through docker {engine.version}", err=True)
            try:
                plugin = EdgeSitePlugin(
                    labels=parsed_labels,
                    datasets=declared,
                    gpus=site_inventory,
                    docker=engine,
                    policy=policy,
                    audit_log=_numbered(audit_log, n) if audit_log else None,
                    keep_runners=True,  # the site rejoins when its scheduler goes away: see _site_until_stopped
                    wasm=wasm,
                )
            except ValueError as e:
                raise click.UsageError(str(e)) from None
            sites.append((site_name, plugin))
            if count == 1 or n == 0:
                click.echo(
                    f"site {site_name}: GPUs {site_inventory.summary} ({site_inventory.detail or 'none'})", err=True
                )
                for source in site_inventory.sources:
                    click.echo(
                        f"  {source.source}: {source.state}" + (f" ({source.detail})" if source.detail else ""),
                        err=True,
                    )
    except BaseException:
        close_all()
        raise

    def worker_of(site_name: str, plugin: EdgeSitePlugin):
        def new_worker(target: str) -> Worker:
            return Worker(
                target,
                name=site_name,
                nthreads=nthreads,
                host=host,
                dashboard=False,
                dashboard_address=":0",
                security=security,
                protocol="tls" if security else None,
                resources=plugin.resources,
                plugins={plugin},
                death_timeout=config.seconds("connect-timeout") * 3,
            )

        return new_worker

    async def every_site_until_stopped() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.gather(
            *(
                _site_until_stopped(site_name, address, scheduler_file, security, worker_of(site_name, plugin), stop)
                for site_name, plugin in sites
            )
        )

    try:
        asyncio.run(every_site_until_stopped())
    finally:
        close_all()


#: In --name, --label, --dataset and --audit-log with --count: the site's number.
SITE_NUMBER = "{n}"


def _numbered(text: str, n: int) -> str:
    return text.replace(SITE_NUMBER, str(n))


async def _site_until_stopped(name: str, address, scheduler_file, security, new_worker, stop: asyncio.Event) -> None:
    """Run the site until ``stop`` (Ctrl-C, SIGTERM): join the scheduler, and whenever
    the worker ends by itself (its scheduler went away), start another for the same
    site once the scheduler answers again, with backoff and jitter (see site/rejoin.py)."""
    from .site.rejoin import Backoff, answers, scheduler_address

    backoff, joined_before = Backoff.from_config(), False

    async def pause() -> None:
        delay = backoff.next()
        click.echo(f"site {name}: next try to reach the scheduler in {delay:.1f} s", err=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    while not stop.is_set():
        target = scheduler_address(address, scheduler_file)
        if target is None or not await answers(target, config.seconds("connect-timeout"), security):
            click.echo(f"site {name}: the scheduler at {target or scheduler_file} does not answer", err=True)
            await pause()
            continue
        server = new_worker(target)
        try:
            await server
        except Exception as e:  # it went away again while we joined
            click.echo(f"site {name}: could not join {target}: {e}", err=True)
            await server.close()
            await pause()
            continue
        backoff.reset()
        click.echo(f"site {name} at {server.address} {'rejoined' if joined_before else 'joined'} {target}", err=True)
        joined_before = True
        finished = asyncio.ensure_future(server.finished())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([finished, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stop.is_set():
            await server.close()
            return
        # The worker closed by itself: its connection to the scheduler broke. What
        # ran here was stopped with it (the scheduler has called it lost).
        click.echo(f"site {name}: lost the scheduler at {target}; rejoining", err=True)
        await server.close()
        await pause()


@main.command()
@click.argument("address", required=False)
@click.option("--scheduler-file", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option(
    "--wait-for-sites",
    "wait_for",
    default=0,
    type=click.IntRange(min=0),
    metavar="N",
    help="First wait until N sites have reported (a fleet just started).",
)
@click.option(
    "--timeout",
    default=None,
    type=float,
    help="Seconds to wait for the scheduler (default: edge.connect-timeout) and for --wait-for-sites (default: 60).",
)
@tls_options
def status(address, scheduler_file, as_json, wait_for, timeout, **tls) -> None:
    """Show the fleet's sites and datasets."""
    from .fleet import Fleet

    security = _security(**tls)
    try:
        fleet = Fleet.connect(address, scheduler_file=scheduler_file, timeout=timeout, security=security)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    with fleet:
        if wait_for:
            try:
                fleet.wait_for_sites(wait_for, timeout=60 if timeout is None else timeout)
            except TimeoutError as e:
                raise click.ClickException(str(e)) from None
        catalog = fleet.catalog()
    if as_json:
        click.echo(json.dumps(catalog.to_dict(), indent=2))
        return
    from .tables import datasets_table, sites_table

    click.echo(f"fleet {fleet.address}: {len(catalog)} site(s)\n")
    click.echo(sites_table(catalog))
    click.echo("")
    click.echo(datasets_table(catalog))


@main.command()
@click.option("--sites", "count", default=4, show_default=True, type=int, help="How many sites.")
@click.option("--data-dir", default=None, help="Where the sample data goes (default: a temp folder).")
@click.option("--port", default=8786, show_default=True, type=int, help="The scheduler's port (0: any).")
@click.option("--scheduler-file", default=None, help="Write the scheduler's address to this JSON file.")
@click.option("--lab", is_flag=True, help="Also start JupyterLab pointed at the fleet.")
@click.option("--no-s3", is_flag=True, help="Leave out the S3 dataset even when moto is installed.")
@click.option(
    "--tls",
    "use_tls",
    is_flag=True,
    help="Run it all over TLS, with certificates made under DATA_DIR/tls (a client one: client-notebook).",
)
def demo(count, data_dir, port, scheduler_file, lab, no_s3, use_tls) -> None:
    """A whole local fleet with sample data, on 127.0.0.1, until Ctrl-C."""
    from .demo import default_data_dir, demo_certificates, demo_cluster

    data_dir = data_dir or default_data_dir()
    tls = demo_certificates(data_dir, count) if use_tls else None
    # The demo process is the scheduler and every site; one certificate serves them here.
    security = config.security(tls["scheduler"]) if tls else None

    async def run() -> None:
        cluster = await demo_cluster(
            sites=count,
            data_dir=data_dir,
            port=port,
            s3=False if no_s3 else None,
            scheduler_file=scheduler_file,
            asynchronous=True,
            security=security,
        )
        address = cluster.scheduler_address
        click.echo(f"jupyter-edge demo: {count} sites at {address}, data in {cluster.edge_data_dir}")
        click.echo(f"  connect: Fleet.connect({address!r})   or   export {config.SCHEDULER_ENV}={address}")
        if tls:
            click.echo(
                f"  over TLS: Fleet.connect({address!r}, tls_dir={tls['client']!r}), "
                f"or export DASK_EDGE__TLS__DIR={tls['client']}"
            )
        lab_process = _start_lab(address, tls["client"] if tls else None) if lab else None
        try:
            await _until_signal_or_finished(cluster.scheduler)
        finally:
            if lab_process is not None:
                lab_process.terminate()
                lab_process.wait(30)
            await cluster.close()
            if cluster.edge_s3 is not None:
                cluster.edge_s3.stop()
        click.echo("jupyter-edge demo stopped")

    with dask.config.set(_liveness_settings()):
        asyncio.run(run())


@main.command()
@click.argument("site_log")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON lines.")
def audit(site_log, as_json) -> None:
    """Print a site's audit log (SITE_LOG, JSON lines) as a table."""
    import datetime

    from .site.audit import read
    from .tables import human_bytes, text_table

    try:
        entries = read(site_log)
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read the audit log {site_log}: {e}") from None
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry))
        return
    rows = [
        [
            datetime.datetime.fromtimestamp(e["time"]).strftime("%Y-%m-%d %H:%M:%S"),
            e["site"] or "",
            e["job"] or "",
            e["owner"] or "",
            f"{e['dataset']}@{e['shard']}" if e.get("dataset") else "-",
            e["kind"] or "",
            (e.get("cell_hash") or "")[:12],
            e["state"] or "",
            human_bytes(e["bytes_returned"]),
            e.get("refused") or "",
        ]
        for e in entries
    ]
    click.echo(
        text_table(["TIME", "SITE", "JOB", "OWNER", "DATASET", "KIND", "CELL", "STATE", "RETURNED", "REFUSED BY"], rows)
    )


@main.group()
def certs() -> None:
    """A fleet's own certificate authority and certificates (for --tls-dir)."""


@certs.command("create")
@click.argument("folder")
@click.option("--site", "sites", multiple=True, metavar="NAME", help="A certificate for this site (repeatable).")
@click.option(
    "--client",
    "clients",
    multiple=True,
    metavar="NAME",
    help="A certificate for this person or service (repeatable); its name is who their jobs belong to.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help="A name or IP the scheduler and sites answer to (default: 127.0.0.1, localhost).",
)
def certs_create(folder, sites, clients, hosts) -> None:
    """Make FOLDER/ca (reused if there) and a --tls-dir folder per identity."""
    from . import certs as fleet_certs

    made = fleet_certs.create(
        folder, sites=list(sites), clients=list(clients), hosts=list(hosts) or ["127.0.0.1", "localhost"]
    )
    click.echo(f"CA: {os.path.join(folder, fleet_certs.CA_DIR)} (keep ca-key.pem offline)")
    for identity, path in made.items():
        click.echo(f"  {identity:<20} --tls-dir {path}")


def _start_lab(address: str, tls_dir: str | None = None) -> subprocess.Popen:
    env = {**os.environ, config.SCHEDULER_ENV: address}
    if tls_dir:  # the server extension and the kernels connect with the client certificate
        env["DASK_EDGE__TLS__DIR"] = tls_dir
    args = [sys.executable, "-m", "jupyterlab", "--no-browser"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    # Its own session: a Ctrl-C meant for the demo must not reach JupyterLab's
    # "shut down? (y/n)" prompt; the demo stops it itself.
    return subprocess.Popen(args, env=env, start_new_session=True)


if __name__ == "__main__":
    main()
