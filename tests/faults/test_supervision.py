"""The stack's supervisor of its S3 server, on a stand-in server (a ``sleep``): it starts
an exited server again, tries again later when a start fails, leaves one stopped on
purpose alone, and stops the server when it is stopped itself."""

from __future__ import annotations

import subprocess

import pytest

from flowblock.stack.system import Supervisor
from flowblock.testing.waiting import wait_until

pytestmark = pytest.mark.unit


class Sleeper:
    """A server as the supervisor sees one: ``process``, ``start()``, ``stop()``."""

    def __init__(self, failing_starts: int = 0) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.failing_starts = failing_starts

    def start(self) -> Sleeper:
        self.starts += 1
        if 1 < self.starts <= 1 + self.failing_starts:
            raise RuntimeError("the port is taken")
        self.process = subprocess.Popen(["sleep", "300"])
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def test_an_exited_server_is_started_again_and_stopped_with_the_supervisor(caplog):
    server = Sleeper().start()
    supervisor = Supervisor(server, "sleeper", interval=0.02).start()
    first = server.process
    first.kill()
    wait_until(lambda: supervisor.restarts == 1, timeout=10)
    again = server.process
    assert again is not first and again.poll() is None
    assert "sleeper exited (killed by SIGKILL); starting it again." in caplog.text
    supervisor.stop()
    assert server.process is None and again.poll() is not None


def test_a_start_that_fails_is_tried_again_after_a_longer_wait(caplog):
    server = Sleeper(failing_starts=2).start()
    supervisor = Supervisor(server, "sleeper", interval=0.02, longest_wait=0.05).start()
    server.process.kill()
    wait_until(lambda: supervisor.restarts == 1, timeout=10)
    assert server.starts == 4  # the first, two that failed, the one that worked
    assert caplog.text.count("sleeper did not start again (the port is taken)") == 2
    assert server.process.poll() is None
    supervisor.stop()
    assert server.process is None


def test_a_server_stopped_on_purpose_is_left_stopped():
    server = Sleeper().start()
    supervisor = Supervisor(server, "sleeper", interval=0.02).start()
    server.stop()
    try:
        with pytest.raises(TimeoutError):
            wait_until(lambda: server.process is not None, timeout=0.3)
        assert server.starts == 1
    finally:
        supervisor.stop()
