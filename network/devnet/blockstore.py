"""The channel's append-only block file: one framed record per block.

A record is ``magic, length, CRC-32 of the length, CRC-32 of the body`` followed by
the block's bytes. A block is appended and fsync'd before any of its transactions
reach the world state, so after a crash the file holds every block the state has
seen. The only thing ever cut off is a record a crash left unfinished at the very end
(short, or with a body that fails its checksum); a damaged record header anywhere
else stops the store from opening rather than losing the blocks after it, and a
damaged body elsewhere is left for ``flowblock verify`` to name.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from fabric_protos.common import common_pb2

from flowblock.errors import LedgerError

MAGIC = b"FBLK"
_HEADER = struct.Struct(">4sIII")  # magic, length, crc32 of the length, crc32 of the body


class DamagedBlockFile(LedgerError):
    """The block file is damaged where no crash could have left it."""


def _frame(body: bytes) -> bytes:
    length = len(body)
    return _HEADER.pack(MAGIC, length, zlib.crc32(length.to_bytes(4, "big")), zlib.crc32(body))


class BlockStore:
    """Blocks by number, appended in order, readable concurrently."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._offsets: list[tuple[int, int]] = []  # (offset of the block bytes, length)
        self._lock = threading.Lock()
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)
        self._index()
        self._append = None if read_only else open(self.path, "ab")  # noqa: SIM115
        self._read = open(self.path, "rb")  # noqa: SIM115

    def _index(self) -> None:
        """Find every record; cut off an unfinished last one (unless read-only)."""
        size = self.path.stat().st_size
        offset = 0
        with open(self.path, "rb") as blocks:
            while offset < size:
                blocks.seek(offset)
                header = blocks.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break  # a header cut short by a crash
                magic, length, check, body_check = _HEADER.unpack(header)
                if magic != MAGIC or check != zlib.crc32(length.to_bytes(4, "big")):
                    raise DamagedBlockFile(
                        f"the block file {self.path} is damaged at byte {offset} "
                        f"(the record of block {len(self._offsets)}); "
                        "run 'flowblock verify' and restore it from another peer."
                    )
                end = offset + _HEADER.size + length
                if end > size:
                    break  # a body cut short by a crash
                if end == size and zlib.crc32(blocks.read(length)) != body_check:
                    break  # the last body torn by a crash: its bytes never all reached disk
                self._offsets.append((offset + _HEADER.size, length))
                offset = end
        if offset != size and not self.read_only:
            with open(self.path, "r+b") as blocks:
                blocks.truncate(offset)
                os.fsync(blocks.fileno())

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
