"""The channel's append-only block file: one framed record per block.

A record is ``magic, length, CRC-32 of the length, CRC-32 of the body`` followed by
the block's bytes. A block is appended and fsync'd before any of its transactions
reach the world state, so after a crash the file holds every block the state has
seen. An unfinished last record (short, or with a body that fails its checksum) is
one of two things, and the state's height tells which: a write a crash tore, of a
block the state never committed, which is cut off; or a committed block damaged
later, which stops the store from opening (cutting it off would let the next block
take its number and rewrite history). A damaged record header anywhere else stops
the store too, and a damaged body elsewhere is left for ``flowblock verify`` to name.
The file and its folder are the owner's alone (see ``private``).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fabric_protos.common import common_pb2

from flowblock.errors import LedgerError
from flowblock.network.devnet.private import private_directory, private_file

MAGIC = b"FBLK"
_HEADER = struct.Struct(">4sIII")  # magic, length, crc32 of the length, crc32 of the body


class DamagedBlockFile(LedgerError):
    """The block file is damaged where no crash could have left it."""

    def __init__(self, message: str, block: int, problem: str) -> None:
        super().__init__(message)
        #: The first block the damage makes unreadable or untrustworthy.
        self.block = block
        #: What is wrong with it, as ``verify`` words a finding of that block.
        self.problem = problem


@dataclass(frozen=True)
class UnfinishedRecord:
    """The last record of the file, cut short or failing its checksum."""

    block: int  # the number the block would have
    offset: int  # where its record starts
    problem: str  # what is wrong with it, for a sentence


def _frame(body: bytes) -> bytes:
    length = len(body)
    return _HEADER.pack(MAGIC, length, zlib.crc32(length.to_bytes(4, "big")), zlib.crc32(body))


class BlockStore:
    """Blocks by number, appended in order, readable concurrently.

    ``committed`` is how many blocks the world state has applied: a record below it is
    committed history, never cut off. A read-only store repairs and refuses nothing; it
    reports what it found in :attr:`unfinished` and :meth:`missing` for ``verify``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False, committed: int = 0
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.committed = committed
        self._offsets: list[tuple[int, int]] = []  # (offset of the block bytes, length)
        self.unfinished: UnfinishedRecord | None = None
        self._lock = threading.Lock()
        if not read_only:
            private_directory(self.path.parent)
            private_file(self.path)
        self._index()
        if not read_only:
            self._recover()
        self._append = None if read_only else open(self.path, "ab")  # noqa: SIM115
        self._read = open(self.path, "rb")  # noqa: SIM115

    def _index(self) -> None:
        """Find every record, and the unfinished last one if there is one."""
        size = self.path.stat().st_size
        offset = 0
        with open(self.path, "rb") as blocks:
            while offset < size:
                number = len(self._offsets)
                blocks.seek(offset)
                header = blocks.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    self.unfinished = UnfinishedRecord(number, offset, "its record is cut short")
                    return
                magic, length, check, body_check = _HEADER.unpack(header)
                if magic != MAGIC or check != zlib.crc32(length.to_bytes(4, "big")):
                    problem = (
                        f"the header of its record (at byte {offset}) does not match its "
                        "checksum, so neither it nor the blocks after it can be read"
                    )
                    raise DamagedBlockFile(
                        f"block {number} is damaged in {self.path}: {problem}; restore the "
                        "block store from a backup or another peer.",
                        number,
                        problem,
                    )
                end = offset + _HEADER.size + length
                if end > size:
                    self.unfinished = UnfinishedRecord(number, offset, "its record is cut short")
                    return
                if end == size and zlib.crc32(blocks.read(length)) != body_check:
                    self.unfinished = UnfinishedRecord(
                        number, offset, "its stored bytes do not match their checksum"
                    )
                    return
                self._offsets.append((offset + _HEADER.size, length))
                offset = end

    def missing(self) -> int | None:
        """The first committed block this file does not hold whole, or None."""
        return self.height if self.committed > self.height else None

    def missing_problem(self) -> str:
        """What is wrong with the block :meth:`missing` names."""
        found = self.unfinished
        problem = (
            found.problem
            if found is not None and found.block == self.height
            else "the block file ends before it"
        )
        return f"{problem}, although the world state committed it"

    def _recover(self) -> None:
        """Cut off a torn write of a block never committed; refuse to lose a committed one."""
        first_missing = self.missing()
        if first_missing is not None:
            problem = self.missing_problem()
            raise DamagedBlockFile(
                f"block {first_missing} is damaged ({problem}); restore the block store "
                f"{self.path} from a backup or another peer, as starting on it would write "
                "other transactions at its height.",
                first_missing,
                problem,
            )
        if self.unfinished is not None:
            with open(self.path, "r+b") as blocks:
                blocks.truncate(self.unfinished.offset)
                os.fsync(blocks.fileno())
            self.unfinished = None

    @property
    def height(self) -> int:
        """The number of blocks, which is also the number the next block gets."""
        return len(self._offsets)

    def append(self, block: common_pb2.Block) -> None:
        if self._append is None:
            raise LedgerError(f"the block file {self.path} is open read-only.")
        if block.header.number != self.height:
            raise ValueError(f"block {block.header.number} cannot follow block {self.height - 1}")
        data = block.SerializeToString()
        with self._lock:
            offset = self._append.tell()
            self._append.write(_frame(data) + data)
            self._append.flush()
            os.fsync(self._append.fileno())
            self._offsets.append((offset + _HEADER.size, len(data)))

    def raw(self, number: int) -> bytes:
        """The stored bytes of block ``number``, unparsed (for verification)."""
        offset, length = self._offsets[number]
        with self._lock:
            self._read.seek(offset)
            return self._read.read(length)

    def intact(self, number: int) -> bool:
        """Whether block ``number``'s stored bytes still match the checksum written with them."""
        offset, _ = self._offsets[number]
        with self._lock:
            self._read.seek(offset - _HEADER.size)
            *_, body_check = _HEADER.unpack(self._read.read(_HEADER.size))
        return zlib.crc32(self.raw(number)) == body_check

    def get(self, number: int) -> common_pb2.Block:
        return common_pb2.Block.FromString(self.raw(number))

    def blocks(self, start: int = 0) -> Iterator[common_pb2.Block]:
        for number in range(start, self.height):
            yield self.get(number)

    def close(self) -> None:
        if self._append is not None:
            self._append.close()
        self._read.close()
