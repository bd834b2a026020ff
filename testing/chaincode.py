"""Run contracts in-process, without a network, for fast unit tests of chaincode.

``LocalLedger`` gives a contract the real stub, the devnet peer's real handling of
state requests and a real (SQLite) world state, and signs real proposals for the
callers, so identities, attributes, timestamps, queries, history and events behave
as on the devnet. What it leaves out is the network: no endorsement by several peers,
no ordering and no MVCC, since each submit commits at once, alone in its block.
Private data behaves as on the caller's own organisation's peer: a caller reads the
values of its organisation's implicit collection only, every caller reads hashes, and
a submit commits private writes (values for the owner, hashes for all).

``LocalGateway`` puts a Gateway's shape over it, so that a ``flowblock.Client`` or an
``Executor`` runs against the chaincode in-process.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from fabric_protos.peer import chaincode_event_pb2, chaincode_shim_pb2, transaction_pb2

from flowblock.canonical import canonical_json
from flowblock.chaincode import Chaincode, ChaincodeStub
from flowblock.chaincode.stub import PeerOffer
from flowblock.errors import EndorseError
from flowblock.identity import Identity
from flowblock.ledger import Status, protocol
from flowblock.network.devnet.chaincode_client import READY_OFFER
from flowblock.network.devnet.peer import ERROR_THRESHOLD, StateRequests
from flowblock.network.devnet.private_data import Membership, key_hash, value_hash
from flowblock.network.devnet.simulation import Simulation
from flowblock.network.devnet.statedb import CommittedTransaction, HashedWrite, StateDB, Write

Message = chaincode_shim_pb2.ChaincodeMessage


class ChaincodeRefused(Exception):
    """The chaincode answered with an error status; ``status`` and ``message`` are its own."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"chaincode response {status}, {message}")


@dataclass
class LocalLedger:
    """One chaincode, its world state in ``directory``, and the events it emitted."""

    chaincode: Chaincode
    directory: Path
    channel: str = "flowblock"
    name: str = "flowblock"
    events: list[chaincode_event_pb2.ChaincodeEvent] = field(default_factory=list)
    #: What the simulated peer offers in READY: the devnet's batches by default,
    #: ``PeerOffer()`` to behave like a Fabric 2.5 peer that offers none.
    offer: PeerOffer = field(default_factory=lambda: PeerOffer.from_ready(READY_OFFER))
    #: The channel's organisations (MSP ids), whose implicit collections exist; empty
    #: accepts any organisation's.
    organisations: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.state = StateDB(Path(self.directory) / "state.sqlite")
        if self.state.height == 0:
            self.state.commit_block(0, [], [])

    def invoke(
        self,
        identity: Identity,
        function: str,
        *args: object,
        submit: bool = True,
        timestamp: dt.datetime | None = None,
        transient: dict[str, bytes] | None = None,
        peer_organisation: str = "",
    ) -> bytes:
        """Run ``function`` as ``identity`` on its own organisation's peer (or on
        ``peer_organisation``'s), with ``transient`` as the proposal's transient map;
        commit its writes when ``submit`` and it succeeds."""
        proposal = protocol.build_proposal(
            identity,
            self.channel,
            self.name,
            function,
            [a if isinstance(a, bytes) else a.encode() if isinstance(a, str) else canonical_json(a)
             for a in args],
            transient=transient,
            timestamp=timestamp,
        )  # fmt: skip
        unpacked = protocol.unpack_proposal(proposal.signed)
        membership = Membership(peer_organisation or identity.msp_id, self.organisations)
        simulation = Simulation(self.state, self.name, membership)
        requests = StateRequests(simulation)

        def request(kind: int, payload: bytes) -> Message:
            return requests.answer(Message(type=kind, payload=payload))

        stub = ChaincodeStub(
            request,
            self.channel,
            proposal.tx_id,
            list(unpacked.spec.input.args),
            proposal.signed,
            self.offer,
        )
        response = self.chaincode.invoke(stub)
        if response.status >= ERROR_THRESHOLD:
            raise ChaincodeRefused(response.status, response.message)
        if submit:
            self._commit(proposal.tx_id, simulation, unpacked)
            if stub.event is not None:
                stub.event.chaincode_id, stub.event.tx_id = self.name, proposal.tx_id
                self.events.append(stub.event)
        return response.payload

    def submit(self, identity: Identity, function: str, *args: object, **options) -> bytes:
        return self.invoke(identity, function, *args, submit=True, **options)

    def evaluate(self, identity: Identity, function: str, *args: object, **options) -> bytes:
        return self.invoke(identity, function, *args, submit=False, **options)

    def _commit(
        self, tx_id: str, simulation: Simulation, unpacked: protocol.UnpackedProposal
    ) -> None:
        number = self.state.height
        moment = unpacked.channel_header.timestamp
        writes = [
            Write(self.name, key, value, number, 0, tx_id, moment.seconds, moment.nanos)
            for key, value in sorted(simulation.writes.items())
        ]
        private = [
            HashedWrite(
                self.name, collection, key_hash(key),
                None if value is None else value_hash(value), number, 0,
                simulation.membership.owner(collection), key, value,
            )
            for collection, changes in sorted(simulation.private_writes.items())
            for key, value in sorted(changes.items())
        ]  # fmt: skip
        self.state.commit_block(
            number, writes, [CommittedTransaction(tx_id, number, 0, 0)], private
        )

    def close(self) -> None:
        self.state.close()


class LocalGateway:
    """A Gateway's shape (``get_network`` → ``get_contract`` → ``submit``/``evaluate``) over
    a LocalLedger, for one identity. A refusal is an EndorseError carrying the chaincode's
    status and message as a peer's would, so callers handle it as on a devnet. A submit
    commits at once, so ``submit_async`` is one whose status is already known; events are
    not offered."""

    def __init__(self, ledger: LocalLedger, identity: Identity) -> None:
        self.ledger = ledger
        self.identity = identity

    def get_network(self, channel: str) -> LocalNetwork:
        return LocalNetwork(self, channel)

    def close(self) -> None:
        """Nothing to close: the ledger belongs to whoever made it."""


@dataclass
class LocalNetwork:
    gateway: LocalGateway
    channel: str

    def get_contract(self, chaincode: str, contract: str = "") -> LocalContract:
        return LocalContract(self, contract)


@dataclass
class LocalContract:
    """A Contract's calls, as ``flowblock.ledger.gateway.Contract`` takes them. The one
    peer that runs a call is the caller's organisation's, or the first of
    ``target_organisations``/``endorsing_organisations``: there is no endorsement policy
    to satisfy in-process."""

    network: LocalNetwork
    contract: str = ""

    def submit(
        self,
        function: str,
        *args: object,
        transient: dict[str, object] | None = None,
        endorsing_organisations: list[str] | None = None,
    ) -> bytes:
        return self._invoke(True, function, args, transient, endorsing_organisations)

    def evaluate(
        self,
        function: str,
        *args: object,
        transient: dict[str, object] | None = None,
        target_organisations: list[str] | None = None,
    ) -> bytes:
        return self._invoke(False, function, args, transient, target_organisations)

    def submit_async(
        self,
        function: str,
        *args: object,
        transient: dict[str, object] | None = None,
        endorsing_organisations: list[str] | None = None,
    ) -> LocalSubmitted:
        result = self._invoke(True, function, args, transient, endorsing_organisations)
        return LocalSubmitted(result, self.network.gateway.ledger.state.height - 1)

    def _invoke(
        self,
        submit: bool,
        function: str,
        args: tuple,
        transient: dict[str, object] | None,
        organisations: list[str] | None,
    ) -> bytes:
        gateway = self.network.gateway
        name = f"{self.contract}:{function}" if self.contract else function
        private = {key: _as_bytes(value) for key, value in (transient or {}).items()}
        try:
            return gateway.ledger.invoke(
                gateway.identity,
                name,
                *args,
                submit=submit,
                transient=private or None,
                peer_organisation=(organisations or [""])[0],
            )
        except ChaincodeRefused as refused:
            said = (gateway.identity.msp_id, str(refused))  # "chaincode response 404, …"
            raise EndorseError(
                f"the peers did not endorse {name}: {refused.message}",
                details=(said,),
                status="ABORTED",
            ) from None


@dataclass
class LocalSubmitted:
    """A LocalContract's submit, committed already in ``block_number``."""

    result: bytes
    block_number: int

    def status(self, timeout: float | None = None) -> Status:
        return Status("", transaction_pb2.VALID, self.block_number)


def _as_bytes(value: object) -> bytes:
    """A transient value as the Gateway client sends it: bytes, UTF-8 text or canonical JSON."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else canonical_json(value)
