"""Placement: which sites run a request, from a catalog snapshot. Pure, no cluster."""

from __future__ import annotations

import re

import pytest

from jupyter_edge.catalog import GPU, Catalog, DatasetShard, Site
from jupyter_edge.placement import Placement, PlacementError, Request, Target, place
from jupyter_edge.selector import Selector, SelectorError


def site(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    gpus: int = 0,
    state: str = "running",
    running: int = 0,
) -> Site:
    """A site; ``data`` maps dataset -> the shard this site holds."""
    return Site(
        name=name,
        address=f"tcp://{name}:8786",
        state=state,
        labels=dict(labels or {}),
        datasets={d: DatasetShard(d, s, f"/data/{d}/{s}", "local") for d, s in (data or {}).items()},
        gpus=[GPU(i) for i in range(gpus)],
        running=running,
    )


def catalog(*sites: Site) -> Catalog:
    return Catalog({s.name: s for s in sites})


def fleet() -> Catalog:
    """Three EU sites hold ``sensors`` (s1 twice, s2 once); paris also holds ``logs``;
    oslo holds nothing and has GPUs; lisbon is down."""
    return catalog(
        site("berlin", labels={"region": "eu", "tier": "factory"}, data={"sensors": "s1"}),
        site("munich", labels={"region": "eu", "tier": "store"}, data={"sensors": "s1"}),
        site("paris", labels={"region": "eu", "tier": "store"}, data={"sensors": "s2", "logs": "l1"}),
        site("oslo", labels={"region": "north", "gpu": "a100"}, gpus=2),
        site("lisbon", labels={"region": "eu"}, data={"sensors": "s2"}, state="stopped"),
    )


def run(catalog: Catalog, exclude=(), **kw) -> list[Target]:
    return list(place(Request.build(**kw), catalog, exclude=exclude).targets)


def names(targets) -> list[str]:
    return [t.site for t in targets]


def pairs(targets) -> list[tuple[str | None, str]]:
    """(shard, site) per execution."""
    return [(t.shard, t.site) for t in targets]


# --- no target ----------------------------------------------------------------


def test_no_target_is_an_error_explaining_how_to_name_one():
    with pytest.raises(PlacementError) as info:
        place(Request(), fleet())
    message = str(info.value)
    assert message.startswith("no target: "), message
    for hint in ("data=NAME", "sites=[...]", "where='region=eu'", "gpus=N", "all=True"):
        assert hint in message, f"the error must mention {hint}: {message}"


def test_no_target_even_on_an_empty_fleet():
    with pytest.raises(PlacementError, match=r"^no target: "):
        place(Request.build(), Catalog())


def test_placement_error_is_a_lookup_error():
    assert issubclass(PlacementError, LookupError)


def test_place_returns_placement_with_the_request():
    request = Request.build(all=True)
    result = place(request, fleet())
    assert isinstance(result, Placement)
    assert result.request is request
    assert isinstance(result.targets, tuple)


# --- data=NAME ------------------------------------------------------------------


def test_data_one_execution_per_shard():
    targets = run(fleet(), data="sensors")
    assert [t.shard for t in targets] == ["s1", "s2"], "one execution per shard, in shard order"
    # s1: berlin and munich both idle, the tie goes to the first name
    assert pairs(targets) == [("s1", "berlin"), ("s2", "paris")]
    for t in targets:
        assert t.dataset == "sensors"
        assert t.address == f"tcp://{t.site}:8786"
        assert t.gpus == 0


def test_data_prefers_the_least_busy_replica():
    cat = catalog(
        site("berlin", data={"d": "s1"}, running=3),
        site("munich", data={"d": "s1"}, running=1),
        site("paris", data={"d": "s1"}, running=2),
    )
    assert pairs(run(cat, data="d")) == [("s1", "munich")]


def test_data_ties_broken_by_name_not_catalog_order():
    cat = catalog(
        site("zurich", data={"d": "s1"}, running=1),
        site("bern", data={"d": "s1"}, running=1),
        site("geneva", data={"d": "s1"}, running=1),
    )
    assert pairs(run(cat, data="d")) == [("s1", "bern")]


def test_data_each_shard_picks_its_own_least_busy_replica():
    cat = catalog(
        site("a", data={"d": "s1"}, running=2),
        site("b", data={"d": "s1"}, running=0),
        site("c", data={"d": "s2"}, running=0),
        site("d", data={"d": "s2"}, running=1),
    )
    assert pairs(run(cat, data="d")) == [("s1", "b"), ("s2", "c")]


def test_data_busy_counts_come_from_the_whole_fleet():
    # running counts executions fleet-wide, whatever dataset they read
    cat = catalog(
        site("a", data={"d": "s1", "other": "o1"}, running=1),
        site("b", data={"d": "s1"}, running=0),
    )
    assert pairs(run(cat, data="d")) == [("s1", "b")]


def test_data_excludes_sites_not_running():
    cat = catalog(
        site("a", data={"d": "s1"}, state="stopped"),
        site("b", data={"d": "s1"}, running=5),
    )
    assert pairs(run(cat, data="d")) == [("s1", "b")], "a stopped site is never chosen, however idle"


def test_data_exclude_picks_another_replica():
    assert pairs(run(fleet(), data="sensors", exclude=["berlin"])) == [("s1", "munich"), ("s2", "paris")]


def test_data_unknown_dataset_suggests_close_match_and_lists_known():
    with pytest.raises(
        PlacementError, match=re.escape("no dataset named 'sensros'; did you mean 'sensors'? known: logs, sensors")
    ):
        run(fleet(), data="sensros")


def test_data_unknown_dataset_without_close_match():
    with pytest.raises(PlacementError) as info:
        run(fleet(), data="zzzzzz")
    message = str(info.value)
    assert message == "no dataset named 'zzzzzz'; known: logs, sensors", message
    assert "did you mean" not in message


def test_data_on_empty_fleet():
    with pytest.raises(PlacementError, match=re.escape("no dataset named 'sensors'; known: none")):
        run(Catalog(), data="sensors")


def test_data_with_where_skips_shards_without_a_matching_holder():
    # only berlin is a factory: s1 runs there, s2 (paris, lisbon) is skipped
    assert pairs(run(fleet(), data="sensors", where="tier=factory")) == [("s1", "berlin")]


def test_data_with_where_picks_a_matching_replica():
    assert pairs(run(fleet(), data="sensors", where="tier=store")) == [("s1", "munich"), ("s2", "paris")]


def test_data_with_where_no_shard_remains_lists_each_rejection():
    with pytest.raises(PlacementError) as info:
        run(fleet(), data="sensors", where="region=us")
    message = str(info.value)
    assert message == (
        "4 sites hold 'sensors', none matches region=us: berlin (region=eu), "
        "lisbon (region=eu), munich (region=eu), paris (region=eu)"
    ), message


def test_data_rejection_says_missing_key():
    cat = catalog(site("a", data={"d": "s1"}), site("b", labels={"zone": "x"}, data={"d": "s1"}))
    with pytest.raises(
        PlacementError, match=re.escape("2 sites hold 'd', none matches zone=y: a (no zone), b (zone=x)")
    ):
        run(cat, data="d", where="zone=y")


def test_data_rejection_one_holder_grammar():
    cat = catalog(site("a", labels={"region": "eu"}, data={"d": "s1"}))
    with pytest.raises(PlacementError, match=re.escape("1 site holds 'd', none matches region=us: a (region=eu)")):
        run(cat, data="d", where="region=us")


def test_data_all_excluded_says_so():
    cat = catalog(site("a", data={"d": "s1"}), site("b", data={"d": "s2"}))
    with pytest.raises(
        PlacementError, match=re.escape("2 sites hold 'd', none matches the request: a (excluded), b (excluded)")
    ):
        run(cat, data="d", exclude=["a", "b"])


def test_data_with_gpus():
    cat = catalog(
        site("a", data={"d": "s1"}, gpus=1),
        site("b", data={"d": "s1"}, gpus=2, running=4),
    )
    targets = run(cat, data="d", gpus=2)
    assert pairs(targets) == [("s1", "b")], "only b has 2 GPUs, busy or not"
    assert targets[0].gpus == 2
    with pytest.raises(PlacementError, match=re.escape("2 sites hold 'd', none matches 3 GPUs: a (1 GPU), b (2 GPUs)")):
        run(cat, data="d", gpus=3)


def test_data_restricted_to_shards():
    request = Request(data="sensors", shards=("s2",))
    assert pairs(place(request, fleet()).targets) == [("s2", "paris")]


def test_data_restricted_to_a_shard_nobody_holds():
    request = Request(data="sensors", shards=("s9",))
    with pytest.raises(PlacementError, match=re.escape("no site holds shard 's9' of 'sensors'")):
        place(request, fleet())


def test_data_retry_of_a_lost_shard_with_no_other_replica():
    # the retry excludes the replica that failed; s2's only running holder is paris
    request = Request(data="sensors", shards=("s2",))
    with pytest.raises(
        PlacementError,
        match=re.escape("2 sites hold 'sensors', none matches the request: lisbon (state stopped), paris (excluded)"),
    ):
        place(request, fleet(), exclude=["paris"])


# --- sites=[...] ----------------------------------------------------------------


def test_named_sites_one_execution_each_in_given_order():
    targets = run(fleet(), sites=["paris", "oslo", "berlin"])
    assert names(targets) == ["paris", "oslo", "berlin"]
    assert all(t.dataset is None and t.shard is None for t in targets)
    assert targets[1].address == "tcp://oslo:8786"


def test_named_sites_deduplicated():
    assert names(run(fleet(), sites=["oslo", "oslo", "paris"])) == ["oslo", "paris"]


def test_named_sites_from_comma_string():
    assert names(run(fleet(), sites="oslo, paris")) == ["oslo", "paris"]


def test_named_site_unknown_suggests_close_match():
    with pytest.raises(
        PlacementError,
        match=re.escape("no site named 'berlim'; did you mean 'berlin'? known: berlin, lisbon, munich, oslo, paris"),
    ):
        run(fleet(), sites=["berlim"])


def test_named_site_unknown_on_empty_fleet():
    with pytest.raises(PlacementError, match=re.escape("no site named 'a'; known: none")):
        run(Catalog(), sites=["a"])


def test_named_sites_all_problems_reported_together():
    with pytest.raises(PlacementError) as info:
        run(fleet(), sites=["berlim", "oslo", "lisbon"])
    message = str(info.value)
    # oslo is fine, so it is not among the problems (only in the list of known sites)
    assert message == (
        "no site named 'berlim'; did you mean 'berlin'? known: berlin, lisbon, munich, oslo, paris; "
        "site 'lisbon' does not match the request: state stopped"
    ), message


def test_named_site_failing_filter_says_which_and_why():
    with pytest.raises(PlacementError, match=re.escape("site 'berlin' does not match region=north: region=eu")):
        run(fleet(), sites=["berlin"], where="region=north")
    with pytest.raises(PlacementError, match=re.escape("site 'berlin' does not match 1 GPU: 0 GPUs")):
        run(fleet(), sites=["berlin"], gpus=1)
    with pytest.raises(PlacementError, match=re.escape("site 'berlin' does not match gpu: no gpu")):
        run(fleet(), sites=["berlin"], where="gpu")


def test_named_site_passing_filter():
    targets = run(fleet(), sites=["oslo"], where="gpu", gpus=2)
    assert names(targets) == ["oslo"]
    assert targets[0].gpus == 2


def test_named_site_excluded():
    with pytest.raises(PlacementError, match=re.escape("site 'oslo' does not match the request: excluded")):
        run(fleet(), sites=["oslo"], exclude=["oslo"])


def test_named_site_with_dataset():
    targets = run(fleet(), sites=["munich", "paris"], data="sensors")
    assert pairs(targets) == [("s1", "munich"), ("s2", "paris")]
    assert all(t.dataset == "sensors" for t in targets)


def test_named_site_without_the_dataset():
    with pytest.raises(PlacementError, match=re.escape("site 'oslo' holds no shard of 'sensors'")):
        run(fleet(), sites=["oslo"], data="sensors")


def test_named_site_with_unknown_dataset():
    with pytest.raises(
        PlacementError, match=re.escape("no dataset named 'lgs'; did you mean 'logs'? known: logs, sensors")
    ):
        run(fleet(), sites=["paris"], data="lgs")


# --- all=True -------------------------------------------------------------------


def test_all_one_per_running_site_sorted():
    targets = run(fleet(), all=True)
    assert names(targets) == ["berlin", "munich", "oslo", "paris"], "lisbon is stopped"
    assert all(t.dataset is None and t.shard is None and t.gpus == 0 for t in targets)


def test_all_with_where():
    assert names(run(fleet(), all=True, where="tier=store")) == ["munich", "paris"]


def test_all_with_exclude():
    assert names(run(fleet(), all=True, exclude=["oslo", "berlin"])) == ["munich", "paris"]


def test_all_with_data_runs_every_replica():
    targets = run(fleet(), data="sensors", all=True)
    assert pairs(targets) == [("s1", "berlin"), ("s1", "munich"), ("s2", "paris")], (
        "every running replica of every shard"
    )


def test_all_with_data_and_where():
    assert pairs(run(fleet(), data="sensors", all=True, where="tier=store")) == [("s1", "munich"), ("s2", "paris")]


def test_all_on_empty_fleet():
    with pytest.raises(PlacementError, match=re.escape("the fleet has no sites: start one with `jupyter-edge worker`")):
        run(Catalog(), all=True)


def test_all_with_every_site_down():
    cat = catalog(site("a", state="stopped"), site("b", state="closing"))
    with pytest.raises(
        PlacementError, match=re.escape("no site matches the request: a (state stopped), b (state closing)")
    ):
        run(cat, all=True)


# --- where / gpus alone ------------------------------------------------------------


def test_where_alone_one_per_matching_site():
    assert names(run(fleet(), where="region=eu")) == ["berlin", "munich", "paris"]
    assert names(run(fleet(), where="tier!=store")) == ["berlin", "oslo"], "!= includes sites without the key"
    assert names(run(fleet(), where="!tier")) == ["oslo"]


def test_where_accepts_selector_object():
    assert names(run(fleet(), where=Selector.parse("gpu"))) == ["oslo"]


def test_where_nothing_matches():
    with pytest.raises(PlacementError) as info:
        run(fleet(), where="region=us")
    message = str(info.value)
    assert message == (
        "no site matches region=us: berlin (region=eu), lisbon (region=eu), munich (region=eu), "
        "oslo (region=north), paris (region=eu)"
    ), message


def test_where_on_empty_fleet():
    with pytest.raises(PlacementError, match="the fleet has no sites"):
        run(Catalog(), where="region=eu")


def test_gpus_alone_requires_enough_gpus():
    cat = catalog(site("a", gpus=1), site("b", gpus=2), site("c", gpus=4), site("d"))
    assert names(run(cat, gpus=1)) == ["a", "b", "c"]
    assert names(run(cat, gpus=2)) == ["b", "c"]
    targets = run(cat, gpus=4)
    assert names(targets) == ["c"]
    assert targets[0].gpus == 4


def test_gpus_on_a_fleet_without_gpus():
    cat = catalog(site("a"), site("b"))
    with pytest.raises(PlacementError) as info:
        run(cat, gpus=1)
    message = str(info.value)
    assert message == "no site has 1 GPU: a (0 GPUs), b (0 GPUs)", message


def test_gpus_too_many():
    cat = catalog(site("a", gpus=1), site("b", gpus=2))
    with pytest.raises(PlacementError, match=re.escape("no site has 3 GPUs: a (1 GPU), b (2 GPUs)")):
        run(cat, gpus=3)


def test_gpus_and_where():
    cat = catalog(site("a", labels={"region": "eu"}, gpus=1), site("b", labels={"region": "us"}, gpus=2))
    assert names(run(cat, gpus=1, where="region=eu")) == ["a"]
    with pytest.raises(
        PlacementError, match=re.escape("no site matches region=eu and 2 GPUs: a (1 GPU), b (region=us)")
    ):
        run(cat, gpus=2, where="region=eu")


def test_stopped_gpu_site_not_used():
    cat = catalog(site("a", gpus=8, state="stopped"), site("b", gpus=1))
    assert names(run(cat, gpus=1)) == ["b"]


def test_exclude_skips_matching_sites():
    assert names(run(fleet(), where="region=eu", exclude=["munich"])) == ["berlin", "paris"]
    assert names(run(fleet(), where="region=eu", exclude=iter(["munich", "paris"]))) == ["berlin"]


def test_exclude_of_unknown_site_is_harmless():
    assert names(run(fleet(), where="region=north", exclude=["nowhere"])) == ["oslo"]


# --- truncation -------------------------------------------------------------------


def test_long_rejection_lists_are_truncated():
    cat = catalog(*(site(f"s{i:02d}", labels={"region": "eu"}) for i in range(12)))
    with pytest.raises(PlacementError) as info:
        run(cat, where="region=us")
    message = str(info.value)
    listed = [f"s{i:02d} (region=eu)" for i in range(8)]
    assert message == f"no site matches region=us: {', '.join(listed)}, and 4 more", message
    assert "s08" not in message


def test_rejection_list_of_exactly_eight_is_not_truncated():
    cat = catalog(*(site(f"s{i}", gpus=0) for i in range(8)))
    with pytest.raises(PlacementError) as info:
        run(cat, gpus=1)
    message = str(info.value)
    assert "more" not in message, message
    assert "s7 (0 GPUs)" in message


def test_long_dataset_rejection_lists_are_truncated():
    cat = catalog(*(site(f"s{i:02d}", labels={"region": "eu"}, data={"d": f"p{i % 3}"}) for i in range(10)))
    with pytest.raises(
        PlacementError,
        match=r"^10 sites hold 'd', none matches region=us: s00 \(region=eu\), .*"
        r"s07 \(region=eu\), and 2 more$",
    ):
        run(cat, data="d", where="region=us")


# --- Request.build ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gpus": -1}, "gpus must be a whole number of GPUs per execution, not -1"),
        ({"gpus": True}, "gpus must be a whole number of GPUs per execution, not True"),
        ({"gpus": False}, "gpus must be a whole number of GPUs per execution, not False"),
        ({"gpus": 1.0}, "gpus must be a whole number of GPUs per execution, not 1.0"),
        ({"gpus": "2"}, "gpus must be a whole number of GPUs per execution, not '2'"),
        ({"sites": []}, "sites must be a non-empty list of site names"),
        ({"sites": ()}, "sites must be a non-empty list of site names"),
        ({"sites": ""}, "sites must be a non-empty list of site names"),
        ({"sites": " , ,"}, "sites must be a non-empty list of site names"),
        ({"sites": ["a", ""]}, "sites must be a non-empty list of site names"),
        ({"sites": ["a", "  "]}, "sites must be a non-empty list of site names"),
        ({"sites": ["a", 1]}, "sites must be a non-empty list of site names"),
        ({"sites": [None]}, "sites must be a non-empty list of site names"),
        ({"sites": 5}, "sites must be a non-empty list of site names"),
        ({"data": 5}, "data must be a dataset name, not 5"),
        ({"data": ""}, "data must be a dataset name, not ''"),
        ({"data": ["sensors"]}, r"data must be a dataset name, not \['sensors'\]"),
    ],
)
def test_build_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Request.build(**kwargs)


def test_build_bad_selector_is_a_value_error():
    with pytest.raises(SelectorError, match="bad selector 'region='"):
        Request.build(where="region=")
    with pytest.raises(ValueError):
        Request.build(where="a in (")


def test_build_normalises():
    request = Request.build(data="d", where="region = eu", gpus=None, sites=[" a ", "b"], all=1)
    assert request.data == "d"
    assert request.where == Selector.parse("region=eu")
    assert request.gpus == 0, "gpus=None means no GPUs"
    assert request.sites == ("a", "b"), "site names are stripped and kept as a tuple"
    assert request.all is True
    assert Request.build(sites="a,b,,").sites == ("a", "b")
    assert Request.build(gpus=0).gpus == 0
    assert Request.build(gpus=3).gpus == 3


def test_has_target():
    assert not Request.build().has_target
    assert Request.build(data="d").has_target
    assert Request.build(sites=["a"]).has_target
    assert Request.build(all=True).has_target
    assert Request.build(where="a").has_target
    assert Request.build(gpus=1).has_target
    assert not Request.build(gpus=0, where=None).has_target


def test_describe():
    assert Request.build().describe() == "no target"
    assert Request.build(data="d", sites=["a", "b"], all=True, where="x=y", gpus=2).describe() == (
        "data=d, sites=a,b, all, where x=y, gpus=2"
    )


# --- Request round trip -------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        Request(),
        Request.build(data="sensors"),
        Request.build(data="sensors", where="region=eu,tier in (a,b),!draining", gpus=2, all=True),
        Request.build(sites=["a", "b"], where="gpu"),
        Request(data="sensors", shards=("s1", "s2")),
        Request(data="sensors", shards=()),
    ],
)
def test_request_round_trip(request_):
    data = request_.to_dict()
    back = Request.from_dict(data)
    assert back == request_, f"{data} did not round-trip"
    assert back.to_dict() == data


def test_request_to_dict_shape():
    data = Request.build(data="d", where="region==eu", gpus=1, sites="a,b").to_dict()
    assert data == {
        "data": "d",
        "where": "region=eu",
        "gpus": 1,
        "sites": ["a", "b"],
        "all": False,
        "shards": None,
        "executor": None,
    }
    assert Request().to_dict()["where"] is None, "the empty selector is stored as None, not ''"


def test_request_from_dict_tolerates_missing_keys():
    assert Request.from_dict({}) == Request()
    assert Request.from_dict({"data": "d"}) == Request(data="d")


# --- offline sites: known, listed, never placed on silently ------------------------


def offline_fleet() -> Catalog:
    """berlin and paris hold shards of sensors; paris left the fleet."""
    catalog = fleet()
    paris = catalog.sites["paris"]
    paris.state, paris.offline_since, paris.offline_reason = "offline", 1_700_000_000.0, "silent for 31 s"
    return catalog


def test_a_shard_held_only_by_offline_sites_fails_naming_them():
    with pytest.raises(PlacementError) as info:
        run(offline_fleet(), data="sensors", where="region=eu,tier=store")
    message = str(info.value)
    assert "whose every holder is offline: shard 's2' (held by paris, offline)" in message, message
    assert "paris (offline since " in message and "silent for 31 s" in message, message


def test_an_offline_site_that_would_not_qualify_anyway_is_no_reason_to_fail():
    # tier=factory matches only berlin: the offline store paris is filtered out, not waited for
    assert pairs(run(offline_fleet(), data="sensors", where="tier=factory")) == [("s1", "berlin")]


def test_all_skips_offline_sites_and_naming_one_says_so():
    names = [t.site for t in run(offline_fleet(), all=True)]
    assert "paris" not in names and "berlin" in names
    with pytest.raises(PlacementError, match=r"site 'paris' does not match the request: offline since .*silent"):
        run(offline_fleet(), sites=["paris"])


def test_with_a_queue_a_shard_held_only_offline_waits_for_its_holders():
    targets = run_queued(offline_fleet(), data="sensors", where="region=eu,tier=store")
    assert [(t.shard, t.site, t.waiting_for, t.address) for t in targets] == [
        ("s1", "munich", (), targets[0].address),
        ("s2", "paris", ("paris",), ""),
    ]
    assert targets[1].queued and not targets[0].queued


def test_with_a_queue_all_and_named_sites_wait_for_offline_ones_that_match():
    everyone = run_queued(offline_fleet(), all=True)
    assert [t.site for t in everyone if t.queued] == ["paris"]
    assert [t.site for t in run_queued(offline_fleet(), sites=["paris"]) if t.queued] == ["paris"]
    # a filter the offline site would not pass anyway is no reason to wait for it
    assert [t.site for t in run_queued(offline_fleet(), where="tier=factory")] == ["berlin"]


def run_queued(catalog: Catalog, **kw) -> list[Target]:
    return list(place(Request.build(**kw), catalog, queue=True).targets)


# --- GPUs of several vendors, and the labels sites set themselves ---------------------


def gpu_site(name: str, *vendors: str, memory: int | None = None) -> Site:
    s = site(name, labels={"edge.gpu.vendor": ",".join(dict.fromkeys(vendors))} if vendors else {})
    s.gpus = [GPU(i, vendor=v, memory_total=memory) for i, v in enumerate(vendors)]
    if memory:
        s.labels["edge.gpu.memory"] = str(memory)
    return s


def test_gpus_of_a_vendor():
    cat = catalog(gpu_site("jetson", "nvidia", memory=64 << 30), gpu_site("mixed", "amd", "intel"), gpu_site("cpu"))
    assert names(run(cat, where="edge.gpu.vendor=amd", gpus=1)) == ["mixed"]
    assert names(run(cat, where="edge.gpu.vendor in (nvidia,intel)", gpus=1)) == ["jetson", "mixed"]
    # Two GPUs, both AMD: the mixed site has one AMD GPU and one Intel GPU.
    with pytest.raises(PlacementError) as info:
        run(cat, where="edge.gpu.vendor=amd", gpus=2)
    assert "mixed (1 amd GPU)" in str(info.value), str(info.value)
    assert names(run(cat, gpus=2)) == ["mixed"], "without a vendor, any two GPUs will do"
    assert Request.build(where="edge.gpu.vendor in (nvidia,amd),edge.gpu.vendor=amd").gpu_vendors == ("amd",)
    assert Request.build(where="region=eu").gpu_vendors is None


def test_gpu_memory_is_compared_and_explained_in_bytes():
    cat = catalog(gpu_site("small", "nvidia", memory=8 << 30), gpu_site("large", "amd", memory=48 << 30))
    assert names(run(cat, where="edge.gpu.memory>=16GiB")) == ["large"]
    with pytest.raises(PlacementError) as info:
        run(cat, where="edge.gpu.memory>=80GiB")
    assert "large (edge.gpu.memory=48.00 GiB), small (edge.gpu.memory=8.00 GiB)" in str(info.value), str(info.value)


def test_executor_is_one_of_a_sites_executors():
    cat = catalog(
        site("a", labels={"edge.executor": "python,docker"}),
        site("b", labels={"edge.executor": "python"}),
    )
    assert names(run(cat, all=True, executor="docker")) == ["a"]
