"""A real Redis and real Celery workers, started for a test and stopped after it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flowblock.children import dying_with_parent
from flowblock.ports import free_ports


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """``redis-server`` on a free localhost port, persisting nothing; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; scripts/setup installs it")
    (port,) = free_ports()
    process = subprocess.Popen(
        dying_with_parent([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(directory)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def celery_worker(
    data_dir: Path,
    broker: str,
    organisation: str,
    gateway: str,
    s3_endpoint: str,
    redelivery_seconds: int = 5,
) -> Iterator[subprocess.Popen]:
    """A Celery worker process running the executor's tasks for ``organisation``.

    It is configured by the executor's own settings alone, as a production worker is:
    the gateway, the S3 server, and the paths of its wallet and credentials (those
    ``flowblock network init`` made under ``data_dir``); no data directory, no stack.json.
    Tasks of a worker that dies are delivered again after ``redelivery_seconds``.
    """
    from flowblock.identity import wallet_path
    from flowblock.identity.s3 import credentials_path

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLOWBLOCK_")},
        "FLOWBLOCK_BROKER": broker,
        "FLOWBLOCK_EXECUTOR_ORG": organisation,
        "FLOWBLOCK_EXECUTOR_GATEWAY": gateway,
        "FLOWBLOCK_EXECUTOR_S3": s3_endpoint,
        "FLOWBLOCK_EXECUTOR_WALLET": str(wallet_path(data_dir, organisation, "executor")),
        "FLOWBLOCK_EXECUTOR_S3_CREDENTIALS": str(credentials_path(data_dir, organisation)),
        "FLOWBLOCK_REDELIVERY_SECONDS": str(redelivery_seconds),
    }
    process = subprocess.Popen(
        dying_with_parent([sys.executable, "-m", "celery", "-A", "flowblock.executor.tasks",
                           "worker", "--pool", "threads", "--concurrency", "2", "--loglevel",
                           "WARNING", "--without-gossip", "--without-mingle",
                           "--without-heartbeat"]),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
