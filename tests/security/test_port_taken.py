"""Two stacks never share a port (finding 8): with the default port taken, ``flowblock up``
listens on a free one and says so; with a port asked for and taken, it refuses."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from flowblock.stackfile import read_stack_file
from flowblock.testing.waiting import wait_until

DEFAULT = ("127.0.0.1", 7051)


@pytest.fixture
def default_port_taken():
    """Whoever holds the devnet's default port (a listener of the test's own if it is free)."""
    holder = socket.socket()
    try:
        holder.bind(DEFAULT)
        holder.listen()
    except OSError:
        holder.close()
        holder = None  # another program holds it already: the case this test is about
    yield
    if holder is not None:
        holder.close()


def test_a_stack_on_a_taken_default_port_moves_to_a_free_one(default_port_taken, tmp_path):
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "flowblock", "up", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: read_stack_file(data_dir) or up.poll() is not None, timeout=120)
        stack = read_stack_file(data_dir)
        assert stack is not None, up.communicate(timeout=10)[0]
        assert stack["gateway"].startswith("127.0.0.1:")
        assert stack["gateway"] != "127.0.0.1:7051"
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=60)
    assert "127.0.0.1:7051 is taken; the gateway listens on a free port instead." in output


def test_a_port_asked_for_and_taken_is_one_sentence(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        started = time.monotonic()
        up = subprocess.run(
            [sys.executable, "-m", "flowblock", "up", "--data-dir", str(tmp_path / "data"),
             "--listen", taken],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert up.returncode == 1
    assert up.stderr.strip().startswith(f"flowblock: the devnet's gateway cannot listen on {taken}")
    assert "Traceback" not in up.stderr and up.stderr.count("\n") == 1
    assert time.monotonic() - started < 60
