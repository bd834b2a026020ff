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
import tempfile
import time
from pathlib import Path

from common import echo_baseline, percentiles, rate, start_chaincode

from flowblock.testing import make_demo_world
from flowblock.testing.ledger import DevnetProcess

#: gRPC round trips one operation needs by protocol (see the module docstring).
EVALUATE_ROUND_TRIPS, SUBMIT_ROUND_TRIPS = 3, 11


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

        def evaluate(thread: int, n: int) -> None:
            contracts[thread].evaluate("Read", "read-me")

        committed = rate(args.threads, args.seconds, submit)
        evaluations = rate(args.threads, args.seconds, evaluate)
        baseline = echo_baseline(args.threads, args.seconds)
    finally:
        devnet.stop()
        chaincode.terminate()

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
