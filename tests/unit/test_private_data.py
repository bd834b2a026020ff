"""Private data in-process: the stub, the peer's state requests and the private store.

``LocalLedger`` runs each call on the caller's own organisation's peer, so a caller
reads its organisation's implicit collection and no other, and anyone reads hashes.
"""

from __future__ import annotations

import hashlib

import pytest
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2

from flowblock.chaincode import Chaincode, implicit_collection
from flowblock.network.devnet.private_data import Membership, key_hash
from flowblock.network.devnet.simulation import Simulation
from flowblock.network.devnet.statedb import HashedWrite
from flowblock.testing.chaincode import ChaincodeRefused, LocalGateway, LocalLedger
from flowblock.testing.private_notes import PrivateNotes


@pytest.fixture
def notes(tmp_path):
    ledger = LocalLedger(Chaincode([PrivateNotes()]), tmp_path, name="notes")
    yield ledger
    ledger.close()


@pytest.fixture
def people(demo_world):
    steward, alice = demo_world.identity("steward"), demo_world.identity("alice")
    assert steward.msp_id != alice.msp_id
    return steward, alice


def test_implicit_collection_names_follow_fabric():
    assert implicit_collection("Org1MSP") == "_implicit_org_Org1MSP"


def test_a_member_writes_and_reads_its_own_collection(notes, people):
    steward, _ = people
    mine = implicit_collection(steward.msp_id)
    notes.submit(steward, "Put", mine, "n1", transient={"value": b"cohort: p1, p2"})
    assert notes.evaluate(steward, "Get", mine, "n1") == b"cohort: p1, p2"
    assert notes.state.private_value(steward.msp_id, "notes", mine, "n1")[0] == b"cohort: p1, p2"
    assert notes.state.get("notes", "n1") is None  # nothing public


def test_another_organisation_reads_the_hash_but_not_the_value(notes, people):
    steward, alice = people
    theirs = implicit_collection(steward.msp_id)
    notes.submit(steward, "Put", theirs, "n1", transient={"value": b"secret"})
    expected = hashlib.sha256(b"secret").hexdigest().encode()
    assert notes.evaluate(alice, "Hash", theirs, "n1") == expected
    with pytest.raises(ChaincodeRefused, match="is not a member of collection"):
        notes.evaluate(alice, "Get", theirs, "n1")
    assert notes.evaluate(alice, "Hash", theirs, "absent") == b""


def test_any_peer_may_write_into_an_organisations_collection(notes, people):
    steward, alice = people
    theirs = implicit_collection(steward.msp_id)
    notes.submit(alice, "Put", theirs, "from-alice", transient={"value": b"v"})
    assert notes.evaluate(steward, "Get", theirs, "from-alice") == b"v"
    # The value belongs to the owner's store alone, not the writer's.
    assert notes.state.private_value(alice.msp_id, "notes", theirs, "from-alice") is None


def test_unknown_collections_are_refused_in_one_sentence(tmp_path, people):
    steward, _ = people
    ledger = LocalLedger(
        Chaincode([PrivateNotes()]), tmp_path, name="notes", organisations=frozenset({"OtherMSP"})
    )
    try:
        for name in ("collectionMarbles", implicit_collection(steward.msp_id)):
            with pytest.raises(ChaincodeRefused, match="is not defined on this channel"):
                ledger.submit(steward, "Put", name, "k", transient={"value": b"v"})
    finally:
        ledger.close()


def test_range_delete_and_write_after_range(notes, people):
    steward, _ = people
    mine = implicit_collection(steward.msp_id)
    for key in ("b", "a", "c"):
        notes.submit(steward, "Put", mine, key, transient={"value": key.encode()})
    notes.submit(steward, "Delete", mine, "b")
    assert notes.evaluate(steward, "List", mine) == b'["a","c"]'
    assert notes.evaluate(steward, "Hash", mine, "b") == b""
    with pytest.raises(ChaincodeRefused, match="cannot both query private data by range and write"):
        notes.submit(steward, "ListThenPut", mine, "d", transient={"value": b"d"})


def test_local_contract_forwards_the_transient_map(notes, people):
    steward, _ = people
    contract = LocalGateway(notes, steward).get_network("flowblock").get_contract("notes")
    mine = implicit_collection(steward.msp_id)
    contract.submit("Put", mine, "k", transient={"value": "text"})
    assert contract.evaluate("Get", mine, "k") == b"text"


def test_a_value_whose_hash_committed_without_it_is_an_error_not_none(notes, people):
    steward, _ = people
    mine = implicit_collection(steward.msp_id)
    digest = hashlib.sha256(b"never arrived").digest()
    missing = HashedWrite("notes", mine, key_hash("k"), digest, 1, 0, steward.msp_id, None, None)
    notes.state.commit_block(1, [], [], [missing])
    assert notes.evaluate(steward, "Hash", mine, "k") == digest.hex().encode()
    with pytest.raises(ChaincodeRefused, match="missing on this peer"):
        notes.evaluate(steward, "Get", mine, "k")


def test_the_signed_read_write_set_holds_hashes_and_the_private_set_the_values(notes):
    simulation = Simulation(notes.state, "notes", Membership("Org1MSP"))
    simulation.put_private("_implicit_org_Org1MSP", "k2", b"two")
    simulation.put_private("_implicit_org_Org1MSP", "k1", b"one")
    assert simulation.get_private_hash("_implicit_org_Org2MSP", "x") is None
    public = simulation.read_write_set()
    assert b"one" not in public and b"two" not in public
    ns = rwset_pb2.TxReadWriteSet.FromString(public).ns_rwset[0]
    assert [c.collection_name for c in ns.collection_hashed_rwset] == [
        "_implicit_org_Org1MSP",
        "_implicit_org_Org2MSP",
    ]
    written = ns.collection_hashed_rwset[0]
    hashed = kv_rwset_pb2.HashedRWSet.FromString(written.hashed_rwset)
    key_hashes = [w.key_hash for w in hashed.hashed_writes]
    assert key_hashes == sorted(key_hashes)
    assert {w.value_hash for w in hashed.hashed_writes} == {
        hashlib.sha256(b"one").digest(),
        hashlib.sha256(b"two").digest(),
    }
    private = rwset_pb2.TxPvtReadWriteSet.FromString(simulation.private_read_write_set())
    collection = private.ns_pvt_rwset[0].collection_pvt_rwset[0]
    assert hashlib.sha256(collection.rwset).digest() == written.pvt_rwset_hash
    assert [w.key for w in kv_rwset_pb2.KVRWSet.FromString(collection.rwset).writes] == ["k1", "k2"]
    read_only = ns.collection_hashed_rwset[1]
    assert read_only.pvt_rwset_hash == b""
    assert kv_rwset_pb2.HashedRWSet.FromString(read_only.hashed_rwset).hashed_reads[0].key_hash == (
        key_hash("x")
    )
