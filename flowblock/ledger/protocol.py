"""Fabric's transaction messages, built and taken apart exactly as Fabric does.

The client (``flowblock.ledger.gateway``), the devnet's peers and orderer, and
``flowblock verify`` all use these functions, so the bytes a real Fabric peer would
sign, hash and check are computed in one place. References: Fabric's ``protoutil``
package and the official Gateway clients' proposal builder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass

from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.timestamp_pb2 import Timestamp

from flowblock.identity import Identity

NONCE_SIZE = 24


def serialize_identity(identity: Identity) -> bytes:
    """The creator bytes Fabric puts in headers: ``SerializedIdentity{mspid, PEM}``."""
    return identities_pb2.SerializedIdentity(
        mspid=identity.msp_id, id_bytes=identity.certificate_pem()
    ).SerializeToString()


def transaction_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction id: hex SHA-256 of the nonce followed by the creator."""
    return hashlib.sha256(nonce + creator).hexdigest()


@dataclass(frozen=True)
class Proposal:
    """A signed chaincode proposal and the parts a client needs to follow it."""

    tx_id: str
    signed: proposal_pb2.SignedProposal


def build_proposal(
    identity: Identity,
    channel: str,
    chaincode: str,
    function: str,
    args: list[bytes],
    transient: dict[str, bytes] | None = None,
    *,
    nonce: bytes | None = None,
    timestamp: dt.datetime | None = None,
) -> Proposal:
    """A proposal to invoke ``function(*args)`` of ``chaincode``, signed by ``identity``.

    ``timestamp`` (default now) becomes the transaction's time, the only clock chaincode
    has; tests set it to play a transaction at a chosen moment.
    """
    creator = serialize_identity(identity)
    nonce = nonce or os.urandom(NONCE_SIZE)
    tx_id = transaction_id(nonce, creator)
    chaincode_id = chaincode_pb2.ChaincodeID(name=chaincode)
    proposed_at = Timestamp()
    if timestamp is None:
        proposed_at.GetCurrentTime()
    else:
        proposed_at.FromDatetime(timestamp)
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION,
        tx_id=tx_id,
        timestamp=proposed_at,
        channel_id=channel,
        epoch=0,
        extension=proposal_pb2.ChaincodeHeaderExtension(
            chaincode_id=chaincode_id
        ).SerializeToString(),
    )
    signature_header = common_pb2.SignatureHeader(creator=creator, nonce=nonce)
    spec = chaincode_pb2.ChaincodeSpec(
        type=chaincode_pb2.ChaincodeSpec.NODE,
        chaincode_id=chaincode_id,
        input=chaincode_pb2.ChaincodeInput(args=[function.encode(), *args]),
    )
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=spec).SerializeToString(),
        TransientMap=transient or {},
    )
    proposal_bytes = proposal_pb2.Proposal(
        header=common_pb2.Header(
            channel_header=channel_header.SerializeToString(),
            signature_header=signature_header.SerializeToString(),
        ).SerializeToString(),
        payload=payload.SerializeToString(),
    ).SerializeToString()
    signed = proposal_pb2.SignedProposal(
        proposal_bytes=proposal_bytes, signature=identity.sign(proposal_bytes)
    )
    return Proposal(tx_id, signed)


@dataclass(frozen=True)
class UnpackedProposal:
    """The parts of a signed proposal a peer looks at."""

    proposal: proposal_pb2.Proposal
    header: common_pb2.Header
    channel_header: common_pb2.ChannelHeader
    signature_header: common_pb2.SignatureHeader
    payload: proposal_pb2.ChaincodeProposalPayload
    spec: chaincode_pb2.ChaincodeSpec
    creator: identities_pb2.SerializedIdentity

    @property
    def tx_id(self) -> str:
        return self.channel_header.tx_id

    @property
    def chaincode(self) -> str:
        return self.spec.chaincode_id.name

    @property
    def function(self) -> str:
        args = self.spec.input.args
        return args[0].decode("utf-8", "replace") if args else ""


def unpack_proposal(signed: proposal_pb2.SignedProposal) -> UnpackedProposal:
    """Parse a signed proposal; raises ``google.protobuf.message.DecodeError`` if malformed."""
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    invocation = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input)
    return UnpackedProposal(
        proposal=proposal,
        header=header,
        channel_header=common_pb2.ChannelHeader.FromString(header.channel_header),
        signature_header=signature_header,
        payload=payload,
        spec=invocation.chaincode_spec,
        creator=identities_pb2.SerializedIdentity.FromString(signature_header.creator),
    )


def payload_for_transaction(payload: proposal_pb2.ChaincodeProposalPayload) -> bytes:
    """The proposal payload as it goes on the ledger: with the transient data removed."""
    return proposal_pb2.ChaincodeProposalPayload(input=payload.input).SerializeToString()


def proposal_hash(unpacked: UnpackedProposal) -> bytes:
    """Fabric's ``GetProposalHash1``: what a proposal response commits to."""
    digest = hashlib.sha256()
    digest.update(unpacked.header.channel_header)
    digest.update(unpacked.header.signature_header)
    digest.update(payload_for_transaction(unpacked.payload))
    return digest.digest()


def transaction_proposal_hash(unpacked: UnpackedTransaction) -> bytes:
    """Fabric's ``GetProposalHash2``: the proposal hash as a transaction restates it.

    The endorsers signed a response to exactly this hash, so a committer recomputing it
    from the transaction knows the endorsements were given for this transaction and not
    lifted from another one.
    """
    digest = hashlib.sha256()
    digest.update(unpacked.payload.header.channel_header)
    digest.update(unpacked.payload.header.signature_header)
    digest.update(unpacked.action_payload.chaincode_proposal_payload)
    return digest.digest()


def endorsement_message(response_payload: bytes, endorser: bytes) -> bytes:
    """The bytes an endorser signs: the proposal response payload, then its identity."""
    return response_payload + endorser


def assemble_transaction(
    unpacked: UnpackedProposal, responses: list[proposal_response_pb2.ProposalResponse]
) -> common_pb2.Payload:
    """The unsigned transaction built from a proposal and its matching endorsements."""
    action = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=payload_for_transaction(unpacked.payload),
        action=transaction_pb2.ChaincodeEndorsedAction(
            proposal_response_payload=responses[0].payload,
            endorsements=[response.endorsement for response in responses],
        ),
    )
    transaction = transaction_pb2.Transaction(
        actions=[
            transaction_pb2.TransactionAction(
                header=unpacked.header.signature_header, payload=action.SerializeToString()
            )
        ]
    )
    return common_pb2.Payload(header=unpacked.header, data=transaction.SerializeToString())


@dataclass(frozen=True)
class UnpackedTransaction:
    """An endorser transaction taken apart for validation."""

    payload: common_pb2.Payload
    channel_header: common_pb2.ChannelHeader
    signature_header: common_pb2.SignatureHeader
    creator: identities_pb2.SerializedIdentity
    action_header: bytes
    action_payload: transaction_pb2.ChaincodeActionPayload
    response_payload: proposal_response_pb2.ProposalResponsePayload
    chaincode_action: proposal_pb2.ChaincodeAction

    @property
    def tx_id(self) -> str:
        return self.channel_header.tx_id

    @property
    def endorsements(self):  # repeated Endorsement
        return self.action_payload.action.endorsements


def unpack_transaction(envelope: common_pb2.Envelope) -> UnpackedTransaction:
    """Parse an endorser transaction; raises ``DecodeError`` or ValueError if malformed."""
    payload = common_pb2.Payload.FromString(envelope.payload)
    channel_header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    signature_header = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    if len(transaction.actions) != 1:
        raise ValueError("an endorser transaction must have exactly one action")
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(
        transaction.actions[0].payload
    )
    response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
        action_payload.action.proposal_response_payload
    )
    return UnpackedTransaction(
        payload=payload,
        channel_header=channel_header,
        signature_header=signature_header,
        creator=identities_pb2.SerializedIdentity.FromString(signature_header.creator),
        action_header=transaction.actions[0].header,
        action_payload=action_payload,
        response_payload=response_payload,
        chaincode_action=proposal_pb2.ChaincodeAction.FromString(response_payload.extension),
    )
