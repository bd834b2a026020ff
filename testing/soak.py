"""``scripts/soak``: the whole stack under a steady load for a long while, killed -9 and
started again every few minutes, watched for leaks and losses.

It starts ``flowblock demo`` on a data directory of its own (127.0.0.1 only), drives the
load of :class:`flowblock.testing.load.Load` (consents, computations, reads), kills the
stack with SIGKILL at jittered intervals and starts it again on the same directory, and
samples the resident memory and open file handles of every FlowBlock process from /proc.
At the end it stops the stack cleanly and prints a table and a verdict:

- memory flat, judged for each start of the stack alone (a restarted process opens the
  store the data has grown to, so starts differ; a leak grows within one): for the
  stack's process and SeaweedFS, the median resident memory of the last third of a
  start's steady samples (those taken at least ``--warmup`` seconds after it) is at most
  1.2 times that of its first third, plus 32 MiB;
- file handles flat: within each start, the most open in its last third is at most 16
  above the most open in its first third;
- nothing lost: every transaction a client was told committed is on the ledger as valid,
  every computation ended DONE or FAILED and none was completed twice, no process of the
  stack outlived a kill, and ``flowblock verify`` passes.

It stops by itself: after ``--minutes``, then at most a few minutes of checks.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowblock.ledger import Gateway
from flowblock.testing.load import (
    Load,
    all_tokens,
    failure_reasons,
    lost_transactions,
    unended,
    wait_for_tokens_to_end,
)
from flowblock.testing.stack_process import StackProcess, command_line

MIB = 1024**2
#: The processes watched, by what their command line says they are.
KINDS = ("stack", "seaweedfs", "workers")


@dataclass
class Sample:
    seconds: float  # since the soak began
    cycle: int  # which start of the stack
    steady: bool  # taken long enough after that start
    rss: dict[str, int]  # kind -> bytes
    fds: dict[str, int]  # kind -> open file handles
    load: tuple[int, int, int, int]  # acknowledged, tokens, reads, errors


@dataclass
class Soak:
    minutes: float
    kill_every: float  # minutes
    sample_every: float  # seconds
    warmup: float  # seconds
    pause: float  # seconds between a load thread's calls
    seed: int
    samples: list[Sample] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)  # seconds each restart took
    survivors: list[str] = field(default_factory=list)  # processes that outlived a kill


def kind_of(pid: int, stack_pid: int) -> str:
    if pid == stack_pid:
        return "stack"
    return "seaweedfs" if "/weed " in command_line(pid) else "workers"


def usage(pid: int) -> tuple[int, int]:
    """(resident bytes, open file handles) of one process; (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        handles = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0, 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024, handles
    return 0, handles


def sample(stack: StackProcess, soak: Soak, load: Load, began: float, started: float) -> Sample:
    rss = dict.fromkeys(KINDS, 0)
    fds = dict.fromkeys(KINDS, 0)
    for pid in stack.processes():
        kind = kind_of(pid, stack.pid or -1)
        memory, handles = usage(pid)
        rss[kind] += memory
        fds[kind] += handles
    now = time.monotonic()
    return Sample(now - began, stack.starts, now - started >= soak.warmup, rss, fds,
                  load.snapshot())  # fmt: skip


def run(soak: Soak, data_dir: Path) -> bool:
    """The soak itself; True when the verdict is that all held."""
    rng = random.Random(soak.seed)  # noqa: S311 - chooses moments, not secrets
    stack = StackProcess(data_dir, data_dir.parent / "logs")
    print(f"soak: seed {soak.seed}, {soak.minutes:g} min, a kill -9 about every "
          f"{soak.kill_every:g} min; data in {data_dir}", flush=True)  # fmt: skip
    try:
        tally = _drive(soak, stack, rng)
        return _judge(soak, stack, tally)
    finally:
        stack.stop()  # if the soak ended early; a stopped stack is left as it is


def _drive(soak: Soak, stack: StackProcess, rng: random.Random):  # -> Tally
    """Start the stack, load it, sample it and kill it until the time is up."""
    began = started = time.monotonic()
    stack.start()
    print(f"soak: stack up in {time.monotonic() - began:.0f} s", flush=True)
    load = Load(stack, seed=rng.randrange(2**32), pause=soak.pause).start()
    end = began + soak.minutes * 60
    next_kill = started + _jittered(soak.kill_every * 60, rng)
    try:
        while time.monotonic() < end:
            time.sleep(min(soak.sample_every, max(0.0, end - time.monotonic())))
            soak.samples.append(sample(stack, soak, load, began, started))
            _print_row(soak.samples[-1], len(soak.samples) == 1)
            if time.monotonic() >= next_kill and end - time.monotonic() > soak.warmup:
                soak.survivors += stack.kill()
                restarting = time.monotonic()
                stack.start()
                started = time.monotonic()
                soak.restarts.append(started - restarting)
                print(f"soak: kill -9 and restart {len(soak.restarts)}: back in "
                      f"{soak.restarts[-1]:.0f} s", flush=True)  # fmt: skip
                next_kill = started + _jittered(soak.kill_every * 60, rng)
    finally:
        tally = load.stop()
    return tally


def _jittered(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(0.75, 1.25)


def _print_row(row: Sample, header: bool) -> None:
    if header:
        print(f"{'min':>6} {'start':>5} {'stack MiB':>9} {'weed MiB':>8} {'workers MiB':>11} "
              f"{'stack fds':>9} {'weed fds':>8} {'acked':>6} {'tokens':>6} {'reads':>6} "
              f"{'errors':>6}")  # fmt: skip
    acked, tokens, reads, errors = row.load
    print(f"{row.seconds / 60:6.1f} {row.cycle:5d} {row.rss['stack'] / MIB:9.0f} "
          f"{row.rss['seaweedfs'] / MIB:8.0f} {row.rss['workers'] / MIB:11.0f} "
          f"{row.fds['stack']:9d} {row.fds['seaweedfs']:8d} {acked:6d} {tokens:6d} "
          f"{reads:6d} {errors:6d}" + ("" if row.steady else "  (warming up)"),
          flush=True)  # fmt: skip


def flatness(samples: list[Sample]) -> list[str]:
    """What is not flat, by the criteria of this module's docstring ([] when all is)."""
    steady = [s for s in samples if s.steady]
    cycles = sorted({s.cycle for s in steady})
    judged = [[s for s in steady if s.cycle == cycle] for cycle in cycles]
    judged = [start for start in judged if len(start) >= 6]
    if not judged:
        return [f"no start had six steady samples to judge ({len(steady)} in all); run longer"]
    problems = []
    for start in judged:
        third = len(start) // 3
        early, late = start[:third], start[-third:]
        for kind in ("stack", "seaweedfs"):
            before = statistics.median(s.rss[kind] for s in early)
            after = statistics.median(s.rss[kind] for s in late)
            where = f"{kind} in start {start[0].cycle}"
            if after > before * 1.2 + 32 * MIB:
                problems.append(f"{where}: memory grew from {before / MIB:.0f} to "
                                f"{after / MIB:.0f} MiB")  # fmt: skip
            most_before = max(s.fds[kind] for s in early)
            most_after = max(s.fds[kind] for s in late)
            if most_after > most_before + 16:
                problems.append(f"{where}: file handles grew from {most_before} to {most_after}")
    return problems


def per_start(samples: list[Sample]) -> list[str]:
    """For each start of the stack, its first and last steady sample: growth within a
    run of the processes, where :func:`flatness` compares across runs."""
    lines = []
    for cycle in sorted({s.cycle for s in samples}):
        steady = [s for s in samples if s.cycle == cycle and s.steady]
        if steady:
            first, last = steady[0], steady[-1]
            lines.append(
                f"start {cycle}, {first.seconds / 60:.1f}-{last.seconds / 60:.1f} min: "
                + ", ".join(f"{kind} {first.rss[kind] / MIB:.0f}->{last.rss[kind] / MIB:.0f} MiB "
                            f"{first.fds[kind]}->{last.fds[kind]} fds"
                            for kind in ("stack", "seaweedfs"))
            )  # fmt: skip
    return lines


def _judge(soak: Soak, stack: StackProcess, tally) -> bool:
    print("soak: load stopped; waiting for every computation to end", flush=True)
    with Gateway.connect(stack.gateway, stack.wallet("auditor", "Hospital"), timeout=60) as gate:
        auditor = gate.get_network(stack.channel).get_contract("flowblock")
        backlog, waiting = len(unended(auditor)), time.monotonic()
        token_problems = wait_for_tokens_to_end(auditor, timeout=300)
        waited = time.monotonic() - waiting
        tokens = all_tokens(auditor)
        statuses = list(tokens.values())
        failed_ids = [token for token, status in tokens.items() if status == "FAILED"]
        reasons = failure_reasons(auditor, failed_ids)
    stopped = stack.stop()
    lost = lost_transactions(stack.data_dir, tally, stack.channel)
    verify = subprocess.run(
        [sys.executable, "-m", "flowblock", "verify", "--data-dir", str(stack.data_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    flat = flatness(soak.samples)
    problems = [*flat, *token_problems[:10], *(f"lost: {entry}" for entry in lost[:10])]
    problems += [f"outlived a kill: {line}" for line in soak.survivors]
    if stopped != 0:
        problems.append(f"the stack exited with {stopped} when stopped")
    if verify.returncode != 0:
        problems.append(f"flowblock verify: {(verify.stdout + verify.stderr).strip()}")
    print()
    print(f"seed {soak.seed}; {soak.minutes:g} min; {len(soak.restarts)} kill -9 and restarts "
          f"(back in {', '.join(f'{s:.0f}' for s in soak.restarts) or '-'} s)")  # fmt: skip
    done, failed = statuses.count("DONE"), statuses.count("FAILED")
    print(f"{len(tally.acknowledged)} transactions acknowledged, {len(lost)} of them lost; "
          f"{len(statuses)} computations: {done} done, {failed} failed, "
          f"{len(statuses) - done - failed} other; {tally.reads} reads")  # fmt: skip
    print(f"computations not ended when the load stopped: {backlog}; waiting for them and "
          f"checking every token's history took {waited:.0f} s; requests held back while "
          f"a researcher's earlier ones ran: {tally.held_back}")  # fmt: skip
    for reason, count in reasons.most_common(6):
        print(f"  failed {count:4d}: {reason}")
    print(f"errors the clients saw (the stack down): {tally.errors.total()}")
    for error, count in tally.errors.most_common(6):
        print(f"  {count:5d}  {error}")
    for line in per_start(soak.samples):
        print(line)
    print(f"flowblock verify: {verify.stdout.strip()}")
    print("memory and file handles: " + ("flat" if not flat else "; ".join(flat)))
    print("verdict: " + ("all held" if not problems else "FAILED: " + "; ".join(problems)))
    return not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="how long the load runs")
    parser.add_argument("--kill-every", type=float, default=4,
                        help="minutes between kills of the stack (jittered ±25%%)")  # fmt: skip
    parser.add_argument("--sample-every", type=float, default=15, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=45,
                        help="seconds after a start before samples count as steady")  # fmt: skip
    parser.add_argument("--pause", type=float, default=1.0,
                        help="mean seconds between one load thread's calls")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="replay a run's randomness")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the stack's data goes (default: a new temporary folder, "
                        "removed after a run where all held)")  # fmt: skip
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    soak = Soak(args.minutes, args.kill_every, args.sample_every, args.warmup, args.pause, seed)
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="flowblock-soak-")) / "data"
    try:
        held = run(soak, folder)
    except KeyboardInterrupt:
        print("soak: interrupted; the stack is stopped", file=sys.stderr)
        return 130
    except RuntimeError as error:  # the stack did not start: its output says why
        print(f"soak: {error}", file=sys.stderr)
        return 1
    if held and args.data_dir is None:
        shutil.rmtree(folder.parent)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
