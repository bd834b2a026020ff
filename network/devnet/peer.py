"""A peer: endorses proposals by simulating them on its chaincode connection.

Each peer belongs to one organisation and signs endorsements with its own identity.
It runs the chaincode over the chaincode protocol, answers the chaincode's state
requests from the committed world state, and returns a ``ProposalResponse`` whose
payload commits to the proposal's hash and the simulated read/write set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice

from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    chaincode_shim_pb2,
    proposal_pb2,
    proposal_response_pb2,
)
from google.protobuf.timestamp_pb2 import Timestamp

from flowblock.identity import Identity
from flowblock.ledger import protocol
from flowblock.network.devnet.chaincode_client import (
    BATCH_LIMIT,
    ChaincodeConnection,
    ChaincodeUnavailable,
)
from flowblock.network.devnet.private_data import Membership, RequestRefused
from flowblock.network.devnet.simulation import TOTAL_QUERY_LIMIT, Simulation
from flowblock.network.devnet.statedb import StateDB

log = logging.getLogger(__name__)
Message = chaincode_shim_pb2.ChaincodeMessage
#: Results per QueryResponse, as Fabric's ``maxResultsPerBatch``.
BATCH_SIZE = 100
#: The status at and above which a chaincode response is an error, as Fabric's.
ERROR_THRESHOLD = 400


class Peer:
    """One organisation's peer on the channel."""

    def __init__(
        self,
        identity: Identity,
        state: StateDB,
        chaincodes: dict[str, ChaincodeConnection],
        channel: str,
        organisations: frozenset[str] = frozenset(),
    ) -> None:
        self.identity = identity
        self.state = state
        self.chaincodes = chaincodes
        self.channel = channel
        self.serialized = protocol.serialize_identity(identity)
        #: Whose implicit collections exist on the channel: any organisation's when empty.
        self.membership = Membership(identity.msp_id, organisations)

    @property
    def msp_id(self) -> str:
        return self.identity.msp_id

    def simulate(
        self, unpacked: protocol.UnpackedProposal, signed: proposal_pb2.SignedProposal
    ) -> tuple[proposal_response_pb2.Response, Simulation, chaincode_pb2.ChaincodeID, bytes]:
        """Run the proposal; returns the response, the simulation, chaincode id and event."""
        name = unpacked.chaincode
        connection = self.chaincodes.get(name)
        if connection is None:
            raise ChaincodeUnavailable(f"chaincode {name!r} is not installed on this channel")
        simulation = Simulation(self.state, name, self.membership)
        response, event = connection.execute(
            self.channel,
            unpacked.tx_id,
            list(unpacked.spec.input.args),
            signed,
            StateRequests(simulation).answer,
        )
        event_bytes = b""
        if event is not None:
            event.chaincode_id, event.tx_id = name, unpacked.tx_id
            event_bytes = event.SerializeToString()
        return response, simulation, chaincode_pb2.ChaincodeID(name=name, version="1"), event_bytes

    def endorse(
        self, unpacked: protocol.UnpackedProposal, signed: proposal_pb2.SignedProposal
    ) -> proposal_response_pb2.ProposalResponse:
        """Simulate, then sign the outcome; an error response carries no endorsement.

        The private writes go to the transient store, to be committed with the block.
        """
        response, simulation, chaincode_id, event = self.simulate(unpacked, signed)
        if response.status >= ERROR_THRESHOLD:
            return proposal_response_pb2.ProposalResponse(version=1, response=response)
        private = simulation.private_read_write_set()
        if private:
            self.state.keep_transient(unpacked.tx_id, self.msp_id, private)
        payload = proposal_response_pb2.ProposalResponsePayload(
            proposal_hash=protocol.proposal_hash(unpacked),
            extension=proposal_pb2.ChaincodeAction(
                results=simulation.read_write_set(),
                events=event,
                response=response,
                chaincode_id=chaincode_id,
            ).SerializeToString(),
        ).SerializeToString()
        signature = self.identity.sign(protocol.endorsement_message(payload, self.serialized))
        return proposal_response_pb2.ProposalResponse(
            version=1,
            response=response,
            payload=payload,
            endorsement=proposal_response_pb2.Endorsement(
                endorser=self.serialized, signature=signature
            ),
            interest=simulation.interest(),
        )


class StateRequests:
    """Answers one transaction's state requests from its simulation, as a peer does."""

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation
        self.queries = _Queries()

    def answer(self, message: Message) -> Message:
        """The RESPONSE (or ERROR) to one chaincode request."""
        try:
            payload = self._dispatch(message)
        except (_Refused, RequestRefused) as refusal:
            return Message(type=Message.ERROR, payload=str(refusal).encode())
        except Exception:
            # Never leave the chaincode waiting: whatever went wrong, it gets an answer.
            log.exception("could not answer the chaincode's %s", Message.Type.Name(message.type))
            return Message(type=Message.ERROR, payload=b"the peer could not answer this request")
        return Message(type=Message.RESPONSE, payload=payload)

    def _dispatch(self, message: Message) -> bytes:
        shim, simulation, queries = chaincode_shim_pb2, self.simulation, self.queries
        kind = message.type
        if kind == Message.GET_STATE:
            request = shim.GetState.FromString(message.payload)
            return self._read(request.collection, request.key) or b""
        if kind == Message.GET_PRIVATE_DATA_HASH:
            request = shim.GetState.FromString(message.payload)
            if not request.collection:
                raise _Refused("a private data hash needs a collection")
            return simulation.get_private_hash(request.collection, request.key) or b""
        if kind == Message.PUT_STATE:
            request = shim.PutState.FromString(message.payload)
            self._write(request.key, request.value, request.collection)
            return b""
        if kind == Message.GET_STATE_MULTIPLE:
            request = shim.GetStateMultiple.FromString(message.payload)
            if len(request.keys) > BATCH_LIMIT:
                raise _Refused(f"at most {BATCH_LIMIT} keys may be read at once")
            values = [self._read(request.collection, key) or b"" for key in request.keys]
            return shim.GetStateMultipleResult(values=values).SerializeToString()
        if kind == Message.WRITE_BATCH_STATE:
            batch = shim.WriteBatchState.FromString(message.payload)
            if len(batch.rec) > BATCH_LIMIT:
                raise _Refused(f"at most {BATCH_LIMIT} writes may be batched at once")
            for record in batch.rec:
                if record.type == shim.WriteRecord.PUT_STATE:
                    self._write(record.key, record.value, record.collection)
                elif record.type == shim.WriteRecord.DEL_STATE:
                    self._write(record.key, None, record.collection)
                else:
                    raise _Refused("only puts and deletes can be batched on the devnet")
            return b""
        if kind == Message.DEL_STATE:
            request = shim.DelState.FromString(message.payload)
            self._write(request.key, None, request.collection)
            return b""
        if kind == Message.GET_STATE_BY_RANGE:
            return self._range(shim.GetStateByRange.FromString(message.payload))
        if kind == Message.QUERY_STATE_NEXT:
            return queries.next(shim.QueryStateNext.FromString(message.payload).id)
        if kind == Message.QUERY_STATE_CLOSE:
            queries.close(shim.QueryStateClose.FromString(message.payload).id)
            return shim.QueryResponse().SerializeToString()
        if kind == Message.GET_HISTORY_FOR_KEY:
            key = shim.GetHistoryForKey.FromString(message.payload).key
            results = (
                kv_query_result_pb2.KeyModification(
                    tx_id=tx_id,
                    value=value or b"",
                    is_delete=bool(deleted),
                    timestamp=Timestamp(seconds=seconds, nanos=nanos),
                ).SerializeToString()
                for tx_id, value, deleted, seconds, nanos in simulation.history(key)
            )
            return queries.open(results)
        raise _Refused(f"{Message.Type.Name(kind)} is not supported by this peer")

    def _read(self, collection: str, key: str) -> bytes | None:
        if collection:
            return self.simulation.get_private(collection, key)
        return self.simulation.get(key)

    def _write(self, key: str, value: bytes | None, collection: str = "") -> None:
        if not key:
            raise _Refused("a key must not be empty")
        if collection:
            self.simulation.put_private(collection, key, value)
        elif value is None:
            self.simulation.delete(key)
        else:
            self.simulation.put(key, value)

    def _range(self, request: chaincode_shim_pb2.GetStateByRange) -> bytes:
        simulation, queries = self.simulation, self.queries
        if request.collection:
            if request.metadata:
                raise _Refused("private data cannot be queried page by page")
            rows = simulation.scan_private(
                request.collection, request.startKey, request.endKey, TOTAL_QUERY_LIMIT
            )
            return queries.open(_kvs(simulation.namespace, rows))
        if not request.metadata:
            rows = simulation.scan(request.startKey, request.endKey, TOTAL_QUERY_LIMIT)
            return queries.open(_kvs(simulation.namespace, rows))
        page = chaincode_shim_pb2.QueryMetadata.FromString(request.metadata)
        if page.pageSize <= 0:
            raise _Refused("the page size must be positive")
        start = page.bookmark or request.startKey
        rows, following = simulation.page(start, request.endKey, page.pageSize)
        metadata = chaincode_shim_pb2.QueryResponseMetadata(
            fetched_records_count=len(rows), bookmark=following
        ).SerializeToString()
        return queries.open(_kvs(simulation.namespace, rows), metadata)


class _Refused(Exception):
    """A chaincode request the peer answers with ERROR."""


def _kvs(namespace: str, rows: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    for key, value in rows:
        yield kv_query_result_pb2.KV(namespace=namespace, key=key, value=value).SerializeToString()


class _Queries:
    """The open query iterators of one transaction, served a batch at a time."""

    def __init__(self) -> None:
        self._open: dict[str, Iterator[bytes]] = {}
        self._counter = 0

    def open(self, results: Iterator[bytes], metadata: bytes = b"") -> bytes:
        """Start a query; its first batch carries the pagination metadata, as in Fabric."""
        self._counter += 1
        query_id = str(self._counter)
        self._open[query_id] = iter(results)
        return self._batch(query_id, metadata)

    def next(self, query_id: str) -> bytes:
        if query_id not in self._open:
            raise _Refused(f"query {query_id!r} is not open")
        return self._batch(query_id, b"")

    def _batch(self, query_id: str, metadata: bytes) -> bytes:
        results = self._open[query_id]
        batch = list(islice(results, BATCH_SIZE + 1))
        has_more = len(batch) > BATCH_SIZE
        if has_more:
            # Put back the look-ahead result for the next batch.
            self._open[query_id] = _prepend(batch.pop(), results)
        else:
            self.close(query_id)
        return chaincode_shim_pb2.QueryResponse(
            results=[chaincode_shim_pb2.QueryResultBytes(resultBytes=item) for item in batch],
            has_more=has_more,
            id=query_id,
            metadata=metadata,
        ).SerializeToString()

    def close(self, query_id: str) -> None:
        self._open.pop(query_id, None)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
