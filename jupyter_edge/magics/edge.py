"""``%edge`` and ``%%edge``: parse, call the Fleet API, replay the outputs.

Everything here is a thin layer over :class:`~jupyter_edge.fleet.Fleet`; the
logic lives there, so scripts and tests can use it without a kernel.
"""

from __future__ import annotations

import shlex
import sys
import time
import uuid

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from .. import config
from ..announce import announce, withdraw
from ..cells import NamesTooLarge, names_to_send
from ..fleet import Fleet, FleetUnreachable
from ..jobs import JobInterrupted
from ..placement import PlacementError
from ..selector import SelectorError
from . import display as show
from .args import (
    cell_options,
    container_arguments,
    container_options,
    parse_options,
    run_options,
    target_options,
    wasm_arguments,
    wasm_options,
)
from .live import LiveOutput
from .progress import Progress

USAGE = """\
%edge connect [ADDRESS | --demo | --scheduler-file F]   connect this notebook to a fleet
%edge disconnect                  close the connection (and an embedded demo fleet)
%edge fleet                       the sites: labels, datasets, GPUs, versions
%edge datasets                    the datasets: shards, sites, bytes, files
%edge jobs                        the fleet's jobs
%edge show JOB                    replay one of this notebook's jobs
%edge cancel JOB                  stop one of this notebook's jobs
%edge reset                       forget this notebook's names at every site
%edge config [--timeout S] [--retries N]   defaults for %%edge cells
%edge run --image IMAGE [--data NAME ...] -- COMMAND ARGS...
                                  run a command in a container at each site (sites with --docker)
%edge run --wasm MODULE.wasm [--data NAME ...] -- ARGS...
                                  run a WebAssembly module at each site (sites with --wasm)

%%edge --data NAME | --sites A,B | --all | --where SELECTOR | --gpus N  [options]
    run the cell at those sites; `%%edge?` lists every option"""

_NO_TARGET = (
    "this %%edge cell names no target: add --data NAME (once per shard of a dataset), "
    "--sites A,B, --all, --where SELECTOR or --gpus N"
)


@magics_class
class EdgeMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self.fleet: Fleet | None = None
        self.session = uuid.uuid4().hex  # this notebook's names at each site
        self.defaults: dict = {"timeout": None, "retries": 0, "queue_timeout": None}
        self.results = {}  # job id -> JobResult, for %edge show
        self.jobs = {}  # job id -> Job started with --noblock

    # --- %edge ... ----------------------------------------------------------------

    @line_magic
    def edge(self, line: str = ""):
        """Work with the fleet; `%edge` alone lists what it can do."""
        try:
            words = shlex.split(line)
        except ValueError as e:  # an unbalanced quote
            raise UsageError(f"cannot read %edge {line!r}: {e}") from None
        if not words:
            print(USAGE)
            return None
        command, rest = words[0], shlex.join(words[1:])
        handler = getattr(self, f"_edge_{command}", None)
        if handler is None:
            raise UsageError(f"%edge has no command {command!r}\n\n{USAGE}")
        try:
            return handler(rest)
        except FleetUnreachable as e:
            raise UsageError(str(e)) from None

    @magic_arguments()
    @argument("address", nargs="?", help="the scheduler, e.g. tcp://scheduler:8786 (default: $JUPYTER_EDGE_SCHEDULER)")
    @argument("--demo", action="store_true", help="start the demo fleet inside this kernel")
    @argument("--scheduler-file", help="read the address from this file")
    @argument("--tls-dir", help="a folder from `jupyter-edge certs create` (default: edge.tls.*)")
    @argument("--tls-ca-file", help="the fleet's CA certificate")
    @argument("--tls-cert", help="this notebook's certificate")
    @argument("--tls-key", help="this notebook's private key")
    def _connect(self, line):
        """%edge connect [ADDRESS | --demo | --scheduler-file F]"""

    def _edge_connect(self, rest: str):
        args = parse_options(self._connect, rest)
        self._close()
        try:
            if args.demo:
                self.fleet = Fleet.demo()
            else:
                security = config.security(args.tls_dir, args.tls_ca_file, args.tls_cert, args.tls_key)
                self.fleet = Fleet.connect(args.address, scheduler_file=args.scheduler_file, security=security)
        except (ValueError, OSError, TimeoutError) as e:
            raise UsageError(f"could not connect: {e}") from None
        sites = self.fleet.sites()
        announce(self.fleet.address, embedded=args.demo)  # the sidebar can offer this fleet
        print(f"connected to {self.fleet.address}: {len(sites)} site(s)")

    def _edge_disconnect(self, rest: str):
        self._close()

    def _close(self) -> None:
        if self.fleet is not None:
            withdraw()
            self.fleet.close()
            self.fleet = None

    def _edge_fleet(self, rest: str):
        display(show.sites_view(self._connected().catalog()))

    def _edge_datasets(self, rest: str):
        display(show.datasets_view(self._connected().catalog()))

    def _edge_jobs(self, rest: str):
        display(show.jobs_view(self._connected().jobs(limit=50)))

    def _edge_show(self, rest: str):
        job_id = rest.strip()
        if job_id in self.jobs and self.jobs[job_id].done():
            self.results[job_id] = self.jobs[job_id].result()
        if job_id in self.results:
            show.replay(self.results[job_id])
            return
        try:
            record = self._connected().job(job_id)
        except KeyError as e:
            raise UsageError(str(e).strip("'\"")) from None
        display(show.jobs_view([record]))

    def _edge_cancel(self, rest: str):
        job_id = rest.strip()
        job = self.jobs.get(job_id)
        if job is not None:
            job.cancel()
            print(f"job {job.id}: {job.state}")
            return
        try:  # a job of another notebook, through the scheduler
            stopped = self._connected().cancel_job(job_id)
        except KeyError as e:
            raise UsageError(f"{str(e).strip(chr(34) + chr(39))} (see %edge jobs)") from None
        except PermissionError as e:  # another owner's job
            raise UsageError(f"cannot cancel: {e}") from None
        print(f"job {job_id}: cancelled {len(stopped)} execution(s)")

    def _edge_reset(self, rest: str):
        dropped = self._connected().reset_sessions(self.session)
        print(f"forgot this notebook's names at {sum(1 for n in dropped.values() if n)} site(s)")
        silent = sorted(site for site, n in dropped.items() if n is None)
        if silent:
            print(
                f"no answer from {', '.join(silent)}: this notebook's names there are forgotten after "
                "edge.session-idle unused",
                file=sys.stderr,
            )

    @magic_arguments()
    @run_options
    def _config(self, line):
        """%edge config [--timeout S] [--retries N]"""

    def _edge_config(self, rest: str):
        args = parse_options(self._config, rest)
        if args.timeout is not None and not args.timeout > 0:
            raise UsageError(f"--timeout must be a number of seconds above 0, not {args.timeout}")
        if args.retries is not None and args.retries < 0:
            raise UsageError(f"--retries must be 0 or more, not {args.retries}")
        for name in self.defaults:
            value = getattr(args, name)
            if value is not None:
                self.defaults[name] = value
        print(", ".join(f"{k}={v}" for k, v in self.defaults.items()))

    def _connected(self) -> Fleet:
        if self.fleet is None:
            if config.scheduler_address() is None:
                raise UsageError("not connected: %edge connect ADDRESS, or %edge connect --demo")
            self._edge_connect("")
        return self.fleet

    # --- %%edge -------------------------------------------------------------------

    @magic_arguments()
    @target_options
    @run_options
    @container_options
    @wasm_options
    @argument("-o", "--out", metavar="NAME", help="store the JobResult (exit codes) here")
    def _run(self, line):
        """%edge run --image IMAGE [targets] [options] -- COMMAND ARGS...
        %edge run --wasm MODULE [targets] [--env K=V] [--memory SIZE] [options] -- ARGS..."""

    def _edge_run(self, rest: str):
        try:
            words = shlex.split(rest)
        except ValueError as e:
            raise UsageError(f"cannot read the command: {e}") from None
        if "--" not in words and "--wasm" not in words:
            raise UsageError("%edge run needs the command after --: %edge run --image IMAGE --data NAME -- ls -l")
        cut = words.index("--") if "--" in words else len(words)
        options, command = words[:cut], words[cut + 1 :]
        args = self._run.parser.parse_args(options)
        if args.wasm is None and not command:
            raise UsageError("%edge run: no command after --")
        if args.image is None and args.wasm is None:
            raise UsageError(
                "%edge run needs --image IMAGE (a command in a container) or --wasm MODULE (a WebAssembly module)"
            )
        if not (args.data or args.sites or args.all or args.where or args.gpus):
            raise UsageError(_NO_TARGET.replace("this %%edge cell", "%edge run"))
        if args.env and args.wasm is None:
            raise UsageError("--env applies to --wasm modules")
        targets = dict(data=args.data, where=args.where, sites=args.sites, all=args.all)
        if args.wasm is not None and args.gpus:
            raise UsageError("--gpus does not apply to --wasm modules: they see no GPU")
        if args.wasm is not None:
            options = dict(**targets, **self._run_settings(args), **wasm_arguments(args))
        else:
            options = dict(**targets, gpus=args.gpus or 0, **self._run_settings(args), **container_arguments(args))
        fleet = self._connected()
        live = LiveOutput(self.shell)

        def start(on_start):
            if args.wasm is not None:
                return fleet.run_wasm(args.wasm, command, on_output=live, on_start=on_start, **options)
            return fleet.run_command(command, on_output=live, on_start=on_start, **options)

        try:
            return self._run_blocking(fleet, start, live, args.out)
        except (PlacementError, SelectorError, ValueError, FleetUnreachable) as e:
            raise UsageError(str(e)) from None

    @magic_arguments()
    @target_options
    @run_options
    @container_options
    @cell_options
    @cell_magic("edge")
    def edge_cell(self, line: str, cell: str):
        """Run this cell at the sites that hold a dataset, match a selector or
        have GPUs; every site's output comes back here, labelled."""
        args = parse_options(self.edge_cell, line)
        if not (args.data or args.sites or args.all or args.where or args.gpus):
            raise UsageError(_NO_TARGET)
        if args.push is not None and args.no_push:
            raise UsageError("--push and --no-push contradict each other")
        fleet = self._connected()
        live = LiveOutput(self.shell, detached=args.noblock)
        try:
            options = self._cell_options(args, cell)
            if args.noblock:
                return self._start_detached(fleet, cell, options, live, args.out)
            return self._run_blocking(
                fleet,
                lambda on_start: fleet.run_cell(cell, on_output=live, on_start=on_start, **options),
                live,
                args.out,
            )
        except (
            PlacementError,
            SelectorError,
            NamesTooLarge,
            NameError,
            SyntaxError,
            ValueError,
            FleetUnreachable,
        ) as e:
            raise UsageError(str(e)) from None

    def _cell_options(self, args, cell: str) -> dict:
        """The Fleet.run_cell arguments: targets, this notebook's session and
        names, and the defaults of ``%edge config`` where the cell sets none.
        A container cell (``--image``) gets its source only: no names, no session."""
        container = container_arguments(args)
        if container and (args.push or args.fresh):
            raise UsageError("--push and --fresh do not apply to --image cells: a container gets the source only")
        return dict(
            names=None if container else names_to_send(cell, self.shell.user_ns, push=args.push, no_push=args.no_push),
            session=None if container else self.session,
            fresh=args.fresh,
            data=args.data,
            where=args.where,
            gpus=args.gpus or 0,
            sites=args.sites,
            all=args.all,
            **self._run_settings(args),
            **container,
        )

    def _run_settings(self, args) -> dict:
        """timeout, retries, queue_timeout: the cell's own, else this notebook's ``%edge config``."""
        return {
            name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in self.defaults.items()
        }

    def _start_detached(self, fleet: Fleet, cell: str, options: dict, live: LiveOutput, out: str | None):
        job = fleet.submit_cell(cell, on_output=live, **options)
        self.jobs[job.id] = job
        if out:
            self.shell.user_ns[out] = job
        print(f"edge job {job.id} started at {len(job.executions)} site(s); `%edge show {job.id}` replays it when done")

    def _run_blocking(self, fleet: Fleet, run, live: LiveOutput, out: str | None):
        """``run(on_start)`` runs the job and returns its JobResult; show it as it goes."""
        started = time.monotonic()
        progress = []
        try:
            result = run(lambda job: progress.append(Progress(job)))
        except JobInterrupted as interrupted:
            self._interrupted(interrupted.result, live, time.monotonic() - started, out)
            raise
        finally:
            for view in progress:
                view.close()
        self.results[result.job] = result
        if out:
            self.shell.user_ns[out] = result
        live.finish(result)
        show.replay(result, streams=False)
        print(show.closing_line(result, time.monotonic() - started, fleet.catalog(fresh=False)))
        errors = result.errors
        if errors:
            raise show.EdgeCellError(result.job, errors, result=result)

    def _interrupted(self, result, live: LiveOutput, took: float, out: str | None) -> None:
        """Say what an interrupt stopped, and where this notebook's names did not survive it."""
        self.results[result.job] = result
        if out:
            self.shell.user_ns[out] = result
        live.finish(result)
        show.replay(result, streams=False)
        print(show.closing_line(result, took, self.fleet.catalog(fresh=False)))
        discarded = show.discarded_sessions(self.fleet, result)
        if discarded:
            print(
                f"the cell did not stop on interrupt at {', '.join(discarded)}: it was killed there, "
                "and this notebook's names there are gone"
            )
        else:
            print("interrupted: every site stopped the cell; this notebook's names there are kept")
