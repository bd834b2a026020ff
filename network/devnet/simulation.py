"""Simulating one transaction against the world state into a read/write set.

As in Fabric, a simulation reads committed state only (it does not see its own
writes), records the version of every key it reads and the keys each range query
returned, and produces a ``TxReadWriteSet`` with reads and writes sorted by key so
that two peers simulating the same proposal produce identical bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2

from flowblock.network.devnet.statedb import StateDB, Version

#: Fabric's ``totalQueryLimit``: most results one unpaginated range query returns.
TOTAL_QUERY_LIMIT = 100_000
#: Rows read from the state database at a time while a query is consumed.
SCAN_CHUNK = 200


class WriteAfterPaginatedQuery(Exception):
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


class Simulation:
    """The reads and writes one transaction makes in one chaincode namespace."""

    def __init__(self, state: StateDB, namespace: str) -> None:
        self.state = state
        self.namespace = namespace
        self.reads: dict[str, Version | None] = {}
        self.writes: dict[str, bytes | None] = {}
        self.range_queries: list[kv_rwset_pb2.RangeQueryInfo] = []
        self.paginated = False

    def get(self, key: str) -> bytes | None:
        found = self.state.get(self.namespace, key)
        self.reads.setdefault(key, found[1] if found else None)
        return found[0] if found else None

    def put(self, key: str, value: bytes) -> None:
        if self.paginated:
            raise WriteAfterPaginatedQuery()
        # As in Fabric, writing an empty value deletes the key.
        self.writes[key] = value or None

    def delete(self, key: str) -> None:
        if self.paginated:
            raise WriteAfterPaginatedQuery()
        self.writes[key] = None

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
        if self.writes:
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
                rwset_pb2.NsReadWriteSet(namespace=self.namespace, rwset=kv.SerializeToString())
            ],
        ).SerializeToString()
