"""The ordering service: checks what it is given, cuts blocks, signs them.

Transactions arrive through ``broadcast``; the orderer refuses any whose creator or
signature it cannot verify (as Fabric's orderer applies the channel's Writers policy),
then cuts a block when ``batch_size`` transactions are waiting, when ``batch_timeout``
has passed since the first, or when the next would take it past ``preferred_max_bytes``
(Fabric's BatchSize settings); it chains the block to the previous header, signs it
and hands it to the committer, one block at a time.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from fabric_protos.common import common_pb2
from google.protobuf.message import DecodeError

from flowblock.errors import IdentityError
from flowblock.identity import Identity
from flowblock.ledger import blocks, protocol
from flowblock.ledger.membership import MembershipService

log = logging.getLogger(__name__)
SIGNATURES = common_pb2.BlockMetadataIndex.SIGNATURES


class BroadcastRefused(Exception):
    """The orderer would not accept the envelope; the message says why."""


class OrdererUnavailable(BroadcastRefused):
    """The orderer has stopped (shutting down, or a block could not be committed)."""


class Orderer:
    """Solo ordering for one channel."""

    def __init__(
        self,
        identity: Identity,
        membership: MembershipService,
        channel: str,
        commit: Callable[[common_pb2.Block], object],
        next_number: int,
        previous_hash: bytes,
        *,
        writers: frozenset[str],
        batch_size: int = 100,
        batch_timeout: float = 0.02,
        preferred_max_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        self.identity = identity
        self.membership = membership
        self.channel = channel
        self.writers = writers  # the MSP ids that may submit: the channel's organisations
        self.commit = commit
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.preferred_max_bytes = preferred_max_bytes
        self._held: bytes | None = None  # a transaction that starts the next block
        self._number = next_number
        self._previous_hash = previous_hash
        self._pending: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._cut_blocks, name="orderer", daemon=True)
        self._stopping = False
        self._failure = ""

    def start(self) -> None:
        self._thread.start()

    def broadcast(self, envelope: common_pb2.Envelope) -> None:
        """Accept an envelope for ordering, or raise :class:`BroadcastRefused`."""
        try:
            payload = common_pb2.Payload.FromString(envelope.payload)
            header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
            signature_header = common_pb2.SignatureHeader.FromString(
                payload.header.signature_header
            )
        except DecodeError:
            raise BroadcastRefused("the envelope cannot be parsed") from None
        if header.channel_id != self.channel:
            raise BroadcastRefused(f"channel {header.channel_id!r} does not exist")
        try:
            signer = self.membership.check_signature(
                signature_header.creator, envelope.payload, envelope.signature
            )
        except IdentityError as error:
            raise BroadcastRefused(f"the envelope's signature is not valid: {error}") from None
        if signer.msp_id not in self.writers:
            raise BroadcastRefused(f"{signer.msp_id} may not write to the channel")
        if self._failure:
            raise OrdererUnavailable(f"the orderer has stopped: {self._failure}")
        if self._stopping:
            raise OrdererUnavailable("the orderer is shutting down")
        self._pending.put(envelope.SerializeToString())

    def _cut_blocks(self) -> None:
        while True:
            first = self._held if self._held is not None else self._pending.get()
            self._held = None
            if first is None:
                return
            batch, size = [first], len(first)
            deadline = time.monotonic() + self.batch_timeout
            stop = False
            while len(batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._pending.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if size + len(item) > self.preferred_max_bytes:
                    self._held = item  # as Fabric: the block is full, this one opens the next
                    break
                batch.append(item)
                size += len(item)
            try:
                self._write(batch)
            except Exception as error:
                # Nothing more can be ordered safely; refuse new work rather than lose it.
                log.exception("block %d could not be committed; the orderer stops", self._number)
                self._failure = f"block {self._number} could not be committed ({error})"
                return
            if stop:
                if self._held is not None:
                    self._write([self._held])
                return

    def _write(self, envelopes: list[bytes]) -> None:
        block = blocks.new_block(self._number, self._previous_hash, envelopes)
        sign_block(block, self.identity)
        self.commit(block)
        self._number += 1
        self._previous_hash = blocks.header_hash(block.header)

    def stop(self) -> None:
        """Stop accepting, order what is already waiting, then stop the cutter."""
        self._stopping = True
        self._pending.put(None)
        self._thread.join(timeout=30)


def sign_block(block: common_pb2.Block, orderer: Identity) -> None:
    """Add the orderer's signature over the header to the block's SIGNATURES metadata."""
    signature_header = common_pb2.SignatureHeader(
        creator=protocol.serialize_identity(orderer), nonce=os.urandom(protocol.NONCE_SIZE)
    ).SerializeToString()
    message = blocks.signed_metadata_message(b"", signature_header, block.header)
    block.metadata.metadata[SIGNATURES] = common_pb2.Metadata(
        signatures=[
            common_pb2.MetadataSignature(
                signature_header=signature_header, signature=orderer.sign(message)
            )
        ]
    ).SerializeToString()
