"""The magics' options, shared between ``%%edge`` and ``%edge config``."""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, argument_group


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _option_group(title: str, description: str, *arguments):
    """A decorator adding ``arguments`` under one heading of the magic's help."""
    decorators = [argument_group(title, description), *arguments]

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


#: Where a cell runs; they mean what they mean in ``Fleet.run``.
target_options = _option_group(
    "targets",
    "where the cell runs (filters combine with 'and')",
    argument("--data", metavar="NAME", help="once per shard of this dataset, at a site holding it"),
    argument("--where", metavar="SELECTOR", help="label selector, e.g. 'region=eu,tier!=store'"),
    argument("--gpus", metavar="N", type=int, help="each execution holds N GPUs"),
    argument("--sites", metavar="A,B", type=_csv, help="these named sites"),
    argument("--all", action="store_true", help="every site that matches the filters"),
)


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``5 minutes``, ``2h`` (Dask's durations)."""
    from dask.utils import parse_timedelta

    try:
        seconds = parse_timedelta(text, default="seconds")
    except (ValueError, TypeError, KeyError):
        seconds = None
    if seconds is None or seconds <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 90s, 2h)")
    return seconds


#: How a cell runs; ``%edge config`` sets defaults for them.
run_options = _option_group(
    "running",
    "how the cell runs",
    argument("--timeout", metavar="SECONDS", type=float, help="stop every site after this long"),
    argument("--retries", metavar="N", type=int, help="retry executions lost with their site"),
    argument(
        "--queue-timeout",
        metavar="DURATION",
        type=duration,
        help="wait this long (e.g. 90s, 2h) for offline sites the work needs; without it, it fails at once",
    ),
)

cell_options = _option_group(
    "cell",
    "what the cell sends and keeps",
    argument("-o", "--out", metavar="NAME", help="store the JobResult (or, with --noblock, the Job) here"),
    argument("--noblock", action="store_true", help="return at once; the Job goes to --out"),
    argument("--push", metavar="A,B", type=_csv, help="send exactly these notebook names"),
    argument("--no-push", action="store_true", help="send no notebook names"),
    argument("--fresh", action="store_true", help="run in a clean namespace at each site"),
)

#: A container per execution, at sites started with ``--docker``.
container_options = _option_group(
    "containers",
    "run in a fresh container at each site (sites started with --docker)",
    argument("--image", metavar="IMAGE", help="the image, from the site's engine (a cell needs python3 in it)"),
    argument(
        "--network",
        metavar="MODE",
        nargs="?",
        const=True,
        help="give the container a network (none by default); MODE e.g. host",
    ),
    argument("--cpus", metavar="N", type=float, help="CPUs the container may use"),
    argument("--memory", metavar="SIZE", help="memory the container may use, e.g. 512MiB"),
    argument("--pull", action="store_true", help="let the site's engine pull a missing image"),
)


#: A WebAssembly module per execution, at sites started with ``--wasm`` (``%edge run`` only).
wasm_options = _option_group(
    "WebAssembly",
    "run a WASI module at each site (sites started with --wasm); --memory caps its memory",
    argument("--wasm", metavar="MODULE", help="a .wasm file here (its bytes travel), or site:NAME kept at the sites"),
    argument(
        "--env",
        metavar="K=V",
        action="append",
        default=[],
        help="a variable for the module (repeatable)",
    ),
)


CONTAINER_ONLY = ("network", "cpus", "memory", "pull")


def wasm_arguments(args) -> dict:
    """``Fleet.run_wasm`` keyword arguments from the options: ``--wasm`` and what applies to it."""
    given = [f"--{name}" for name in ("network", "cpus", "pull") if getattr(args, name) not in (None, False)]
    if args.image is not None:
        given.insert(0, "--image")
    if given:
        raise UsageError(f"{', '.join(given)} apply to containers, not to --wasm modules")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env takes NAME=VALUE, not {item!r}")
        env[key] = value
    return {"env": env, **({"memory": args.memory} if args.memory else {})}


def container_arguments(args) -> dict:
    """``Fleet`` keyword arguments from the container options; they need --image."""
    given = {name: getattr(args, name) for name in CONTAINER_ONLY if getattr(args, name) not in (None, False)}
    if args.image is None:
        if given:
            flags = ", ".join(f"--{name}" for name in given)
            raise UsageError(f"{flags} apply only to containers: add --image IMAGE")
        return {}
    return {"image": args.image, **given}


def parse_options(magic, line: str):
    """The magic's options from ``line``, split as a shell would: quotes group
    and are removed (``--where "region in (us,ap)"``). IPython's own
    ``parse_argstring`` keeps the quotes in the values."""
    try:
        argv = shlex.split(line)
    except ValueError as e:  # an unbalanced quote
        raise UsageError(f"cannot read the options: {e}") from None
    return magic.parser.parse_args(argv)
