"""Label selectors: grammar, matching, errors, round trips. Pure, no cluster."""

from __future__ import annotations

import re

import pytest

from jupyter_edge.selector import Requirement, Selector, SelectorError, parse_label


def labels(**kw: str) -> dict[str, str]:
    """A site's labels, written as keyword arguments."""
    return dict(kw)


def parse(text: str) -> Selector:
    return Selector.parse(text)


def reqs(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """The parsed requirements as plain tuples, for readable comparisons."""
    return [(r.key, r.op, r.values) for r in parse(text).requirements]


# --- grammar ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("region=eu", [("region", "=", ("eu",))]),
        ("region==eu", [("region", "=", ("eu",))]),
        ("region!=eu", [("region", "!=", ("eu",))]),
        ("tier in (factory,store)", [("tier", "in", ("factory", "store"))]),
        ("tier notin (factory,store)", [("tier", "notin", ("factory", "store"))]),
        ("tier in (factory)", [("tier", "in", ("factory",))]),
        ("gpu", [("gpu", "exists", ())]),
        ("!draining", [("draining", "!exists", ())]),
        (
            "region=eu,tier in (factory,store),!draining",
            [
                ("region", "=", ("eu",)),
                ("tier", "in", ("factory", "store")),
                ("draining", "!exists", ()),
            ],
        ),
        ("a,b", [("a", "exists", ()), ("b", "exists", ())]),
        # keys and values may carry dots, slashes, dashes and underscores
        ("app.example.com/role=edge-1_x", [("app.example.com/role", "=", ("edge-1_x",))]),
        # "in" and "notin" are only operators after a key
        ("in", [("in", "exists", ())]),
        ("in in (in)", [("in", "in", ("in",))]),
        ("k=notin", [("k", "=", ("notin",))]),
        ("k in(a,b)", [("k", "in", ("a", "b"))]),
    ],
)
def test_grammar(text, expected):
    assert reqs(text) == expected, f"{text!r} parsed wrongly"


@pytest.mark.parametrize(
    "text",
    [
        "  region = eu ,tier  in  ( factory , store ) , ! draining  ",
        "region=eu,tier in (factory,store),!draining",
        "\tregion\t=\teu,\ntier in (\nfactory,store\n),!draining\n",
    ],
)
def test_whitespace_is_tolerated(text):
    assert reqs(text) == [
        ("region", "=", ("eu",)),
        ("tier", "in", ("factory", "store")),
        ("draining", "!exists", ()),
    ]


def test_commas_inside_parentheses_separate_values_not_requirements():
    sel = parse("zone in (a,b,c),x=y")
    assert len(sel.requirements) == 2, sel.requirements
    assert sel.requirements[0].values == ("a", "b", "c")
    assert sel.requirements[1] == Requirement("x", "=", ("y",))


def test_parse_passes_selector_through_and_none_is_empty():
    sel = parse("region=eu")
    assert Selector.parse(sel) is sel
    empty = Selector.parse(None)
    assert empty == Selector()
    assert not empty, "the empty selector is falsy"
    assert sel, "a non-empty selector is truthy"


def test_keys_in_order_without_duplicates():
    assert parse("b=1,a,b!=2,!c").keys == ["b", "a", "c"]


# --- matching -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, site, expected",
    [
        ("region=eu", labels(region="eu"), True),
        ("region=eu", labels(region="us"), False),
        ("region=eu", labels(), False),
        ("region==eu", labels(region="eu"), True),
        ("region!=eu", labels(region="us"), True),
        ("region!=eu", labels(region="eu"), False),
        # Kubernetes: != and notin hold for sites lacking the key
        ("region!=eu", labels(), True),
        ("tier notin (a,b)", labels(), True),
        ("tier notin (a,b)", labels(tier="c"), True),
        ("tier notin (a,b)", labels(tier="b"), False),
        ("tier in (a,b)", labels(tier="a"), True),
        ("tier in (a,b)", labels(tier="b"), True),
        ("tier in (a,b)", labels(tier="c"), False),
        ("tier in (a,b)", labels(), False),
        ("gpu", labels(gpu="a100"), True),
        ("gpu", labels(other="x"), False),
        ("!draining", labels(), True),
        ("!draining", labels(draining="true"), False),
        # AND
        ("region=eu,tier=store", labels(region="eu", tier="store"), True),
        ("region=eu,tier=store", labels(region="eu", tier="factory"), False),
        ("region=eu,tier=store", labels(region="us", tier="store"), False),
        ("region=eu,!draining", labels(region="eu", draining="yes"), False),
        # values compare exactly: no case folding, no prefixes
        ("region=eu", labels(region="EU"), False),
        ("region=eu", labels(region="eu-west"), False),
    ],
)
def test_matches(text, site, expected):
    assert parse(text).matches(site) is expected, f"{text!r} on {site}"


def test_empty_selector_matches_everything():
    assert Selector().matches({}) is True
    assert Selector().matches({"a": "b"}) is True
    assert Selector().unmet({"a": "b"}) == []


def test_unmet_lists_exactly_the_failing_requirements():
    sel = parse("region=eu,tier in (a,b),!draining,gpu")
    unmet = sel.unmet({"region": "eu", "tier": "c", "draining": "1"})
    assert [str(r) for r in unmet] == ["tier in (a,b)", "!draining", "gpu"]
    assert sel.unmet({"region": "eu", "tier": "a", "gpu": "x"}) == []


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, what, pos",
    [
        ("", "empty selector", 0),
        ("   ", "empty selector", 3),
        ("region=", "expected a value after '=', found the end", 7),
        ("region!=", "expected a value after '!=', found the end", 8),
        ("=eu", "expected a label key, found '='", 0),
        ("a in b", "expected '(' to open a set of values", 5),
        ("a in", "expected '(' to open a set of values, found the end", 4),
        ("a notin", "expected '(' to open a set of values, found the end", 7),
        ("a in (b", "expected ',' or ')' to close a set of values, found the end", 7),
        ("a in (b,c", "expected ',' or ')' to close a set of values, found the end", 9),
        ("a in ()", "expected a value, found ')'", 6),
        ("a in (b,)", "expected a value, found ')'", 8),
        ("a in (b c)", "expected ',' or ')' in a set of values, found 'c'", 8),
        ("a,,b", "expected a label key, found ','", 2),
        (",a", "expected a label key, found ','", 0),
        ("a,", "expected a label key, found the end", 2),
        ("a b", "expected '=', '!=', '>', '>=', '<', '<=', 'in' or 'notin' after 'a', found 'b'", 2),
        ("a!b", "expected '=', '!=', '>', '>=', '<', '<=', 'in' or 'notin' after 'a', found '!'", 1),
        ("region=eu)", "expected ',' between requirements, found ')'", 9),
        ("a=b=c", "expected ',' between requirements, found '='", 3),
        ("!", "expected a label key after '!', found the end", 1),
        ("!=eu", "expected a label key, found '!='", 0),
        ("(a)", "expected a label key, found '('", 0),
        ("a@b", "unexpected '@'", 1),
        ("region=eu, @", "unexpected '@'", 11),
        ("-a", "unexpected '-'", 0),
        ("a=(b)", "expected a value after '=', found '('", 2),
    ],
)
def test_malformed_selectors_say_what_and_where(text, what, pos):
    with pytest.raises(SelectorError, match=re.escape(f"{what} at position {pos}")) as info:
        Selector.parse(text)
    message = str(info.value)
    assert message.startswith(f"bad selector {text!r}: "), message
    assert "expected e.g. 'region=eu'" in message, "the error shows an example"


def test_selector_error_is_a_value_error():
    assert issubclass(SelectorError, ValueError)
    with pytest.raises(ValueError):
        Selector.parse("a in (")


@pytest.mark.parametrize(
    "value, type_name", [(5, "int"), (1.5, "float"), (b"a=b", "bytes"), (["a=b"], "list"), ({"a": "b"}, "dict")]
)
def test_non_string_selector_is_rejected(value, type_name):
    with pytest.raises(SelectorError, match=rf"a selector is a string like 'region=eu', not {type_name}$"):
        Selector.parse(value)


# --- str round trip -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("region=eu", "region=eu"),
        ("region==eu", "region=eu"),
        ("region != eu", "region!=eu"),
        ("tier in ( a , b )", "tier in (a,b)"),
        ("tier notin (a)", "tier notin (a)"),
        ("gpu", "gpu"),
        ("! draining", "!draining"),
        (
            "region=eu, tier in (factory,store), !draining, gpu, zone notin (x,y)",
            "region=eu,tier in (factory,store),!draining,gpu,zone notin (x,y)",
        ),
    ],
)
def test_str_is_canonical_and_round_trips(text, canonical):
    sel = parse(text)
    assert str(sel) == canonical
    again = Selector.parse(str(sel))
    assert again == sel, f"{str(sel)!r} did not parse back to the same selector"
    assert str(again) == canonical


def test_requirement_str():
    assert str(Requirement("k", "=", ("v",))) == "k=v"
    assert str(Requirement("k", "!=", ("v",))) == "k!=v"
    assert str(Requirement("k", "in", ("a", "b"))) == "k in (a,b)"
    assert str(Requirement("k", "notin", ("a",))) == "k notin (a)"
    assert str(Requirement("k", "exists")) == "k"
    assert str(Requirement("k", "!exists")) == "!k"


def test_empty_selector_str_is_empty():
    assert str(Selector()) == ""


# --- parse_label --------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("region=eu", ("region", "eu")),
        (" region = eu ", ("region", "eu")),
        ("app.example.com/tier=edge-1", ("app.example.com/tier", "edge-1")),
        ("gpu=true", ("gpu", "true")),
    ],
)
def test_parse_label(text, expected):
    assert parse_label(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "region",
        "region=",
        "=eu",
        "=",
        "",
        "region=eu=x",
        "region=e u",
        "re gion=eu",
        "-region=eu",
        "region=-eu",
        "region=eu,tier=x",
        "region=(eu)",
        "region!=eu",
    ],
)
def test_bad_labels(text):
    with pytest.raises(SelectorError, match=re.escape(f"bad label {text!r}: expected KEY=VALUE, e.g. region=eu")):
        parse_label(text)


# --- numbers, and the labels a site sets itself ------------------------------------

GIB = 2**30


@pytest.mark.parametrize(
    "text, site, matched",
    [
        ("edge.gpu.memory>=8GiB", {"edge.gpu.memory": str(8 * GIB)}, True),
        ("edge.gpu.memory>8GiB", {"edge.gpu.memory": str(8 * GIB)}, False),
        ("edge.gpu.memory>8GB", {"edge.gpu.memory": str(8 * GIB)}, True),  # 8 GB is 8e9 bytes, under 8 GiB
        ("edge.gpu.memory<16GiB", {"edge.gpu.memory": str(48 * GIB)}, False),
        ("edge.gpu.memory<=48GiB", {"edge.gpu.memory": str(48 * GIB)}, True),
        ("edge.gpu.count>1", {"edge.gpu.count": "2"}, True),
        ("edge.gpu.count>1", {"edge.gpu.count": "1"}, False),
        ("load<0.5", {"load": "0.25"}, True),
        # A site without the label, or whose label is no number, fails a comparison.
        ("edge.gpu.memory>=1", {}, False),
        ("rack>=3", {"rack": "b7"}, False),
        # A site's own label may hold several values: one matching is enough ...
        ("edge.gpu.vendor=amd", {"edge.gpu.vendor": "amd,intel"}, True),
        ("edge.gpu.vendor in (nvidia,intel)", {"edge.gpu.vendor": "amd,intel"}, True),
        ("edge.executor=docker", {"edge.executor": "python,docker"}, True),
        # ... and != / notin hold only when none does.
        ("edge.gpu.vendor!=intel", {"edge.gpu.vendor": "amd,intel"}, False),
        ("edge.gpu.vendor notin (nvidia)", {"edge.gpu.vendor": "amd,intel"}, True),
        # Labels given by hand are single values, whatever they hold.
        ("owner=amd", {"owner": "amd,intel"}, False),
    ],
)
def test_comparisons_and_several_valued_own_labels(text, site, matched):
    assert parse(text).matches(site) is matched, f"{text!r} against {site}: expected {matched}"


def test_comparisons_round_trip_and_need_a_number():
    assert reqs("edge.gpu.memory>=8GiB,edge.gpu.count<4") == [
        ("edge.gpu.memory", ">=", ("8GiB",)),
        ("edge.gpu.count", "<", ("4",)),
    ]
    assert str(parse("edge.gpu.memory>=8GiB,edge.gpu.count<4")) == "edge.gpu.memory>=8GiB,edge.gpu.count<4"
    with pytest.raises(
        SelectorError, match=re.escape("expected a number (or bytes, like 8GiB) after '>=', found 'lots'")
    ):
        parse("edge.gpu.memory>=lots")
    with pytest.raises(SelectorError, match="expected a number after '<', found the end"):
        parse("edge.gpu.count<")
