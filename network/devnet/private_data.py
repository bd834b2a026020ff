"""Private data as Fabric keeps it: values on the members' peers, hashes in the blocks.

The devnet knows only Fabric's implicit collections, ``_implicit_org_<MSP id>`` of each
application organisation; the one member of each is that organisation's peer.

- **Endorsing.** A simulation records private reads as hashed reads (SHA-256 of the key,
  and the version) and private writes twice: in plaintext, in the transaction's private
  read/write set (``TxPvtReadWriteSet``), and hashed (key hash, value hash) in the public
  read/write set the peers sign, as ``CollectionHashedReadWriteSet`` entries carrying the
  SHA-256 of the collection's private bytes. Only a member reads values; every peer
  reads hashes. The endorsing peer keeps the private set in the transient store
  (``StateDB.keep_transient``); it never enters a block, and neither does the proposal's
  transient map (the ledger copy of a proposal drops it, see ``protocol``).
- **Committing.** Every peer commits the hashes; the member organisation also commits
  the values it finds in the transient store, when their hashes match the block's. When
  they do not, or none was kept, the hashes commit without the value (Fabric's "missing
  private data"): a member reading that key gets an error, never a silent None.
- **Validating.** MVCC covers hashed reads, and a write to a collection needs its
  owner's endorsement (``flowblock.ledger.collections.endorsement_refusal``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2

from flowblock.ledger.collections import implicit_collection_owner
from flowblock.network.devnet.statedb import HashedWrite

log = logging.getLogger(__name__)


class RequestRefused(Exception):
    """A chaincode request the peer answers with ERROR; the message is one sentence."""


def key_hash(key: str) -> bytes:
    """Fabric's hash of a private key: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).digest()


def value_hash(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


@dataclass(frozen=True)
class Membership:
    """Which organisation's peer is simulating, and the channel's organisations.

    An empty ``organisations`` accepts the implicit collection of any organisation
    (``flowblock.testing.LocalLedger`` has no channel configuration).
    """

    msp_id: str
    organisations: frozenset[str] = frozenset()

    def owner(self, collection: str) -> str:
        """The organisation whose collection this is; refuses any other name."""
        owner = implicit_collection_owner(collection)
        if owner is None or (self.organisations and owner not in self.organisations):
            raise RequestRefused(
                f"collection {collection!r} is not defined on this channel; only the "
                "organisations' implicit collections _implicit_org_<MSP id> are"
            )
        return owner

    def check_member(self, collection: str) -> None:
        if self.owner(collection) != self.msp_id:
            raise RequestRefused(
                f"the peer of {self.msp_id or 'no organisation'} is not a member of collection "
                f"{collection} and cannot read its private data"
            )


def collection_private_bytes(writes: dict[str, bytes | None]) -> bytes:
    """One collection's private writes as the ``KVRWSet`` bytes whose hash the block holds."""
    return kv_rwset_pb2.KVRWSet(
        writes=[
            kv_rwset_pb2.KVWrite(key=key, is_delete=value is None, value=value or b"")
            for key, value in sorted(writes.items())
        ]
    ).SerializeToString()


def hashed_write(key: str, value: bytes | None) -> kv_rwset_pb2.KVWriteHash:
    return kv_rwset_pb2.KVWriteHash(
        key_hash=key_hash(key),
        is_delete=value is None,
        value_hash=b"" if value is None else value_hash(value),
    )


def private_writes(
    namespace: str,
    collection: kv_rwset_pb2.HashedRWSet,
    name: str,
    pvt_rwset_hash: bytes,
    kept: list[bytes],
    block: int,
    txnum: int,
) -> list[HashedWrite]:
    """The changes the hashed writes of collection ``name`` make, with values where
    ``kept`` (the transient store's private sets of the transaction) holds ones matching
    the hashes."""
    hashed = list(collection.hashed_writes)
    if not hashed:
        return []
    owner = implicit_collection_owner(name) or ""
    values = _matching_values(namespace, name, hashed, pvt_rwset_hash, kept)
    if values is None:
        log.warning("private data of %s in %s is missing for block %d", namespace, name, block)
    changes = []
    for write in hashed:
        found = values.get(write.key_hash) if values is not None else None
        changes.append(
            HashedWrite(
                namespace, name, write.key_hash,
                None if write.is_delete else write.value_hash, block, txnum, owner,
                found[0] if found else None, found[1] if found else None,
            )
        )  # fmt: skip
    return changes


def _matching_values(
    namespace: str,
    name: str,
    hashed: list[kv_rwset_pb2.KVWriteHash],
    pvt_rwset_hash: bytes,
    kept: list[bytes],
) -> dict[bytes, tuple[str, bytes | None]] | None:
    """key hash -> (key, value) from the first kept set whose bytes and every write match
    the block's hashes; None when no kept set does."""
    for raw in kept:
        try:
            for candidate in _collection_sets(raw, namespace, name):
                if hashlib.sha256(candidate).digest() != pvt_rwset_hash:
                    continue
                writes = kv_rwset_pb2.KVRWSet.FromString(candidate).writes
                found = {key_hash(w.key): (w.key, None if w.is_delete else w.value) for w in writes}
                if len(found) == len(hashed) and all(
                    _matches(found.get(write.key_hash), write) for write in hashed
                ):
                    return found
        except Exception:  # a damaged transient entry is simply not the value
            log.exception("a transient private data set of %s cannot be read", name)
    return None


def _collection_sets(raw: bytes, namespace: str, name: str) -> list[bytes]:
    private = rwset_pb2.TxPvtReadWriteSet.FromString(raw)
    return [
        collection.rwset
        for ns in private.ns_pvt_rwset
        if ns.namespace == namespace
        for collection in ns.collection_pvt_rwset
        if collection.collection_name == name
    ]


def _matches(found: tuple[str, bytes | None] | None, write: kv_rwset_pb2.KVWriteHash) -> bool:
    if found is None:
        return False
    if write.is_delete:
        return found[1] is None
    return found[1] is not None and value_hash(found[1]) == write.value_hash
