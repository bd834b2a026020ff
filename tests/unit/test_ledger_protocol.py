"""Fabric's bytes: transaction ids, proposal hashes, block header hashes, block files."""

from __future__ import annotations

import hashlib

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2

from flowblock.ledger import blocks, protocol
from flowblock.network.devnet.blockstore import BlockStore, DamagedBlockFile
from flowblock.testing.ledger import block_store_with


def test_transaction_id_is_sha256_of_nonce_and_creator(demo_world):
    alice = demo_world.identity("alice")
    nonce = bytes(range(24))
    proposal = protocol.build_proposal(alice, "ch", "cc", "Fn", [b"x"], nonce=nonce)
    creator = protocol.serialize_identity(alice)
    assert proposal.tx_id == hashlib.sha256(nonce + creator).hexdigest()


def test_proposal_round_trips_and_is_signed_by_its_creator(demo_world):
    alice = demo_world.identity("alice")
    proposal = protocol.build_proposal(
        alice, "flowblock", "asset", "Create", [b"a1", b"7"], {"secret": b"s"}
    )
    unpacked = protocol.unpack_proposal(proposal.signed)
    assert unpacked.tx_id == proposal.tx_id
    assert (unpacked.chaincode, unpacked.function) == ("asset", "Create")
    assert list(unpacked.spec.input.args) == [b"Create", b"a1", b"7"]
    assert unpacked.creator.mspid == "UniversityMSP"
    assert dict(unpacked.payload.TransientMap) == {"secret": b"s"}
    alice.verify(proposal.signed.proposal_bytes, proposal.signed.signature)


def test_proposal_hash_covers_headers_and_payload_without_transient_data(demo_world):
    alice = demo_world.identity("alice")
    unpacked = protocol.unpack_proposal(
        protocol.build_proposal(alice, "ch", "cc", "Fn", [], {"secret": b"s"}).signed
    )
    stripped = protocol.payload_for_transaction(unpacked.payload)
    assert b"secret" not in stripped
    expected = hashlib.sha256(
        unpacked.header.channel_header + unpacked.header.signature_header + stripped
    ).digest()
    assert protocol.proposal_hash(unpacked) == expected


def test_assembled_transaction_unpacks_to_what_was_endorsed(demo_world):
    alice = demo_world.identity("alice")
    unpacked = protocol.unpack_proposal(
        protocol.build_proposal(alice, "ch", "cc", "Fn", [], {"secret": b"s"}).signed
    )
    action = proposal_pb2.ChaincodeAction(
        response=proposal_response_pb2.Response(status=200, payload=b"result")
    )
    payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=protocol.proposal_hash(unpacked), extension=action.SerializeToString()
    ).SerializeToString()
    endorsements = [
        proposal_response_pb2.ProposalResponse(
            payload=payload,
            endorsement=proposal_response_pb2.Endorsement(endorser=name, signature=b"sig"),
        )
        for name in (b"peer-a", b"peer-b")
    ]
    assembled = protocol.assemble_transaction(unpacked, endorsements)
    transaction = protocol.unpack_transaction(
        common_pb2.Envelope(payload=assembled.SerializeToString())
    )
    assert transaction.tx_id == unpacked.tx_id
    assert transaction.creator.mspid == "UniversityMSP"
    assert transaction.chaincode_action.response.payload == b"result"
    assert [e.endorser for e in transaction.endorsements] == [b"peer-a", b"peer-b"]
    assert b"secret" not in assembled.SerializeToString()


def test_block_header_bytes_are_fabrics_asn1():
    header = common_pb2.BlockHeader(number=1, previous_hash=b"\xaa" * 32, data_hash=b"\xbb" * 32)
    expected = bytes([0x30, 0x47, 0x02, 0x01, 0x01, 0x04, 0x20]) + b"\xaa" * 32
    expected += bytes([0x04, 0x20]) + b"\xbb" * 32
    assert blocks.header_bytes(header) == expected
    big = common_pb2.BlockHeader(number=128, previous_hash=b"", data_hash=b"")
    # 128 has its top bit set, so DER prefixes a zero byte to keep it positive.
    assert blocks.header_bytes(big) == bytes(
        [0x30, 0x08, 0x02, 0x02, 0x00, 0x80, 0x04, 0x00, 0x04, 0x00]
    )


def test_new_blocks_chain_and_hash_their_data():
    first = blocks.new_block(0, b"", [b"tx-a", b"tx-b"])
    assert first.header.data_hash == hashlib.sha256(b"tx-atx-b").digest()
    second = blocks.new_block(1, blocks.header_hash(first.header), [b"tx-c"])
    assert second.header.previous_hash == hashlib.sha256(blocks.header_bytes(first.header)).digest()
    assert len(second.metadata.metadata) == len(common_pb2.BlockMetadataIndex.items())


def test_block_store_drops_only_a_record_cut_short_by_a_crash(tmp_path):
    path = tmp_path / "blocks.bin"
    block_store_with(path, 3)
    whole = path.read_bytes()
    for cut in (5, 11, 20):  # inside the last record's body, and its header
        path.write_bytes(whole[:-cut])
        store = BlockStore(path)
        assert store.height == 2
        assert store.get(1).data.data == [b"tx1"]
        store.close()
    assert path.stat().st_size < len(whole)


def test_a_torn_last_body_is_dropped_and_a_damaged_middle_one_kept(tmp_path):
    path = tmp_path / "blocks.bin"
    block_store_with(path, 3)
    whole = bytearray(path.read_bytes())
    whole[-2] ^= 0xFF  # the last block's body: bytes a crash never finished writing
    path.write_bytes(bytes(whole))
    store = BlockStore(path)
    assert store.height == 2
    store.close()
    block_store_with(tmp_path / "again.bin", 3)
    data = bytearray((tmp_path / "again.bin").read_bytes())
    store = BlockStore(tmp_path / "again.bin", read_only=True)
    middle, _ = store._offsets[1]
    store.close()
    data[middle + 2] ^= 0xFF
    (tmp_path / "again.bin").write_bytes(bytes(data))
    store = BlockStore(tmp_path / "again.bin")
    assert store.height == 3
    assert [store.intact(n) for n in range(3)] == [True, False, True]
    store.close()


def test_block_store_refuses_to_open_over_a_damaged_record_header(tmp_path):
    path = tmp_path / "blocks.bin"
    block_store_with(path, 3)
    store = BlockStore(path, read_only=True)
    second_body, _ = store._offsets[1]
    store.close()
    data = bytearray(path.read_bytes())
    data[second_body - 9] ^= 0xFF  # a byte of block 1's length
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedBlockFile, match="block 1"):
        BlockStore(path)
    assert path.read_bytes() == bytes(data)  # nothing truncated


def test_a_read_only_store_repairs_nothing(tmp_path):
    path = tmp_path / "blocks.bin"
    block_store_with(path, 2)
    torn = path.read_bytes()[:-3]
    path.write_bytes(torn)
    assert BlockStore(path, read_only=True).height == 1
    assert path.read_bytes() == torn


def test_an_unreadable_tls_ca_is_one_sentence(tmp_path):
    from flowblock.errors import ConfigError
    from flowblock.ledger import Gateway

    with pytest.raises(ConfigError, match=r"the TLS CA certificate .*absent\.pem cannot be read"):
        Gateway.connect("127.0.0.1:1", tmp_path / "wallet", tls_ca=str(tmp_path / "absent.pem"))
