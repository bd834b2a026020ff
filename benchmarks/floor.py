"""The protocol's floor: a ledger operation's gRPC round trips with no work in them.

A Fabric evaluation is one unary call from the client to the gateway, during which the
peer and the chaincode exchange messages on their stream (TRANSACTION → GET_STATE,
RESPONSE → COMPLETED); a submit is three unary calls (Endorse, Submit, CommitStatus)
with the chaincode conversation of each endorsing peer inside Endorse. This module
runs the same shape with empty messages: a client, a "gateway" process that answers
each call only after N ping-pongs on one bidirectional stream to a "chaincode" process
that echoes. Nothing is signed, parsed, stored or ordered, so no ledger written on this
stack can beat it on this machine; the benchmarks print it beside the devnet's figures.

Both servers use grpc.aio, the faster of the shapes measured here (about 1.4x the
thread-per-call shape for an evaluation's two ping-pongs; equal at six).
"""

from __future__ import annotations

import asyncio
import itertools
import sys

import grpc
from common import rate, start_process

CALL, CONNECT = "/floor.Gateway/Call", "/floor.Chaincode/Connect"
#: An evaluation that reads one key: Evaluate, holding TRANSACTION/GET_STATE and
#: RESPONSE/COMPLETED on the chaincode stream.
EVALUATION = {"unary_calls": 1, "ping_pongs": 2}
#: A submit that reads one key and writes a batch, endorsed by 2 peers: Endorse (holding
#: TRANSACTION/GET_STATE, RESPONSE/WRITE_BATCH_STATE, RESPONSE/COMPLETED per peer),
#: Submit, CommitStatus.
SUBMIT = {"unary_calls": 3, "ping_pongs": 6}
KEY = 8  # bytes of conversation id at the front of each stream message


async def _serve(service: str, handlers: dict) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"floor on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def chaincode() -> None:
    """Echo every message of the stream back, as soon as it arrives."""

    async def connect(messages, _context):
        async for message in messages:
            yield message

    await _serve("floor.Chaincode", {"Connect": grpc.stream_stream_rpc_method_handler(connect)})


async def gateway(chaincode_address: str) -> None:
    """Answer each call after as many ping-pongs with the chaincode as its first byte says."""
    outbound: asyncio.Queue[bytes] = asyncio.Queue()
    waiting: dict[bytes, asyncio.Future[bytes]] = {}

    async def send():
        while True:
            yield await outbound.get()

    stream = grpc.aio.insecure_channel(chaincode_address).stream_stream(CONNECT)(send())

    async def route() -> None:
        async for message in stream:
            waiting.pop(message[:KEY]).set_result(message)

    router = asyncio.get_running_loop().create_task(route())
    conversations = itertools.count()

    async def call(request: bytes, _context) -> bytes:
        key = next(conversations).to_bytes(KEY, "big")
        for _ in range(request[0]):
            waiting[key] = asyncio.get_running_loop().create_future()
            await outbound.put(key + request)
            await waiting[key]
        return request

    await _serve("floor.Gateway", {"Call": grpc.unary_unary_rpc_method_handler(call)})
    router.cancel()


class Floor:
    """The two floor servers, started as processes for the length of a ``with`` block."""

    def __enter__(self) -> Floor:
        self._chaincode, address = start_process(
            [sys.executable, __file__, "chaincode"], r"floor on (\S+)"
        )
        self._gateway, self.address = start_process(
            [sys.executable, __file__, "gateway", address], r"floor on (\S+)"
        )
        return self

    def rate(self, threads: int, seconds: float, *, unary_calls: int, ping_pongs: int) -> float:
        """Operations per second from ``threads`` client threads; an operation is
        ``unary_calls`` calls in a row, the first holding ``ping_pongs`` ping-pongs."""
        calls = [grpc.insecure_channel(self.address).unary_unary(CALL) for _ in range(threads)]
        first, rest = bytes([ping_pongs]) + b"x" * 63, bytes([0]) + b"x" * 63

        def operation(thread: int, _n: int) -> None:
            calls[thread](first)
            for _ in range(unary_calls - 1):
                calls[thread](rest)

        operation(0, 0)  # the stream to the chaincode opens on first use
        return rate(threads, seconds, operation)

    def __exit__(self, *_exc) -> None:
        self._gateway.terminate()
        self._chaincode.terminate()


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    asyncio.run(chaincode() if role == "chaincode" else gateway(*arguments))
