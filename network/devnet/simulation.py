"""Simulating one transaction against the world state into a read/write set.

As in Fabric, a simulation reads committed state only (it does not see its own
writes), records the version of every key it reads and the keys each range query
returned, and produces a ``TxReadWriteSet`` with reads and writes sorted by key so
that two peers simulating the same proposal produce identical bytes. Private data is
recorded as Fabric does (see ``private_data``): hashed in that set, in plaintext in a
private set of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import proposal_response_pb2

from flowblock.network.devnet.private_data import (
    Membership,
    RequestRefused,
    collection_private_bytes,
    hashed_write,
    key_hash,
)
from flowblock.network.devnet.statedb import StateDB, Version

#: Fabric's ``totalQueryLimit``: most results one unpaginated range query returns.
TOTAL_QUERY_LIMIT = 100_000
#: Rows read from the state database at a time while a query is consumed.
SCAN_CHUNK = 200
#: A simulation on no organisation's peer: it may write private data, never read it.
NO_ORGANISATION = Membership("")


class WriteAfterPaginatedQuery(RequestRefused):
    """Fabric refuses writes and paginated queries in the same transaction."""

    def __str__(self) -> str:
        return "a transaction cannot both write and run a paginated query"


def _version(version: Version | None) -> kv_rwset_pb2.Version | None:
    return (
        None if version is None else kv_rwset_pb2.Version(block_num=version[0], tx_num=version[1])
    )


def kv_read(key: str, version: Version | None) -> kv_rwset_pb2.KVRead:
    read = kv_rwset_pb2.KVRead(key=key)
    if version is not None:
        read.version.CopyFrom(_version(version))
    return read


class WriteAfterPrivateRange(RequestRefused):
    """Fabric cannot check a private range query at commit, so it refuses writes with it."""

    def __str__(self) -> str:
        return "a transaction cannot both query private data by range and write"


class Simulation:
    """The reads and writes one transaction makes in one chaincode namespace, on the peer
    of ``membership.msp_id``."""

    def __init__(
        self, state: StateDB, namespace: str, membership: Membership = NO_ORGANISATION
    ) -> None:
        self.state = state
        self.namespace = namespace
        self.membership = membership
        self.reads: dict[str, Version | None] = {}
        self.writes: dict[str, bytes | None] = {}
        self.range_queries: list[kv_rwset_pb2.RangeQueryInfo] = []
        self.paginated = False
        #: (collection, key hash) -> version read; collection -> key -> value written.
        self.private_reads: dict[tuple[str, bytes], Version | None] = {}
        self.private_writes: dict[str, dict[str, bytes | None]] = {}
        #: Collections whose values (not only hashes) this transaction read.
        self.value_reads: set[str] = set()
        self.private_ranged = False

    def get(self, key: str) -> bytes | None:
        found = self.state.get(self.namespace, key)
        self.reads.setdefault(key, found[1] if found else None)
        return found[0] if found else None

    def put(self, key: str, value: bytes) -> None:
        self._may_write()
        # As in Fabric, writing an empty value deletes the key.
        self.writes[key] = value or None

    def delete(self, key: str) -> None:
        self._may_write()
        self.writes[key] = None

    def _may_write(self) -> None:
        if self.paginated:
            raise WriteAfterPaginatedQuery()
        if self.private_ranged:
            raise WriteAfterPrivateRange()

    @property
    def has_writes(self) -> bool:
        return bool(self.writes or self.private_writes)

    # -- private data --------------------------------------------------------------

    def get_private(self, collection: str, key: str) -> bytes | None:
        """A private value; only the collection's member holds them, and one whose hash
        committed without it is an error, not an absent key."""
        self.membership.check_member(collection)
        found = self._read_hash(collection, key)
        self.value_reads.add(collection)
        if found is None:
            return None
        held = self.state.private_value(self.membership.msp_id, self.namespace, collection, key)
        if held is None or held[1] != found[1]:
            raise RequestRefused(
                f"the private data of {key!r} in {collection} is missing on this peer: its "
                "hash is committed but its value never reached the peer"
            )
        return held[0]

    def get_private_hash(self, collection: str, key: str) -> bytes | None:
        """The SHA-256 of a private value; every peer of the channel has the hashes."""
        self.membership.owner(collection)
        found = self._read_hash(collection, key)
        return found[0] if found else None

    def _read_hash(self, collection: str, key: str) -> tuple[bytes, Version] | None:
        hashed = key_hash(key)
        found = self.state.private_hash(self.namespace, collection, hashed)
        self.private_reads.setdefault((collection, hashed), found[1] if found else None)
        return found

    def put_private(self, collection: str, key: str, value: bytes | None) -> None:
        """Write (or, with None or an empty value, delete) a private key; any peer may."""
        self.membership.owner(collection)
        self._may_write()
        self.private_writes.setdefault(collection, {})[key] = value or None

    def scan_private(self, collection: str, start: str, end: str, limit: int) -> list:
        """This peer's private values of [start, end), at most ``limit``, in key order."""
        self.membership.check_member(collection)
        if self.has_writes:
            raise WriteAfterPrivateRange()
        self.private_ranged = True
        self.value_reads.add(collection)
        return self.state.private_range(
            self.membership.msp_id, self.namespace, collection, start, end, limit
        )

    def scan(self, start: str, end: str, limit: int) -> Iterator[tuple[str, bytes]]:
        """Keys of [start, end) in order, at most ``limit``, read lazily as consumed.

        Only the keys actually read are recorded (with their versions) for the phantom
        check, and the query counts as exhausted only if it reached the end of the range.
        """
        info = kv_rwset_pb2.RangeQueryInfo(start_key=start, end_key=end)
        info.raw_reads.SetInParent()
        self.range_queries.append(info)
        cursor, after, fetched = start, False, 0
        while fetched < limit:
            asked = min(SCAN_CHUNK, limit - fetched)
            rows = self.state.range(self.namespace, cursor, end, asked, after=after)
            for key, value, version in rows:
                info.raw_reads.kv_reads.append(kv_read(key, version))
                fetched += 1
                yield key, value
            if len(rows) < asked:
                info.itr_exhausted = True
                return
            cursor, after = rows[-1][0], True
        info.itr_exhausted = not self.state.range(self.namespace, cursor, end, 1, after=True)

    def page(self, start: str, end: str, size: int) -> tuple[list[tuple[str, bytes]], str]:
        """One page of [start, end) and the bookmark of the next one ("" at the end)."""
        if self.has_writes:
            raise WriteAfterPaginatedQuery()
        self.paginated = True
        rows = list(self.scan(start, end, size))
        following = ""
        if len(rows) == size:
            after = self.state.range(self.namespace, rows[-1][0], end, 1, after=True)
            following = after[0][0] if after else ""
        return rows, following

    def history(self, key: str) -> list[tuple[str, bytes | None, bool, int, int]]:
        return self.state.history(self.namespace, key)

    def read_write_set(self) -> bytes:
        kv = kv_rwset_pb2.KVRWSet(
            reads=[kv_read(key, self.reads[key]) for key in sorted(self.reads)],
            range_queries_info=self.range_queries,
            writes=[
                kv_rwset_pb2.KVWrite(key=key, is_delete=value is None, value=value or b"")
                for key, value in sorted(self.writes.items())
            ],
        )
        return rwset_pb2.TxReadWriteSet(
            data_model=rwset_pb2.TxReadWriteSet.KV,
            ns_rwset=[
                rwset_pb2.NsReadWriteSet(
                    namespace=self.namespace,
                    rwset=kv.SerializeToString(),
                    collection_hashed_rwset=self._hashed_sets(),
                )
            ],
        ).SerializeToString()

    def _hashed_sets(self) -> list[rwset_pb2.CollectionHashedReadWriteSet]:
        """Each collection's hashed reads and writes, sorted so peers agree byte for byte."""
        names = sorted({name for name, _ in self.private_reads} | set(self.private_writes))
        sets = []
        for name in names:
            reads = sorted((h, v) for (c, h), v in self.private_reads.items() if c == name)
            writes = self.private_writes.get(name, {})
            hashed = kv_rwset_pb2.HashedRWSet(
                hashed_reads=[_hashed_read(hashed, version) for hashed, version in reads],
                hashed_writes=sorted(
                    (hashed_write(key, value) for key, value in writes.items()),
                    key=lambda write: write.key_hash,
                ),
            )
            sets.append(
                rwset_pb2.CollectionHashedReadWriteSet(
                    collection_name=name,
                    hashed_rwset=hashed.SerializeToString(),
                    pvt_rwset_hash=(
                        hashlib.sha256(collection_private_bytes(writes)).digest() if writes else b""
                    ),
                )
            )
        return sets

    def private_read_write_set(self) -> bytes:
        """The private writes in plaintext (``TxPvtReadWriteSet``); b"" when there are none.

        Kept in the transient store until the block commits; never part of a block.
        """
        if not self.private_writes:
            return b""
        return rwset_pb2.TxPvtReadWriteSet(
            data_model=rwset_pb2.TxReadWriteSet.KV,
            ns_pvt_rwset=[
                rwset_pb2.NsPvtReadWriteSet(
                    namespace=self.namespace,
                    collection_pvt_rwset=[
                        rwset_pb2.CollectionPvtReadWriteSet(
                            collection_name=name, rwset=collection_private_bytes(writes)
                        )
                        for name, writes in sorted(self.private_writes.items())
                    ],
                )
            ],
        ).SerializeToString()

    def interest(self) -> proposal_response_pb2.ChaincodeInterest:
        """What the gateway needs to pick endorsers, as a Fabric peer reports it."""
        names = {name for name, _ in self.private_reads} | set(self.private_writes)
        return proposal_response_pb2.ChaincodeInterest(
            chaincodes=[
                proposal_response_pb2.ChaincodeCall(
                    name=self.namespace,
                    collection_names=sorted(names),
                    no_private_reads=not self.value_reads,
                    no_public_writes=not self.writes,
                )
            ]
        )


def _hashed_read(hashed: bytes, version: Version | None) -> kv_rwset_pb2.KVReadHash:
    read = kv_rwset_pb2.KVReadHash(key_hash=hashed)
    if version is not None:
        read.version.CopyFrom(_version(version))
    return read
