"""Validating a block's transactions the way a Fabric committing peer does.

Each transaction gets a ``TxValidationCode``: first the checks that need no state
(:func:`flowblock.ledger.validation.check_signatures`: creator, signature, id,
endorsement policy, per written key for private data), then duplicate ids and MVCC:
every key it read still has the version it read (private keys by their hashes), and
every range it scanned still holds the same keys, counting the writes of the valid
transactions before it in the block. Only VALID transactions change the world state;
their private values come from the transient store (see ``private_data``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import chaincode_event_pb2
from google.protobuf.message import DecodeError

from flowblock.ledger import protocol
from flowblock.ledger.channel import ChannelConfig
from flowblock.ledger.membership import MembershipService
from flowblock.ledger.validation import (
    UNAUTHENTICATED,
    Code,
    Invalid,
    check_signatures,
    transaction_id_of,
)
from flowblock.network.devnet.private_data import private_writes
from flowblock.network.devnet.statedb import (
    CommittedTransaction,
    HashedWrite,
    StateDB,
    Version,
    Write,
)

log = logging.getLogger(__name__)
FILTER = common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER


@dataclass
class NamespaceSets:
    """One namespace's part of a transaction's read/write set: the public set and, per
    private collection, its hashed set and the hash of its private bytes."""

    namespace: str
    kv: kv_rwset_pb2.KVRWSet
    collections: list[tuple[str, kv_rwset_pb2.HashedRWSet, bytes]]


@dataclass
class BlockValidation:
    """The outcome of validating one block against the state below it."""

    number: int
    codes: list[int] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    transactions: list[CommittedTransaction] = field(default_factory=list)
    events: list[chaincode_event_pb2.ChaincodeEvent] = field(default_factory=list)
    private: list[HashedWrite] = field(default_factory=list)

    @property
    def filter(self) -> bytes:
        return bytes(self.codes)


class Validator:
    """Validates blocks of one channel against its world state."""

    def __init__(self, config: ChannelConfig, membership: MembershipService, state: StateDB):
        self.config = config
        self.membership = membership
        self.state = state

    def validate(self, block: common_pb2.Block) -> BlockValidation:
        """Give every transaction of a new block its validation code and collect its writes."""
        outcome = BlockValidation(block.header.number)
        # (namespace, key) of public writes; (namespace, collection, key hash) of private ones
        updated: set[tuple] = set()
        seen: set[str] = set()
        for txnum, raw in enumerate(block.data.data):
            try:
                unpacked = check_signatures(
                    common_pb2.Envelope.FromString(raw), self.membership, self.config
                )
                if unpacked.tx_id in seen or self.state.transaction(unpacked.tx_id):
                    raise Invalid(Code.DUPLICATE_TXID, f"{unpacked.tx_id} was already submitted")
                rwsets = self._read_write_sets(unpacked)
                self._check_mvcc(rwsets, updated)
            except Invalid as invalid:
                self._invalid(outcome, block, txnum, raw, invalid.code, seen)
                continue
            except Exception:
                # A transaction no check foresaw must not stop the chain: it is invalid.
                log.exception("transaction %d of block %d is malformed", txnum, outcome.number)
                self._invalid(outcome, block, txnum, raw, Code.INVALID_OTHER_REASON, seen)
                continue
            seen.add(unpacked.tx_id)
            self._valid(outcome, txnum, unpacked, rwsets, updated)
        return outcome

    def replay(self, block: common_pb2.Block) -> BlockValidation:
        """A committed block's effects again, from the codes it was stored with (recovery).

        Nothing is re-judged: a block's outcome was decided when it was committed.
        """
        outcome = BlockValidation(block.header.number)
        codes = block.metadata.metadata[FILTER]
        seen: set[str] = set()
        for txnum, raw in enumerate(block.data.data):
            if codes[txnum] != Code.VALID:
                self._invalid(outcome, block, txnum, raw, codes[txnum], seen)
                continue
            unpacked = protocol.unpack_transaction(common_pb2.Envelope.FromString(raw))
            seen.add(unpacked.tx_id)
            self._valid(outcome, txnum, unpacked, self._read_write_sets(unpacked), set())
        return outcome

    @staticmethod
    def _invalid(
        outcome: BlockValidation, block: common_pb2.Block, txnum: int, raw: bytes, code: int,
        seen: set[str],
    ) -> None:  # fmt: skip
        outcome.codes.append(code)
        if code in UNAUTHENTICATED:
            return  # its id may be another's: taking it would refuse the genuine one
        try:
            tx_id = transaction_id_of(common_pb2.Envelope.FromString(raw))
        except DecodeError:
            tx_id = ""
        if tx_id and tx_id not in seen:
            seen.add(tx_id)
            outcome.transactions.append(
                CommittedTransaction(tx_id, block.header.number, txnum, code)
            )

    def _valid(
        self, outcome: BlockValidation, txnum: int, unpacked: protocol.UnpackedTransaction,
        rwsets: list[NamespaceSets], updated: set[tuple],
    ) -> None:  # fmt: skip
        outcome.codes.append(Code.VALID)
        outcome.transactions.append(
            CommittedTransaction(unpacked.tx_id, outcome.number, txnum, Code.VALID)
        )
        moment = unpacked.channel_header.timestamp
        kept: list[bytes] | None = None
        for sets in rwsets:
            namespace = sets.namespace
            for write in sets.kv.writes:
                updated.add((namespace, write.key))
                outcome.writes.append(
                    Write(
                        namespace, write.key, None if write.is_delete else write.value,
                        outcome.number, txnum, unpacked.tx_id, moment.seconds, moment.nanos,
                    )
                )  # fmt: skip
            for name, hashed, pvt_rwset_hash in sets.collections:
                if not hashed.hashed_writes:
                    continue
                if kept is None:
                    kept = self.state.transient(unpacked.tx_id)
                changes = private_writes(
                    namespace, hashed, name, pvt_rwset_hash, kept, outcome.number, txnum
                )
                updated.update((namespace, name, change.key_hash) for change in changes)
                outcome.private.extend(changes)
        if unpacked.chaincode_action.events:
            outcome.events.append(
                chaincode_event_pb2.ChaincodeEvent.FromString(unpacked.chaincode_action.events)
            )

    def _read_write_sets(self, unpacked: protocol.UnpackedTransaction) -> list[NamespaceSets]:
        action = unpacked.chaincode_action
        try:
            results = rwset_pb2.TxReadWriteSet.FromString(action.results)
            sets = [
                NamespaceSets(
                    ns.namespace,
                    kv_rwset_pb2.KVRWSet.FromString(ns.rwset),
                    [
                        (
                            c.collection_name,
                            kv_rwset_pb2.HashedRWSet.FromString(c.hashed_rwset),
                            c.pvt_rwset_hash,
                        )
                        for c in ns.collection_hashed_rwset
                    ],
                )
                for ns in results.ns_rwset
            ]
        except DecodeError:
            raise Invalid(Code.BAD_RWSET, "the read/write set cannot be parsed") from None
        chaincode = action.chaincode_id.name
        for ns in sets:
            if ns.namespace != chaincode and (
                ns.kv.writes or any(hashed.hashed_writes for _, hashed, _ in ns.collections)
            ):
                raise Invalid(Code.ILLEGAL_WRITESET, f"{chaincode} wrote to {ns.namespace}")
        return sets

    def _check_mvcc(self, rwsets: list[NamespaceSets], updated: set[tuple]) -> None:
        for sets in rwsets:
            namespace, kv = sets.namespace, sets.kv
            for name, hashed, _ in sets.collections:
                for read in hashed.hashed_reads:
                    found = self.state.private_hash(namespace, name, read.key_hash)
                    if (namespace, name, read.key_hash) in updated or (
                        (found[1] if found else None) != _as_version(read)
                    ):
                        raise Invalid(
                            Code.MVCC_READ_CONFLICT,
                            f"a private key of {name} changed since it was read",
                        )
            for read in kv.reads:
                read_version = _as_version(read)
                if (namespace, read.key) in updated or (
                    self.state.version(namespace, read.key) != read_version
                ):
                    raise Invalid(
                        Code.MVCC_READ_CONFLICT, f"{read.key!r} changed since it was read"
                    )
            for query in kv.range_queries_info:
                if self._phantom(namespace, query, updated):
                    raise Invalid(
                        Code.PHANTOM_READ_CONFLICT,
                        f"the range [{query.start_key!r}, {query.end_key!r}) changed",
                    )

    def _phantom(
        self, namespace: str, query: kv_rwset_pb2.RangeQueryInfo, updated: set[tuple]
    ) -> bool:
        """Whether the keys a range query saw are no longer what it would see now.

        A query that stopped early only vouches for the keys up to the last one it read.
        """
        start, end = query.start_key, query.end_key
        seen = [(read.key, _as_version(read)) for read in query.raw_reads.kv_reads]
        if not query.itr_exhausted and not seen:
            return False

        def covered(key: str) -> bool:
            if key < start:
                return False
            if query.itr_exhausted:
                return not end or key < end
            return key <= seen[-1][0]

        if any(
            len(change) == 2 and change[0] == namespace and covered(change[1])  # public keys
            for change in updated
        ):
            return True
        limit = len(seen) + (1 if query.itr_exhausted else 0)
        now = [(key, version) for key, _, version in self.state.range(namespace, start, end, limit)]
        return now != seen


def _as_version(read: kv_rwset_pb2.KVRead | kv_rwset_pb2.KVReadHash) -> Version | None:
    if not read.HasField("version"):
        return None
    return (read.version.block_num, read.version.tx_num)
