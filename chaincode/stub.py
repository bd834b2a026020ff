"""The chaincode's view of one transaction: state, queries, identity, time, events.

Every call becomes a message to the peer over the chaincode protocol and blocks until
the peer answers; the peer records reads and writes into the transaction's read/write
set. Private data goes through the same messages with a collection named, as in
Fabric's shim: its values stay on the collection's members, its hashes reach the block.
Key rules are Fabric's: simple keys may not start with U+0000 (that prefix is the
composite-key namespace) and a plain range query never returns composite keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.peer import chaincode_event_pb2, chaincode_shim_pb2, proposal_pb2

from flowblock.chaincode.identity import ClientIdentity
from flowblock.ledger.collections import implicit_collection as implicit_collection
from flowblock.ledger.protocol import UnpackedProposal, unpack_proposal
from flowblock.ledger.shim_params import ChaincodeAdditionalParams
from flowblock.vocabulary import ChaincodeStatus

Message = chaincode_shim_pb2.ChaincodeMessage

COMPOSITE_KEY_NAMESPACE = "\x00"
MIN_UNICODE_RUNE = "\x00"
MAX_UNICODE_RUNE = "\U0010ffff"
#: A key or page the caller gave that cannot be used: their mistake, not the chaincode's.
BAD_REQUEST = ChaincodeStatus.BAD_REQUEST
#: What an empty range start becomes, so simple-key ranges skip composite keys.
EMPTY_KEY_SUBSTITUTE = "\x01"


class ChaincodeError(Exception):
    """Raised by a contract to refuse a transaction; ``status`` >= 400 fails endorsement."""

    def __init__(self, message: str, status: int = 500) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


class PeerError(ChaincodeError):
    """The peer refused a state request (bad key, query limit, closed transaction...)."""


@dataclass(frozen=True)
class PeerOffer:
    """What the peer said it accepts in READY: batch sizes, 0 where it does not."""

    write_batch: int = 0
    get_multiple: int = 0

    @classmethod
    def from_ready(cls, payload: bytes) -> PeerOffer:
        if not payload:
            return cls()
        params = ChaincodeAdditionalParams.FromString(payload)
        return cls(
            write_batch=params.max_size_write_batch if params.use_write_batch else 0,
            get_multiple=params.max_size_get_multiple_keys if params.use_get_multiple_keys else 0,
        )


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes


@dataclass(frozen=True)
class KeyModification:
    tx_id: str
    value: bytes
    timestamp: dt.datetime
    is_delete: bool


#: Sends one request for this transaction and returns the peer's RESPONSE message.
Requester = Callable[[int, bytes], Message]


class ChaincodeStub:
    """The chaincode API of one transaction (Fabric's ``ChaincodeStubInterface``)."""

    def __init__(
        self,
        request: Requester,
        channel_id: str,
        tx_id: str,
        args: list[bytes],
        signed_proposal: proposal_pb2.SignedProposal | None,
        offer: PeerOffer = PeerOffer(),
    ) -> None:
        self._request = request
        self.channel_id = channel_id
        self.tx_id = tx_id
        self.args = args
        self.offer = offer
        self._batch: list[chaincode_shim_pb2.WriteRecord] | None = None
        self._signed_proposal = signed_proposal
        self.event: chaincode_event_pb2.ChaincodeEvent | None = None

    # -- the invocation --------------------------------------------------------

    @property
    def function(self) -> str:
        return self.args[0].decode("utf-8", "replace") if self.args else ""

    @property
    def parameters(self) -> list[str]:
        return [arg.decode("utf-8", "replace") for arg in self.args[1:]]

    @cached_property
    def _proposal(self) -> UnpackedProposal | None:
        """The proposal's parts, parsed only when a contract first asks for one."""
        signed = self._signed_proposal
        return unpack_proposal(signed) if signed is not None and signed.proposal_bytes else None

    @cached_property
    def creator(self) -> bytes:
        return self._proposal.signature_header.creator if self._proposal else b""

    @cached_property
    def client_identity(self) -> ClientIdentity:
        return ClientIdentity(self.creator)

    @cached_property
    def timestamp(self) -> dt.datetime:
        """The transaction's timestamp as the client proposed it: chaincode's only clock."""
        if self._proposal is None:
            return dt.datetime.fromtimestamp(0, dt.UTC)
        return self._proposal.channel_header.timestamp.ToDatetime(dt.UTC)

    @property
    def transient(self) -> dict[str, bytes]:
        return dict(self._proposal.payload.TransientMap) if self._proposal else {}

    def set_event(self, name: str, payload: bytes) -> None:
        """Emit a chaincode event when the transaction commits (one per transaction)."""
        if not name:
            raise ChaincodeError("an event needs a name")
        self.event = chaincode_event_pb2.ChaincodeEvent(event_name=name, payload=payload)

    # -- state -------------------------------------------------------------------

    def get_state(self, key: str) -> bytes | None:
        """The value of ``key``, or None if it does not exist."""
        reply = self._call(Message.GET_STATE, chaincode_shim_pb2.GetState(key=key))
        return reply.payload or None

    def get_states(self, keys: list[str]) -> list[bytes | None]:
        """Several keys' values (None where absent), in one request when the peer allows."""
        return self._get_multiple("", keys)

    def get_private_data_multiple(self, collection: str, keys: list[str]) -> list[bytes | None]:
        """Several keys' values in ``collection`` (None where absent), as :meth:`get_states`."""
        return self._get_multiple(_collection(collection), keys)

    def _get_multiple(self, collection: str, keys: list[str]) -> list[bytes | None]:
        size = self.offer.get_multiple
        if not size:
            if collection:
                return [self.get_private_data(collection, key) for key in keys]
            return [self.get_state(key) for key in keys]
        values: list[bytes | None] = []
        for start in range(0, len(keys), size):
            reply = self._call(
                Message.GET_STATE_MULTIPLE,
                chaincode_shim_pb2.GetStateMultiple(
                    keys=keys[start : start + size], collection=collection
                ),
            )
            found = chaincode_shim_pb2.GetStateMultipleResult.FromString(reply.payload).values
            values.extend(value or None for value in found)
        return values

    def put_state(self, key: str, value: bytes) -> None:
        self._put("", key, value)

    def del_state(self, key: str) -> None:
        self._delete("", key)

    def _put(self, collection: str, key: str, value: bytes) -> None:
        if not isinstance(value, bytes | bytearray):
            raise ChaincodeError(f"the value of {key!r} must be bytes")
        if self._batch is not None:
            self._batch.append(
                chaincode_shim_pb2.WriteRecord(
                    key=_writable(key),
                    value=value,
                    collection=collection,
                    type=chaincode_shim_pb2.WriteRecord.PUT_STATE,
                )
            )
            return
        self._call(
            Message.PUT_STATE,
            chaincode_shim_pb2.PutState(key=_writable(key), value=value, collection=collection),
        )

    def _delete(self, collection: str, key: str) -> None:
        if self._batch is not None:
            self._batch.append(
                chaincode_shim_pb2.WriteRecord(
                    key=_writable(key),
                    collection=collection,
                    type=chaincode_shim_pb2.WriteRecord.DEL_STATE,
                )
            )
            return
        request = chaincode_shim_pb2.DelState(key=_writable(key), collection=collection)
        self._call(Message.DEL_STATE, request)

    def start_write_batch(self) -> None:
        """Collect the writes that follow and send them together (Fabric 3.1's write batch).

        With a peer that does not offer batches, writes simply go one by one.
        """
        if self.offer.write_batch and self._batch is None:
            self._batch = []

    def finish_write_batch(self) -> None:
        """Send the collected writes; also done for the contract when the transaction ends."""
        batch, self._batch = self._batch, None
        size = self.offer.write_batch
        for start in range(0, len(batch or []), size or 1):
            self._call(
                Message.WRITE_BATCH_STATE,
                chaincode_shim_pb2.WriteBatchState(rec=batch[start : start + size]),
            )

    # -- private data ------------------------------------------------------------

    def get_private_data(self, collection: str, key: str) -> bytes | None:
        """The value of ``key`` in ``collection``, or None; only a member peer can answer."""
        reply = self._call(
            Message.GET_STATE,
            chaincode_shim_pb2.GetState(key=key, collection=_collection(collection)),
        )
        return reply.payload or None

    def get_private_data_hash(self, collection: str, key: str) -> bytes | None:
        """The SHA-256 of ``key``'s value in ``collection`` (32 bytes), or None if absent.

        Every peer of the channel can answer: the hashes are in the blocks.
        """
        reply = self._call(
            Message.GET_PRIVATE_DATA_HASH,
            chaincode_shim_pb2.GetState(key=key, collection=_collection(collection)),
        )
        return reply.payload or None

    def put_private_data(self, collection: str, key: str, value: bytes) -> None:
        """Write ``key`` in ``collection``: the value to its members, its hash to the block."""
        self._put(_collection(collection), key, value)

    def del_private_data(self, collection: str, key: str) -> None:
        self._delete(_collection(collection), key)

    def get_private_data_by_range(self, collection: str, start: str, end: str) -> Iterator[KV]:
        """Keys of ``collection`` in [start, end); as in Fabric, a transaction that runs
        one cannot write."""
        start = _simple(start) if start else EMPTY_KEY_SUBSTITUTE
        end = _simple(end) if end else ""
        return self._range(start, end, None, _collection(collection))[0]

    def get_private_data_by_partial_composite_key(
        self, collection: str, object_type: str, attributes: list[str]
    ) -> Iterator[KV]:
        start = create_composite_key(object_type, attributes)
        return self._range(start, start + MAX_UNICODE_RUNE, None, _collection(collection))[0]

    # -- queries -------------------------------------------------------------------

    def get_state_by_range(self, start: str, end: str) -> Iterator[KV]:
        """Keys in [start, end) in key order; "" for start or end means unbounded."""
        start = _simple(start) if start else EMPTY_KEY_SUBSTITUTE
        end = _simple(end) if end else ""
        return self._range(start, end, None)[0]

    def get_state_by_range_with_pagination(
        self, start: str, end: str, page_size: int, bookmark: str = ""
    ) -> tuple[list[KV], str]:
        """One page of a range; returns the records and the bookmark of the next page."""
        start = _simple(start) if start else EMPTY_KEY_SUBSTITUTE
        end = _simple(end) if end else ""
        records, metadata = self._range(start, end, _page(page_size, bookmark))
        return list(records), metadata()

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: list[str]
    ) -> Iterator[KV]:
        start = create_composite_key(object_type, attributes)
        return self._range(start, start + MAX_UNICODE_RUNE, None)[0]

    def get_state_by_partial_composite_key_with_pagination(
        self, object_type: str, attributes: list[str], page_size: int, bookmark: str = ""
    ) -> tuple[list[KV], str]:
        start = create_composite_key(object_type, attributes)
        records, metadata = self._range(start, start + MAX_UNICODE_RUNE, _page(page_size, bookmark))
        return list(records), metadata()

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        reply = self._call(
            Message.GET_HISTORY_FOR_KEY, chaincode_shim_pb2.GetHistoryForKey(key=key)
        )
        for raw in self._results(chaincode_shim_pb2.QueryResponse.FromString(reply.payload)):
            modification = kv_query_result_pb2.KeyModification.FromString(raw)
            yield KeyModification(
                tx_id=modification.tx_id,
                value=modification.value,
                timestamp=modification.timestamp.ToDatetime(dt.UTC),
                is_delete=modification.is_delete,
            )

    def _range(
        self, start: str, end: str, metadata: bytes | None, collection: str = ""
    ) -> tuple[Iterator[KV], Callable[[], str]]:
        request = chaincode_shim_pb2.GetStateByRange(
            startKey=start, endKey=end, metadata=metadata or b"", collection=collection
        )
        first = chaincode_shim_pb2.QueryResponse.FromString(
            self._call(Message.GET_STATE_BY_RANGE, request).payload
        )
        bookmark = (
            chaincode_shim_pb2.QueryResponseMetadata.FromString(first.metadata).bookmark
            if first.metadata
            else ""
        )

        def records() -> Iterator[KV]:
            for raw in self._results(first):
                kv = kv_query_result_pb2.KV.FromString(raw)
                yield KV(kv.key, kv.value)

        return records(), lambda: bookmark

    def _results(self, response: chaincode_shim_pb2.QueryResponse) -> Iterator[bytes]:
        """Every result of a query, asking the peer for the next batch as needed."""
        try:
            while True:
                for result in response.results:
                    yield result.resultBytes
                if not response.has_more:
                    return
                reply = self._call(
                    Message.QUERY_STATE_NEXT, chaincode_shim_pb2.QueryStateNext(id=response.id)
                )
                response = chaincode_shim_pb2.QueryResponse.FromString(reply.payload)
        finally:
            if response.has_more:
                self._call(
                    Message.QUERY_STATE_CLOSE, chaincode_shim_pb2.QueryStateClose(id=response.id)
                )

    def _call(self, kind: int, request) -> Message:  # request: a shim protobuf message
        reply = self._request(kind, request.SerializeToString())
        if reply.type == Message.ERROR:
            raise PeerError(reply.payload.decode("utf-8", "replace"))
        return reply


def create_composite_key(object_type: str, attributes: list[str]) -> str:
    """Fabric's composite key: U+0000, the type, then each attribute, each ended by U+0000."""
    for part in (object_type, *attributes):
        if MIN_UNICODE_RUNE in part or MAX_UNICODE_RUNE in part:
            raise ChaincodeError(
                f"composite key part {part!r} contains a reserved character", BAD_REQUEST
            )
    return COMPOSITE_KEY_NAMESPACE + "".join(
        p + MIN_UNICODE_RUNE for p in (object_type, *attributes)
    )


def split_composite_key(key: str) -> tuple[str, list[str]]:
    """The object type and attributes of a composite key."""
    if not key.startswith(COMPOSITE_KEY_NAMESPACE):
        raise ChaincodeError(f"{key!r} is not a composite key")
    parts = key[1:].split(MIN_UNICODE_RUNE)[:-1]
    return parts[0], parts[1:]


def _simple(key: str) -> str:
    if key.startswith(COMPOSITE_KEY_NAMESPACE):
        raise ChaincodeError(
            f"the key {key!r} starts with U+0000, which is reserved for composite keys",
            BAD_REQUEST,
        )
    return key


def _collection(name: str) -> str:
    if not name:
        raise ChaincodeError("a private data collection must be named", BAD_REQUEST)
    return name


def _writable(key: str) -> str:
    if not key:
        raise ChaincodeError("a key must not be empty", BAD_REQUEST)
    return key


def _page(page_size: int, bookmark: str) -> bytes:
    if page_size <= 0:
        raise ChaincodeError("a page size must be a positive number", BAD_REQUEST)
    return chaincode_shim_pb2.QueryMetadata(
        pageSize=page_size, bookmark=bookmark
    ).SerializeToString()
