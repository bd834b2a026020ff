"""The devnet's speed: commit latency, committed transactions/s and evaluations/s.

Run: ``.venv/bin/python benchmarks/ledger.py [--seconds 10] [--threads 8]``.

Everything runs for real on this machine: the devnet and the asset-transfer chaincode
each in a process of their own, talking gRPC, and 8 client threads here. Committed
transactions/s are measured twice: each thread waiting for its commit before the next
submit (as an application calling ``submit``), and each keeping 16 in flight with
``submit_async`` (the ledger's capacity, as load generators such as Caliper measure it).
Targets (issue 4): p50 commit ≤ 50 ms at a 20 ms batch timeout, ≥ 300 committed
transactions/s, ≥ 2,000 evaluations/s.

Machines are noisy, so each figure is printed beside a baseline measured in the same
run: commit latency against the orderer's batch timeout, and the rates against the
protocol's floor (``floor.py``): the same gRPC round trips with empty messages and no
work. An evaluation is 1 unary call holding 2 ping-pongs on the chaincode stream
(TRANSACTION/GET_STATE, RESPONSE/COMPLETED); a committed Create is 3 unary calls
(Endorse, Submit, CommitStatus) with 3 ping-pongs on each of 2 peers' streams inside
Endorse (TRANSACTION/GET_STATE, RESPONSE/WRITE_BATCH_STATE, RESPONSE/COMPLETED). No
ledger on this stack can go faster than its floor here; a target above it cannot be met.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

from common import percentiles, rate, start_chaincode
from floor import EVALUATION, SUBMIT, Floor

from flowblock.testing import make_demo_world
from flowblock.testing.ledger import DevnetProcess

IN_FLIGHT = 16  # transactions each thread keeps submitted but not yet committed


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--seconds", type=float, default=10.0, help="length of each rate run")
    options.add_argument("--threads", type=int, default=8, help="client threads")
    options.add_argument("--latency-samples", type=int, default=200)
    options.add_argument("--batch-timeout", type=float, default=0.02)
    args = options.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="flowblock-bench-"))
    world = make_demo_world(data_dir)
    chaincode, address = start_chaincode("flowblock.testing.asset_transfer:AssetTransfer")
    devnet = DevnetProcess(data_dir, {"asset": address}, batch_timeout=args.batch_timeout).start()
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
        p50, p99 = percentiles(latencies)

        def submit(thread: int, n: int) -> None:
            submitted = contracts[thread].submit_async("Create", f"t{thread}-{n}", "x", n)
            if not submitted.status().successful:
                raise RuntimeError("a benchmark transaction was not committed")

        pending = [collections.deque() for _ in range(args.threads)]

        def submit_pipelined(thread: int, n: int) -> None:
            pending[thread].append(
                contracts[thread].submit_async("Create", f"p{thread}-{n}", "x", n)
            )
            oldest = pending[thread].popleft() if len(pending[thread]) >= IN_FLIGHT else None
            if oldest is not None and not oldest.status().successful:
                raise RuntimeError("a benchmark transaction was not committed")

        def evaluate(thread: int, n: int) -> None:
            contracts[thread].evaluate("Read", "read-me")

        committed = rate(args.threads, args.seconds, submit)
        pipelined = rate(args.threads, args.seconds, submit_pipelined)
        for submitted in (s for queue in pending for s in queue):
            submitted.status()  # committed before the evaluations start
        evaluations = rate(args.threads, args.seconds, evaluate)
    finally:
        devnet.stop()
        chaincode.terminate()
    with Floor() as floor:
        submit_floor = floor.rate(args.threads, args.seconds, **SUBMIT)
        evaluate_floor = floor.rate(args.threads, args.seconds, **EVALUATION)

    timeout_ms = args.batch_timeout * 1000
    print(
        f"FlowBlock ledger benchmark: devnet with 2 organisations, batch timeout "
        f"{timeout_ms:g} ms, {args.threads} client threads, {args.seconds:g} s per rate"
    )
    print(
        f"  submit→commit latency  p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
        f"p50 = {p50 / timeout_ms:.2f}x the batch timeout   (target p50 ≤ 50 ms)"
    )
    for label, value, floor_rate, target in (
        ("committed, waiting each", committed, submit_floor, "≥ 300/s"),
        (f"committed, {IN_FLIGHT} in flight", pipelined, submit_floor, "≥ 300/s"),
        ("evaluations", evaluations, evaluate_floor, "≥ 2,000/s"),
    ):
        print(
            f"  {label:<24} {value:6.0f} /s = {value / floor_rate:.2f}x the protocol's floor "
            f"of {floor_rate:4.0f}/s   (target {target})"
        )
    print(
        "  floor: the same gRPC round trips with empty messages and no work, this machine, "
        "this run (benchmarks/floor.py)"
    )


if __name__ == "__main__":
    main()
