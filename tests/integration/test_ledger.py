"""The devnet through the Gateway client: the behaviour Fabric users rely on."""

from __future__ import annotations

import json
import os
import threading
import time
from itertools import islice

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2

from flowblock.cli import main
from flowblock.errors import CommitError, EndorseError, SubmitError
from flowblock.identity import CertificateAuthority
from flowblock.ledger import protocol
from flowblock.network.devnet.blockstore import BlockStore
from flowblock.network.verify import verify_chain
from flowblock.testing.ledger import DevnetProcess
from flowblock.testing.waiting import wait_until

CHANNEL, CHAINCODE = "flowblock", "asset"


def contract_of(devnet, identity):
    return devnet.gateway(identity).get_network(CHANNEL).get_contract(CHAINCODE)


def blocks_file(devnet: DevnetProcess):
    return devnet.data_dir / "devnet" / CHANNEL / "blocks.bin"


def test_submit_commit_evaluate_round_trip(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    created = json.loads(contract.submit("Create", "asset1", "alice", 100))
    assert created["created_by"] == "alice"
    transferred = json.loads(contract.submit("Transfer", "asset1", "bob"))
    assert transferred["owner"] == "bob"
    assert json.loads(contract.evaluate("Read", "asset1"))["owner"] == "bob"
    history = json.loads(contract.evaluate("History", "asset1"))
    assert [json.loads(h["value"])["owner"] for h in history] == ["bob", "alice"]
    submitted = contract.submit_async("Create", "asset2", "carol", 5)
    status = submitted.status()
    assert status.successful
    assert status.block_number >= 1


def test_chaincode_errors_reach_the_client_with_the_chaincodes_words(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    contract.submit("Create", "dup", "alice", 1)
    with pytest.raises(EndorseError) as caught:
        contract.submit("Create", "dup", "alice", 1)
    assert caught.value.chaincode_message == "the asset dup already exists"
    assert caught.value.tx_id
    with pytest.raises(EndorseError, match="does not exist"):
        contract.evaluate("Read", "missing")
    with pytest.raises(EndorseError, match="must be an integer"):
        contract.submit("Create", "x", "alice", "not a number")


def test_conflicting_submits_one_commits_the_other_fails_mvcc(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    contract.submit("Create", "contested", "alice", 1)
    # Both endorsed against the same version before either is ordered.
    first = contract.endorse("Transfer", "contested", "bob")
    second = contract.endorse("Transfer", "contested", "carol")
    statuses = [
        contract.submit_envelope(*first).status(),
        contract.submit_envelope(*second).status(),
    ]
    assert [s.code_name for s in statuses] == ["VALID", "MVCC_READ_CONFLICT"]
    assert json.loads(contract.evaluate("Read", "contested"))["owner"] == "bob"


def test_submit_raises_commit_error_with_the_validation_code(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    with pytest.raises(CommitError) as caught:
        contract.submit("Create", "half", "alice", 1, endorsing_organisations=["UniversityMSP"])
    assert caught.value.code == "ENDORSEMENT_POLICY_FAILURE"
    assert caught.value.tx_id
    assert "was not committed" in str(caught.value)


def test_a_proposal_from_an_unknown_ca_is_refused(devnet, tmp_path):
    impostor = CertificateAuthority.create(tmp_path / "impostor", "University")
    contract = contract_of(devnet, impostor.issue("alice", "researcher"))
    with pytest.raises(EndorseError) as caught:
        contract.submit("Create", "forged", "alice", 1)
    assert caught.value.status == "PERMISSION_DENIED"
    with pytest.raises(EndorseError) as caught:
        contract.evaluate("WhoAmI")
    assert caught.value.status == "PERMISSION_DENIED"


def test_the_orderer_organisation_may_order_but_not_transact(devnet, demo_world):
    from flowblock.network.organisations import ORDERER_ORGANISATION

    orderers_admin = demo_world.identity("admin", org=ORDERER_ORGANISATION)
    with pytest.raises(EndorseError, match="not a member of the channel's organisations") as no:
        contract_of(devnet, orderers_admin).evaluate("WhoAmI")
    assert no.value.status == "PERMISSION_DENIED"
    # Nor can it have an envelope of its own ordered, endorsed as it may be.
    alice = contract_of(devnet, demo_world.identity("alice"))
    _, envelope = alice.endorse("Create", "by-orderer", "alice", 1)
    tx_id, theirs = _rewrapped(envelope, orderers_admin)
    with pytest.raises(SubmitError, match="may not write to the channel"):
        alice.submit_envelope(tx_id, theirs)


def test_a_proposal_dated_far_from_the_peers_clock_is_refused(devnet, demo_world, monkeypatch):
    import datetime as dt

    build = protocol.build_proposal
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    monkeypatch.setattr(
        protocol, "build_proposal", lambda *args, **kw: build(*args, **kw, timestamp=ahead)
    )
    contract = contract_of(devnet, demo_world.identity("alice"))
    with pytest.raises(EndorseError, match="check the client's clock") as refused:
        contract.submit("Create", "from-the-future", "alice", 1)
    assert refused.value.status == "INVALID_ARGUMENT"
    monkeypatch.undo()
    with pytest.raises(EndorseError, match="does not exist"):
        contract.evaluate("Read", "from-the-future")


def test_nobody_can_take_a_transaction_id_that_is_not_theirs(devnet, demo_world):
    alice, bob = demo_world.identity("alice"), demo_world.identity("bob")
    ours, theirs = contract_of(devnet, alice), contract_of(devnet, bob)
    tx_id, envelope = ours.endorse("Create", "squatted", "alice", 1)
    # Bob, who saw the proposal, has his own envelope ordered first under Alice's id.
    payload = common_pb2.Payload.FromString(envelope.payload)
    payload.header.signature_header = common_pb2.SignatureHeader(
        creator=protocol.serialize_identity(bob), nonce=os.urandom(24)
    ).SerializeToString()
    squat = common_pb2.Envelope(payload=payload.SerializeToString())
    squat.signature = bob.sign(squat.payload)
    theirs.submit_envelope(tx_id, squat)
    assert theirs.submit_async("Create", "after-the-squat", "bob", 1).status().successful
    # Alice's own transaction still commits under its id.
    assert ours.submit_envelope(tx_id, envelope).status().successful
    assert json.loads(ours.evaluate("Read", "squatted"))["owner"] == "alice"


def test_an_envelope_with_a_broken_signature_is_refused_by_the_orderer(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    tx_id, envelope = contract.endorse("Create", "tampered", "alice", 1)
    envelope.payload = envelope.payload.replace(b"tampered", b"tamperee")
    with pytest.raises(SubmitError, match="signature"):
        contract.submit_envelope(tx_id, envelope)
    with pytest.raises(EndorseError, match="does not exist"):
        contract.evaluate("Read", "tamperee")


def test_a_re_signed_altered_transaction_fails_the_endorsement_policy(devnet, demo_world):
    alice = demo_world.identity("alice")
    contract = contract_of(devnet, alice)
    tx_id, envelope = contract.endorse("Create", "honest", "alice", 1)
    forged = _alter_result(envelope, b'{"forged":true}')
    forged.signature = alice.sign(forged.payload)
    status = contract.submit_envelope(tx_id, forged).status()
    assert status.code_name == "ENDORSEMENT_POLICY_FAILURE"


def test_one_organisations_endorsement_alone_is_not_enough(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    submitted = contract.submit_async(
        "Create", "lonely", "alice", 1, endorsing_organisations=["HospitalMSP"]
    )
    assert submitted.status().code_name == "ENDORSEMENT_POLICY_FAILURE"
    with pytest.raises(EndorseError):
        contract.evaluate("Read", "lonely")


def test_events_arrive_in_order_and_resume_from_a_block(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    created = [f"evt{i}" for i in range(6)]
    for asset in created:
        contract.submit("Create", asset, "alice", 1)
    network = devnet.gateway(demo_world.identity("alice")).get_network(CHANNEL)
    with network.chaincode_events(CHAINCODE, start_block=0) as stream:
        first = list(islice(stream, 3))
    assert [json.loads(e.payload)["id"] for e in first] == created[:3]
    assert [e.block_number for e in first] == sorted(e.block_number for e in first)
    last = first[-1]
    with network.chaincode_events(
        CHAINCODE, start_block=last.block_number, after_tx_id=last.tx_id
    ) as stream:
        rest = list(islice(stream, 3))
    assert [json.loads(e.payload)["id"] for e in rest] == created[3:]
    # As Fabric's gateway: the transaction alone says where to resume.
    with network.chaincode_events(CHAINCODE, after_tx_id=first[0].tx_id) as stream:
        resumed = list(islice(stream, 5))
    assert [json.loads(e.payload)["id"] for e in resumed] == created[1:]


def test_live_events_are_delivered_as_blocks_commit(devnet, demo_world):
    network = devnet.gateway(demo_world.identity("alice")).get_network(CHANNEL)
    contract = network.get_contract(CHAINCODE)
    received = []
    stream = network.chaincode_events(CHAINCODE)

    def listen():
        for event in stream:
            received.append(event)
            if event.name == "AssetTransferred":
                return

    listener = threading.Thread(target=listen)
    listener.start()
    # The stream starts at the next block once the gateway holds the request, a moment
    # after it is opened: commit markers until one comes through, not sleep and hope.
    markers = []

    def a_marker_came_through() -> bool:
        if not received:
            markers.append(f"marker{len(markers)}")
            contract.submit("Create", markers[-1], "alice", 1)
        return bool(received)

    wait_until(a_marker_came_through, timeout=30, what="the event stream to start")
    contract.submit("Create", "live1", "alice", 1)
    contract.submit("Transfer", "live1", "bob")
    listener.join(timeout=10)
    stream.close()
    live = [e for e in received if json.loads(e.payload)["id"] == "live1"]
    assert [e.name for e in live] == ["AssetCreated", "AssetTransferred"]
    assert {json.loads(e.payload)["id"] for e in received} - {"live1"} <= set(markers)


def test_an_event_is_announced_only_once_its_state_can_be_read(devnet, demo_world):
    """A client told of a new asset reads it at once: never "there is no asset" (the
    executor's claims once got a 404 for a token it had just been told of)."""
    network = devnet.gateway(demo_world.identity("alice")).get_network(CHANNEL)
    contract = network.get_contract(CHAINCODE)
    reads, count = [], 40

    def listen(stream):
        for event in stream:
            asset = json.loads(event.payload)["id"]
            try:
                reads.append(json.loads(contract.evaluate("Read", asset))["id"] == asset)
            except EndorseError:
                reads.append(False)
            if len(reads) == count:
                return

    with network.chaincode_events(CHAINCODE, start_block=0) as stream:
        listener = threading.Thread(target=listen, args=(stream,))
        listener.start()
        for n in range(count):
            contract.submit_async("Create", f"seen{n}", "alice", n)
        listener.join(timeout=60)
    assert reads == [True] * count


def test_kill_9_under_load_loses_no_committed_transaction(devnet, demo_world, asset_chaincode):
    identity = demo_world.identity("alice")
    committed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        contract = contract_of(devnet, identity)
        for n in range(10_000):
            if stop.is_set():
                return
            asset = f"load-{worker}-{n}"
            try:
                if contract.submit_async("Create", asset, "alice", n).status().successful:
                    with lock:
                        committed.append(asset)
            except Exception:  # the devnet is being killed under us
                return

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 20
    while len(committed) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    devnet.kill()
    stop.set()
    for worker in workers:
        worker.join(timeout=30)
    assert len(committed) >= 40

    restarted = DevnetProcess(devnet.data_dir, {"asset": asset_chaincode.address}).start()
    try:
        contract = contract_of(restarted, identity)
        everything = {asset["id"] for asset in json.loads(contract.evaluate("All"))}
        missing = set(committed) - everything
        assert not missing, f"lost {len(missing)} committed transactions"
        contract.submit("Create", "after-restart", "alice", 1)
    finally:
        restarted.stop()
    report = verify_chain(blocks_file(devnet))
    assert report.ok, report.findings
    assert report.valid >= len(committed) + 1


def test_verify_names_the_block_with_a_flipped_byte(devnet, demo_world, capsys):
    contract = contract_of(devnet, demo_world.identity("alice"))
    for n in range(4):
        contract.submit("Create", f"chain{n}", "alice", n)
    devnet.stop()
    assert main(["verify", "--data-dir", str(devnet.data_dir)]) == 0
    assert "ledger verified" in capsys.readouterr().out

    path = blocks_file(devnet)
    store = BlockStore(path, read_only=True)
    offset, length = store._offsets[2]
    store.close()
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 0x01
    path.write_bytes(bytes(data))

    assert main(["verify", "--data-dir", str(devnet.data_dir)]) == 1
    out, err = capsys.readouterr()
    assert "block 2:" in out
    assert "the first in block 2" in err
    assert verify_chain(path).first_bad_block == 2


def _rewrapped(envelope: common_pb2.Envelope, signer) -> tuple[str, common_pb2.Envelope]:
    """The endorsed action of ``envelope`` in a header of ``signer``'s: their nonce, their
    transaction id, their signature."""
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    nonce, creator = os.urandom(24), protocol.serialize_identity(signer)
    header.tx_id = protocol.transaction_id(nonce, creator)
    payload.header.channel_header = header.SerializeToString()
    payload.header.signature_header = common_pb2.SignatureHeader(
        creator=creator, nonce=nonce
    ).SerializeToString()
    rewrapped = common_pb2.Envelope(payload=payload.SerializeToString())
    rewrapped.signature = signer.sign(rewrapped.payload)
    return header.tx_id, rewrapped


def _alter_result(envelope: common_pb2.Envelope, result: bytes) -> common_pb2.Envelope:
    """The same transaction with a different chaincode result, endorsements untouched."""
    payload = common_pb2.Payload.FromString(envelope.payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    response = proposal_response_pb2.ProposalResponsePayload.FromString(
        action.action.proposal_response_payload
    )
    chaincode_action = proposal_pb2.ChaincodeAction.FromString(response.extension)
    chaincode_action.response.payload = result
    response.extension = chaincode_action.SerializeToString()
    action.action.proposal_response_payload = response.SerializeToString()
    transaction.actions[0].payload = action.SerializeToString()
    payload.data = transaction.SerializeToString()
    assert protocol.unpack_transaction(common_pb2.Envelope(payload=payload.SerializeToString()))
    return common_pb2.Envelope(payload=payload.SerializeToString())


def test_the_gateway_can_be_served_over_tls(demo_world, tmp_path, asset_chaincode):
    import shutil

    from flowblock.ledger import Gateway

    data_dir = tmp_path / "data"
    shutil.copytree(demo_world.data_dir, data_dir)
    with DevnetProcess(data_dir, {"asset": asset_chaincode.address}, extra=("--tls",)) as devnet:
        assert "(TLS)" in "".join(devnet.output)
        ca = data_dir / "organizations" / "Hospital" / "identities" / "peer0" / "tls" / "ca.crt"
        secure = Gateway.connect(devnet.address, demo_world.wallet("alice"), tls_ca=str(ca))
        contract = secure.get_network(CHANNEL).get_contract(CHAINCODE)
        assert json.loads(contract.evaluate("WhoAmI"))["name"] == "alice"
        plain = contract_of(devnet, demo_world.identity("alice"))
        with pytest.raises(EndorseError) as caught:
            plain.evaluate("WhoAmI")
        assert caught.value.status == "UNAVAILABLE"


def test_an_endorsement_lifted_into_another_transaction_is_invalid(devnet, demo_world):
    alice, bob = demo_world.identity("alice"), demo_world.identity("bob")
    ours, theirs = contract_of(devnet, alice), contract_of(devnet, bob)
    tx_id, envelope = ours.endorse("Create", "lifted", "alice", 100)
    assert ours.submit_envelope(tx_id, envelope).status().successful
    ours.submit("Delete", "lifted")
    # Bob wraps Alice's endorsed action in a header of his own: new nonce, new id.
    replayed_id, replayed = _rewrapped(envelope, bob)
    status = theirs.submit_envelope(replayed_id, replayed).status()
    assert status.code_name == "INVALID_ENDORSER_TRANSACTION"
    with pytest.raises(EndorseError, match="does not exist"):
        ours.evaluate("Read", "lifted")


def test_a_garbage_endorsement_neither_counts_nor_stops_the_chain(devnet, demo_world):
    alice = demo_world.identity("alice")
    contract = contract_of(devnet, alice)
    tx_id, envelope = contract.endorse("Create", "garbage", "alice", 1)
    payload = common_pb2.Payload.FromString(envelope.payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    action.action.endorsements.append(
        proposal_response_pb2.Endorsement(endorser=b"\xff", signature=b"x")
    )
    transaction.actions[0].payload = action.SerializeToString()
    payload.data = transaction.SerializeToString()
    envelope.payload = payload.SerializeToString()
    envelope.signature = alice.sign(envelope.payload)
    assert contract.submit_envelope(tx_id, envelope).status().successful
    contract.submit("Create", "innocent", "alice", 1)
    assert json.loads(contract.evaluate("Read", "innocent"))["id"] == "innocent"


def test_the_state_is_rebuilt_from_the_blocks_alone(devnet, demo_world, asset_chaincode):
    contract = contract_of(devnet, demo_world.identity("alice"))
    for n in range(3):
        contract.submit("Create", f"rebuilt{n}", "alice", n)
    contract.submit("Transfer", "rebuilt0", "bob")
    devnet.stop()
    for state_file in (devnet.data_dir / "devnet" / CHANNEL).glob("state.sqlite*"):
        state_file.unlink()
    restarted = DevnetProcess(devnet.data_dir, {"asset": asset_chaincode.address}).start()
    try:
        assets = json.loads(contract_of(restarted, demo_world.identity("alice")).evaluate("All"))
        assert {a["id"]: a["owner"] for a in assets} == {
            "rebuilt0": "bob", "rebuilt1": "alice", "rebuilt2": "alice",
        }  # fmt: skip
    finally:
        restarted.stop()


def test_concurrent_endorsements_always_agree(devnet, demo_world):
    contract = contract_of(devnet, demo_world.identity("alice"))
    contract.submit("Create", "busy", "alice", 1)
    failures: list[str] = []
    deadline = time.monotonic() + 3

    def transfer(worker: int) -> None:
        while time.monotonic() < deadline:
            try:
                contract.submit_async("Transfer", "busy", f"owner{worker}").status()
            except EndorseError as error:
                failures.append(str(error))

    threads = [threading.Thread(target=transfer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_many_open_event_streams_do_not_starve_the_gateway(devnet, demo_world):
    network = devnet.gateway(demo_world.identity("alice")).get_network(CHANNEL)
    streams = [network.chaincode_events(CHAINCODE) for _ in range(40)]
    readers = [threading.Thread(target=lambda s=s: list(s), daemon=True) for s in streams]
    for reader in readers:
        reader.start()
    try:
        contract = network.get_contract(CHAINCODE)
        contract.submit("Create", "crowded", "alice", 1)
        assert json.loads(contract.evaluate("Read", "crowded"))["id"] == "crowded"
    finally:
        for stream in streams:
            stream.close()
