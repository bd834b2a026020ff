"""The peer's side of the chaincode protocol: dialling a chaincode served as a service.

The peer connects to the chaincode's address (as with a CCaaS ``connection.json``),
answers its REGISTER with REGISTERED and READY, then sends each transaction and serves
the chaincode's state requests for it until COMPLETED or ERROR. Transactions run
concurrently on the one stream; messages are routed by (channel, transaction id) and
writes go through one queue. A broken stream is re-dialled on the next transaction.

Because the stream is shared, no message on it may be one gRPC would refuse: one over
``MAX_MESSAGE_BYTES`` would end every transaction on it. A transaction too big to send
fails alone, and an answer to the chaincode too big to send becomes an ERROR to it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import grpc
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    chaincode_shim_pb2,
    chaincode_shim_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
)

from flowblock.ledger.gateway import message_size_options, size_refusal
from flowblock.ledger.shim_params import ChaincodeAdditionalParams
from flowblock.vocabulary import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)
Message = chaincode_shim_pb2.ChaincodeMessage


#: What the devnet's peers offer chaincode in READY, as a Fabric 3.1 peer can: batched
#: writes and multi-key reads of up to this many keys.
BATCH_LIMIT = 1000
READY_OFFER = ChaincodeAdditionalParams(
    use_write_batch=True,
    max_size_write_batch=BATCH_LIMIT,
    use_get_multiple_keys=True,
    max_size_get_multiple_keys=BATCH_LIMIT,
).SerializeToString()


#: The status of a transaction refused for its size, as HTTP's 413.
TOO_LARGE = 413


class ChaincodeUnavailable(Exception):
    """The chaincode cannot be reached or did not register."""


#: Answers one request of the chaincode (GET_STATE...) with a RESPONSE or ERROR message.
RequestHandler = Callable[[Message], Message]


class ChaincodeConnection:
    """One peer's stream to one chaincode server."""

    def __init__(self, name: str, address: str, *, timeout: float = 30.0) -> None:
        self.name = name
        self.address = address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stream: _Stream | None = None

    def _connected(self) -> _Stream:
        with self._lock:
            if self._stream is None or self._stream.closed:
                self._stream = _Stream(self.address, self.timeout)
            return self._stream

    def execute(
        self,
        channel: str,
        tx_id: str,
        arguments: list[bytes],
        proposal: proposal_pb2.SignedProposal,
        handle: RequestHandler,
    ) -> tuple[proposal_response_pb2.Response, chaincode_event_pb2.ChaincodeEvent | None]:
        """Run one transaction; returns the chaincode's response and event (if any)."""
        request = Message(
            type=Message.TRANSACTION,
            payload=chaincode_pb2.ChaincodeInput(args=arguments).SerializeToString(),
            txid=tx_id,
            channel_id=channel,
            proposal=proposal,
        )
        refusal = size_refusal("the transaction", request.ByteSize(), MAX_MESSAGE_BYTES)
        if refusal:
            return proposal_response_pb2.Response(status=TOO_LARGE, message=refusal), None
        stream = self._connected()
        replies = stream.expect(channel, tx_id)
        try:
            stream.send(request)
            while True:
                try:
                    message = replies.get(timeout=self.timeout)
                except queue.Empty:
                    raise ChaincodeUnavailable(
                        f"chaincode {self.name} did not complete {tx_id} in {self.timeout:g} s"
                    ) from None
                if message is None:
                    raise ChaincodeUnavailable(f"chaincode {self.name} closed its stream")
                if message.type == Message.COMPLETED:
                    response = proposal_response_pb2.Response.FromString(message.payload)
                    event = message.chaincode_event if message.HasField("chaincode_event") else None
                    return response, event
                if message.type == Message.ERROR:
                    return (
                        proposal_response_pb2.Response(
                            status=500, message=message.payload.decode("utf-8", "replace")
                        ),
                        None,
                    )
                stream.send(_fitting(handle(message), message, tx_id, channel))
        finally:
            stream.forget(channel, tx_id)

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()


def _fitting(reply: Message, request: Message, tx_id: str, channel: str) -> Message:
    """``reply`` to the chaincode's ``request``, or an ERROR saying it is too big to send."""
    reply.txid, reply.channel_id = tx_id, channel
    what = f"the answer to {Message.Type.Name(request.type)}"
    refusal = size_refusal(what, reply.ByteSize(), MAX_MESSAGE_BYTES)
    if refusal is None:
        return reply
    return Message(type=Message.ERROR, payload=refusal.encode(), txid=tx_id, channel_id=channel)


class _Stream:
    def __init__(self, address: str, timeout: float) -> None:
        self.closed = False
        self._outbound: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._waiting: dict[tuple[str, str], queue.SimpleQueue[Message | None]] = {}
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(address, options=message_size_options())
        try:
            grpc.channel_ready_future(self._channel).result(timeout=min(timeout, 5.0))
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise ChaincodeUnavailable(f"no chaincode answers at {address}") from None
        responses = chaincode_shim_pb2_grpc.ChaincodeStub(self._channel).Connect(self._messages())
        self._responses = responses
        registered = threading.Event()
        threading.Thread(
            target=self._read, args=(responses, registered), name="chaincode-reader", daemon=True
        ).start()
        if not registered.wait(timeout):
            self.close()
            raise ChaincodeUnavailable(f"the chaincode at {address} did not register")

    def _messages(self):
        while (message := self._outbound.get()) is not None:
            yield message

    def _read(self, responses, registered: threading.Event) -> None:
        try:
            for message in responses:
                if message.type == Message.REGISTER:
                    self.send(Message(type=Message.REGISTERED))
                    self.send(Message(type=Message.READY, payload=READY_OFFER))
                    registered.set()
                    continue
                if message.type == Message.KEEPALIVE:
                    continue
                with self._lock:
                    replies = self._waiting.get((message.channel_id, message.txid))
                if replies is not None:
                    replies.put(message)
                elif message.type not in (Message.COMPLETED, Message.ERROR):
                    # A transaction the peer gave up on: tell the chaincode, as Fabric does.
                    self.send(
                        Message(
                            type=Message.ERROR,
                            payload=b"no ledger context: the peer is no longer running this",
                            txid=message.txid,
                            channel_id=message.channel_id,
                        )
                    )
        except grpc.RpcError as error:
            if not self.closed:
                log.warning("chaincode stream broke: %s", error.code())
        finally:
            with self._lock:
                self.closed = True
                waiting, self._waiting = list(self._waiting.values()), {}
            for replies in waiting:
                replies.put(None)
            self._outbound.put(None)  # ends the request stream, freeing its thread

    def expect(self, channel: str, tx_id: str) -> queue.SimpleQueue[Message | None]:
        replies: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        with self._lock:
            if self.closed:
                raise ChaincodeUnavailable("the chaincode stream has just closed")
            if (channel, tx_id) in self._waiting:
                raise ChaincodeUnavailable(f"transaction {tx_id} is already executing")
            self._waiting[(channel, tx_id)] = replies
        return replies

    def forget(self, channel: str, tx_id: str) -> None:
        with self._lock:
            self._waiting.pop((channel, tx_id), None)

    def send(self, message: Message) -> None:
        self._outbound.put(message)

    def close(self) -> None:
        self.closed = True
        self._outbound.put(None)
        self._responses.cancel()
        self._channel.close()
