"""Finding 9 of issue 17: an algorithm's code cannot reach beyond its sandbox.

An algorithm is code a catalogue vouched for, running on the data side: if it pries, it
must get nothing. It cannot read the organisation's S3 credentials, a wallet's private
key or the executor's environment; it cannot fork without end; nothing it starts
outlives it; it reaches no server on the machine or beyond; and what it sends back is
read as data, never run as code. These start no server but a socket of their own: the
sandbox is a child process of this one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from flowblock.executor import network_namespace, sandbox
from flowblock.executor.algorithms.base import AlgorithmError
from flowblock.executor.sandbox import Limits, isolation_problem, run_sandboxed
from flowblock.identity import wallet_path
from flowblock.identity.s3 import credentials_path
from flowblock.identity.wallet import KEY_FILE
from flowblock.testing.algorithms import (
    Connects,
    Forks,
    ImportsLazily,
    LeavesAGrandchild,
    ReadsFiles,
    SendsCode,
)
from flowblock.testing.identities import make_demo_world
from flowblock.testing.waiting import wait_until

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(
        isolation_problem() is not None,
        reason="runs get a user of their own only where the executor is root",
    ),
]

FRAME = pd.DataFrame({"patient_id": [0, 1, 2], "systolic": [120.0, 130.0, 140.0]})


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """The demo organisations in a data directory anyone may enter, as a home directory
    is: only FlowBlock's own file modes keep its secrets."""
    folder = Path(tempfile.mkdtemp(prefix="flowblock-sandbox-test-"))
    folder.chmod(0o755)
    make_demo_world(folder)
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def test_an_algorithm_reads_neither_the_s3_credentials_nor_a_wallet_key_nor_the_environment(
    data_dir: Path,
):
    secrets = [
        credentials_path(data_dir, "Hospital"),
        wallet_path(data_dir, "Hospital", "executor") / KEY_FILE,
        Path(f"/proc/{os.getpid()}/environ"),  # the executor's environment
    ]
    assert all(path.read_bytes() for path in secrets)  # there to be read, by the executor
    seen = run_sandboxed(ReadsFiles, FRAME, {"paths": [str(p) for p in secrets]}, Limits())
    assert seen == {str(path): "PermissionError" for path in secrets}


def test_an_algorithm_still_imports_what_it_needs():
    seen = run_sandboxed(ImportsLazily, FRAME, {}, Limits(cpu_seconds=30))
    assert seen == {"modules": ["colorsys", "wave"]}


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for init is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_a_fork_bomb_is_stopped_by_the_process_limit_and_its_processes_die_with_it():
    seen = run_sandboxed(Forks, FRAME, {"count": 200}, Limits(cpu_seconds=30, processes=50))
    assert seen["stopped_by"] == "BlockingIOError"
    assert 0 < len(seen["children"]) < 50
    wait_until(lambda: not any(map(_running, seen["children"])), timeout=10,
               what="the forked children to be killed with their run")  # fmt: skip


def _sleepers(marker: str) -> list[int]:
    """The processes running ``sleep marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == (
                b"sleep\0" + marker.encode() + b"\0"
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("escape", [False, True], ids=["in-its-group", "in-its-own-session"])
def test_a_grandchild_dies_when_the_wall_clock_stops_its_run(escape: bool):
    marker = f"{random.randint(100_000, 999_999)}.5"  # how long it would sleep: days
    started: list[int] = []

    def on_progress(_fraction: float) -> None:
        started.extend(wait_until(lambda: _sleepers(marker), timeout=10, what="the grandchild"))

    with pytest.raises(AlgorithmError, match="did not finish"):
        run_sandboxed(
            LeavesAGrandchild, FRAME, {"seconds": marker, "escape": escape},
            Limits(cpu_seconds=1), on_progress,
        )  # fmt: skip
    assert started, "the grandchild never started"
    wait_until(lambda: not any(map(_running, started)), timeout=10,
               what="the grandchild to be killed with its run")  # fmt: skip


def test_a_result_is_read_as_data_never_run_as_code(tmp_path: Path):
    target = tmp_path / "made-by-the-executor"
    with pytest.raises(AlgorithmError, match="cannot leave the sandbox"):
        run_sandboxed(SendsCode, FRAME, {"path": str(target)}, Limits(cpu_seconds=30))
    assert not target.exists()


GREETING = "a service of the executor's machine\n"


@pytest.fixture
def local_server() -> Iterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1, as the S3 server, Redis or the gateway are: it greets
    whoever connects."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(GREETING.encode())

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    yield listener.getsockname()[:2]
    stopping.set()
    server.join()
    listener.close()


def _greeting(address: tuple[str, int]) -> str:
    with socket.create_connection(address, timeout=5) as connection:
        return connection.recv(64).decode()


def test_an_algorithm_reaches_no_server_on_the_machine_and_the_executor_still_does(
    local_server: tuple[str, int],
):
    host, port = local_server
    assert _greeting(local_server) == GREETING  # there to be reached, by the executor
    seen = run_sandboxed(Connects, FRAME, {"addresses": [[host, port]]}, Limits(cpu_seconds=30))
    assert seen["connections"] == {f"{host}:{port}": "ENETUNREACH"}  # no interface is up
    assert seen["namespace"] != os.readlink("/proc/self/ns/net")  # a network of its own
    assert _greeting(local_server) == GREETING


@pytest.fixture
def network_decided_again():
    sandbox._runs_get_own_network.cache_clear()
    yield
    sandbox._runs_get_own_network.cache_clear()


def test_where_no_network_namespace_can_be_made_a_run_says_so_once_and_keeps_its_user(
    monkeypatch, caplog, local_server: tuple[str, int], network_decided_again, data_dir: Path
):
    monkeypatch.setattr(sandbox, "network_namespace_problem", lambda _: "no network namespace here")
    host, port = local_server
    credentials = str(credentials_path(data_dir, "Hospital"))
    with caplog.at_level(logging.WARNING, logger="flowblock.executor.sandbox"):
        seen = run_sandboxed(Connects, FRAME, {"addresses": [[host, port]]}, Limits())
        read = run_sandboxed(ReadsFiles, FRAME, {"paths": [credentials]}, Limits())
    assert seen["connections"] == {f"{host}:{port}": GREETING}  # the gap the warning names
    assert read == {credentials: "PermissionError"}
    (warning,) = caplog.messages
    assert warning == "The algorithms' sandbox is weaker here: no network namespace here."


def test_whether_a_run_can_have_a_network_of_its_own_is_tried_for_real(monkeypatch):
    assert network_namespace.network_namespace_problem(sandbox._CONTEXT) is None  # root here

    def refused() -> None:
        raise PermissionError(1, "unshare(CLONE_NEWNET): Operation not permitted")

    monkeypatch.setattr(network_namespace, "enter_network_namespace", refused)
    fork = multiprocessing.get_context("fork")  # its child keeps this test's refusal
    problem = network_namespace.network_namespace_problem(fork)
    assert problem is not None and "(unshare(CLONE_NEWNET): Operation not permitted)" in problem
