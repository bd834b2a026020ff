"""Every chaincode function, called by every role with arguments an attacker chooses.

Property-based (hypothesis): whatever the arguments — wrong arity, text, numbers, huge
or negative, deep or wide JSON, unicode, empty — the chaincode answers with success or
a refusal of its own (a 4xx status and one sentence), never an internal error (500),
which would mean an exception escaped a rule; and a refusal changes nothing.
"""

from __future__ import annotations

import inspect
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowblock.chaincode.contracts import flowblock_chaincode
from flowblock.testing.chaincode import ChaincodeRefused
from flowblock.testing.flowblock_ledger import LocalDriver, World

pytestmark = pytest.mark.unit

CHAINCODE = flowblock_chaincode()
#: (the name a client calls it by, how many arguments it takes) of every transaction.
FUNCTIONS = sorted(
    (fn if name == CHAINCODE.default else f"{name}:{fn}",
     len(inspect.signature(function).parameters) - 1)  # all but the context
    for name, contract in CHAINCODE.contracts.items()
    for fn, function in contract.transactions().items()
)  # fmt: skip
ROLES = ("alice", "patient", "steward", "hospital_admin", "executor", "auditor")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
deep = st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth)
argument = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e309", "NaN", "null", "true", "{}", "[]", "C", "RWC",
                     "org:University", "user:alice@University", "2027-12-31", "9" * 40]),
    st.integers(-(10**30), 10**30).map(str),
    json_values.map(json.dumps),
    deep,
    st.text(alphabet="\x00\n\r\t\ud7ff\ue000\U0010ffff{}[]\"':,", max_size=30),
)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world) -> World:
    """A small world on an in-process ledger: a dataset, a method, consents, a token."""
    world = World(LocalDriver(tmp_path_factory.mktemp("fuzz")), demo_world)
    world.setup(rules={"auto_approve": {"methods": [world.method], "purposes": ["research"],
                                        "organisations": ["University"]}})  # fmt: skip
    token = world.running(purpose="research")
    grant = world.grant(world.patients[2], "user:bob@University", "R", "care")
    #: Names that exist, so that calls get past "there is no …" to the rules behind it.
    world.known = [
        world.dataset, world.method, "1.0", token["token_id"], grant["grant_id"],
        f"{world.dataset}-000000", world.patients[0].key, "research",
        world.result(), world.result(cohort_size=-1), world.result(encrypted=""),
        '{"kind": "computation_failed", "message": "x", "rule": "", "status": 0}',
    ]  # fmt: skip
    yield world
    world.driver.close()


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), call=st.sampled_from(FUNCTIONS), role=st.sampled_from(ROLES))
def test_no_argument_makes_the_chaincode_fail_inside(world, data, call, role):
    function, arity = call
    chosen = st.one_of(argument, st.sampled_from(world.known))
    args = data.draw(
        st.one_of(
            st.lists(chosen, min_size=arity, max_size=arity),  # the right arity
            st.lists(chosen, max_size=arity + 2),  # any arity
        )
    )
    who = world.patients[0] if role == "patient" else getattr(world, role)
    ledger = world.driver.ledger
    before = ledger.state.height
    refused = None
    try:
        ledger.invoke(who, function, *args, submit=True)
    except ChaincodeRefused as refusal:
        refused = refusal
    if refused is not None:
        assert 400 <= refused.status < 500, (function, args, refused.message)
        assert refused.message and "\n" not in refused.message, refused.message
        assert "Traceback" not in refused.message
        assert ledger.state.height == before  # a refusal commits nothing
