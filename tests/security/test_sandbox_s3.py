"""Issue 17: an algorithm in its sandbox cannot reach the organisation's real S3 server.

The S3 server listens on 127.0.0.1 beside the executor and checks credentials the run
cannot read; a run's network of its own keeps it from even asking. (The sandbox's other
defences, and a plain TCP server, are in ``test_sandbox.py``; this one starts SeaweedFS.)
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pandas as pd
import pytest

from flowblock.executor.sandbox import Limits, isolation_problem, run_sandboxed
from flowblock.testing.algorithms import Connects

pytestmark = pytest.mark.skipif(
    isolation_problem() is not None,
    reason="runs get a network of their own only where the executor is root",
)


def test_an_algorithm_cannot_reach_the_s3_server_the_executor_uses(s3_server):
    endpoint = urlsplit(s3_server.endpoint)
    address = (endpoint.hostname, endpoint.port)
    socket.create_connection(address, timeout=5).close()  # the executor's way in is open
    frame = pd.DataFrame({"patient_id": [0]})
    seen = run_sandboxed(Connects, frame, {"addresses": [list(address)]}, Limits(cpu_seconds=30))
    assert seen["connections"] == {f"{address[0]}:{address[1]}": "ENETUNREACH"}
    assert seen["namespace"] != os.readlink("/proc/self/ns/net")
    socket.create_connection(address, timeout=5).close()
