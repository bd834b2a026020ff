"""JSON nested deeper than anyone means: one sentence and a 400, never a RecursionError.

Found from outside (issue 17, finding 10): params of ``[[[[…]]]]`` 100,000 deep made the
chaincode fail inside (a 500, a traceback in its log), and the client, the schema checks
and canonical JSON raised RecursionError. Every JSON argument is now refused past
``MAX_JSON_DEPTH`` levels, in the same words, however deep and in whichever part.
"""

from __future__ import annotations

import json

import pytest

from flowblock.canonical import canonical_json
from flowblock.client import Client
from flowblock.cohorts import TRANSIENT_FIELD
from flowblock.errors import InvalidArgument
from flowblock.schema import check_schema, validate
from flowblock.testing.chaincode import LocalGateway
from flowblock.testing.flowblock_ledger import LocalDriver, World
from flowblock.vocabulary import ACCESS_FIELD, CONSENT_FIELD, MAX_JSON_DEPTH, RECORDS_FIELD

PARAMS = json.dumps({"column": "age"})
#: Just past the limit; past Python's recursion limit; what the attack sent.
DEPTHS = (MAX_JSON_DEPTH + 1, 1_500, 100_000)


def deep_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"":' * depth + "0" + "}" * depth


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


#: Every transaction that reads a JSON argument: (who, function, arguments before and
#: after the deep one, its name, whether it is a submit), with the state each needs.
CALLS = {
    "Publish": ("hospital_admin", "catalogue:Publish", [], [], "method", True),
    "SetRules": ("hospital_admin", "SetRules", [], [], "rules", True),
    "RegisterDataset": (
        "steward", "records:RegisterDataset", ["deep-dataset", "tabular"], [], "schema", True
    ),
    "CurrentParts": ("executor", "records:CurrentParts", ["<dataset>"], [], "record_ids", False),
    "Request params": (
        "alice", "Request", ["<method>", "", "<dataset>"], ["research", "[]"], "params", True
    ),
    "Request inputs": (
        "alice", "Request", ["<method>", "", "<dataset>", PARAMS, "research"], [], "inputs", True
    ),
    "Complete": ("executor", "Complete", ["<running>"], [], "result", True),
    "Fail": ("executor", "Fail", ["<running>"], [], "failure", True),
}  # fmt: skip


@pytest.fixture(scope="module")
def local_world(tmp_path_factory, demo_world):
    """One in-process world for every case: a dataset, a method, a running and a done token."""
    world = World(LocalDriver(tmp_path_factory.mktemp("deep")), demo_world)
    world.setup(rules={"auto_approve": {"methods": [world.method], "purposes": ["research"],
                                        "organisations": ["University"]}})  # fmt: skip
    done = world.running(purpose="research")["token_id"]
    world.submit(world.executor, "Complete", done, world.result())
    world.names = {
        "<dataset>": world.dataset,
        "<method>": world.method,
        "<running>": world.running(purpose="research")["token_id"],
        "<done>": done,
    }
    yield world
    world.driver.close()


def refuse(world: World, call: str, deep: str) -> None:
    who, function, before, after, argument, submit = CALLS[call]
    names = world.names
    args = [names.get(a, a) for a in before] + [deep] + [names.get(a, a) for a in after]
    world.refused(
        400, f"{argument} is nested more than {MAX_JSON_DEPTH} levels deep",
        getattr(world, who), function, *args, submit=submit,
    )  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize("shape", [deep_list, deep_object])
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_json_argument_refuses_deep_nesting_in_one_sentence(local_world, call, depth, shape):
    deep = shape(depth)
    if call == "Fail":  # a failure is at most 4 KiB: as deep as that allows
        deep = shape(min(depth, 4096 // 5))
    refuse(local_world, call, deep)


@pytest.mark.unit
@pytest.mark.parametrize("shape", [deep_list, deep_object])
def test_a_deep_cohort_part_in_transient_data_is_refused_in_one_sentence(local_world, shape):
    local_world.refused(
        400, f"the cohort part is nested more than {MAX_JSON_DEPTH} levels deep",
        local_world.executor, "consent:RecordUsage", local_world.names["<done>"],
        transient={TRANSIENT_FIELD: shape(100_000).encode()},
    )  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize(
    ("who", "function", "field", "argument"),
    [
        ("steward", "records:RegisterRecords", RECORDS_FIELD, "records"),
        ("patients", "consent:Grant", CONSENT_FIELD, "the transient field 'consent'"),
        ("bob", "access:RequestRead", ACCESS_FIELD, "the transient field 'access'"),
    ],
)
def test_deep_transient_fields_are_refused_in_one_sentence(
    local_world, who, function, field, argument
):
    caller = getattr(local_world, who)
    args = [local_world.dataset] if function == "records:RegisterRecords" else []
    local_world.refused(
        400, f"{argument} is nested more than {MAX_JSON_DEPTH} levels deep",
        caller[0] if isinstance(caller, list) else caller, function, *args,
        transient={field: deep_list(100_000).encode()},
    )  # fmt: skip


@pytest.mark.unit
def test_nesting_up_to_the_limit_is_judged_on_its_merits(local_world):
    inner = json.dumps(nested(MAX_JSON_DEPTH - 1))
    local_world.refused(
        400, "params.column must be a string", local_world.alice, "Request",
        local_world.method, "", local_world.dataset, '{"column": ' + inner + "}", "research", "[]",
    )  # fmt: skip


def test_deep_arguments_through_the_raw_gateway_of_a_devnet(devnet_driver, demo_world):
    world = World(devnet_driver, demo_world).setup()
    world.names = {"<dataset>": world.dataset, "<method>": world.method}
    for call in ("Request params", "Request inputs", "Publish"):
        for shape in (deep_list, deep_object):
            refuse(world, call, shape(100_000))
    # Nothing was stored, and the chaincode still serves a request as asked.
    token = world.request()
    tokens = world.evaluate(world.alice, "ListTokens", "", 1000, "")["tokens"]
    assert [t["token_id"] for t in tokens if t["dataset"] == world.dataset] == [token["token_id"]]


@pytest.mark.unit
def test_the_client_refuses_deep_params_before_sending_them(local_world):
    client = Client(LocalGateway(local_world.driver.ledger, local_world.alice))
    for params, inputs, argument in (
        ({"column": nested(100_000)}, (), "params"),
        ({"column": nested(MAX_JSON_DEPTH)}, (), "params"),
        ({"column": "age"}, nested(100_000), "inputs"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            client.compute(local_world.method, local_world.dataset, params, inputs=inputs)
        said = f"{argument} must be nested at most {MAX_JSON_DEPTH} levels deep."
        assert str(refused.value) == said


@pytest.mark.unit
def test_schemas_and_canonical_json_refuse_deep_values_in_one_sentence():
    deep = nested(100_000)
    with pytest.raises(InvalidArgument, match=f"params must be nested at most {MAX_JSON_DEPTH}"):
        validate(deep, {"type": "array"})
    with pytest.raises(InvalidArgument, match="params must be nested"):
        validate({"column": [[[1]]]}, json.loads(deep_object(100)))
    schema: dict = {"type": "array"}
    for _ in range(100_000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidArgument, match=r"method\.parameters must be nested at most"):
        check_schema(schema, "method.parameters")
    with pytest.raises(InvalidArgument, match="must be nested at most"):
        canonical_json(deep)
    # As deep as allowed is still fine.
    validate(nested(MAX_JSON_DEPTH), {"type": "array"})
    assert canonical_json(nested(MAX_JSON_DEPTH)) == deep_list(MAX_JSON_DEPTH).encode()
