"""The channel's append-only block file: a length-prefixed record per block.

A block is appended and fsync'd before any of its transactions are applied to the
world state, so after a crash the file holds every block the state has seen. A record
cut short by a crash (its length runs past the end of the file) is the only thing ever
truncated; damage anywhere else is left in place for ``flowblock verify`` to name.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from fabric_protos.common import common_pb2

_LENGTH = struct.Struct(">I")


class BlockStore:
    """Blocks by number, appended in order, readable concurrently."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._offsets: list[tuple[int, int]] = []  # (offset of the block bytes, length)
        self._lock = threading.Lock()
        self._recover()
        self._append = open(self.path, "ab")  # noqa: SIM115 - kept open for the store's life
        self._read = open(self.path, "rb")  # noqa: SIM115

    def _recover(self) -> None:
        """Index the records; drop a record a crash left half-written at the end."""
        if not self.path.exists():
            self.path.touch()
        size = self.path.stat().st_size
        with open(self.path, "rb") as blocks:
            offset = 0
            while offset + _LENGTH.size <= size:
                blocks.seek(offset)
                (length,) = _LENGTH.unpack(blocks.read(_LENGTH.size))
                if offset + _LENGTH.size + length > size:
                    break
                self._offsets.append((offset + _LENGTH.size, length))
                offset += _LENGTH.size + length
        if offset != size:
            with open(self.path, "r+b") as blocks:
                blocks.truncate(offset)
                os.fsync(blocks.fileno())

    @property
    def height(self) -> int:
        """The number of blocks, which is also the number the next block gets."""
        return len(self._offsets)

    def append(self, block: common_pb2.Block) -> None:
        if block.header.number != self.height:
            raise ValueError(f"block {block.header.number} cannot follow block {self.height - 1}")
        data = block.SerializeToString()
        with self._lock:
            offset = self._append.tell()
            self._append.write(_LENGTH.pack(len(data)) + data)
            self._append.flush()
            os.fsync(self._append.fileno())
            self._offsets.append((offset + _LENGTH.size, len(data)))

    def raw(self, number: int) -> bytes:
        """The stored bytes of block ``number``, unparsed (for verification)."""
        offset, length = self._offsets[number]
        with self._lock:
            self._read.seek(offset)
            return self._read.read(length)

    def get(self, number: int) -> common_pb2.Block:
        return common_pb2.Block.FromString(self.raw(number))

    def blocks(self, start: int = 0) -> Iterator[common_pb2.Block]:
        for number in range(start, self.height):
            yield self.get(number)

    def close(self) -> None:
        self._append.close()
        self._read.close()
