"""Parsing query arguments into result specs, without a database."""

from __future__ import annotations

import pytest

from master.data.errors import InvalidQuery
from master.data.resources.builds import Builds
from master.data.resultspec import Filter, Limits, parse_result_spec

BUILDS = Builds()
LIMITS = Limits(default=100, maximum=1000)


def parse(args: dict, collection: bool = True, options=()):
    return parse_result_spec(BUILDS, args, collection=collection, limits=LIMITS, options=options)


def test_defaults() -> None:
    spec = parse({})
    assert spec.limit == 100 and spec.offset == 0 and spec.fields is None and spec.filters == [] and spec.order == ()
    assert parse({}, collection=False).limit is None


def test_fields_order_page() -> None:
    spec = parse({"field": ["buildid", "number,results"], "order": ["-number", "buildid"], "limit": ["5"],
                  "offset": ["10"]})
    assert spec.fields == ("buildid", "number", "results")
    assert spec.order == ("-number", "buildid")
    assert (spec.limit, spec.offset) == (5, 10)


@pytest.mark.parametrize("text", ["on", "true", "yes", "1", "ON", "True", "YES"])
def test_boolean_true_spellings(text: str) -> None:
    assert parse({"complete": [text]}).filters == [Filter("complete", "eq", (True,))]


@pytest.mark.parametrize("text", ["off", "false", "no", "0", "Off", "FALSE"])
def test_boolean_false_spellings(text: str) -> None:
    assert parse({"complete": [text]}).filters == [Filter("complete", "eq", (False,))]


def test_operators_and_values() -> None:
    spec = parse({"results": ["1", "2"], "number__lt": ["4"], "state_string__contains": ["x"],
                  "builderid__in": ["1,2", "3"], "workerid__notin": ["7"]})
    assert spec.filters == [
        Filter("results", "eq", (1, 2)),
        Filter("number", "lt", (4,)),
        Filter("state_string", "contains", ("x",)),
        Filter("builderid", "in", (1, 2, 3)),
        Filter("workerid", "notin", (7,)),
    ]


def test_options_pass_through() -> None:
    spec = parse({"property": ["a", "b"]}, options=("property",))
    assert spec.options == {"property": ["a", "b"]} and spec.filters == []


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"nosuch": ["1"]}, "nosuch"),
        ({"buildid__like": ["1"]}, "buildid__like"),
        ({"buildid": ["x"]}, "buildid"),
        ({"complete": ["maybe"]}, "complete"),
        ({"limit": ["1001"]}, "limit"),
        ({"limit": ["-1"]}, "limit"),
        ({"offset": ["x"]}, "offset"),
        ({"order": ["-nosuch"]}, "order"),
        ({"order": ["properties"]}, "order"),
        ({"field": ["buildid,nosuch"]}, "field"),
        ({"properties": ["{}"]}, "properties"),
        ({"number__ge": ["1", "2"]}, "number__ge"),
        ({"results__contains": ["1"]}, "results__contains"),
    ],
)
def test_errors_name_the_parameter(args: dict, parameter: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse(args)
    assert caught.value.parameter == parameter


def test_single_resources_take_only_fields() -> None:
    assert parse({"field": ["buildid"]}, collection=False).fields == ("buildid",)
    for name in ("results", "order", "limit", "offset"):
        with pytest.raises(InvalidQuery, match="only to collections"):
            parse({name: ["1"]}, collection=False)
