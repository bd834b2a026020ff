"""Private data on a devnet through the Gateway: values on the owner's peer only, hashes
in the blocks for everyone, the owner's endorsement for its collection, MVCC on hashed
reads, and values that survive a crash.

The Hospital's steward and the University's alice use the Hospital's implicit
collection through ``flowblock.testing.private_notes``.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import uuid

import pytest

from flowblock.chaincode import implicit_collection
from flowblock.errors import CommitError, EndorseError
from flowblock.ledger import Gateway
from flowblock.network.devnet import Devnet
from flowblock.network.devnet.ledger import BLOCKS_FILE, STATE_FILE, ChannelLedger
from flowblock.testing.ledger import DevnetProcess, serve_chaincode
from flowblock.testing.private_notes import PrivateNotes
from flowblock.testing.waiting import wait_until

CHANNEL, CHAINCODE = "flowblock", "notes"
HOSPITAL, UNIVERSITY = "HospitalMSP", "UniversityMSP"
COLLECTION = implicit_collection(HOSPITAL)


def unique(what: str) -> bytes:
    return f"{what}-{uuid.uuid4().hex}".encode()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture(scope="module")
def notes_chaincode():
    with serve_chaincode([PrivateNotes()], CHAINCODE) as server:
        yield server


def copy_of_demo(demo_world, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("private-data") / "devnet-data"
    shutil.copytree(demo_world.data_dir, data_dir)
    return data_dir


@pytest.fixture(scope="module")
def devnet(demo_world, tmp_path_factory, notes_chaincode):
    data_dir = copy_of_demo(demo_world, tmp_path_factory)
    with DevnetProcess(data_dir, {CHAINCODE: notes_chaincode.address}) as process:
        yield process


@pytest.fixture(scope="module")
def people(devnet, demo_world):
    """The steward's (Hospital) and alice's (University) contracts on the devnet."""
    gateways = [devnet.gateway(demo_world.identity(name)) for name in ("steward", "alice")]
    yield [gateway.get_network(CHANNEL).get_contract(CHAINCODE) for gateway in gateways]
    for gateway in gateways:
        gateway.close()


def state_file(devnet: DevnetProcess):
    return devnet.data_dir / "devnet" / CHANNEL / STATE_FILE


def test_the_member_reads_the_value_and_everyone_reads_its_hash(people):
    steward, alice = people
    value = unique("cohort")
    steward.submit("Put", COLLECTION, "k1", transient={"value": value})
    assert steward.evaluate("Get", COLLECTION, "k1") == value
    assert alice.evaluate("Hash", COLLECTION, "k1") == sha256(value).hex().encode()
    with pytest.raises(EndorseError, match="is not a member of collection"):
        alice.evaluate("Get", COLLECTION, "k1")
    # Asked of the University's peer, even the Hospital's steward is refused.
    with pytest.raises(EndorseError, match="is not a member of collection"):
        steward.evaluate("Get", COLLECTION, "k1", target_organisations=[UNIVERSITY])


def test_blocks_hold_the_hashes_but_neither_the_values_nor_the_transient_map(devnet, people):
    steward, _ = people
    value, salt = unique("patient-list"), unique("transient-salt")
    steward.submit("Put", COLLECTION, "in-block", transient={"value": value, "salt": salt})
    blocks = (devnet.data_dir / "devnet" / CHANNEL / BLOCKS_FILE).read_bytes()
    assert sha256(b"in-block") in blocks
    assert sha256(value) in blocks
    assert value not in blocks
    assert salt not in blocks


def test_a_private_only_write_needs_its_owner_alone_a_public_one_the_majority(people):
    steward, alice = people
    value = unique("solo")
    steward.submit("Put", COLLECTION, "solo", transient={"value": value},
                   endorsing_organisations=[HOSPITAL])  # fmt: skip
    assert steward.evaluate("Get", COLLECTION, "solo") == value
    with pytest.raises(CommitError) as public:
        steward.submit("PutWithPublic", COLLECTION, "solo-public", transient={"value": value},
                       endorsing_organisations=[HOSPITAL])  # fmt: skip
    assert public.value.code == "ENDORSEMENT_POLICY_FAILURE"
    with pytest.raises(CommitError) as not_the_owner:
        alice.submit("Put", COLLECTION, "by-alice", transient={"value": value},
                     endorsing_organisations=[UNIVERSITY])  # fmt: skip
    assert not_the_owner.value.code == "ENDORSEMENT_POLICY_FAILURE"
    # By default the gateway asks both peers: the private and the public writes commit.
    steward.submit("PutWithPublic", COLLECTION, "both", transient={"value": value})
    assert alice.evaluate("Hash", COLLECTION, "both") == sha256(value).hex().encode()


def test_a_transaction_no_peers_can_endorse_is_refused_before_ordering(people):
    steward, _ = people
    steward.submit("Put", COLLECTION, "to-publish", transient={"value": b"v"})
    # Reading Hospital's values leaves only its peer; a public write needs both.
    with pytest.raises(EndorseError, match="no combination of peers"):
        steward.submit("Publish", COLLECTION, "to-publish")


def test_unknown_collections_are_refused(people):
    steward, _ = people
    with pytest.raises(EndorseError, match="is not defined on this channel"):
        steward.submit("Put", "collectionMarbles", "k", transient={"value": b"v"})


def test_hashed_reads_are_checked_for_conflicts(people):
    steward, _ = people
    steward.submit("Put", COLLECTION, "counter", transient={"value": b"a"})
    first = steward.endorse("Append", COLLECTION, "counter", transient={"value": b"b"})
    second = steward.endorse("Append", COLLECTION, "counter", transient={"value": b"c"})
    statuses = [
        steward.submit_envelope(*first).status(),
        steward.submit_envelope(*second).status(),
    ]
    assert [s.code_name for s in statuses] == ["VALID", "MVCC_READ_CONFLICT"]
    assert steward.evaluate("Get", COLLECTION, "counter") == b"ab"


def test_a_value_that_never_arrived_is_an_error_on_the_member(devnet, people):
    steward, alice = people
    value = unique("lost")
    tx_id, envelope = steward.endorse("Put", COLLECTION, "lost", transient={"value": value})
    with sqlite3.connect(state_file(devnet)) as db:  # the transient store loses it
        assert db.execute("DELETE FROM transient WHERE tx_id=?", (tx_id,)).rowcount >= 1
    assert steward.submit_envelope(tx_id, envelope).status().code_name == "VALID"
    assert alice.evaluate("Hash", COLLECTION, "lost") == sha256(value).hex().encode()
    with pytest.raises(EndorseError, match="missing on this peer"):
        steward.evaluate("Get", COLLECTION, "lost")


def test_a_value_survives_kill_9_and_restart(demo_world, tmp_path_factory, notes_chaincode):
    data_dir = copy_of_demo(demo_world, tmp_path_factory)
    steward = demo_world.identity("steward")
    value = unique("durable")
    chaincodes = {CHAINCODE: notes_chaincode.address}
    with DevnetProcess(data_dir, chaincodes) as process, process.gateway(steward) as gateway:
        contract = gateway.get_network(CHANNEL).get_contract(CHAINCODE)
        contract.submit("Put", COLLECTION, "durable", transient={"value": value})
        process.kill()
    with DevnetProcess(data_dir, chaincodes) as process, process.gateway(steward) as gateway:
        contract = gateway.get_network(CHANNEL).get_contract(CHAINCODE)
        assert contract.evaluate("Get", COLLECTION, "durable") == value


def test_a_block_replayed_after_a_crash_still_commits_its_private_values(
    demo_world, tmp_path_factory, notes_chaincode, monkeypatch
):
    """The block reaches the block file, the process dies before the state commits it:
    on restart the replay finds the values still in the transient store."""
    data_dir = copy_of_demo(demo_world, tmp_path_factory)
    devnet = Devnet(
        data_dir=str(data_dir), listen="127.0.0.1:0",
        chaincodes={CHAINCODE: notes_chaincode.address},
    ).start()  # fmt: skip
    state, ledger_dir = devnet.ledger.state, devnet.ledger_dir
    commit_block = state.commit_block

    def power_cut(number, writes, transactions, private=()):
        if private:
            raise OSError("the power went out")
        return commit_block(number, writes, transactions, private)

    monkeypatch.setattr(state, "commit_block", power_cut)
    value = unique("replayed")
    height = devnet.ledger.height
    try:
        with Gateway(devnet.address, demo_world.identity("steward"), timeout=30) as gateway:
            contract = gateway.get_network(CHANNEL).get_contract(CHAINCODE)
            submitted = contract.submit_async(
                "Put", COLLECTION, "replayed", transient={"value": value}
            )
            wait_until(lambda: devnet.ledger.height > height, what="the block on disk")
        assert state.height == height  # the state never saw it
        assert state.transient(submitted.tx_id)
    finally:
        devnet.stop()
    ledger = ChannelLedger(ledger_dir)
    try:
        assert ledger.state.height == height + 1
        held = ledger.state.private_value(HOSPITAL, CHAINCODE, COLLECTION, "replayed")
        assert held is not None and held[0] == value
        assert ledger.state.private_value(UNIVERSITY, CHAINCODE, COLLECTION, "replayed") is None
        assert ledger.state.transient(submitted.tx_id) == []
    finally:
        ledger.close()
