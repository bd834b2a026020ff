"""What the benchmarks share: servers started as processes, rates, the gRPC baseline.

Each benchmark measures FlowBlock and, in the same run on the same machine, a
baseline, and prints both and their ratio: these machines are noisy, ratios are not.
"""

from __future__ import annotations

import itertools
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc

ECHO_METHOD = "/benchmark.Echo/Call"


def serve_echo() -> None:
    """The baseline server: a gRPC method that returns its request, nothing more."""
    handler = grpc.method_handlers_generic_handler(
        "benchmark.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda request, _: request)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(32))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"echo on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def start_process(argv: list[str], pattern: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server process and return it with the address it announces."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(pattern, line)
        if match:
            return process, match.group(1)
    raise RuntimeError(f"{argv[:4]} did not start")


def start_chaincode(*contract: str) -> tuple[subprocess.Popen[str], str]:
    """``flowblock chaincode serve`` on a free port (FlowBlock's chaincode by default)."""
    extra = ["--chaincode-id", "asset", "--contract", *contract] if contract else []
    return start_process(
        [sys.executable, "-m", "flowblock", "chaincode", "serve", "--address", "127.0.0.1:0",
         *extra],
        r"on (\S+)$",
    )  # fmt: skip


def echo_baseline(threads: int, seconds: float) -> float:
    """Empty gRPC unary calls per second to a server process, from ``threads`` threads."""
    echo, address = start_process([sys.executable, __file__, "--echo-server"], r"echo on (\S+)")
    try:
        calls = [grpc.insecure_channel(address).unary_unary(ECHO_METHOD) for _ in range(threads)]
        return rate(threads, seconds, lambda thread, n: calls[thread](b"x" * 64))
    finally:
        echo.terminate()


def rate(threads: int, seconds: float, work: Callable[[int, int], object]) -> float:
    """Calls of ``work(thread, n)`` per second, summed over ``threads`` threads."""
    done = [0] * threads
    stop = time.monotonic() + seconds

    def run(thread: int) -> None:
        for n in itertools.count():
            if time.monotonic() >= stop:
                return
            work(thread, n)
            done[thread] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.monotonic() - started)


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    """p50 and p99 of a list of latencies."""
    return statistics.median(samples_ms), statistics.quantiles(samples_ms, n=100)[98]


if __name__ == "__main__" and sys.argv[1:] == ["--echo-server"]:
    serve_echo()
