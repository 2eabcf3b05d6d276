"""Fuzzing the selector grammar, ``Request.build`` and the magics' options (hypothesis).

The contract: whatever a user types, the answer is a ``UsageError`` (a
``SelectorError`` / ``ValueError`` for the Python API) or a valid request,
never another exception and never a hang.

The magic tests drive the real ``%%edge`` and ``%edge`` against a real
in-process fleet, with a harmless cell (``1``) and a short ``--timeout`` unless
the timeout itself is fuzzed. They never fuzz ``connect``, ``disconnect``,
``reset`` or ``cancel``, which change the shared connection.

Bugs the fuzzer finds get an exact reproducer test and an ``@example``; while a
bug is open, ``KNOWN_BUGS`` lets the fuzzers tolerate exactly that exception
from exactly that place, so they keep hunting for new ones. The three found so
far are fixed (their reproducers are at the end), and the table is empty.
"""

from __future__ import annotations

import os
import re
import shlex
import warnings
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import jupyter_edge
from jupyter_edge import Job, JobResult
from jupyter_edge.magics.args import parse_options
from jupyter_edge.magics.display import EdgeCellError
from jupyter_edge.placement import Request
from jupyter_edge.selector import Requirement, Selector, SelectorError

# A failing property makes hypothesis's pytest plugin import libcst (to suggest an @example patch),
# whose import warns "mypy_extensions.TypedDict is deprecated"; filterwarnings=error turns that into
# an INTERNALERROR that hides the falsifying example. Import it once here, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

# The in-process fleet's threads (Dask, Tornado) use the global `random` module at any moment;
# hypothesis sees its state change while a strategy draws and blames the strategy (a deprecation,
# an error here). None of these strategies uses `random`.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
PACKAGE = os.path.dirname(os.path.abspath(jupyter_edge.__file__))

PURE = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAGIC = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


# --- known bugs: (exception type, file in the package, function) -> what triggers it ------------

KNOWN_BUGS: dict[tuple[type[BaseException], str, str], str] = {
    # Empty: the three this fuzzer found (an unbalanced quote in a %edge line, --push of an
    # unpicklable name, a --memory that overflows) are fixed; their reproducers are below.
}


def origin(exc: BaseException) -> tuple[str, str] | None:
    """The innermost frame of the package that ``exc`` passed through: (file, function)."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if os.path.abspath(code.co_filename).startswith(PACKAGE + os.sep):
            found = (os.path.basename(code.co_filename), code.co_name)
        tb = tb.tb_next
    return found


def known_bug(exc: BaseException) -> str | None:
    where = origin(exc)
    if where is None:
        return None
    return KNOWN_BUGS.get((type(exc), *where))


# --- the selector grammar -----------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,7}", fullmatch=True)
# Small pools, so that generated labels and requirements meet often.
KEYS = ["region", "tier", "gpu", "zone", "in", "notin", "a.b/c-d"]
VALUES = ["eu", "us", "ap", "factory", "store", "in", "1", "x-y.z"]
keys = st.sampled_from(KEYS) | names
values = st.sampled_from(VALUES) | names
OPS = ["=", "==", "!=", "in", "notin", "exists", "!exists"]
# \s in the tokenizer is Unicode whitespace: the no-break and em spaces count.
space = st.text(alphabet=" \t\n\u00a0\u2003", max_size=2)
gap = st.text(alphabet=" \t\n\u00a0\u2003", min_size=1, max_size=2)  # where words would merge


@st.composite
def requirements(draw) -> tuple[str, str, tuple[str, ...]]:
    op = draw(st.sampled_from(OPS))
    if op in ("=", "==", "!="):
        vals = (draw(values),)
    elif op in ("in", "notin"):
        vals = tuple(draw(st.lists(values, min_size=1, max_size=4)))
    else:
        vals = ()
    return draw(keys), op, vals


@st.composite
def render(draw, req: tuple[str, str, tuple[str, ...]]) -> str:
    key, op, vals = req
    if op == "exists":
        return key
    if op == "!exists":
        return f"!{draw(space)}{key}"
    if op in ("=", "==", "!="):
        return f"{key}{draw(space)}{op}{draw(space)}{vals[0]}"
    inner = ",".join(f"{draw(space)}{v}{draw(space)}" for v in vals)
    return f"{key}{draw(gap)}{op}{draw(space)}({inner})"


@st.composite
def selectors(draw) -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
    """A valid selector's text and the requirements it was built from."""
    reqs = draw(st.lists(requirements(), min_size=1, max_size=5))
    parts = [draw(render(r)) for r in reqs]
    text = (
        draw(space)
        + ",".join(f"{p}{draw(space)}" if i < len(parts) - 1 else p for i, p in enumerate(parts))
        + draw(space)
    )
    # Spaces after each comma too.
    text = re.sub(",", lambda m: "," + draw(space), text) if draw(st.booleans()) else text
    return text, reqs


TOKENS = [
    *KEYS,
    *VALUES,
    "=",
    "==",
    "!=",
    "!",
    "(",
    ")",
    ",",
    " ",
    "  ",
    "\t",
    "\n",
    "'",
    '"',
    "\\",
    "in ",
    " notin ",
    "é",
    "ü",
    "区域",
    "\u00a0",
    "\u2028",
    "\x00",
    "-",
    ".",
    "_",
    "/",
    "0",
    "===",
]
near_valid = st.one_of(
    st.lists(st.sampled_from(TOKENS) | st.text(max_size=2), max_size=14).map("".join),
    # A valid selector with one character inserted, dropped or replaced.
    st.tuples(selectors(), st.integers(0, 200), st.sampled_from(TOKENS) | st.characters(), st.integers(0, 2)).map(
        lambda t: _mutate(t[0][0], t[1], t[2], t[3])
    ),
)


def _mutate(text: str, at: int, token: str, how: int) -> str:
    at = at % (len(text) + 1)
    if how == 0:
        return text[:at] + token + text[at:]
    if how == 1:
        return text[:at] + text[at + 1 :]
    return text[:at] + token + text[at + 1 :]


label_dicts = st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=5), st.sampled_from(VALUES) | st.text(max_size=5), max_size=6
)


def holds(req: tuple[str, str, tuple[str, ...]], labels: dict[str, str]) -> bool:
    """The reference model: Kubernetes' meaning of one requirement."""
    key, op, vals = req
    present = key in labels
    if op in ("=", "=="):
        return present and labels[key] == vals[0]
    if op == "!=":
        return not present or labels[key] != vals[0]
    if op == "in":
        return present and labels[key] in vals
    if op == "notin":
        return not present or labels[key] not in vals
    if op == "exists":
        return present
    assert op == "!exists"
    return not present


def check_parse(text: str, labels: dict[str, str]) -> Selector | None:
    """``Selector.parse(text)``: a Selector that round-trips, or a SelectorError that says where."""
    try:
        sel = Selector.parse(text)
    except SelectorError as e:
        message = str(e)
        assert message.startswith("bad selector "), message
        pos = int(re.findall(r" at position (\d+);", message)[-1])
        assert 0 <= pos <= len(text), (pos, text)
        return None
    assert isinstance(sel, Selector) and sel, "only an empty text would give an empty selector, and it is an error"
    for r in sel.requirements:
        assert isinstance(r, Requirement) and NAME.fullmatch(r.key), r
        assert r.op in ("=", "!=", "in", "notin", "exists", "!exists"), r
        assert all(NAME.fullmatch(v) for v in r.values), r
        expected = {"=": 1, "!=": 1, "exists": 0, "!exists": 0}.get(r.op)
        assert len(r.values) == expected if expected is not None else len(r.values) >= 1, r
    again = Selector.parse(str(sel))
    assert again == sel, (text, str(sel), again)
    assert str(again) == str(sel)
    assert Selector.parse(sel) is sel
    matched, unmet = sel.matches(labels), sel.unmet(labels)
    assert isinstance(matched, bool) and matched == (not unmet)
    assert unmet == [r for r in sel.requirements if not r.matches(labels)]
    assert set(sel.keys) == {r.key for r in sel.requirements}
    return sel


@pytest.mark.timeout(60)
@PURE
@given(text=st.text(), labels=label_dicts)
@example(text="", labels={})
@example(text=" \u00a0\t", labels={})
@example(text="region=eu,", labels={"region": "eu"})
@example(text="in in (in),notin notin (notin)", labels={"in": "in"})
@example(text="a\u2028=\u2003b", labels={"a": "b"})
def test_selector_parse_arbitrary_text(text, labels):
    check_parse(text, labels)


@pytest.mark.timeout(60)
@PURE
@given(text=near_valid, labels=label_dicts)
@example(text="region in (eu,us", labels={})
@example(text="!", labels={})
@example(text="tier notin ()", labels={})
@example(text="region='eu'", labels={})
@example(text="region=eu,,tier=x", labels={})
def test_selector_parse_near_valid_text(text, labels):
    check_parse(text, labels)


@pytest.mark.timeout(60)
@PURE
@given(built=selectors(), labels=label_dicts)
def test_valid_selectors_parse_and_match_as_the_model_says(built, labels):
    text, reqs = built
    sel = Selector.parse(text)
    expected = tuple(Requirement(k, "=" if op == "==" else op, vals) for k, op, vals in reqs)
    assert sel.requirements == expected, (text, sel)
    assert sel.matches(labels) == all(holds(r, labels) for r in reqs)
    assert [(r.key, r.op, r.values) for r in sel.unmet(labels)] == [
        (k, "=" if op == "==" else op, vals) for k, op, vals in reqs if not holds((k, op, vals), labels)
    ]
    assert check_parse(text, labels) == sel
    # Labels that meet every requirement the model can satisfy: built from the requirements.
    fitting = {}
    for key, op, vals in reqs:
        if op in ("=", "==", "in"):
            fitting.setdefault(key, vals[0])
    assert sel.matches(fitting) == all(holds(r, fitting) for r in reqs)


# --- Request.build and the Python API's arguments ----------------------------------------------

scalars = st.one_of(
    st.none(), st.text(max_size=12), st.integers(-5, 10**20), st.floats(), st.booleans(), st.binary(max_size=4)
)
anything = st.one_of(
    scalars,
    st.lists(
        st.one_of(st.none(), st.text(max_size=8), st.integers(), st.sampled_from(["berlin", " paris "])), max_size=4
    ),
    st.tuples(st.text(max_size=6), st.integers()),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.frozensets(st.text(max_size=4), max_size=3),
)


@pytest.mark.timeout(60)
@PURE
@given(
    data=anything | st.sampled_from(["sensors", "weather"]),
    where=anything | selectors().map(lambda s: s[0]) | near_valid | st.builds(Selector),
    gpus=anything | st.integers(0, 4),
    sites=anything
    | st.lists(st.sampled_from(["berlin", "paris", "boston", " tokyo", ""]), max_size=3)
    | st.sampled_from(["berlin,paris", " , ", "tokyo"]),
    all_=anything,
)
@example(data=None, where=None, gpus=None, sites=None, all_=False)
@example(data="", where="", gpus=0, sites="", all_=0)
@example(data=None, where=None, gpus=True, sites=[1], all_=None)
@example(data=None, where=None, gpus=float("nan"), sites=5, all_=[])
@example(data=None, where=b"region=eu", gpus=-1, sites=b"ab", all_=1)
def test_request_build_returns_a_request_or_raises_value_error(data, where, gpus, sites, all_):
    try:
        request = Request.build(data=data, where=where, gpus=gpus, sites=sites, all=all_)
    except ValueError as e:  # SelectorError is one
        assert str(e)
        return
    assert isinstance(request, Request)
    assert request.data is None or (isinstance(request.data, str) and request.data)
    assert isinstance(request.where, Selector)
    assert isinstance(request.gpus, int) and not isinstance(request.gpus, bool) and request.gpus >= 0
    assert request.sites is None or (
        isinstance(request.sites, tuple)
        and request.sites
        and all(isinstance(s, str) and s and s == s.strip() for s in request.sites)
    )
    assert isinstance(request.all, bool)
    assert Request.from_dict(request.to_dict()) == request
    assert isinstance(request.describe(), str) and isinstance(request.has_target, bool)


@pytest.mark.timeout(60)
@PURE
@given(value=anything | st.builds(object) | st.just(Selector()))
def test_selector_parse_of_any_value(value):
    try:
        sel = Selector.parse(value)
    except SelectorError:
        return
    assert isinstance(sel, Selector)


# --- the magics, against a real fleet -------------------------------------------------------------


@pytest.fixture(scope="module")
def ip(edge_shell):
    shell = edge_shell
    magics = shell.magics_manager.registry["EdgeMagics"]
    saved = dict(magics.defaults)
    magics.defaults.update(timeout=10.0, retries=0)  # a cell that sets none still ends soon
    shell.user_ns["fz_value"] = 41
    yield shell
    magics.defaults.clear()
    magics.defaults.update(saved)
    shell.user_ns.pop("fz_value", None)
    for job in list(magics.jobs.values()):
        job.wait(30)


def edge_magics(shell):
    return shell.magics_manager.registry["EdgeMagics"]


class Outcome:
    """How one magic call ended: ``usage``, ``ok``, ``failed`` (EdgeCellError) or ``known`` (a known bug)."""

    def __init__(self, kind: str = "ok", error: BaseException | None = None):
        self.kind, self.error = kind, error
        self.output = None  # what it printed and displayed
        self.names: dict = {}  # the notebook's names right after it, before they are put back


def run_magic(shell, call: Callable[[], object]) -> Outcome:
    """Run one magic call, quietly, then put back the notebook's names and defaults.

    The contract: a UsageError, success, or an EdgeCellError (a valid request
    some of whose executions failed); a known bug is let through, anything
    else propagates and fails the test.
    """
    magics = edge_magics(shell)
    names, defaults = dict(shell.user_ns), dict(magics.defaults)
    outcome = Outcome()
    try:
        with capture_output() as out:
            try:
                call()
            except UsageError as e:
                assert str(e), "a UsageError must say what is wrong"
                outcome = Outcome("usage", e)
            except EdgeCellError as e:
                outcome = Outcome("failed", e)
            except Exception as e:
                if not known_bug(e):
                    raise
                outcome = Outcome("known", e)
        outcome.output = out
    finally:
        for job in list(magics.jobs.values()):  # --noblock jobs end before the next example
            assert job.wait(60), f"a detached job {job.id} did not finish in 60s"
        outcome.names = dict(shell.user_ns)
        for k in [k for k in shell.user_ns if k not in names]:
            del shell.user_ns[k]
        for k, v in names.items():
            if shell.user_ns.get(k, outcome) is not v:
                shell.user_ns[k] = v
        magics.defaults.clear()
        magics.defaults.update(defaults)
    event(f"outcome: {outcome.kind}")  # --hypothesis-show-statistics: how many ran
    return outcome


def quoted(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value as it may be typed: bare, shell-quoted, or in stray quotes."""
    return st.tuples(values, st.sampled_from(["bare", "bare", "quote", "quote", "single", "double"])).map(
        lambda t: {"bare": t[0], "quote": shlex.quote(t[0]), "single": f"'{t[0]}'", "double": f'"{t[0]}"'}[t[1]]
    )


noise = st.sampled_from(
    [
        "",
        "--",
        "-",
        "-1",
        "0",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "1e-400",
        "é",
        "x y",
        "\\",
        "'",
        '"',
        "--all",
        "１",
        "٣",
        "0x10",
        "1_0",
        " ",
    ]
) | st.text(max_size=6)
SITES = ["berlin", "paris", "boston", "tokyo", "nowhere", "", " "]
real_selectors = st.sampled_from(
    [
        "region=eu",
        "region in (us, ap)",
        "tier!=store",
        "!tier",
        "gpu",
        "region=mars",
        "region notin (eu)",
        "tier",
        "region=",
        "region in (eu",
    ]
)
PUSH = ["fz_value", "fz_missing", "In", "_", "site", "dataset", "get_ipython", "exit", "__builtins__"]


def option(flag: str, values: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    if values is None:
        return st.just(flag)
    # Mostly values that mean something, sometimes noise.
    return st.tuples(st.just(flag), quoted(st.one_of(values, values, values, noise))).map(" ".join)


TARGETS = [
    option("--data", st.sampled_from(["sensors", "weather", "sensros", "nosuch", ""])),
    option("--where", real_selectors | selectors().map(lambda s: s[0]) | near_valid),
    option("--gpus", st.sampled_from(["0", "1", "2", "3", "-1", "x", "1.5"])),
    option("--sites", st.lists(st.sampled_from(SITES), min_size=1, max_size=3).map(",".join)),
    option("--all"),
]
OTHERS = [
    option("--retries", st.sampled_from(["0", "1", "2", "-1", "x", "99999999999999999999", "1.0"])),
    option("-o", st.sampled_from(["fz_res", "fz_other"])),
    option("--out", st.sampled_from(["fz_res", "fz_other"])),
    option("--noblock"),
    option("--push", st.lists(st.sampled_from(PUSH), min_size=1, max_size=3).map(",".join)),
    option("--no-push"),
    option("--fresh"),
    option("--image", st.sampled_from(["python:3.11", "edge-python:3.11", "x", "bad image", ""])),
    option("--network"),
    option("--network", st.sampled_from(["host", "none", "bridge"])),
    option("--cpus", st.sampled_from(["1", "0.5", "0", "-1", "nan", "inf", "x"])),
    option("--memory", st.sampled_from(["512MiB", "1GB", "5MiB", "1e400", "nan", "x", "-1", "10", "1e400kB"])),
    option("--pull"),
]
JUNK = st.sampled_from(
    [
        "--",
        "-",
        "--dta",
        "--no",
        "--n",
        "-x",
        "--where=",
        "--all=1",
        "--gpus=1",
        "-o=x",
        "-ofz_res",
        "--help",
        "-h",
        "é",
        "'",
        '"',
        "\\",
    ]
) | st.text(max_size=5)
TIMEOUTS = st.sampled_from(["0", "-1", "nan", "inf", "1e-9", "0.001", "1e308", "abc", "", "90s", "5", "1e400"])


# Options that make a request the fleet here can run, most of the time.
GOOD_TARGETS = [
    st.sampled_from(["--data sensors", "--data weather", "--all", "--gpus 1", "--gpus 2", "--gpus 0"]),
    st.sampled_from(["region=eu", "region in (us, ap)", "tier!=store", "!tier", "region notin (eu)", "tier"]).map(
        lambda w: f"--where {shlex.quote(w)}"
    ),
    st.lists(st.sampled_from(SITES[:4]), min_size=1, max_size=4, unique=True).map(
        lambda names: "--sites " + ",".join(names)
    ),
]
GOOD_OTHERS = st.sampled_from(
    [
        "--retries 0",
        "--retries 2",
        "-o fz_res",
        "--out fz_other",
        "--noblock",
        "--push fz_value",
        "--push fz_value,In",
        "--no-push",
        "--fresh",
        "--timeout 10",
    ]
)


@st.composite
def cell_lines(draw) -> str:
    """An %%edge option line made of real options: good ones, good ones with one
    bad or odd part, or anything the option names and odd values make."""
    mode = draw(st.sampled_from(["good", "one-bad", "chaos"]))
    if mode == "chaos":
        parts = draw(st.lists(st.sampled_from(TARGETS).flatmap(lambda s: s), max_size=3))
        parts += draw(st.lists(st.sampled_from(OTHERS).flatmap(lambda s: s), max_size=4))
        if draw(st.integers(0, 3)) == 0:
            parts.append(draw(JUNK))
    else:
        parts = draw(st.lists(st.sampled_from(GOOD_TARGETS).flatmap(lambda s: s), min_size=1, max_size=2))
        parts += draw(st.lists(GOOD_OTHERS, max_size=3))
        if mode == "one-bad":
            parts.append(draw(st.one_of(st.sampled_from(TARGETS + OTHERS).flatmap(lambda s: s), JUNK)))
    parts = draw(st.permutations(parts))
    if draw(st.integers(0, 4)) == 0:  # fuzz the timeout itself
        parts.insert(draw(st.integers(0, len(parts))), f"--timeout {draw(quoted(TIMEOUTS | noise))}")
    else:
        parts.append("--timeout 10")
    return " ".join(parts)


def check_cell(ip, line: str) -> Outcome:
    outcome = run_magic(ip, lambda: ip.run_cell_magic("edge", line, "1"))
    if outcome.kind in ("usage", "known"):
        return outcome
    # A request the magic ran: its options must parse, name a target, and run no container here.
    args = parse_options(edge_magics(ip).edge_cell, line)
    assert args.data or args.sites or args.all or args.where or args.gpus, line
    assert args.image is None, f"no site here runs containers, yet {line!r} ran"
    names = outcome.names
    if args.out:
        kept = names.get(args.out)
        if args.noblock:
            assert isinstance(kept, Job), (line, kept)
        else:
            assert isinstance(kept, JobResult), (line, kept)
            if outcome.kind == "ok":
                assert kept and all(v == 1 for v in kept.values()), (line, dict(kept))
            else:
                assert kept.errors, line
    if outcome.kind == "ok" and not args.noblock:
        assert "edge job " in outcome.output.stdout, outcome.output.stdout
    return outcome


@pytest.mark.timeout(110)
@MAGIC
@given(line=cell_lines())
@example(line="--sites tokyo --push get_ipython --timeout 10")  # was a bug: a TypeError from cloudpickle
@example(line="--sites tokyo --image x --memory 1e400 --timeout 10")  # was a bug: an OverflowError
@example(line="--sites tokyo --timeout nan")
@example(line="--sites tokyo --timeout inf")
@example(line="--sites tokyo --timeout 1e308")
@example(line="--where 'region in (us, ap)' -o fz_res --timeout 10")
@example(line="--all --noblock -o fz_res --timeout 10")
@example(line="--gpus 2 --image python:3.11 --timeout 10")
@example(line="--sites tokyo --push fz_value,__builtins__ --timeout 10")
def test_cell_magic_options(ip, line):
    check_cell(ip, line)


@pytest.mark.timeout(60)
@MAGIC
@given(line=st.text(max_size=30) | st.lists(JUNK | noise, max_size=5).map(" ".join))
@example(line='"')
@example(line="-- --all")
@example(line="--help")
def test_cell_magic_arbitrary_line(ip, line):
    outcome = check_cell(ip, line)
    # Random text naming a real target is all but impossible; it must be an error.
    assert outcome.kind in ("usage", "known") or "--" in line, (line, outcome.kind)


COMMANDS = ["fleet", "datasets", "jobs", "config", "run", "flet", "", "Fleet", "help", "--all", "show_"]
FORBIDDEN = {"connect", "disconnect", "reset", "cancel", "show"}  # shared connection; show waits 2s per id


@st.composite
def line_commands(draw) -> str:
    command = draw(st.one_of(st.sampled_from(COMMANDS[:5]), st.sampled_from(COMMANDS), st.text(max_size=6)))
    if command == "config":
        rest = draw(st.lists(st.one_of(option("--timeout", TIMEOUTS), OTHERS[0], JUNK), max_size=3))
    elif command == "run":
        rest = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(TARGETS).flatmap(lambda s: s),
                    st.sampled_from(OTHERS[:3] + OTHERS[7:]).flatmap(lambda s: s),
                    option("--timeout", TIMEOUTS),
                    JUNK,
                ),
                max_size=4,
            )
        )
        if draw(st.booleans()):
            rest += ["--", *draw(st.lists(st.sampled_from(["ls", "-l", "echo", "'hi there'", "--", "é"]), max_size=3))]
    else:
        rest = draw(st.lists(JUNK | noise, max_size=3))
    if draw(st.integers(0, 4)) == 0:
        command = draw(quoted(st.just(command)))
    return " ".join([command, *rest])


def forbidden(line: str) -> bool:
    try:
        words = shlex.split(line)
    except ValueError:
        return False  # the magic cannot read it either
    return bool(words) and words[0] in FORBIDDEN


def check_line(ip, line: str) -> Outcome:
    magics = edge_magics(ip)
    outcome = run_magic(ip, lambda: ip.run_line_magic("edge", line))
    assert outcome.kind != "failed", f"{line!r} ran a job that failed: no line command here should run one"
    assert magics.fleet is not None, f"{line!r} closed the connection"
    return outcome


@pytest.mark.timeout(110)
@MAGIC
@given(line=line_commands() | st.text(max_size=20))
@example(line='"')  # was a bug: a ValueError from shlex.split in EdgeMagics.edge
@example(line="fleet '")
@example(line="'config' --timeout 5")
@example(line='"run"')
@example(line="run --image python:3.11 --sites tokyo -- ls")
@example(line="run --image python:3.11 --all --memory 1e400 -- ls")
@example(line="run --image python:3.11 --sites tokyo")
@example(line="run --sites tokyo -- ls")
@example(line="config --retries -1 --timeout nan")
def test_line_magic_commands(ip, line):
    assume(not forbidden(line))
    outcome = check_line(ip, line)
    words = shlex.split(line) if outcome.kind == "ok" else []
    if words and words[0] == "run":
        pytest.fail(f"{line!r} ran a container command, and no site here runs containers")


@pytest.mark.timeout(60)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_show_of_any_job_id(ip, data):
    # An id the fleet does not know costs the 2 s that Fleet.job waits for a job to register.
    ran = sorted(edge_magics(ip).results)
    job = data.draw(
        st.one_of(
            st.sampled_from(ran or ["nosuchjob"]), st.sampled_from(["", "nosuchjob", "'", "a b"]), st.text(max_size=8)
        ),
        label="job",
    )
    outcome = check_line(ip, f"show {job}")
    if job in ran:
        assert outcome.kind == "ok", (job, outcome.error)


# --- the bugs this fuzzer found, one exact reproducer each (fixed) ---------------------------------


def test_an_unbalanced_quote_in_a_line_command_is_a_usage_error(ip):
    with capture_output(), pytest.raises(UsageError, match="No closing quotation"):
        ip.run_line_magic("edge", '"')


def test_push_of_an_unpicklable_name_is_a_usage_error(ip):
    with capture_output(), pytest.raises(UsageError, match="the name 'get_ipython' cannot be sent"):
        ip.run_cell_magic("edge", "--sites tokyo --push get_ipython --timeout 10", "1")


def test_a_memory_that_overflows_is_a_usage_error(ip):
    with capture_output(), pytest.raises(UsageError, match="memory must be a size"):
        ip.run_cell_magic("edge", "--sites tokyo --image x --memory 1e400 --timeout 10", "1")


def test_config_refuses_defaults_no_cell_could_use(ip):
    with capture_output(), pytest.raises(UsageError, match="--timeout must be a number of seconds above 0"):
        ip.run_line_magic("edge", "config --timeout -5")
    with capture_output(), pytest.raises(UsageError, match="--retries must be 0 or more"):
        ip.run_line_magic("edge", "config --retries -1")


def test_fuzz_helpers_recognise_only_the_known_bugs():
    try:
        Selector.parse(5)
    except SelectorError as e:
        assert origin(e) == ("selector.py", "parse") and known_bug(e) is None
    try:
        shlex.split('"')
    except ValueError as e:
        assert origin(e) is None and known_bug(e) is None, "only a bug raised through the package is known"
