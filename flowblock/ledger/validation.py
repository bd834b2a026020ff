"""The checks of a transaction that need no world state: who signed it, and who endorsed.

Shared by the devnet's committer (which adds duplicate and MVCC checks) and by
``flowblock verify``, which re-checks every transaction of a chain.
"""

from __future__ import annotations

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import transaction_pb2 as tx
from google.protobuf.message import DecodeError

from flowblock.errors import IdentityError
from flowblock.ledger import protocol
from flowblock.ledger.channel import ChannelConfig
from flowblock.ledger.collections import endorsement_refusal
from flowblock.ledger.membership import MembershipService

Code = tx.TxValidationCode


#: Codes of transactions whose creator or transaction id is not established: their id
#: may be anyone's, so it is never recorded as taken (as Fabric's gateway skips them).
UNAUTHENTICATED = frozenset(
    {
        Code.BAD_PAYLOAD,
        Code.UNKNOWN_TX_TYPE,
        Code.TARGET_CHAIN_NOT_FOUND,
        Code.BAD_CREATOR_SIGNATURE,
        Code.BAD_PROPOSAL_TXID,
    }
)


class Invalid(Exception):
    """A transaction failed validation; ``code`` is the reason."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        super().__init__(reason)


def check_signatures(
    envelope: common_pb2.Envelope,
    membership: MembershipService,
    config: ChannelConfig,
) -> protocol.UnpackedTransaction:
    """Check everything about a transaction that does not depend on the world state.

    Certificates are judged as of when they were issued, not now, as Fabric's MSP does
    at commit: a block's validity must not change with the day it is replayed or
    verified. Expiry is enforced where transactions enter (gateway and orderer).
    """
    try:
        unpacked = protocol.unpack_transaction(envelope)
    except (DecodeError, ValueError) as error:
        raise Invalid(Code.BAD_PAYLOAD, f"the transaction cannot be parsed: {error}") from None
    header = unpacked.channel_header
    if header.type != common_pb2.ENDORSER_TRANSACTION:
        raise Invalid(Code.UNKNOWN_TX_TYPE, f"header type {header.type} is not a transaction")
    if header.channel_id != config.channel:
        raise Invalid(Code.TARGET_CHAIN_NOT_FOUND, f"channel {header.channel_id!r} is unknown")
    creator = unpacked.signature_header.creator
    try:
        signer = membership.check_signature(
            creator, envelope.payload, envelope.signature, check_expiry=False
        )
    except IdentityError as error:
        raise Invalid(Code.BAD_CREATOR_SIGNATURE, str(error)) from None
    if signer.msp_id not in config.writers:
        raise Invalid(Code.BAD_CREATOR_SIGNATURE, f"{signer.msp_id} may not write to the channel")
    if header.tx_id != protocol.transaction_id(unpacked.signature_header.nonce, creator):
        raise Invalid(Code.BAD_PROPOSAL_TXID, "the transaction id does not match its nonce")
    if unpacked.action_header != unpacked.payload.header.signature_header:
        raise Invalid(
            Code.INVALID_ENDORSER_TRANSACTION, "the action's header is not the transaction's"
        )
    if unpacked.response_payload.proposal_hash != protocol.transaction_proposal_hash(unpacked):
        raise Invalid(
            Code.INVALID_ENDORSER_TRANSACTION,
            "the endorsed proposal hash does not match this transaction",
        )
    endorsed_by: set[str] = set()
    response_payload = unpacked.action_payload.action.proposal_response_payload
    for endorsement in unpacked.endorsements:
        try:
            endorser = membership.check_signature(
                endorsement.endorser,
                protocol.endorsement_message(response_payload, endorsement.endorser),
                endorsement.signature,
                check_expiry=False,
            )
        except IdentityError:
            continue
        if MembershipService.is_peer(endorser):
            endorsed_by.add(endorser.msp_id)
    public_writes, collections = written_by(unpacked.chaincode_action.results)
    refusal = endorsement_refusal(
        endorsed_by, config.writers, config.required_endorsements(), public_writes, collections
    )
    if refusal:
        raise Invalid(Code.ENDORSEMENT_POLICY_FAILURE, refusal)
    return unpacked


def written_by(results: bytes) -> tuple[bool, set[str]]:
    """Whether a read/write set (``ChaincodeAction.results``) writes public keys, and the
    private collections it writes: what decides whose endorsements it needs."""
    try:
        read_write_set = rwset_pb2.TxReadWriteSet.FromString(results)
        public, collections = False, set()
        for ns in read_write_set.ns_rwset:
            public = public or bool(kv_rwset_pb2.KVRWSet.FromString(ns.rwset).writes)
            for collection in ns.collection_hashed_rwset:
                hashed = kv_rwset_pb2.HashedRWSet.FromString(collection.hashed_rwset)
                if hashed.hashed_writes:
                    collections.add(collection.collection_name)
    except DecodeError:
        raise Invalid(Code.BAD_RWSET, "the read/write set cannot be parsed") from None
    return public, collections


def transaction_id_of(envelope: common_pb2.Envelope) -> str:
    """The transaction id in an envelope's header, or "" if it cannot be read."""
    try:
        payload = common_pb2.Payload.FromString(envelope.payload)
        return common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id
    except DecodeError:
        return ""
