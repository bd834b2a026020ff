"""A transaction whose fate the client was not told is retried as itself, never again anew.

Found from outside (issue 17, finding 11): at a crash, clients were told "commit status
unknown", and a client that then asked again created a duplicate (23 of 30 such grants
had committed). The gateway client now hands the *same* signed transaction over again
and asks its status again: a transaction id commits at most once, so whether the first
copy committed, was still being ordered or was lost, there is one grant, one token.

The gateway's answers are lost here by a gRPC interceptor in front of a real devnet (the
gateway did the work; the client never heard), and by a kill -9 of the devnet behind a
relay that keeps the client's address while the devnet starts again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading

import grpc
import pytest
from fabric_protos.gateway import gateway_pb2_grpc

from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.client import Client
from flowblock.consent import grant_transient
from flowblock.errors import FlowBlockError, LedgerError
from flowblock.ledger import Gateway
from flowblock.testing.flowblock_ledger import GatewayDriver, World
from flowblock.testing.ledger import DevnetProcess, serve_chaincode


class NoAnswer(grpc.RpcError):
    """What a client sees when the connection to the gateway breaks mid-call."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "Socket closed"

    def trailing_metadata(self) -> None:
        return None


class LoseAnswers(grpc.UnaryUnaryClientInterceptor):
    """Loses the gateway's answer to the first ``times`` calls of ``method``: after the
    gateway did what was asked (``done=True``), or before the call reached it."""

    def __init__(self, method: str, done: bool, times: int = 1) -> None:
        self.method, self.done, self.left = method, done, times

    def intercept_unary_unary(self, continuation, details, request):
        if details.method.endswith(f"/{self.method}") and self.left:
            self.left -= 1
            if self.done:
                continuation(details, request).result()
            raise NoAnswer()
        return continuation(details, request)


def losing(gateway: Gateway, interceptor: LoseAnswers) -> Gateway:
    gateway._stub = gateway_pb2_grpc.GatewayStub(
        grpc.intercept_channel(gateway._channel, interceptor)
    )
    return gateway


@pytest.fixture
def world(devnet_driver, demo_world) -> World:
    return World(devnet_driver, demo_world).setup(consent=False)


def grants(world: World, patient) -> list[dict]:
    mine = world.evaluate(patient, "consent:MyGrants", 1000, "")["grants"]
    return [grant for grant in mine if grant["dataset"] == world.dataset]


def a_grant(world: World) -> dict:
    """A Grant's options, as ``client.consent.grant`` sends them."""
    return {"transient": grant_transient(world.dataset, "org:University", "C", "research"),
            "endorsing_organisations": ["HospitalMSP"]}  # fmt: skip


def grant_and_ask_again_if_unsure(contract, world: World) -> dict:
    """What the finding's client did: grant, and when the ledger cannot say whether it
    committed, grant again."""
    try:
        return json.loads(contract.submit("consent:Grant", **a_grant(world)))
    except LedgerError:
        return json.loads(contract.submit("consent:Grant", **a_grant(world)))


@pytest.mark.parametrize(
    "lost",
    [
        pytest.param(LoseAnswers("CommitStatus", done=False), id="commit-status-lost"),
        pytest.param(LoseAnswers("CommitStatus", done=False, times=3), id="lost-three-times"),
        pytest.param(LoseAnswers("Submit", done=True), id="submit-answer-lost"),
        pytest.param(LoseAnswers("Submit", done=False), id="submit-lost"),
    ],
)
def test_a_grant_whose_fate_was_not_told_commits_once(world, flowblock_devnet, lost):
    patient = world.patients[0]
    gateway = losing(Gateway(flowblock_devnet.address, patient, timeout=30), lost)
    with gateway:
        contract = gateway.get_network("flowblock").get_contract(CHAINCODE_NAME)
        granted = grant_and_ask_again_if_unsure(contract, world)
    assert lost.left == 0  # the answer was lost, and the retry made up for it
    assert [grant["grant_id"] for grant in grants(world, patient)] == [granted["grant_id"]]


def test_a_computation_request_whose_commit_status_was_lost_is_one_token(world, flowblock_devnet):
    lost = LoseAnswers("CommitStatus", done=False)
    gateway = losing(Gateway(flowblock_devnet.address, world.alice, timeout=30), lost)
    with Client(gateway) as alice:
        try:
            job = alice.compute(world.method, world.dataset, {"column": "age"})
        except FlowBlockError:  # the finding's client: unsure, so it asks again
            job = alice.compute(world.method, world.dataset, {"column": "age"})
        mine = [j.token_id for j in alice.jobs() if j.token["dataset"] == world.dataset]
    assert lost.left == 0
    assert mine == [job.token_id]


def test_the_same_signed_transaction_twice_commits_once(world, flowblock_devnet):
    patient = world.patients[1]
    with Gateway(flowblock_devnet.address, patient, timeout=30) as gateway:
        contract = gateway.get_network("flowblock").get_contract(CHAINCODE_NAME)
        tx_id, envelope = contract.endorse("consent:Grant", **a_grant(world))
        first = contract.submit_envelope(tx_id, envelope).status()
        again = contract.submit_envelope(tx_id, envelope).status()
    assert first == again and first.successful  # the second copy's status is the first's
    assert [grant["grant_id"] for grant in grants(world, patient)] == [tx_id]


# -- a real crash: the devnet killed while the grant waits to be ordered -------------------


class Relay:
    """A TCP relay on a port of its own to wherever ``target`` points now, so that a
    client keeps its address while the devnet behind it is killed and started again."""

    def __init__(self) -> None:
        self.target = ""
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):  # one side gone: the other is told at once
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


def test_a_grant_lost_with_a_killed_devnet_is_handed_over_again(demo_world, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(demo_world.data_dir, data_dir)
    relay = Relay()
    contracts = list(flowblock_chaincode().contracts.values())
    with serve_chaincode(contracts, CHAINCODE_NAME) as server:
        chaincodes = {CHAINCODE_NAME: server.address}
        # Blocks are cut 3 s after their first transaction: time to kill the devnet with
        # the grant taken by the orderer and in no block yet.
        devnet = DevnetProcess(data_dir, chaincodes, batch_timeout=3.0).start()
        restarted = DevnetProcess(data_dir, chaincodes)
        driver = GatewayDriver(relay.address)
        try:
            relay.target = devnet.address
            world = World(driver, demo_world)
            world.set_up_collection()
            world.enrol(*world.patients)
            world.submit(world.steward, "records:RegisterDataset", world.dataset, "tabular",
                         json.dumps({"columns": {"age": "integer"}}))  # fmt: skip
            patient = world.patients[0]
            with Gateway(relay.address, patient, timeout=60) as gateway:
                contract = gateway.get_network("flowblock").get_contract(CHAINCODE_NAME)
                submitted = contract.submit_async("consent:Grant", **a_grant(world))
                devnet.kill()

                def start_again() -> None:
                    restarted.start()
                    relay.target = restarted.address

                threading.Thread(target=start_again, daemon=True).start()
                status = submitted.status()
            assert status.successful, status.code_name
            assert [grant["grant_id"] for grant in grants(world, patient)] == [submitted.tx_id]
        finally:
            driver.close()
            devnet.kill()
            restarted.kill()
            relay.close()


# -- a client process that crashed and runs again: the chaincode knows it was asked ------


def test_a_grant_given_again_by_a_new_process_is_the_same_grant(world):
    patient = world.patients[0]
    first = world.grant(patient, "org:University", "C", "research")
    again = world.grant(patient, "org:University", "C", "research")  # a new transaction
    assert again["grant_id"] == first["grant_id"]
    assert [g["grant_id"] for g in grants(world, patient)] == [first["grant_id"]]
    # Granting something else is a grant of its own; after a revocation, one anew.
    other = world.grant(patient, "org:University", "R", "research")
    assert other["grant_id"] != first["grant_id"]
    world.submit(patient, "consent:RevokeGrant", first["grant_id"])
    renewed = world.grant(patient, "org:University", "C", "research")
    assert renewed["grant_id"] not in (first["grant_id"], other["grant_id"])


def test_a_request_asked_again_with_its_key_is_the_same_token(world, flowblock_devnet):
    world.grant(world.patients[0], "org:University", "C", "research")
    with Client(Gateway(flowblock_devnet.address, world.alice, timeout=30)) as alice:
        asked = [
            alice.compute(world.method, world.dataset, {"column": "age"}, request_key=key)
            for key in ("cell-7", "cell-7", "cell-8")
        ]
        mine = [j.token_id for j in alice.jobs() if j.token["dataset"] == world.dataset]
    assert asked[0].token_id == asked[1].token_id != asked[2].token_id
    assert sorted(mine) == sorted({job.token_id for job in asked})
    # The key is the researcher's own: bob's "cell-7" is another request.
    with Client(Gateway(flowblock_devnet.address, world.bob, timeout=30)) as bob:
        theirs = bob.compute(world.method, world.dataset, {"column": "age"}, request_key="cell-7")
    assert theirs.token_id != asked[0].token_id
    world.refused(
        400, "the request key must be at most 200 bytes", world.alice, "Request", world.method,
        "", world.dataset, '{"column": "age"}', "research", "[]",
        transient={"request_key": b"k" * 201},
    )  # fmt: skip


def test_a_request_that_lost_a_commit_race_is_asked_again_once(world, flowblock_devnet):
    """A request reads the budget a result may be charging: one invalidated by that race
    did not commit, so the client asks again on the new state, and there is one token."""
    from fabric_protos.peer import transaction_pb2

    from flowblock.ledger import Status

    world.grant(world.patients[0], "org:University", "C", "research")
    with Client(Gateway(flowblock_devnet.address, world.alice, timeout=30)) as alice:
        real, calls = alice._contract.submit_async, []

        class LostRace:
            def status(self) -> Status:
                return Status("lost", transaction_pb2.MVCC_READ_CONFLICT, 0)

        def first_loses(*args, **kwargs):
            calls.append(args[0])
            return LostRace() if len(calls) == 1 else real(*args, **kwargs)

        alice._contract.submit_async = first_loses
        job = alice.compute(world.method, world.dataset, {"column": "age"})
        mine = [j.token_id for j in alice.jobs() if j.token["dataset"] == world.dataset]
    assert calls == ["Request", "Request"] and mine == [job.token_id]
