"""The magics' options, shared between ``%%edge`` and ``%edge config``."""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, argument_group


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def target_options(fn):
    """Where a cell runs; they mean what they mean in ``Fleet.run``."""
    for decorator in reversed([
        argument_group("targets", "where the cell runs (filters combine with 'and')"),
        argument("--data", metavar="NAME", help="once per shard of this dataset, at a site holding it"),
        argument("--where", metavar="SELECTOR", help="label selector, e.g. 'region=eu,tier!=store'"),
        argument("--gpus", metavar="N", type=int, help="each execution holds N GPUs"),
        argument("--sites", metavar="A,B", type=_csv, help="these named sites"),
        argument("--all", action="store_true", help="every site that matches the filters"),
    ]):
        fn = decorator(fn)
    return fn


def run_options(fn):
    """How a cell runs; ``%edge config`` sets defaults for them."""
    for decorator in reversed([
        argument_group("running", "how the cell runs"),
        argument("--timeout", metavar="SECONDS", type=float, help="stop every site after this long"),
        argument("--retries", metavar="N", type=int, help="retry executions lost with their site"),
    ]):
        fn = decorator(fn)
    return fn


def cell_options(fn):
    for decorator in reversed([
        argument_group("cell", "what the cell sends and keeps"),
        argument("-o", "--out", metavar="NAME", help="store the JobResult (or, with --noblock, the Job) here"),
        argument("--noblock", action="store_true", help="return at once; the Job goes to --out"),
        argument("--push", metavar="A,B", type=_csv, help="send exactly these notebook names"),
        argument("--no-push", action="store_true", help="send no notebook names"),
        argument("--fresh", action="store_true", help="run in a clean namespace at each site"),
    ]):
        fn = decorator(fn)
    return fn


def parse_options(magic, line: str):
    """The magic's options from ``line``, split as a shell would: quotes group
    and are removed (``--where "region in (us,ap)"``). IPython's own
    ``parse_argstring`` keeps the quotes in the values."""
    try:
        argv = shlex.split(line)
    except ValueError as e:  # an unbalanced quote
        raise UsageError(f"cannot read the options: {e}") from None
    return magic.parser.parse_args(argv)
