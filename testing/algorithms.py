"""Misbehaving (and prying) algorithms, for testing that the sandbox holds them.

Each declares itself a count table, as any algorithm declares its disclosure class;
nothing they return has a count table's form, so the disclosure policy would release
none of it. The prying ones do what an attacker's algorithm would (read the
organisation's keys, fork without end, leave a process behind, connect to the
machine's services, send the executor a pickle that runs code) and report what they
got, so a test can tell that they got nothing.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

import pandas as pd

from flowblock.executor.algorithms.base import Algorithm


class Spins(Algorithm):
    name = "test-spins"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        while True:
            pass


class EatsMemory(Algorithm):
    name = "test-eats-memory"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        hoard = []
        while True:
            hoard.append(bytearray(64 * 1024**2))


class Crashes(Algorithm):
    name = "test-crashes"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        return {"leak": frame.to_dict()["patient_id"]["missing-key"]}


class ReadsEnvironment(Algorithm):
    name = "test-reads-environment"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        return {name: os.environ.get(name) for name in params["names"]}


class ReturnsAFrame(Algorithm):
    """Returns its rows as they are: an object, not plain data."""

    name = "test-returns-a-frame"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        return {"rows": frame}


class ReadsFiles(Algorithm):
    """Reads each of ``params["paths"]``: its text, or the name of the error that stopped it."""

    name = "test-reads-files"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        found = {}
        for path in params["paths"]:
            try:
                with open(path, "rb") as file:
                    found[path] = file.read().decode(errors="replace")
            except OSError as error:
                found[path] = type(error).__name__
        return found


class Forks(Algorithm):
    """Forks ``params["count"]`` children that sleep; how many it made, and what stopped it."""

    name = "test-forks"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        children: list[int] = []
        try:
            for _ in range(params["count"]):
                pid = os.fork()
                if pid == 0:
                    time.sleep(params.get("seconds", 60))
                    os._exit(0)
                children.append(pid)
        except OSError as error:
            return {"children": children, "stopped_by": type(error).__name__}
        return {"children": children, "stopped_by": None}


class LeavesAGrandchild(Algorithm):
    """Starts ``sleep params["seconds"]`` (in a session of its own if ``params["escape"]``),
    says so through its progress, then waits for the wall-clock limit to stop it."""

    name = "test-leaves-a-grandchild"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        if os.fork() == 0:
            try:
                if params.get("escape"):
                    os.setsid()
                os.execv("/bin/sleep", ["sleep", str(params["seconds"])])  # noqa: S606
            finally:
                os._exit(127)
        self.progress(0.5)
        time.sleep(float(params["seconds"]))


class _RunsCode:
    """Unpickled, makes the directory ``path``: code the receiver runs, not data."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


class SendsCode(Algorithm):
    """Writes its own message into the sandbox's pipe: a "result" whose unpickling makes
    the directory ``params["path"]``, as any code the executor would run."""

    name = "test-sends-code"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        for thing in gc.get_objects():
            if isinstance(thing, Connection) and thing.writable and not thing.closed:
                thing.send(("ok", _RunsCode(params["path"])))
        return {"sent": True}


class ImportsLazily(Algorithm):
    """Imports standard-library modules the forkserver did not load, as TensorFlow does."""

    name = "test-imports-lazily"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        import colorsys
        import wave

        return {"modules": [colorsys.__name__, wave.__name__]}


class Connects(Algorithm):
    """Opens a TCP connection to each ``params["addresses"]`` (``[host, port]``): what the
    server said first, ``"connected"`` if it said nothing, or the error number's name that
    stopped it (``ENETUNREACH``); and its network namespace, to compare with the executor's."""

    name = "test-connects"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        found = {}
        for host, port in params["addresses"]:
            try:
                connection = socket.create_connection((host, port), timeout=5)
            except OSError as error:
                found[f"{host}:{port}"] = errno.errorcode.get(error.errno or 0, repr(error))
                continue
            with connection:
                connection.settimeout(1)
                try:
                    found[f"{host}:{port}"] = connection.recv(64).decode(errors="replace")
                except OSError:  # it said nothing
                    found[f"{host}:{port}"] = "connected"
        return {"connections": found, "namespace": os.readlink("/proc/self/ns/net")}
