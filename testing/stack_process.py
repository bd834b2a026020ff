"""``flowblock demo`` in a process of its own, to be killed -9 and started again.

The fault tests and the soak (``scripts/soak``) run the whole one-machine stack as a user
does, on a data directory of their own, and crash it as a power cut or the OOM killer
would: SIGKILL to the one process, whose children die with it (:mod:`flowblock.children`).
Each start listens on the same gateway port, as a deployed peer does, so clients that
were connected find the stack again at the same address once it is back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flowblock.ports import free_ports
from flowblock.stackfile import read_stack_file

#: What ``flowblock up`` prints once stack.json is written and every part answers.
READY = "FlowBlock up:"


class StackProcess:
    """``flowblock demo`` on ``data_dir``, its output in ``logs/stack-<n>.log``."""

    def __init__(
        self, data_dir: Path, logs: Path | None = None, *, start_timeout: float = 240.0
    ) -> None:
        self.data_dir = data_dir
        self.logs = logs or data_dir.parent
        self.start_timeout = start_timeout
        self.port = free_ports()[0]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.description: dict = {}

    @property
    def log(self) -> Path:
        """The output of the latest start."""
        return self.logs / f"stack-{self.starts}.log"

    @property
    def gateway(self) -> str:
        return self.description["gateway"]

    @property
    def channel(self) -> str:
        return self.description["channel"]

    def wallet(self, name: str, org: str) -> str:
        return self.description["identities"][f"{name}@{org}"]["wallet"]

    def start(self) -> StackProcess:
        """Start the stack (again) and wait until it says it is up."""
        self.starts += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "flowblock", "demo", "--no-hub",
                "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while READY not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"flowblock demo did not start (start {self.starts}):\n{self.output()[-3000:]}"
                )
            time.sleep(0.2)
        self.description = read_stack_file(self.data_dir) or {}
        return self

    def output(self) -> str:
        """What the latest start printed so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def processes(self) -> list[int]:
        """The stack's process and every process under it (SeaweedFS, sandboxes...)."""
        return [] if self.pid is None else [self.pid, *descendants(self.pid)]

    def kill(self, grace: float = 15.0) -> list[str]:
        """SIGKILL the stack's process; the command lines of any of its processes still
        alive ``grace`` seconds later (none, when every child died with it)."""
        if self.process is None:
            return []
        family = descendants(self.process.pid)
        self.process.kill()
        self.process.wait(timeout=30)
        self.process = None
        deadline = time.monotonic() + grace
        while (alive := [pid for pid in family if running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        return [command_line(pid) for pid in alive]

    def stop(self, timeout: float = 90.0) -> int:
        """SIGTERM, as ``flowblock down`` does, and wait; the exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code


def descendants(pid: int) -> list[int]:
    """Every living process under ``pid`` (children, their children...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The fields after the command name (which may hold spaces) in its brackets.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"process {pid} (gone)"
    return f"process {pid}: " + raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]
