"""A Fabric Gateway client: Gateway → Network → Contract, as Fabric's own clients.

``contract.submit("Transfer", "asset1", "bob")`` endorses, submits and waits for the
commit; ``contract.evaluate("Read", "asset1")`` only queries. Each phase fails with its
own error carrying the transaction id (:class:`~flowblock.errors.EndorseError`,
:class:`~flowblock.errors.SubmitError`, :class:`~flowblock.errors.CommitError`). The
messages are built exactly as the official clients build them, so this works against
real Fabric 2.5/3.x peers and the devnet alike.

A transaction handed to the orderer whose fate the gateway did not tell (it went away
between the submit and the commit: a crash, a restart) is retried as the *same* signed
transaction, never endorsed anew: a transaction id commits at most once (a second copy
is invalidated as DUPLICATE_TXID and its status is the first one's), so a retry can
never grant or ask for something twice.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import transaction_pb2
from grpc_status import rpc_status

from flowblock.canonical import canonical_json
from flowblock.errors import CommitError, ConfigError, EndorseError, LedgerError, SubmitError
from flowblock.identity import Identity, load_wallet
from flowblock.ledger import protocol
from flowblock.vocabulary import MAX_MESSAGE_BYTES, MAX_PROPOSAL_BYTES

Argument = str | bytes | int | float | bool | dict | list

#: Seconds to wait before each retry of a submit or a commit-status call the gateway did
#: not answer; together they span a devnet's restart.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
T = TypeVar("T")


def message_size_options() -> list[tuple[str, int]]:
    """gRPC channel and server options for messages up to :data:`MAX_MESSAGE_BYTES` each
    way: the one size every part of a transaction's way agrees on."""
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]


def size_refusal(what: str, size: int, limit: int) -> str | None:
    """The sentence refusing ``what`` (``"the proposal"``) of ``size`` bytes, over ``limit``;
    None when it fits. Sizes are rounded so the refused one never reads as the limit."""
    if size <= limit:
        return None
    over, most = math.ceil(size * 10 / 2**20) / 10, math.floor(limit * 10 / 2**20) / 10
    return f"{what} is {over:.1f} MiB; at most {most:.1f} MiB is accepted."


def _as_bytes(value: Argument) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return canonical_json(value)


def _failure(error: grpc.RpcError) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A gateway error's message and the (MSP id, message) each peer reported."""
    status = rpc_status.from_call(error)
    details = []
    for packed in status.details if status is not None else ():
        detail = gateway_pb2.ErrorDetail()
        if packed.Unpack(detail):
            details.append((detail.msp_id or detail.address, detail.message))
    if details:
        return "; ".join(f"{who}: {message}" for who, message in details), tuple(details)
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return f"the Fabric gateway does not answer ({error.details()})", ()
    return error.details() or error.code().name, ()


@dataclass(frozen=True)
class Status:
    """How a transaction ended up on the ledger."""

    tx_id: str
    code: int
    block_number: int

    @property
    def successful(self) -> bool:
        return self.code == transaction_pb2.VALID

    @property
    def code_name(self) -> str:
        return transaction_pb2.TxValidationCode.Name(self.code)


@dataclass(frozen=True)
class ChaincodeEvent:
    block_number: int
    tx_id: str
    chaincode: str
    name: str
    payload: bytes


class Gateway:
    """A connection, as one identity, to a Fabric Gateway."""

    def __init__(
        self,
        address: str,
        identity: Identity,
        *,
        tls_root_certificates: bytes | None = None,
        timeout: float = 60.0,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.address = address
        self.identity = identity
        self.timeout = timeout
        #: Waits between tries of a transaction the gateway did not answer about; () for none.
        self.retry_delays = retry_delays
        options = message_size_options()
        if tls_root_certificates is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_root_certificates)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self.creator = protocol.serialize_identity(identity)

    @classmethod
    def connect(
        cls, address: str, wallet: str | os.PathLike[str], *, tls_ca: str | None = None, **kw: Any
    ) -> Gateway:
        """Connect as the identity in ``wallet`` (validated) to the gateway at ``address``."""
        roots = None
        if tls_ca:
            try:
                roots = Path(tls_ca).expanduser().read_bytes()
            except OSError as error:
                raise ConfigError(
                    f"the TLS CA certificate {tls_ca} cannot be read ({error.strerror})."
                ) from None
        return cls(address, load_wallet(wallet), tls_root_certificates=roots, **kw)

    def get_network(self, channel: str) -> Network:
        return Network(self, channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Network:
    """One channel, seen through a gateway."""

    def __init__(self, gateway: Gateway, channel: str) -> None:
        self.gateway = gateway
        self.channel = channel

    def get_contract(self, chaincode: str, contract: str = "") -> Contract:
        return Contract(self, chaincode, contract)

    def chaincode_events(
        self, chaincode: str, *, start_block: int | None = None, after_tx_id: str = ""
    ) -> EventStream:
        """Events of ``chaincode`` from ``start_block`` (default: the next block) onwards."""
        gateway = self.gateway
        start = ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit())
        if start_block is not None:
            start = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start_block))
        request = gateway_pb2.ChaincodeEventsRequest(
            channel_id=self.channel,
            chaincode_id=chaincode,
            identity=gateway.creator,
            start_position=start,
            after_transaction_id=after_tx_id,
        ).SerializeToString()
        call = gateway._stub.ChaincodeEvents(
            gateway_pb2.SignedChaincodeEventsRequest(
                request=request, signature=gateway.identity.sign(request)
            )
        )
        return EventStream(call)


class EventStream:
    """An open stream of chaincode events; iterate it, and ``close()`` when done."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[ChaincodeEvent]:
        try:
            for response in self._call:
                for event in response.events:
                    yield ChaincodeEvent(
                        block_number=response.block_number,
                        tx_id=event.tx_id,
                        chaincode=event.chaincode_id,
                        name=event.event_name,
                        payload=event.payload,
                    )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise LedgerError(f"the event stream failed: {_failure(error)[0]}") from None

    def close(self) -> None:
        self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SubmittedTransaction:
    """A transaction handed to the orderer; ``status()`` waits for its commit."""

    def __init__(
        self,
        contract: Contract,
        tx_id: str,
        result: bytes,
        envelope: common_pb2.Envelope | None = None,
    ) -> None:
        self._contract = contract
        self.tx_id = tx_id
        self.result = result
        #: The signed transaction, handed over again if the gateway loses track of it.
        self.envelope = envelope

    def status(self, timeout: float | None = None) -> Status:
        """Wait up to ``timeout`` seconds (the gateway's by default) for the commit.

        Where the gateway stops answering meanwhile, the same signed transaction is handed
        to it again and its status asked again, after each of the gateway's retry delays:
        whether the first copy was committed, is still being ordered or was lost in a
        crash, the transaction commits once. Only when that fails too is the status
        unknown (CommitError); it is still that one transaction, not to be asked anew.
        """
        gateway = self._contract.network.gateway
        deadline = time.monotonic() + (timeout or gateway.timeout)
        contract, envelope = self._contract, self.envelope

        def ask(wait: float, retry: bool) -> gateway_pb2.CommitStatusResponse:
            if retry and envelope is not None:
                contract._broadcast(self.tx_id, envelope, wait, retry)
            return self._ask(max(0.0, deadline - time.monotonic()), retry)

        try:
            response = _retrying(gateway, deadline, ask)
        except grpc.RpcError as error:
            raise CommitError(
                f"the commit status of {self.tx_id} is unknown: {_failure(error)[0]}; it "
                "commits at most once, so ask for its status again rather than submit anew",
                self.tx_id,
            ) from None
        return Status(self.tx_id, response.result, response.block_number)

    def _ask(self, timeout: float, wait_for_ready: bool) -> gateway_pb2.CommitStatusResponse:
        gateway = self._contract.network.gateway
        request = gateway_pb2.CommitStatusRequest(
            transaction_id=self.tx_id,
            channel_id=self._contract.network.channel,
            identity=gateway.creator,
        ).SerializeToString()
        return gateway._stub.CommitStatus(
            gateway_pb2.SignedCommitStatusRequest(
                request=request, signature=gateway.identity.sign(request)
            ),
            timeout=timeout,
            wait_for_ready=wait_for_ready,
        )


def _retrying(gateway: Gateway, deadline: float, call: Callable[[float, bool], T]) -> T:
    """``call(seconds left, retrying)``, tried again after each of the gateway's retry
    delays while the gateway does not answer, until ``deadline`` (a monotonic time).
    Retries wait for the connection to come back rather than fail at once."""
    delays = iter(gateway.retry_delays)
    retrying = False
    while True:
        try:
            return call(max(0.0, deadline - time.monotonic()), retrying)
        except grpc.RpcError as error:
            delay = next(delays, None)
            if not _unanswered(error) or delay is None:
                raise
            if time.monotonic() + delay >= deadline:
                raise
        time.sleep(delay)
        retrying = True


def _unanswered(error: grpc.RpcError) -> bool:
    """Whether the call failed for want of a gateway (the connection broke or could not be
    made), not by its answer: a gateway that says UNAVAILABLE itself (its orderer is
    stopping, say) has told the transaction's fate, not taken it."""
    return error.code() == grpc.StatusCode.UNAVAILABLE and rpc_status.from_call(error) is None


class Contract:
    """A chaincode (and, optionally, one contract in it) on a channel."""

    def __init__(self, network: Network, chaincode: str, contract: str = "") -> None:
        self.network = network
        self.chaincode = chaincode
        self.contract = contract

    def _function(self, name: str) -> str:
        return f"{self.contract}:{name}" if self.contract else name

    def _propose(
        self, function: str, args: tuple[Argument, ...], transient: dict[str, Argument] | None
    ) -> protocol.Proposal:
        """The signed proposal; one too big for the gateway is refused here, unsent."""
        proposal = protocol.build_proposal(
            self.network.gateway.identity,
            self.network.channel,
            self.chaincode,
            self._function(function),
            [_as_bytes(arg) for arg in args],
            {key: _as_bytes(value) for key, value in (transient or {}).items()},
        )
        refusal = size_refusal("the proposal", proposal.signed.ByteSize(), MAX_PROPOSAL_BYTES)
        if refusal:
            raise EndorseError(refusal, proposal.tx_id, (), grpc.StatusCode.RESOURCE_EXHAUSTED.name)
        return proposal

    def evaluate(
        self,
        function: str,
        *args: Argument,
        transient: dict[str, Argument] | None = None,
        target_organisations: list[str] | None = None,
    ) -> bytes:
        """Run a query on one peer and return its result; nothing goes on the ledger.

        The gateway picks the peer (its own organisation's), or one of
        ``target_organisations`` (MSP ids) when given."""
        gateway = self.network.gateway
        proposal = self._propose(function, args, transient)
        try:
            response = gateway._stub.Evaluate(
                gateway_pb2.EvaluateRequest(
                    transaction_id=proposal.tx_id,
                    channel_id=self.network.channel,
                    proposed_transaction=proposal.signed,
                    target_organizations=target_organisations or [],
                ),
                timeout=gateway.timeout,
            )
        except grpc.RpcError as error:
            raise EndorseError(*_failure_of(error, proposal.tx_id)) from None
        return response.result.payload

    def endorse(
        self,
        function: str,
        *args: Argument,
        transient: dict[str, Argument] | None = None,
        endorsing_organisations: list[str] | None = None,
    ) -> tuple[str, common_pb2.Envelope]:
        """Have the peers endorse a transaction; returns its id and the signed envelope."""
        gateway = self.network.gateway
        proposal = self._propose(function, args, transient)
        try:
            endorsed = gateway._stub.Endorse(
                gateway_pb2.EndorseRequest(
                    transaction_id=proposal.tx_id,
                    channel_id=self.network.channel,
                    proposed_transaction=proposal.signed,
                    endorsing_organizations=endorsing_organisations or [],
                ),
                timeout=gateway.timeout,
            )
        except grpc.RpcError as error:
            raise EndorseError(*_failure_of(error, proposal.tx_id)) from None
        envelope = endorsed.prepared_transaction
        envelope.signature = gateway.identity.sign(envelope.payload)
        return proposal.tx_id, envelope

    def submit_async(
        self,
        function: str,
        *args: Argument,
        transient: dict[str, Argument] | None = None,
        endorsing_organisations: list[str] | None = None,
    ) -> SubmittedTransaction:
        """Endorse and hand to the orderer; returns before the commit."""
        tx_id, envelope = self.endorse(
            function, *args, transient=transient, endorsing_organisations=endorsing_organisations
        )
        return self.submit_envelope(tx_id, envelope)

    def submit_envelope(self, tx_id: str, envelope: common_pb2.Envelope) -> SubmittedTransaction:
        """Hand a signed, endorsed transaction to the orderer; again, the same one, while
        the gateway does not answer (the orderer may have taken it before it went away)."""
        gateway = self.network.gateway
        deadline = time.monotonic() + gateway.timeout
        try:
            _retrying(
                gateway, deadline, lambda left, retry: self._broadcast(tx_id, envelope, left, retry)
            )
        except grpc.RpcError as error:
            raise SubmitError(*_failure_of(error, tx_id)) from None
        return SubmittedTransaction(self, tx_id, _transaction_result(envelope), envelope)

    def _broadcast(
        self, tx_id: str, envelope: common_pb2.Envelope, timeout: float, wait_for_ready: bool
    ) -> None:
        self.network.gateway._stub.Submit(
            gateway_pb2.SubmitRequest(
                transaction_id=tx_id,
                channel_id=self.network.channel,
                prepared_transaction=envelope,
            ),
            timeout=timeout,
            wait_for_ready=wait_for_ready,
        )

    def submit(
        self,
        function: str,
        *args: Argument,
        transient: dict[str, Argument] | None = None,
        endorsing_organisations: list[str] | None = None,
    ) -> bytes:
        """Endorse, order and commit a transaction; returns the chaincode's result."""
        submitted = self.submit_async(
            function, *args, transient=transient, endorsing_organisations=endorsing_organisations
        )
        status = submitted.status()
        if not status.successful:
            raise CommitError(
                f"transaction {status.tx_id} was not committed: {status.code_name}",
                status.tx_id,
                status.code_name,
            )
        return submitted.result


def _failure_of(
    error: grpc.RpcError, tx_id: str
) -> tuple[str, str, tuple[tuple[str, str], ...], str]:
    """The arguments of a LedgerError for a failed gateway call."""
    message, details = _failure(error)
    return message, tx_id, details, error.code().name


def _transaction_result(envelope: common_pb2.Envelope) -> bytes:
    return protocol.unpack_transaction(envelope).chaincode_action.response.payload
