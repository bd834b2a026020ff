"""The checks of a transaction that need no world state: who signed it, and who endorsed.

Shared by the devnet's committer (which adds duplicate and MVCC checks) and by
``flowblock verify``, which re-checks every transaction of a chain.
"""

from __future__ import annotations

from fabric_protos.common import common_pb2
from fabric_protos.peer import transaction_pb2 as tx
from google.protobuf.message import DecodeError

from flowblock.errors import IdentityError
from flowblock.ledger import protocol
from flowblock.ledger.channel import ChannelConfig
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
    if len(endorsed_by & config.writers) < config.required_endorsements():
        raise Invalid(
            Code.ENDORSEMENT_POLICY_FAILURE,
            f"endorsed by {sorted(endorsed_by) or 'no organisation'}, "
            f"{config.required_endorsements()} of {len(config.writers)} organisations required",
        )
    return unpacked


def transaction_id_of(envelope: common_pb2.Envelope) -> str:
    """The transaction id in an envelope's header, or "" if it cannot be read."""
    try:
        payload = common_pb2.Payload.FromString(envelope.payload)
        return common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id
    except DecodeError:
        return ""
