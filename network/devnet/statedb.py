"""The world state: the latest value of every key, its version, its history.

SQLite in WAL mode: simulations read through per-thread connections while the
committer writes. A block's effects (values, history, transaction index and the new
height) are applied in one SQLite transaction, so the state is always exactly "all
blocks below ``height``" and recovery is replaying the blocks from there.
Keys are stored as UTF-8 bytes so ordering is Fabric's byte order. The database and
its WAL files are the owner's alone (see ``private``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
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
"""

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

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        row = self._reader.execute(
            "SELECT block, txnum, code FROM transactions WHERE tx_id=?", (tx_id,)
        ).fetchone()
        return CommittedTransaction(tx_id, *row) if row else None

    # -- the one write path ------------------------------------------------------

    def commit_block(
        self, number: int, writes: list[Write], transactions: list[CommittedTransaction]
    ) -> None:
        """Apply one block's effects and advance the height, all or nothing."""
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
