"""The world state: the latest value of every key, its version, its history.

SQLite in WAL mode: simulations read through per-thread connections while the
committer writes. A block's effects (values, history, transaction index and the new
height) are applied in one SQLite transaction, so the state is always exactly "all
blocks below ``height``" and recovery is replaying the blocks from there.
Keys are stored as UTF-8 bytes so ordering is Fabric's byte order. The database and
its WAL files are the owner's alone (see ``private``).

Private data (see ``private_data``) lives in three more tables: the hashes every peer
commits, the values each member organisation holds, and the transient store where an
endorsing peer keeps a transaction's private writes until its block commits. A block's
hashes, values and the clearing of its transient entries are one SQLite transaction
with its public writes, so a replay after a crash still finds the values it needs.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from flowblock.network.devnet.private import FILE_MODE, private_directory, private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    ns TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    block INTEGER NOT NULL, txnum INTEGER NOT NULL,
    PRIMARY KEY (ns, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    ns TEXT NOT NULL, key BLOB NOT NULL, block INTEGER NOT NULL, txnum INTEGER NOT NULL,
    tx_id TEXT NOT NULL, value BLOB, is_delete INTEGER NOT NULL, seconds INTEGER NOT NULL,
    nanos INTEGER NOT NULL, PRIMARY KEY (ns, key, block, txnum)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transactions (
    tx_id TEXT PRIMARY KEY, block INTEGER NOT NULL, txnum INTEGER NOT NULL,
    code INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS private_hashes (
    ns TEXT NOT NULL, collection TEXT NOT NULL, key_hash BLOB NOT NULL,
    value_hash BLOB NOT NULL, block INTEGER NOT NULL, txnum INTEGER NOT NULL,
    PRIMARY KEY (ns, collection, key_hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS private_values (
    org TEXT NOT NULL, ns TEXT NOT NULL, collection TEXT NOT NULL, key BLOB NOT NULL,
    key_hash BLOB NOT NULL, value BLOB NOT NULL, block INTEGER NOT NULL,
    txnum INTEGER NOT NULL, PRIMARY KEY (org, ns, collection, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS private_values_by_hash ON private_values (ns, collection, key_hash);
CREATE TABLE IF NOT EXISTS transient (
    tx_id TEXT NOT NULL, endorser TEXT NOT NULL, rwset BLOB NOT NULL,
    height INTEGER NOT NULL, PRIMARY KEY (tx_id, endorser)) WITHOUT ROWID;
"""
#: Blocks a transient entry whose transaction never commits is kept (Fabric's
#: ``transientstoreMaxBlockRetention``).
TRANSIENT_RETENTION = 1000

Version = tuple[int, int]  # (block number, transaction number in the block)


@dataclass(frozen=True)
class Write:
    """One key's change by one valid transaction."""

    ns: str
    key: str
    value: bytes | None  # None deletes the key
    block: int
    txnum: int
    tx_id: str
    seconds: int
    nanos: int


@dataclass(frozen=True)
class HashedWrite:
    """One private key's change by one valid transaction: its hash for every peer and,
    when the value arrived and matched, the value for the collection's ``owner``.

    ``key`` is None when the value is missing (Fabric's "missing private data"): the
    hash commits and any older value of that key is dropped, so a read finds it absent.
    """

    ns: str
    collection: str
    key_hash: bytes
    value_hash: bytes | None  # None deletes the key
    block: int
    txnum: int
    owner: str
    key: str | None
    value: bytes | None


@dataclass(frozen=True)
class CommittedTransaction:
    tx_id: str
    block: int
    txnum: int
    code: int


def committed_height(path: str | os.PathLike[str]) -> int | None:
    """How many blocks the state database at ``path`` has committed, read without writing
    anything (for ``flowblock verify``); None when there is no readable database there."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE name='height'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else 0


class StateDB:
    """Versioned key-value state with history and a transaction index."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        private_directory(self.path.parent)
        # SQLite gives the -wal and -shm files the database file's mode when it makes them.
        private_file(self.path)
        self._local = threading.local()
        self._writer = self._connect()
        self._writer.executescript(SCHEMA)
        self._transient_writer = self._connect()  # endorsers write while blocks commit
        self._transient_lock = threading.Lock()
        for suffix in ("-wal", "-shm"):  # ones an older devnet left readable
            companion = self.path.with_name(self.path.name + suffix)
            if companion.exists():
                companion.chmod(FILE_MODE)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @property
    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    # -- reads -------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Make every read of this thread inside the block see one committed state.

        Peers endorsing one proposal read through the same snapshot, so a block
        committed between their simulations cannot make their read sets differ.
        """
        reader = self._reader
        reader.execute("BEGIN")
        try:
            yield
        finally:
            reader.execute("COMMIT")

    @property
    def height(self) -> int:
        row = self._reader.execute("SELECT value FROM meta WHERE name='height'").fetchone()
        return row[0] if row else 0

    def get(self, ns: str, key: str) -> tuple[bytes, Version] | None:
        row = self._reader.execute(
            "SELECT value, block, txnum FROM state WHERE ns=? AND key=?", (ns, key.encode())
        ).fetchone()
        return (row[0], (row[1], row[2])) if row else None

    def version(self, ns: str, key: str) -> Version | None:
        row = self._reader.execute(
            "SELECT block, txnum FROM state WHERE ns=? AND key=?", (ns, key.encode())
        ).fetchone()
        return (row[0], row[1]) if row else None

    def range(
        self, ns: str, start: str, end: str, limit: int, *, after: bool = False
    ) -> list[tuple[str, bytes, Version]]:
        """Keys from ``start`` (or just ``after`` it) up to ``end`` ("" = unbounded), in byte
        order, at most ``limit``."""
        bound = ">" if after else ">="
        # Only the comparison operator is spliced in, and it is one of two constants.
        query = f"SELECT key, value, block, txnum FROM state WHERE ns=? AND key{bound}?"  # noqa: S608
        values: tuple = (ns, start.encode())
        if end:
            query += " AND key<?"
            values += (end.encode(),)
        rows = self._reader.execute(query + " ORDER BY key LIMIT ?", (*values, limit))
        return [(key.decode(), value, (block, txnum)) for key, value, block, txnum in rows]

    def history(self, ns: str, key: str) -> list[tuple[str, bytes | None, bool, int, int]]:
        """(tx id, value, deleted, seconds, nanos) of every change to ``key``, newest first."""
        return self._reader.execute(
            "SELECT tx_id, value, is_delete, seconds, nanos FROM history WHERE ns=? AND key=? "
            "ORDER BY block DESC, txnum DESC",
            (ns, key.encode()),
        ).fetchall()

    def private_hash(
        self, ns: str, collection: str, key_hash: bytes
    ) -> tuple[bytes, Version] | None:
        """The committed value hash of a private key and its version; every peer has it."""
        row = self._reader.execute(
            "SELECT value_hash, block, txnum FROM private_hashes "
            "WHERE ns=? AND collection=? AND key_hash=?",
            (ns, collection, key_hash),
        ).fetchone()
        return (row[0], (row[1], row[2])) if row else None

    def private_value(
        self, org: str, ns: str, collection: str, key: str
    ) -> tuple[bytes, Version] | None:
        """The private value ``org``'s peers hold for ``key``, and its version."""
        row = self._reader.execute(
            "SELECT value, block, txnum FROM private_values "
            "WHERE org=? AND ns=? AND collection=? AND key=?",
            (org, ns, collection, key.encode()),
        ).fetchone()
        return (row[0], (row[1], row[2])) if row else None

    def private_range(
        self, org: str, ns: str, collection: str, start: str, end: str, limit: int
    ) -> list[tuple[str, bytes]]:
        """``org``'s private values of [start, end) ("" = unbounded) in key order."""
        query = (
            "SELECT key, value FROM private_values WHERE org=? AND ns=? AND collection=? AND key>=?"
        )
        values: tuple = (org, ns, collection, start.encode())
        if end:
            query += " AND key<?"
            values += (end.encode(),)
        rows = self._reader.execute(query + " ORDER BY key LIMIT ?", (*values, limit))
        return [(key.decode(), value) for key, value in rows]

    def transient(self, tx_id: str) -> list[bytes]:
        """The private read/write sets endorsers kept for ``tx_id`` (one per endorser)."""
        rows = self._reader.execute(
            "SELECT rwset FROM transient WHERE tx_id=? ORDER BY endorser", (tx_id,)
        )
        return [row[0] for row in rows]

    def keep_transient(self, tx_id: str, endorser: str, rwset: bytes) -> None:
        """Keep an endorsed transaction's private writes until its block commits."""
        with self._transient_lock:
            self._transient_writer.execute(
                "INSERT OR REPLACE INTO transient VALUES (?,?,?,?)",
                (tx_id, endorser, rwset, self.height),
            )

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        row = self._reader.execute(
            "SELECT block, txnum, code FROM transactions WHERE tx_id=?", (tx_id,)
        ).fetchone()
        return CommittedTransaction(tx_id, *row) if row else None

    # -- the one write path ------------------------------------------------------

    def commit_block(
        self,
        number: int,
        writes: list[Write],
        transactions: list[CommittedTransaction],
        private: Sequence[HashedWrite] = (),
    ) -> None:
        """Apply one block's effects and advance the height, all or nothing.

        The transient entries of the block's transactions go in the same transaction, as
        do those older than ``TRANSIENT_RETENTION`` blocks.
        """
        if number != self.height:
            raise ValueError(f"state is at height {self.height}, cannot commit block {number}")
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            for w in writes:
                key = w.key.encode()
                if w.value is None:
                    db.execute("DELETE FROM state WHERE ns=? AND key=?", (w.ns, key))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO state VALUES (?,?,?,?,?)",
                        (w.ns, key, w.value, w.block, w.txnum),
                    )
                db.execute(
                    "INSERT OR REPLACE INTO history VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        w.ns,
                        key,
                        w.block,
                        w.txnum,
                        w.tx_id,
                        w.value,
                        w.value is None,
                        w.seconds,
                        w.nanos,
                    ),
                )
            for w in private:
                _apply_private(db, w)
            db.executemany(
                "DELETE FROM transient WHERE tx_id=?", [(t.tx_id,) for t in transactions]
            )
            db.execute("DELETE FROM transient WHERE height<?", (number - TRANSIENT_RETENTION,))
            db.executemany(
                "INSERT OR IGNORE INTO transactions VALUES (?,?,?,?)",
                [(t.tx_id, t.block, t.txnum, t.code) for t in transactions],
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('height', ?)", (number + 1,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls back by itself on a full disk (SQLITE_FULL)
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._writer.close()
        self._transient_writer.close()


def _apply_private(db: sqlite3.Connection, w: HashedWrite) -> None:
    where = (w.ns, w.collection, w.key_hash)
    if w.value_hash is None:
        db.execute("DELETE FROM private_hashes WHERE ns=? AND collection=? AND key_hash=?", where)
    else:
        db.execute(
            "INSERT OR REPLACE INTO private_hashes VALUES (?,?,?,?,?,?)",
            (*where, w.value_hash, w.block, w.txnum),
        )
    # Whatever a member held for this key is superseded, whether or not the new value came.
    db.execute("DELETE FROM private_values WHERE ns=? AND collection=? AND key_hash=?", where)
    if w.key is not None and w.value is not None:
        db.execute(
            "INSERT INTO private_values VALUES (?,?,?,?,?,?,?,?)",
            (w.owner, w.ns, w.collection, w.key.encode(), w.key_hash, w.value, w.block, w.txnum),
        )
