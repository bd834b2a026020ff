"""The devnet's speed: commit latency, committed transactions/s and evaluations/s.

Run: ``.venv/bin/python benchmarks/ledger.py [--seconds 10] [--threads 8]``.

Everything runs for real on this machine: the devnet and the asset-transfer chaincode
each in a process of their own, talking gRPC, and 8 client threads here. Machines
are noisy, so each figure is also printed as a ratio to a baseline measured in the
same run: commit latency against the orderer's batch timeout (its floor), and the
rates against empty gRPC calls to a server process that does nothing.
Targets (issue 4): p50 commit ≤ 50 ms at a 20 ms batch timeout, ≥ 300 committed
transactions/s, ≥ 2,000 evaluations/s.

The protocol sets a ceiling: an evaluation is 3 gRPC round trips (client to gateway,
then TRANSACTION/GET_STATE and RESPONSE/COMPLETED on the chaincode stream) and a
committed Create is 11 (Endorse, Submit, CommitStatus, and 4 chaincode round trips on
each of 2 peers), so neither can go faster than the empty-call rate divided by that;
the benchmark prints each rate as a fraction of its ceiling too.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from flowblock.testing import make_demo_world
from flowblock.testing.ledger import DevnetProcess

ECHO_METHOD = "/benchmark.Echo/Call"
#: gRPC round trips one operation needs by protocol (see the module docstring).
EVALUATE_ROUND_TRIPS, SUBMIT_ROUND_TRIPS = 3, 11


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


def rate(threads: int, seconds: float, work) -> float:
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


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--seconds", type=float, default=10.0, help="length of each rate run")
    options.add_argument("--threads", type=int, default=8, help="client threads")
    options.add_argument("--latency-samples", type=int, default=200)
    options.add_argument("--batch-timeout", type=float, default=0.02)
    options.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.echo_server:
        serve_echo()
        return

    python = sys.executable
    data_dir = Path(tempfile.mkdtemp(prefix="flowblock-bench-"))
    world = make_demo_world(data_dir)
    chaincode, chaincode_address = start_process(
        [python, "-m", "flowblock", "chaincode", "serve", "--address", "127.0.0.1:0",
         "--chaincode-id", "asset", "--contract", "flowblock.testing.asset_transfer:AssetTransfer"],
        r"on (\S+)$",
    )  # fmt: skip
    echo, echo_address = start_process([python, __file__, "--echo-server"], r"echo on (\S+)")
    devnet = DevnetProcess(
        data_dir, {"asset": chaincode_address}, batch_timeout=args.batch_timeout
    ).start()
    try:
        identity = world.identity("alice")
        contracts = [
            devnet.gateway(identity).get_network("flowblock").get_contract("asset")
            for _ in range(args.threads)
        ]
        contracts[0].submit("Create", "read-me", "alice", 1)

        latencies = []
        for n in range(args.latency_samples):
            started = time.perf_counter()
            contracts[0].submit("Create", f"latency-{n}", "alice", n)
            latencies.append((time.perf_counter() - started) * 1000)
        p50 = statistics.median(latencies)
        p99 = statistics.quantiles(latencies, n=100)[98]

        def submit(thread: int, n: int) -> None:
            if (
                not contracts[thread]
                .submit_async("Create", f"t{thread}-{n}", "x", n)
                .status()
                .successful
            ):
                raise RuntimeError("a benchmark transaction was not committed")

        committed = rate(args.threads, args.seconds, submit)
        evaluations = rate(
            args.threads,
            args.seconds,
            lambda thread, n: contracts[thread].evaluate("Read", "read-me"),
        )
        channels = [grpc.insecure_channel(echo_address) for _ in range(args.threads)]
        calls = [channel.unary_unary(ECHO_METHOD) for channel in channels]
        baseline = rate(args.threads, args.seconds, lambda thread, n: calls[thread](b"x" * 64))
    finally:
        devnet.stop()
        chaincode.terminate()
        echo.terminate()

    timeout_ms = args.batch_timeout * 1000
    print(
        f"FlowBlock ledger benchmark: devnet with 2 organisations, batch timeout "
        f"{timeout_ms:g} ms, {args.threads} client threads, {args.seconds:g} s per rate"
    )
    print(
        f"  submit→commit latency  p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
        f"p50 = {p50 / timeout_ms:.2f}x the batch timeout   (target p50 ≤ 50 ms)"
    )
    for label, value, trips, target in (
        ("committed transactions", committed, SUBMIT_ROUND_TRIPS, "≥ 300/s"),
        ("evaluations", evaluations, EVALUATE_ROUND_TRIPS, "≥ 2,000/s"),
    ):
        ceiling = baseline / trips
        print(
            f"  {label:<22} {value:8.0f} /s   = {value / baseline:.3f}x empty gRPC calls, "
            f"{value / ceiling:.2f}x the protocol's ceiling of {ceiling:.0f}/s (target {target})"
        )
    print(f"  baseline: empty gRPC unary calls {baseline:8.0f} /s with {args.threads} threads")


if __name__ == "__main__":
    main()
