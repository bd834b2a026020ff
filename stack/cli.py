"""``flowblock up``, ``demo``, ``status`` and ``down``: the whole system on this machine."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from traitlets import Bool, List, Unicode

from flowblock.cli.base import FlowBlockApp, wait_for_termination
from flowblock.cli.identity import describe
from flowblock.errors import ConfigError, PortTaken
from flowblock.identity import list_organisations, load_wallet, organisation_dir
from flowblock.network.devnet import Devnet
from flowblock.stack.demo import DATASETS, create_demo, populate
from flowblock.stack.system import Stack
from flowblock.stackfile import read_stack_file, remove_stack_file, write_stack_file

PID_FILE = "flowblock.pid"


def people_of(data_dir: Path) -> list[tuple[str, str, str]]:
    """(organisation, name, role) of every identity under the data directory."""
    people = []
    for org in list_organisations(data_dir):
        members = organisation_dir(data_dir, org) / "identities"
        for path in sorted(members.iterdir()) if members.is_dir() else []:
            if not path.name.startswith("."):
                people.append((org, path.name, load_wallet(path).role or ""))
    return people


class UpApp(FlowBlockApp):
    name = "flowblock up"
    description = (
        "Run FlowBlock on this machine on the embedded default: FlowBlock's chaincode, the "
        "devnet, the S3 server and each organisation's executor, all state under the data "
        "directory. Writes <data-dir>/stack.json once every part answers; runs until "
        "SIGTERM, Ctrl-C or 'flowblock down'."
    )
    examples = "flowblock up --data-dir /srv/flowblock"
    organisations = List(
        Unicode(),
        default_value=["Hospital", "University"],
        help="Organisations created if the data directory has none yet.",
    ).tag(config=True)
    hub = Bool(
        True,
        help="Run JupyterHub and the dashboards too. This release has no hub yet, so the "
        "stack runs without one either way; scripts may already say --no-hub.",
    ).tag(config=True)
    aliases = {**FlowBlockApp.aliases, "listen": "Devnet.listen", "org": "UpApp.organisations"}
    flags = {
        **FlowBlockApp.flags,
        "no-hub": ({"UpApp": {"hub": False}}, "Run without JupyterHub and the dashboards."),
    }

    @property
    def classes(self):  # type: ignore[override]
        # The data side's settings, imported only when asked for (pandas is slow to load)
        # and only where the data side is installed (the executor extra).
        try:
            from flowblock.executor.disclosure import DisclosurePolicy
            from flowblock.executor.settings import ExecutorSettings
        except ImportError:
            return [type(self), Devnet]
        return [type(self), Devnet, ExecutorSettings, DisclosurePolicy]

    def start(self) -> None:
        self.positional()
        if not list_organisations(self.data_path):
            from flowblock.network.organisations import initialise

            initialise(self.data_path, self.organisations)
        self.run()

    def _start_stack(self) -> Stack:
        """The stack, started; on a taken default port the gateway takes a free one (a
        port given in the configuration or with --listen is refused instead)."""
        try:
            return Stack(self.data_path, parent=self).start()
        except PortTaken as taken:
            if "listen" in self.config.Devnet:
                raise
            _listen_anywhere(self, taken)
            return Stack(self.data_path, parent=self).start()

    def populate(self, stack: Stack) -> list[str]:
        """What a subclass adds once the stack is up (the demo's data)."""
        return []

    def datasets(self) -> list[str]:
        return []

    def run(self) -> None:
        if read_stack_file(self.data_path) is not None and _running(self.data_path):
            raise ConfigError(f"FlowBlock is already running for {self.data_path}.")
        # `kill -USR1 <pid>` prints every thread's stack to the output: what a stop that
        # hangs, or a stack that stalls, is waiting for.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        stack = self._start_stack()
        pid_file = self.data_path / PID_FILE
        try:
            for line in self.populate(stack):
                print(line, file=sys.stderr)
            pid_file.write_text(f"{os.getpid()}\n")
            path = write_stack_file(
                self.data_path, stack.describe(people_of(self.data_path), self.datasets())
            )
            print(
                f"FlowBlock up: Fabric Gateway on {stack.devnet.address}, S3 on "
                f"{stack.s3.endpoint}; {path} says where everything is. Ctrl-C stops it.",
                flush=True,
            )
            wait_for_termination()
        finally:
            remove_stack_file(self.data_path)
            pid_file.unlink(missing_ok=True)
            stack.stop()
            print(f"{self.name.removeprefix('flowblock ').capitalize()} stopped.", flush=True)


class DemoApp(UpApp):
    name = "flowblock demo"
    description = (
        "Run FlowBlock's demo on this machine: the Hospital (holds the data) and the "
        "University (its researchers) with their certificate authorities, nodes and people; "
        "the ledger (the devnet) running FlowBlock's chaincode; the S3 server; the executor; "
        "the dataset 'vitals' of 300 synthetic patients, 70% of whom consent to research; "
        "and the algorithms published. Writes <data-dir>/stack.json once everything "
        "answers; runs until SIGTERM, Ctrl-C or 'flowblock down'. Everything made before is kept."
    )
    examples = "flowblock demo --data-dir /tmp/flowblock-demo --listen 127.0.0.1:0"
    setup_only = Bool(False, help="Create the organisations and people, print them, and exit.").tag(
        config=True
    )
    flags = {
        **UpApp.flags,
        "setup-only": ({"DemoApp": {"setup_only": True}}, "Only create the demo people."),
    }

    def start(self) -> None:
        self.positional()
        steps = create_demo(self.data_path)
        created = sum(step.created for step in steps)
        kept = len(steps) - created
        print(f"FlowBlock demo in {self.data_path}: {created} created, {kept} kept.")
        for step in steps:
            if step.kind == "identity":
                print("  " + describe(load_wallet(step.path), step.path))
        if not self.setup_only:
            self.run()

    def populate(self, stack: Stack) -> list[str]:
        return populate(self.data_path, stack)

    def datasets(self) -> list[str]:
        return list(DATASETS)


def _listen_anywhere(app: UpApp, taken: PortTaken) -> None:
    """Let the gateway listen on any free port of the same host, saying so."""
    host = taken.address.rsplit(":", 1)[0]
    app.config.Devnet.listen = f"{host}:0"
    print(f"{taken.address} is taken; the gateway listens on a free port instead.", flush=True)


def _running(data_dir: Path) -> int | None:
    """The pid of the FlowBlock running for ``data_dir``, if it is alive."""
    try:
        pid = int((data_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class StatusApp(FlowBlockApp):
    name = "flowblock status"
    description = (
        "Say whether FlowBlock runs for the data directory, and whether each part answers."
    )

    def start(self) -> None:
        self.positional()
        stack = read_stack_file(self.data_path)
        pid = _running(self.data_path)
        if stack is None or pid is None:
            raise ConfigError(f"FlowBlock is not running for {self.data_path}.")
        print(f"FlowBlock runs for {self.data_path} (process {pid}).")
        print(f"  ledger   Fabric Gateway {stack['gateway']}: {_answers_tcp(stack['gateway'])}")
        endpoint = stack["s3"]["endpoint"]
        print(f"  storage  S3 {endpoint}: {_answers_http(endpoint)}")
        print(f"  datasets {', '.join(stack['datasets']) or 'none yet'}")


def _answers_tcp(address: str) -> str:
    import socket

    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(2)
        return "answers" if probe.connect_ex((host, int(port))) == 0 else "does not answer"


def _answers_http(url: str) -> str:
    try:
        urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own localhost endpoint
    except urllib.error.HTTPError:
        return "answers"  # an S3 server refuses anonymous requests, but it answered
    except OSError:
        return "does not answer"
    return "answers"


class DownApp(FlowBlockApp):
    name = "flowblock down"
    description = "Stop the FlowBlock running for the data directory, cleanly."

    def start(self) -> None:
        self.positional()
        pid = _running(self.data_path)
        if pid is None:
            raise ConfigError(f"FlowBlock is not running for {self.data_path}.")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _running(self.data_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _running(self.data_path):
            raise ConfigError(f"FlowBlock (process {pid}) did not stop within 90 s.")
        print(f"FlowBlock stopped for {self.data_path}.")
