"""The contract API and stub, run through the peer's real request handling, in-process."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from flowblock.chaincode import (
    Chaincode,
    ChaincodeError,
    Context,
    Contract,
    create_composite_key,
    split_composite_key,
    transaction,
)
from flowblock.chaincode.contract import METADATA_FUNCTION
from flowblock.chaincode.stub import PeerOffer
from flowblock.testing.chaincode import ChaincodeRefused, LocalLedger


def test_create_read_transfer_and_history(asset_ledger, demo_world):
    alice = demo_world.identity("alice")
    asset_ledger.submit(alice, "Create", "a1", "alice", 10)
    asset_ledger.submit(alice, "Transfer", "a1", "bob")
    assert json.loads(asset_ledger.evaluate(alice, "Read", "a1"))["owner"] == "bob"
    history = json.loads(asset_ledger.evaluate(alice, "History", "a1"))
    assert [json.loads(h["value"])["owner"] for h in history] == ["bob", "alice"]
    asset_ledger.submit(alice, "Delete", "a1")
    assert json.loads(asset_ledger.evaluate(alice, "History", "a1"))[0]["deleted"] is True


def test_evaluate_writes_nothing(asset_ledger, demo_world):
    alice = demo_world.identity("alice")
    asset_ledger.evaluate(alice, "Create", "ghost", "alice", 1)
    with pytest.raises(ChaincodeRefused, match="does not exist") as caught:
        asset_ledger.evaluate(alice, "Read", "ghost")
    assert caught.value.status == 404


def test_the_creator_is_read_from_the_signed_proposal(asset_ledger, demo_world):
    patient = demo_world.identity("patient1")
    who = json.loads(asset_ledger.evaluate(patient, "WhoAmI"))
    # A patient's certificate names their pseudonym (the chaincode's own contracts map it
    # to the patient through their organisation's enrolment).
    assert who == {"msp_id": "HospitalMSP", "name": patient.name, "role": "patient"}
    assert patient.name.startswith("p-") and patient.patient == "patient1"


def test_the_transaction_timestamp_is_the_only_clock(asset_ledger, demo_world):
    moment = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
    created = json.loads(
        asset_ledger.submit(demo_world.identity("alice"), "Create", "t", "a", 1, timestamp=moment)
    )
    assert created["created_at"] == moment.isoformat()


def test_range_queries_skip_composite_keys_and_cross_batches(asset_ledger, demo_world):
    alice = demo_world.identity("alice")
    ids = [f"r{n:03d}" for n in range(150)]  # more than one batch of 100
    for asset in ids:
        asset_ledger.submit(alice, "Create", asset, "alice", 1)
    assert [a["id"] for a in json.loads(asset_ledger.evaluate(alice, "All"))] == ids
    assert json.loads(asset_ledger.evaluate(alice, "OwnedBy", "alice")) == ids


def test_pagination_walks_every_record_once(asset_ledger, demo_world):
    alice = demo_world.identity("alice")
    ids = [f"p{n:02d}" for n in range(7)]
    for asset in ids:
        asset_ledger.submit(alice, "Create", asset, "alice", 1)
    seen, bookmark = [], ""
    for _ in range(10):
        page = json.loads(asset_ledger.evaluate(alice, "Page", 3, bookmark))
        seen += [a["id"] for a in page["assets"]]
        bookmark = page["bookmark"]
        if not bookmark:
            break
    assert seen == ids


def test_events_are_emitted_on_commit_only(asset_ledger, demo_world):
    alice = demo_world.identity("alice")
    asset_ledger.evaluate(alice, "Create", "e0", "alice", 1)
    asset_ledger.submit(alice, "Create", "e1", "alice", 1)
    assert [(e.event_name, json.loads(e.payload)["id"]) for e in asset_ledger.events] == [
        ("AssetCreated", "e1")
    ]


def test_composite_keys_round_trip():
    key = create_composite_key("owner~asset", ["alice", "a1"])
    assert key == "\x00owner~asset\x00alice\x00a1\x00"
    assert split_composite_key(key) == ("owner~asset", ["alice", "a1"])
    with pytest.raises(ChaincodeError):
        create_composite_key("bad\x00type", [])


class Typed(Contract):
    @transaction(submit=False)
    def Echo(self, ctx: Context, n: int, x: float, flag: bool, doc: dict, items: list) -> dict:
        return {"n": n, "x": x, "flag": flag, "doc": doc, "items": items}

    @transaction
    def Bad(self, ctx: Context) -> None:
        raise RuntimeError("secret internal detail")

    @transaction
    def Composite(self, ctx: Context) -> None:
        ctx.stub.get_state_by_range("\x00x", "")


def typed_ledger(tmp_path) -> LocalLedger:
    return LocalLedger(Chaincode([Typed()]), tmp_path, name="typed")


def test_arguments_are_converted_by_annotation(tmp_path, demo_world):
    ledger = typed_ledger(tmp_path)
    echoed = json.loads(
        ledger.evaluate(demo_world.identity("alice"), "Echo", 3, 2.5, True, {"a": 1}, [1, 2])
    )
    assert echoed == {"n": 3, "x": 2.5, "flag": True, "doc": {"a": 1}, "items": [1, 2]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("x", 1.0, True, {}, []), "argument 'n' of Echo must be an integer, got 'x'"),
        ((1, 1.0, "yes", {}, []), "argument 'flag' of Echo must be true or false"),
        ((1, 1.0, True, [], []), "argument 'doc' of Echo must be a JSON object"),
        ((1, 1.0), "Echo takes 5 argument(s) (n, x, flag, doc, items), got 2"),
    ],
)
def test_bad_arguments_are_refused_with_a_400(tmp_path, demo_world, args, message):
    ledger = typed_ledger(tmp_path)
    with pytest.raises(ChaincodeRefused) as caught:
        ledger.evaluate(demo_world.identity("alice"), "Echo", *args)
    assert caught.value.status == 400
    assert message in caught.value.message


def test_unknown_functions_and_internal_errors_reveal_nothing(tmp_path, demo_world):
    ledger = typed_ledger(tmp_path)
    alice = demo_world.identity("alice")
    with pytest.raises(ChaincodeRefused, match="'Nope' is not a transaction"):
        ledger.evaluate(alice, "Nope")
    with pytest.raises(ChaincodeRefused) as caught:
        ledger.submit(alice, "Bad")
    assert caught.value.status == 500
    assert "secret" not in caught.value.message


def test_simple_key_ranges_may_not_start_in_the_composite_namespace(tmp_path, demo_world):
    with pytest.raises(ChaincodeRefused, match="reserved for composite keys"):
        typed_ledger(tmp_path).submit(demo_world.identity("alice"), "Composite")


def test_metadata_lists_contracts_and_their_parameters(tmp_path, demo_world):
    metadata = json.loads(
        typed_ledger(tmp_path).evaluate(demo_world.identity("alice"), METADATA_FUNCTION)
    )
    echo = next(t for t in metadata["contracts"]["Typed"]["transactions"] if t["name"] == "Echo")
    assert echo["tag"] == ["evaluate"]
    assert [p["schema"]["type"] for p in echo["parameters"]] == [
        "integer", "number", "boolean", "object", "array",
    ]  # fmt: skip


class Bulk(Contract):
    @transaction
    def Write(self, ctx: Context, count: int) -> list:
        keys = [f"k{n:04d}" for n in range(count)]
        before = ctx.stub.get_states(keys)
        ctx.stub.start_write_batch()
        for key in keys:
            ctx.stub.put_state(key, key.encode())
        ctx.stub.del_state("k0000")
        return [value is None for value in before]

    @transaction(submit=False)
    def Read(self, ctx: Context, count: int) -> list:
        return [
            (v or b"").decode() for v in ctx.stub.get_states([f"k{n:04d}" for n in range(count)])
        ]


@pytest.mark.parametrize("offer", [None, PeerOffer()], ids=["batched", "fabric-2.5-peer"])
def test_batched_reads_and_writes_match_one_by_one(tmp_path, demo_world, offer):
    ledger = LocalLedger(Chaincode([Bulk()]), tmp_path, name="bulk")
    if offer is not None:
        ledger.offer = offer
    alice = demo_world.identity("alice")
    assert json.loads(ledger.submit(alice, "Write", 2500)) == [True] * 2500
    values = json.loads(ledger.evaluate(alice, "Read", 2500))
    assert values[0] == ""
    assert values[1:] == [f"k{n:04d}" for n in range(1, 2500)]
