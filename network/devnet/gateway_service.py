"""The Fabric Gateway gRPC service the devnet serves: Endorse, Submit, CommitStatus,
Evaluate and ChaincodeEvents, with the request and error shapes of a real peer's
gateway, so the official Gateway clients work against it unchanged.

As a production gateway peer does for its organisation's clients, it evaluates on the
caller's own organisation's peer, and endorses there first: when that simulation read
private values, only the collection's members are asked as well, and a transaction no
set of peers can endorse under the policy is refused before it is ordered.

Sizes are checked before anything is forwarded: a proposal over ``MAX_PROPOSAL_BYTES``
is refused in one sentence (RESOURCE_EXHAUSTED, gRPC's "413"), and an answer that would
not fit one message is refused rather than sent, so no transport ever cuts a message.
"""

from __future__ import annotations

import datetime as dt
import logging

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from flowblock.errors import IdentityError
from flowblock.ledger import protocol
from flowblock.ledger.collections import endorsement_refusal, implicit_collection_owner
from flowblock.ledger.gateway import size_refusal
from flowblock.ledger.validation import Invalid, written_by
from flowblock.network.devnet.chaincode_client import ChaincodeUnavailable
from flowblock.network.devnet.ledger import ChannelLedger
from flowblock.network.devnet.orderer import BroadcastRefused, Orderer, OrdererUnavailable
from flowblock.network.devnet.peer import ERROR_THRESHOLD, Peer
from flowblock.vocabulary import MAX_MESSAGE_BYTES, MAX_PROPOSAL_BYTES

log = logging.getLogger(__name__)
#: How long an events stream sleeps between looks for a new block when idle.
EVENT_POLL_SECONDS = 0.5
#: Bytes a Submit request adds to the endorsed transaction: the client's signature, the
#: transaction and channel ids and their framing, with room to spare.
SUBMIT_OVERHEAD = 4096


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    """One organisation's gateway onto the channel's peers and orderer."""

    def __init__(
        self,
        address: str,
        channel: str,
        peers: dict[str, Peer],
        local: str,
        orderer: Orderer,
        ledger: ChannelLedger,
        max_clock_skew: float = 300.0,
    ) -> None:
        self.max_clock_skew = max_clock_skew
        self.address = address
        self.channel = channel
        self.peers = peers
        self.local = local
        self.orderer = orderer
        self.ledger = ledger

    # -- helpers ---------------------------------------------------------------------

    def _abort(self, context, code: int, message: str, details=()) -> None:
        status = status_pb2.Status(code=code, message=message)
        for detail in details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        context.abort_with_status(rpc_status.to_status(status))

    def _detail(self, peer: Peer | None, message: str) -> gateway_pb2.ErrorDetail:
        return gateway_pb2.ErrorDetail(
            address=self.address, msp_id=peer.msp_id if peer else "", message=message
        )

    def _fits(self, context, what: str, size: int, limit: int = MAX_MESSAGE_BYTES) -> None:
        """Refuse, in one sentence, ``what`` of ``size`` bytes if it is over ``limit``."""
        refusal = size_refusal(what, size, limit)
        if refusal:
            self._abort(context, code_pb2.RESOURCE_EXHAUSTED, refusal)

    def _proposal(self, signed: proposal_pb2.SignedProposal, context) -> protocol.UnpackedProposal:
        """The proposal, once its size, channel, creator, signature and transaction id check."""
        self._fits(context, "the proposal", signed.ByteSize(), MAX_PROPOSAL_BYTES)
        try:
            unpacked = protocol.unpack_proposal(signed)
        except DecodeError:
            self._abort(context, code_pb2.INVALID_ARGUMENT, "the proposal cannot be parsed")
        if unpacked.channel_header.channel_id != self.channel:
            self._abort(
                context,
                code_pb2.NOT_FOUND,
                f"channel {unpacked.channel_header.channel_id!r} not found",
            )
        creator = unpacked.signature_header.creator
        try:
            signer = self.ledger.membership.check_signature(
                creator, signed.proposal_bytes, signed.signature
            )
        except IdentityError as error:
            self._abort(
                context,
                code_pb2.PERMISSION_DENIED,
                f"the proposal's creator is not authorised: {error}",
            )
        if signer.msp_id not in self.ledger.config.writers:
            self._abort(
                context,
                code_pb2.PERMISSION_DENIED,
                f"the proposal's creator is not authorised: {signer.msp_id} is not a member "
                "of the channel's organisations",
            )
        if unpacked.tx_id != protocol.transaction_id(unpacked.signature_header.nonce, creator):
            self._abort(context, code_pb2.INVALID_ARGUMENT, "the transaction id does not match")
        # The proposal's time is the chaincode's only clock (expiries, audit times): one
        # far from the peer's is refused, as a Kerberos server refuses a skewed ticket.
        proposed_at = unpacked.channel_header.timestamp.ToDatetime(tzinfo=dt.UTC)
        drift = abs((proposed_at - dt.datetime.now(dt.UTC)).total_seconds())
        if drift > self.max_clock_skew:
            self._abort(
                context,
                code_pb2.INVALID_ARGUMENT,
                f"the proposal is dated {proposed_at:%Y-%m-%dT%H:%M:%SZ}, {drift:.0f} s from "
                f"the peer's clock (at most {self.max_clock_skew:.0f} s); check the client's clock",
            )
        return unpacked

    def _signed_request(self, request: bytes, signature: bytes, identity: bytes, context) -> None:
        try:
            self.ledger.membership.check_signature(identity, request, signature)
        except IdentityError as error:
            self._abort(
                context, code_pb2.PERMISSION_DENIED, f"the request is not authorised: {error}"
            )

    # -- the service -----------------------------------------------------------------

    def Evaluate(self, request, context):  # noqa: N802 - gRPC method names
        unpacked = self._proposal(request.proposed_transaction, context)
        targets = list(request.target_organizations) or [self._home(unpacked)]
        peer = self.peers.get(targets[0])
        if peer is None:
            self._abort(context, code_pb2.UNAVAILABLE, f"no peer of {targets[0]} on this channel")
        try:
            with self.ledger.state.snapshot():
                response, *_ = peer.simulate(unpacked, request.proposed_transaction)
        except ChaincodeUnavailable as error:
            self._abort(context, code_pb2.UNAVAILABLE, str(error), [self._detail(peer, str(error))])
        if response.status >= ERROR_THRESHOLD:
            message = f"chaincode response {response.status}, {response.message}"
            self._abort(
                context,
                code_pb2.ABORTED,
                "evaluate call to endorser returned error: " + message,
                [self._detail(peer, message)],
            )
        answer = gateway_pb2.EvaluateResponse(result=response)
        self._fits(context, "the chaincode's answer", answer.ByteSize())
        return answer

    def Endorse(self, request, context):  # noqa: N802
        signed = request.proposed_transaction
        unpacked = self._proposal(signed, context)
        chosen = list(request.endorsing_organizations)
        responses: list[proposal_response_pb2.ProposalResponse] = []
        failures: list[gateway_pb2.ErrorDetail] = []
        with self.ledger.state.snapshot():
            if chosen:
                self._endorse_on(chosen, unpacked, signed, responses, failures)
            else:
                first = self._home(unpacked)
                self._endorse_on([first], unpacked, signed, responses, failures)
                interest = responses[0].interest if responses else None
                others = [
                    msp_id
                    for msp_id in sorted(self.peers)
                    if msp_id != first and _may_endorse(msp_id, interest)
                ]
                self._endorse_on(others, unpacked, signed, responses, failures)
        if failures:
            self._abort(
                context,
                code_pb2.ABORTED,
                "failed to endorse transaction, see attached details for more info",
                failures,
            )
        if len({response.payload for response in responses}) != 1:
            self._abort(
                context,
                code_pb2.ABORTED,
                "failed to assemble transaction: ProposalResponsePayloads do not match; "
                "the peers' simulations of the chaincode gave different results",
            )
        if not chosen:
            self._check_plan(responses, context)
        payload = protocol.assemble_transaction(unpacked, responses)
        answer = gateway_pb2.EndorseResponse(
            prepared_transaction=common_pb2.Envelope(payload=payload.SerializeToString())
        )
        # The client sends it back to Submit with its signature and the ids around it.
        self._fits(context, "the endorsed transaction", answer.ByteSize() + SUBMIT_OVERHEAD)
        return answer

    def _home(self, unpacked: protocol.UnpackedProposal) -> str:
        """The caller's own organisation's peer when it has one, else the gateway's."""
        own = unpacked.creator.mspid
        return own if own in self.peers else self.local

    def _endorse_on(
        self,
        organisations: list[str],
        unpacked: protocol.UnpackedProposal,
        signed: proposal_pb2.SignedProposal,
        responses: list[proposal_response_pb2.ProposalResponse],
        failures: list[gateway_pb2.ErrorDetail],
    ) -> None:
        """Ask each organisation's peer to endorse; collect its endorsement or its failure."""
        for msp_id in organisations:
            peer = self.peers.get(msp_id)
            if peer is None:
                failures.append(self._detail(None, f"no peer of {msp_id} on this channel"))
                continue
            try:
                response = peer.endorse(unpacked, signed)
            except ChaincodeUnavailable as error:
                failures.append(self._detail(peer, str(error)))
                continue
            if response.response.status >= ERROR_THRESHOLD:
                failures.append(
                    self._detail(
                        peer,
                        f"chaincode response {response.response.status}, "
                        f"{response.response.message}",
                    )
                )
            else:
                responses.append(response)

    def _check_plan(self, responses: list[proposal_response_pb2.ProposalResponse], context):
        """Refuse, as Fabric's gateway does, endorsements that cannot satisfy the policy
        (a transaction reading one organisation's private values and writing public keys
        under MAJORITY, say) rather than let the transaction be ordered and fail."""
        action = proposal_pb2.ChaincodeAction.FromString(
            proposal_response_pb2.ProposalResponsePayload.FromString(responses[0].payload).extension
        )
        try:
            public_writes, collections = written_by(action.results)
        except Invalid as invalid:
            self._abort(context, code_pb2.ABORTED, str(invalid))
        endorsed_by = {
            identities_pb2.SerializedIdentity.FromString(r.endorsement.endorser).mspid
            for r in responses
        }
        config = self.ledger.config
        refusal = endorsement_refusal(
            endorsed_by, config.writers, config.required_endorsements(), public_writes, collections
        )
        if refusal:
            self._abort(
                context,
                code_pb2.FAILED_PRECONDITION,
                "no combination of peers can be derived which satisfy the endorsement "
                f"policy: {refusal}",
            )

    def Submit(self, request, context):  # noqa: N802
        try:
            self.orderer.broadcast(request.prepared_transaction)
        except OrdererUnavailable as refusal:
            self._abort(context, code_pb2.UNAVAILABLE, str(refusal))
        except BroadcastRefused as refusal:
            self._abort(
                context,
                code_pb2.ABORTED,
                f"failed to submit transaction to the orderer: {refusal}",
                [self._detail(None, str(refusal))],
            )
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request, context):  # noqa: N802
        try:
            inner = gateway_pb2.CommitStatusRequest.FromString(request.request)
        except DecodeError:
            self._abort(context, code_pb2.INVALID_ARGUMENT, "the request cannot be parsed")
        self._channel(inner.channel_id, context)
        if not inner.transaction_id:
            self._abort(context, code_pb2.INVALID_ARGUMENT, "a transaction id is required")
        self._signed_request(request.request, request.signature, inner.identity, context)
        remaining = context.time_remaining()
        timeout = 60.0 if remaining is None else max(0.0, min(remaining, 3600.0))
        committed = self.ledger.wait_for_transaction(inner.transaction_id, timeout)
        if committed is None:
            self._abort(
                context,
                code_pb2.DEADLINE_EXCEEDED,
                f"transaction {inner.transaction_id} was not committed in time",
            )
        return gateway_pb2.CommitStatusResponse(result=committed.code, block_number=committed.block)

    def ChaincodeEvents(self, request, context):  # noqa: N802
        """Events from a block on, or from just after a transaction, until cancelled.

        As Fabric's gateway: with ``after_transaction_id`` of a committed transaction the
        stream starts in that transaction's block, after it; otherwise at the specified
        block or at the next block to commit.
        """
        try:
            inner = gateway_pb2.ChaincodeEventsRequest.FromString(request.request)
        except DecodeError:
            self._abort(context, code_pb2.INVALID_ARGUMENT, "the request cannot be parsed")
        self._channel(inner.channel_id, context)
        self._signed_request(request.request, request.signature, inner.identity, context)
        start = inner.start_position
        after = (
            self.ledger.state.transaction(inner.after_transaction_id)
            if (inner.after_transaction_id)
            else None
        )
        skip_through = -1
        if after is not None:
            number, skip_through = after.block, after.txnum
        elif start.HasField("specified"):
            number = start.specified.number
        elif start.HasField("next_commit") or not start.WhichOneof("Type"):
            number = self.ledger.committed_height
        else:
            self._abort(
                context,
                code_pb2.INVALID_ARGUMENT,
                "the start position must be a specified block or the next commit",
            )
        while context.is_active():
            if number >= self.ledger.committed_height:
                self.ledger.wait_for_height(number + 1, EVENT_POLL_SECONDS)
                continue
            events = [e for txnum, e in self.ledger.events(number, inner.chaincode_id)
                      if txnum > skip_through]  # fmt: skip
            skip_through = -1
            if events:
                yield gateway_pb2.ChaincodeEventsResponse(events=events, block_number=number)
            number += 1

    def _channel(self, channel_id: str, context) -> None:
        if channel_id != self.channel:
            self._abort(context, code_pb2.NOT_FOUND, f"channel {channel_id!r} not found")


def _may_endorse(msp_id: str, interest: proposal_response_pb2.ChaincodeInterest | None) -> bool:
    """Whether ``msp_id``'s peer can simulate what the first endorser did: one that read
    private values needs peers that hold them, members of every collection it touched."""
    if interest is None:
        return True
    return all(
        call.no_private_reads
        or all(implicit_collection_owner(name) == msp_id for name in call.collection_names)
        for call in interest.chaincodes
    )
