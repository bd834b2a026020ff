"""Algorithms run in a child process with limits on CPU time and memory.

An algorithm is code a catalogue vouched for, not code we trust with the executor's
keys or its memory: it runs in a process of its own, forked from a clean forkserver
(not from the executor, whose gRPC threads do not survive a fork), with RLIMIT_CPU and
RLIMIT_AS set before it starts. It gets the cohort's rows and its parameters and
returns a result; the only things that cross back are the result or one sentence.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from flowblock.executor.algorithms.base import Algorithm, AlgorithmError

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["flowblock.executor.algorithms.preload"])
#: glibc backs the forkserver's and so the children's large allocations with transparent
#: huge pages: a child is a fresh process paying a page fault for every 4 KiB it first
#: touches (~3 µs each on a VM), and a million-row cohort is tens of MiB of them.
_HUGE_PAGES = "glibc.malloc.hugetlb=1"
_STARTING = threading.Lock()
_started_by: int | None = None  # the process that started the forkserver


def _ensure_forkserver() -> None:
    """Start the forkserver once per process, with glibc's huge-page tunable in its
    environment (read when a process starts; other C libraries ignore it).

    The environment is changed for that moment only, and only once: other threads may
    read it meanwhile. A forkserver that dies is started again by multiprocessing
    itself, without the tunable: slower children, nothing worse.
    """
    global _started_by
    with _STARTING:
        if _started_by == os.getpid():
            return
        before = os.environ.get("GLIBC_TUNABLES")
        tunables = [t for t in (before or "").split(":") if t]
        os.environ["GLIBC_TUNABLES"] = ":".join([*tunables, _HUGE_PAGES])
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if before is None:
                del os.environ["GLIBC_TUNABLES"]
            else:
                os.environ["GLIBC_TUNABLES"] = before
        _started_by = os.getpid()


@dataclass(frozen=True)
class Limits:
    """What one algorithm run may use."""

    cpu_seconds: int = 600
    memory_bytes: int = 8 * 1024**3

    @property
    def wall_seconds(self) -> float:
        # CPU time bounds work; this bounds waiting (sleep, I/O) too.
        return self.cpu_seconds * 2 + 10


def _child(
    connection, algorithm: type[Algorithm], frame, params, limits: Limits, inputs: list
) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    instance = algorithm()
    instance.inputs = inputs
    instance.progress = lambda fraction: connection.send(("progress", float(fraction)))
    try:
        result = instance.run(frame, params)
        if instance.artifact is not None:
            connection.send(("artifact", bytes(instance.artifact)))
        connection.send(("ok", result))
    except AlgorithmError as error:
        connection.send(("refused", str(error)))
    except MemoryError:
        connection.send(("refused", "the algorithm ran out of its memory limit."))
    except Exception as error:  # the message of an unexpected error stays data-side
        connection.send(("failed", type(error).__name__))
    finally:
        connection.close()


def run_sandboxed(
    algorithm: type[Algorithm],
    frame: pd.DataFrame,
    params: dict[str, Any],
    limits: Limits,
    on_progress: Callable[[float], None] | None = None,
    inputs: list | None = None,
    artifacts: list[bytes] | None = None,
) -> Any:
    """``algorithm().run(frame, params)`` in a limited child; raises AlgorithmError on failure.

    Progress the algorithm reports reaches ``on_progress`` as it comes; an artifact it
    leaves (a trained model's bytes) is appended to ``artifacts``.
    """
    _ensure_forkserver()
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(
        target=_child, args=(sender, algorithm, frame, params, limits, inputs or []), daemon=True
    )
    child.start()
    sender.close()
    deadline = time.monotonic() + limits.wall_seconds
    try:
        while True:
            if not receiver.poll(max(0.0, deadline - time.monotonic())):
                child.kill()
                raise AlgorithmError(
                    f"the algorithm did not finish within {limits.wall_seconds:g} s."
                )
            try:
                outcome, value = receiver.recv()
            except EOFError:
                outcome, value = "died", None
            if outcome == "artifact":
                if artifacts is not None:
                    artifacts.append(value)
                continue
            if outcome != "progress":
                break
            if on_progress is not None:
                on_progress(value)
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
        receiver.close()
    if outcome == "ok":
        return value
    if outcome == "refused":
        raise AlgorithmError(value)
    if outcome == "died" and child.exitcode == -signal.SIGXCPU:
        raise AlgorithmError(f"the algorithm used up its {limits.cpu_seconds} s of CPU time.")
    if outcome == "died":
        raise AlgorithmError("the algorithm's process died (killed or out of memory).")
    raise AlgorithmError(f"the algorithm failed ({value}).")
