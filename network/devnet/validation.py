"""Validating a block's transactions the way a Fabric committing peer does.

Each transaction gets a ``TxValidationCode``: its creator and signature, its id, the
endorsement policy (enough distinct organisations' peers signed the same response),
and MVCC (every key it read still has the version it read, and every range it scanned
still holds the same keys). Only VALID transactions change the world state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import chaincode_event_pb2
from fabric_protos.peer import transaction_pb2 as tx
from google.protobuf.message import DecodeError

from flowblock.errors import IdentityError
from flowblock.ledger import protocol
from flowblock.ledger.membership import MembershipService
from flowblock.network.devnet.genesis import ChannelConfig
from flowblock.network.devnet.statedb import CommittedTransaction, StateDB, Version, Write

Code = tx.TxValidationCode


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
    """Check everything about a transaction that does not depend on the world state."""
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
        membership.check_signature(creator, envelope.payload, envelope.signature)
    except IdentityError as error:
        raise Invalid(Code.BAD_CREATOR_SIGNATURE, str(error)) from None
    if header.tx_id != protocol.transaction_id(unpacked.signature_header.nonce, creator):
        raise Invalid(Code.BAD_PROPOSAL_TXID, "the transaction id does not match its nonce")
    endorsed_by: set[str] = set()
    response_payload = unpacked.action_payload.action.proposal_response_payload
    for endorsement in unpacked.endorsements:
        try:
            endorser = membership.check_signature(
                endorsement.endorser,
                protocol.endorsement_message(response_payload, endorsement.endorser),
                endorsement.signature,
            )
        except IdentityError:
            continue
        if MembershipService.is_peer(endorser):
            endorsed_by.add(endorser.msp_id)
    application = {msp.name for msp in config.application}
    if len(endorsed_by & application) < config.required_endorsements():
        raise Invalid(
            Code.ENDORSEMENT_POLICY_FAILURE,
            f"endorsed by {sorted(endorsed_by) or 'no organisation'}, "
            f"{config.required_endorsements()} of {len(application)} organisations required",
        )
    return unpacked


@dataclass
class BlockValidation:
    """The outcome of validating one block against the state below it."""

    number: int
    codes: list[int] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    transactions: list[CommittedTransaction] = field(default_factory=list)
    events: list[chaincode_event_pb2.ChaincodeEvent] = field(default_factory=list)

    @property
    def filter(self) -> bytes:
        return bytes(self.codes)


class Validator:
    """Validates blocks of one channel against its world state."""

    def __init__(self, config: ChannelConfig, membership: MembershipService, state: StateDB):
        self.config = config
        self.membership = membership
        self.state = state

    def validate(self, block: common_pb2.Block, trusted_filter: bytes | None = None) -> BlockValidation:
        """Validate every transaction; with ``trusted_filter`` (recovery) reuse its codes."""
        outcome = BlockValidation(block.header.number)
        updated: set[tuple[str, str]] = set()
        seen: set[str] = set()
        for txnum, raw in enumerate(block.data.data):
            envelope = common_pb2.Envelope.FromString(raw)
            try:
                unpacked = check_signatures(envelope, self.membership, self.config)
                if unpacked.tx_id in seen or self.state.transaction(unpacked.tx_id):
                    raise Invalid(Code.DUPLICATE_TXID, f"{unpacked.tx_id} was already submitted")
                rwsets = self._read_write_sets(unpacked)
                if trusted_filter is None:
                    self._check_mvcc(rwsets, updated)
                elif trusted_filter[txnum] != Code.VALID:
                    raise Invalid(trusted_filter[txnum], "invalid when first committed")
            except Invalid as invalid:
                outcome.codes.append(invalid.code)
                tx_id = _tx_id(envelope)
                if tx_id and tx_id not in seen:
                    seen.add(tx_id)
                    outcome.transactions.append(
                        CommittedTransaction(tx_id, block.header.number, txnum, invalid.code)
                    )
                continue
            seen.add(unpacked.tx_id)
            outcome.codes.append(Code.VALID)
            outcome.transactions.append(
                CommittedTransaction(unpacked.tx_id, block.header.number, txnum, Code.VALID)
            )
            timestamp = unpacked.channel_header.timestamp
            for namespace, kv in rwsets:
                for write in kv.writes:
                    updated.add((namespace, write.key))
                    outcome.writes.append(
                        Write(
                            namespace, write.key, None if write.is_delete else write.value,
                            block.header.number, txnum, unpacked.tx_id,
                            timestamp.seconds, timestamp.nanos,
                        )
                    )
            if unpacked.chaincode_action.events:
                outcome.events.append(
                    chaincode_event_pb2.ChaincodeEvent.FromString(unpacked.chaincode_action.events)
                )
        return outcome

    def _read_write_sets(
        self, unpacked: protocol.UnpackedTransaction
    ) -> list[tuple[str, kv_rwset_pb2.KVRWSet]]:
        action = unpacked.chaincode_action
        try:
            results = rwset_pb2.TxReadWriteSet.FromString(action.results)
            sets = [
                (ns.namespace, kv_rwset_pb2.KVRWSet.FromString(ns.rwset))
                for ns in results.ns_rwset
            ]
        except DecodeError:
            raise Invalid(Code.BAD_RWSET, "the read/write set cannot be parsed") from None
        chaincode = action.chaincode_id.name
        for namespace, kv in sets:
            if namespace != chaincode and kv.writes:
                raise Invalid(Code.ILLEGAL_WRITESET, f"{chaincode} wrote to {namespace}")
        return sets

    def _check_mvcc(
        self, rwsets: list[tuple[str, kv_rwset_pb2.KVRWSet]], updated: set[tuple[str, str]]
    ) -> None:
        for namespace, kv in rwsets:
            for read in kv.reads:
                read_version = _as_version(read)
                if (namespace, read.key) in updated or (
                    self.state.version(namespace, read.key) != read_version
                ):
                    raise Invalid(Code.MVCC_READ_CONFLICT, f"{read.key!r} changed since it was read")
            for query in kv.range_queries_info:
                if self._phantom(namespace, query, updated):
                    raise Invalid(
                        Code.PHANTOM_READ_CONFLICT,
                        f"the range [{query.start_key!r}, {query.end_key!r}) changed",
                    )

    def _phantom(
        self, namespace: str, query: kv_rwset_pb2.RangeQueryInfo, updated: set[tuple[str, str]]
    ) -> bool:
        start, end = query.start_key, query.end_key
        for ns, key in updated:
            if ns == namespace and key >= start and (not end or key < end):
                return True
        seen = [(read.key, _as_version(read)) for read in query.raw_reads.kv_reads]
        limit = len(seen) + (1 if query.itr_exhausted else 0)
        now = [(key, version) for key, _, version in self.state.range(namespace, start, end, limit)]
        return now != seen


def _as_version(read: kv_rwset_pb2.KVRead) -> Version | None:
    if not read.HasField("version"):
        return None
    return (read.version.block_num, read.version.tx_num)


def _tx_id(envelope: common_pb2.Envelope) -> str:
    try:
        payload = common_pb2.Payload.FromString(envelope.payload)
        return common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id
    except DecodeError:
        return ""
