"""Simulating one transaction against the world state into a read/write set.

As in Fabric, a simulation reads committed state only (it does not see its own
writes), records the version of every key it reads and the keys each range query
returned, and produces a ``TxReadWriteSet`` with reads and writes sorted by key so
that two peers simulating the same proposal produce identical bytes.
"""

from __future__ import annotations

from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2

from flowblock.network.devnet.statedb import StateDB, Version

#: Fabric's ``totalQueryLimit``: most results one unpaginated range query returns.
TOTAL_QUERY_LIMIT = 100_000


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

    def get(self, key: str) -> bytes | None:
        found = self.state.get(self.namespace, key)
        self.reads.setdefault(key, found[1] if found else None)
        return found[0] if found else None

    def put(self, key: str, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: str) -> None:
        self.writes[key] = None

    def range(self, start: str, end: str, limit: int) -> tuple[list[tuple[str, bytes]], str | None]:
        """Up to ``limit`` keys of [start, end) and the key after them (None at the end).

        The query and the versions it saw are recorded for the phantom-read check.
        """
        rows = list(self.state.range(self.namespace, start, end, limit + 1))
        exhausted = len(rows) <= limit
        following = None if exhausted else rows[limit][0]
        rows = rows[:limit]
        self.range_queries.append(
            kv_rwset_pb2.RangeQueryInfo(
                start_key=start,
                end_key=end,
                itr_exhausted=exhausted,
                raw_reads=kv_rwset_pb2.QueryReads(
                    kv_reads=[kv_read(key, version) for key, _, version in rows]
                ),
            )
        )
        return [(key, value) for key, value, _ in rows], following

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
