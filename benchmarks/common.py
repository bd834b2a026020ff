"""What the benchmarks share: servers started as processes, rates, percentiles.

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


def timed(work: Callable[[], object], baseline: Callable[[], object], repeats: int):
    """Median seconds of ``work()`` and of ``baseline()``, run in turns (after a warm-up
    of each) so that the machine's noise falls on both alike."""
    work(), baseline()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for runs, call in zip(samples, (work, baseline), strict=True):
            started = time.perf_counter()
            call()
            runs.append(time.perf_counter() - started)
    return statistics.median(samples[0]), statistics.median(samples[1])
