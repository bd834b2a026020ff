"""Chaincode as a service: the chaincode's side of Fabric's chaincode protocol.

A peer dials the chaincode's gRPC server (``protos.Chaincode/Connect``) and the two
exchange ``ChaincodeMessage``s on one bidirectional stream: the chaincode REGISTERs,
the peer answers REGISTERED and READY, then sends TRANSACTIONs; while one runs, the
chaincode asks for state (GET_STATE, PUT_STATE, ranges, history…) and finally answers
COMPLETED or ERROR. Many transactions share the stream at once, so replies are routed
by (channel, transaction id) and all writes go through one queue. For the same reason
nothing is sent that gRPC would refuse: a state request or an answer over
``MAX_MESSAGE_BYTES`` fails its own transaction, with a sentence, and not the stream.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2, chaincode_shim_pb2_grpc

from flowblock.chaincode.contract import Chaincode
from flowblock.chaincode.stub import ChaincodeStub, PeerOffer
from flowblock.ledger.gateway import message_size_options, size_refusal
from flowblock.ports import EXCLUSIVE_PORT, bind
from flowblock.vocabulary import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)
Message = chaincode_shim_pb2.ChaincodeMessage
_CLOSED = Message(type=Message.ERROR, payload=b"the peer closed the chaincode stream")
#: Seconds a transaction waits for the peer to answer one of its state requests.
PEER_TIMEOUT = 120.0


class ChaincodeStream:
    """One chaincode-protocol conversation with one peer."""

    def __init__(self, chaincode: Chaincode, chaincode_id: str, workers: futures.Executor):
        self.chaincode = chaincode
        self.chaincode_id = chaincode_id
        self.workers = workers
        self._outbound: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._waiting: dict[tuple[str, str], queue.SimpleQueue[Message]] = {}
        self._lock = threading.Lock()
        self.offer = PeerOffer()

    def send(self, message: Message) -> None:
        self._outbound.put(message)

    def outbound(self) -> Iterator[Message]:
        """The messages to the peer, in the order they were sent, until the stream ends."""
        while (message := self._outbound.get()) is not None:
            yield message

    def serve(self, inbound: Iterator[Message]) -> None:
        """Register, then handle the peer's messages until it hangs up."""
        self.send(
            Message(
                type=Message.REGISTER,
                payload=chaincode_pb2.ChaincodeID(name=self.chaincode_id).SerializeToString(),
            )
        )
        try:
            for message in inbound:
                self._handle(message)
        except grpc.RpcError:
            pass
        finally:
            with self._lock:
                waiting, self._waiting = list(self._waiting.values()), {}
            for replies in waiting:
                replies.put(_CLOSED)
            self._outbound.put(None)

    def _handle(self, message: Message) -> None:
        kind = message.type
        if kind in (Message.TRANSACTION, Message.INIT):
            self.workers.submit(self._run, message)
        elif kind in (Message.RESPONSE, Message.ERROR):
            with self._lock:
                replies = self._waiting.get((message.channel_id, message.txid))
            if replies is not None:
                replies.put(message)
        elif kind == Message.KEEPALIVE:
            self.send(message)
        elif kind == Message.READY:
            self.offer = PeerOffer.from_ready(message.payload)
        elif kind != Message.REGISTERED:
            log.warning("ignoring unexpected %s from the peer", Message.Type.Name(kind))

    def _run(self, message: Message) -> None:
        key = (message.channel_id, message.txid)
        replies: queue.SimpleQueue[Message] = queue.SimpleQueue()
        with self._lock:
            duplicate = key in self._waiting
            if not duplicate:
                self._waiting[key] = replies
        if duplicate:
            self._reply(message, Message.ERROR, b"duplicate transaction id in flight")
            return

        def request(kind: int, payload: bytes) -> Message:
            asked = Message(
                type=kind, payload=payload, txid=message.txid, channel_id=message.channel_id
            )
            what = f"the request {Message.Type.Name(kind)}"
            refusal = size_refusal(what, asked.ByteSize(), MAX_MESSAGE_BYTES)
            if refusal:
                return Message(type=Message.ERROR, payload=refusal.encode())
            self.send(asked)
            try:
                return replies.get(timeout=PEER_TIMEOUT)
            except queue.Empty:
                return Message(type=Message.ERROR, payload=b"the peer did not answer in time")

        try:
            arguments = chaincode_pb2.ChaincodeInput.FromString(message.payload)
            stub = ChaincodeStub(
                request,
                message.channel_id,
                message.txid,
                list(arguments.args),
                message.proposal,
                self.offer,
            )
            response = self.chaincode.invoke(stub)
        except Exception:
            log.exception("transaction %s could not run", message.txid)
            self._reply(message, Message.ERROR, b"the chaincode could not run the transaction")
            return
        finally:
            with self._lock:
                self._waiting.pop(key, None)
        self._reply(message, Message.COMPLETED, response.SerializeToString(), stub.event)

    def _reply(self, to: Message, kind: int, payload: bytes, event=None) -> None:
        reply = Message(type=kind, payload=payload, txid=to.txid, channel_id=to.channel_id)
        if event is not None:
            reply.chaincode_event.CopyFrom(event)
        refusal = size_refusal("the chaincode's answer", reply.ByteSize(), MAX_MESSAGE_BYTES)
        if refusal:
            log.warning("transaction %s: %s", to.txid, refusal)
            reply = Message(
                type=Message.ERROR, payload=refusal.encode(), txid=to.txid, channel_id=to.channel_id
            )
        self.send(reply)


class _Servicer(chaincode_shim_pb2_grpc.ChaincodeServicer):
    def __init__(self, server: ChaincodeServer) -> None:
        self.server = server

    def Connect(self, request_iterator, context):  # noqa: N802 - gRPC method name
        stream = ChaincodeStream(
            self.server.chaincode, self.server.chaincode_id, self.server.workers
        )
        threading.Thread(
            target=stream.serve, args=(request_iterator,), name="chaincode-stream", daemon=True
        ).start()
        return stream.outbound()


class ChaincodeServer:
    """A chaincode served over gRPC for peers to connect to (Fabric's CCaaS)."""

    def __init__(
        self,
        chaincode: Chaincode,
        chaincode_id: str,
        address: str = "127.0.0.1:0",
        *,
        max_transactions: int = 32,
        tls: grpc.ServerCredentials | None = None,
    ) -> None:
        self.chaincode = chaincode
        self.chaincode_id = chaincode_id
        self.workers = futures.ThreadPoolExecutor(max_transactions, "chaincode-tx")
        # Each stream takes one server thread for its lifetime; peers are few.
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(16, "chaincode-grpc"),
            options=[EXCLUSIVE_PORT, *message_size_options()],
        )
        chaincode_shim_pb2_grpc.add_ChaincodeServicer_to_server(_Servicer(self), self._grpc)
        self.port = bind(self._grpc, address, f"the chaincode server of {chaincode_id!r}", tls)
        host = address.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"

    def start(self) -> ChaincodeServer:
        self._grpc.start()
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        self._grpc.stop(grace).wait()
        self.workers.shutdown(wait=False, cancel_futures=True)

    def wait(self) -> None:
        self._grpc.wait_for_termination()
