"""Finding 5 of issue 17: one member's large argument must not break everyone's
transactions.

A proposal too big for the path it takes (the gateway, the peer's one shared stream to
the chaincode, the chaincode's replies) is refused at the gateway in one sentence before
anything is forwarded; and a message one side of the chaincode stream composes that is
too big for it becomes that one transaction's error, never the stream's end.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import chaincode_shim_pb2

from flowblock.chaincode import Contract, transaction
from flowblock.errors import EndorseError
from flowblock.ledger import protocol
from flowblock.network.devnet.chaincode_client import ChaincodeConnection
from flowblock.testing.ledger import serve_chaincode
from flowblock.vocabulary import MAX_MESSAGE_BYTES, MAX_PROPOSAL_BYTES

CHANNEL, CHAINCODE = "flowblock", "asset"
REFUSAL = re.compile(r"the proposal is \d+\.\d MiB; at most \d+\.\d MiB is accepted\.")
Message = chaincode_shim_pb2.ChaincodeMessage


def contract_of(devnet, identity):
    return devnet.gateway(identity).get_network(CHANNEL).get_contract(CHAINCODE)


def test_oversized_arguments_are_one_sentence_and_anothers_calls_go_on(devnet, demo_world):
    alice = contract_of(devnet, demo_world.identity("alice"))
    bob = contract_of(devnet, demo_world.identity("bob"))
    refusals: dict[int, list[str]] = {3_000_000: [], 6_000_000: []}
    normal_done = threading.Event()

    def oversized(size: int) -> None:
        while not normal_done.is_set() or not refusals[size]:
            try:
                alice.submit("Create", f"big-{size}", "x" * size, 1)
            except EndorseError as error:
                refusals[size].append(str(error))
            else:
                refusals[size].append("accepted")

    def normal(n: int) -> str:
        return json.loads(bob.submit("Create", f"normal-{n}", "bob", n))["owner"]

    with ThreadPoolExecutor(17) as pool:
        big = [pool.submit(oversized, size) for size in refusals]
        owners = [pool.submit(normal, n) for n in range(15)]
        try:
            assert [owner.result(timeout=120) for owner in owners] == ["bob"] * 15
        finally:
            normal_done.set()
            for future in big:
                future.result(timeout=120)
    for size, said in refusals.items():
        assert said and all(REFUSAL.fullmatch(sentence) for sentence in said), (size, said[:1])
    assert "big-3000000" not in bob.evaluate("All").decode()


@pytest.mark.parametrize("size", [3_000_000, 6_000_000])
def test_the_raw_gateway_refuses_an_oversized_proposal_in_one_sentence(devnet, demo_world, size):
    """Without our client's own check: the gateway itself refuses, before the chaincode."""
    gateway = devnet.gateway(demo_world.identity("alice"))
    proposal = protocol.build_proposal(
        gateway.identity, CHANNEL, CHAINCODE, "Create", [b"raw", b"x" * size, b"1"]
    )
    for call, request in (
        (gateway._stub.Endorse, gateway_pb2.EndorseRequest),
        (gateway._stub.Evaluate, gateway_pb2.EvaluateRequest),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(
                request(
                    transaction_id=proposal.tx_id,
                    channel_id=CHANNEL,
                    proposed_transaction=proposal.signed,
                ),
                timeout=30,
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert REFUSAL.fullmatch(caught.value.details()), caught.value.details()
    contract = gateway.get_network(CHANNEL).get_contract(CHAINCODE)
    assert json.loads(contract.submit("Create", f"after-raw-{size}", "alice", 1))["value"] == 1


def test_a_proposal_just_inside_the_limit_goes_all_the_way(devnet, demo_world):
    """Arguments plus the proposal carrying them again, the endorsed transaction and the
    chaincode's answer all fit the messages on the way: what is accepted also commits."""
    contract = contract_of(devnet, demo_world.identity("alice"))
    owner = "y" * (MAX_PROPOSAL_BYTES - 16 * 1024)
    created = json.loads(contract.submit("Create", "just-inside", owner, 7))
    assert created["owner"] == owner
    assert json.loads(contract.evaluate("Read", "just-inside"))["owner"] == owner


# -- the one shared chaincode stream survives an oversized message --------------------


class Sizes(Contract):
    name = "Sizes"

    @transaction(submit=False)
    def Huge(self, ctx, size: int) -> str:
        return "z" * size

    @transaction(submit=False)
    def ReadKey(self, ctx, key: str) -> dict:
        return {"length": len(ctx.stub.get_state(key) or b"")}

    @transaction(submit=False)
    def Echo(self, ctx, text: str) -> str:
        return text


def _run(connection, identity, *args: bytes, handle=None):
    proposal = protocol.build_proposal(identity, CHANNEL, "sizes", args[0].decode(), list(args[1:]))

    def refuse(message):  # the peer's answer to a state request of the chaincode
        return Message(type=Message.RESPONSE, payload=b"")

    return connection.execute(
        CHANNEL, proposal.tx_id, list(args), proposal.signed, handle or refuse
    )


def test_a_chaincode_answer_too_big_for_the_stream_fails_only_its_transaction(demo_world):
    identity = demo_world.identity("alice")
    with serve_chaincode([Sizes()], "sizes") as server:
        connection = ChaincodeConnection("sizes", server.address, timeout=60)
        try:
            response, _ = _run(connection, identity, b"Echo", b"before")
            stream = connection._stream
            response, _ = _run(connection, identity, b"Huge", str(MAX_MESSAGE_BYTES + 1).encode())
            assert response.status == 500
            assert "MiB" in response.message and "at most" in response.message
            assert connection._stream is stream and not stream.closed
            response, _ = _run(connection, identity, b"Echo", b"after")
            assert response.payload == b"after"
        finally:
            connection.close()


def test_a_peer_answer_too_big_for_the_stream_fails_only_its_transaction(demo_world):
    identity = demo_world.identity("alice")

    def huge_state(message):
        return Message(type=Message.RESPONSE, payload=b"v" * (MAX_MESSAGE_BYTES + 1))

    with serve_chaincode([Sizes()], "sizes") as server:
        connection = ChaincodeConnection("sizes", server.address, timeout=60)
        try:
            _run(connection, identity, b"Echo", b"before")
            stream = connection._stream
            response, _ = _run(connection, identity, b"ReadKey", b"k", handle=huge_state)
            assert response.status == 500
            assert "MiB" in response.message
            assert connection._stream is stream and not stream.closed
            response, _ = _run(connection, identity, b"Echo", b"after")
            assert response.payload == b"after"
        finally:
            connection.close()
