"""pytest fixtures: ``pytest_plugins = ["flowblock.testing.fixtures"]`` in a conftest."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowblock.testing.identities import DemoWorld, make_demo_world


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    """The demo organisations and people, made once per test session. Treat as read-only."""
    return make_demo_world(tmp_path_factory.mktemp("demo-world"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty FlowBlock data directory of the test's own."""
    path = tmp_path / "flowblock-data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def asset_chaincode():
    """The asset-transfer chaincode served on a free port for the whole session."""
    from flowblock.testing.asset_transfer import AssetTransfer
    from flowblock.testing.ledger import serve_chaincode

    with serve_chaincode([AssetTransfer()], "asset") as server:
        yield server


@pytest.fixture
def devnet(demo_world: DemoWorld, tmp_path: Path, asset_chaincode):
    """A devnet process of the test's own, on a copy of the demo organisations."""
    import shutil

    from flowblock.testing.ledger import DevnetProcess

    data_dir = tmp_path / "devnet-data"
    shutil.copytree(demo_world.data_dir, data_dir)
    with DevnetProcess(data_dir, {"asset": asset_chaincode.address}) as process:
        yield process


@pytest.fixture
def asset_ledger(tmp_path: Path):
    """The asset-transfer contract on an in-process ledger of the test's own."""
    from flowblock.chaincode import Chaincode
    from flowblock.testing.asset_transfer import AssetTransfer
    from flowblock.testing.chaincode import LocalLedger

    ledger = LocalLedger(Chaincode([AssetTransfer()]), tmp_path, name="asset")
    yield ledger
    ledger.close()


@pytest.fixture(scope="session")
def s3_server(demo_world: DemoWorld, tmp_path_factory: pytest.TempPathFactory):
    """A real SeaweedFS S3 server for the demo organisations, for the whole session."""
    from flowblock.executor.storage.seaweedfs import SeaweedFS
    from flowblock.identity.s3 import load_credentials
    from flowblock.network.organisations import ORDERER_ORGANISATION

    organisations = {
        org: load_credentials(demo_world.data_dir, org)
        for org in ("Hospital", "University")
        if org != ORDERER_ORGANISATION
    }
    server = SeaweedFS(tmp_path_factory.mktemp("s3"), organisations).start()
    yield server
    server.stop(graceful=False)  # throwaway data: no need to wait for a clean shutdown


@pytest.fixture(scope="session")
def flowblock_devnet(demo_world: DemoWorld, tmp_path_factory: pytest.TempPathFactory):
    """A devnet serving FlowBlock's chaincode, shared by the session: use unique names."""
    import shutil

    from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
    from flowblock.testing.ledger import DevnetProcess, serve_chaincode

    data_dir = tmp_path_factory.mktemp("flowblock-devnet") / "data"
    shutil.copytree(demo_world.data_dir, data_dir)
    contracts = list(flowblock_chaincode().contracts.values())
    with (
        serve_chaincode(contracts, CHAINCODE_NAME) as server,
        DevnetProcess(data_dir, {CHAINCODE_NAME: server.address}) as devnet,
    ):
        yield devnet


# -- the whole demo running, and IPython kernels of researchers using it -------------------


class DemoStack:
    """``flowblock demo`` running in a process of its own: its ``stack.json`` and people."""

    def __init__(self, data_dir: Path, description: dict) -> None:
        self.data_dir = data_dir
        self.description = description

    @property
    def gateway(self) -> str:
        return self.description["gateway"]

    def wallet(self, name: str, org: str = "University") -> str:
        return self.description["identities"][f"{name}@{org}"]["wallet"]

    def client(self, name: str, org: str = "University"):  # -> flowblock.Client
        from flowblock.client import Client

        return Client.connect(self.wallet(name, org), self.gateway)

    def kernel_env(self, name: str, home: Path) -> dict[str, str]:
        """What a spawned notebook server gives a kernel: the gateway and one wallet, and
        nothing of the data side (no S3 endpoint or credentials, no data directory)."""
        import os
        import sys

        return {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "MPLBACKEND": "agg",
            "FLOWBLOCK_GATEWAY": self.gateway,
            "FLOWBLOCK_WALLET": self.wallet(name),
        }


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory):
    """``flowblock demo`` (ledger, chaincode, S3, executor, demo data) for the session.

    Shared: tests ask for computations of their own and never change the demo's rules.
    """
    import signal
    import subprocess
    import sys
    import time

    from flowblock.stackfile import read_stack_file

    data_dir = tmp_path_factory.mktemp("demo-stack") / "data"
    log = (data_dir.parent / "demo.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "flowblock", "demo", "--data-dir", str(data_dir),
         "--listen", "127.0.0.1:0"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while (description := read_stack_file(data_dir)) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                output = (data_dir.parent / "demo.log").read_text()[-3000:]
                raise RuntimeError(f"flowblock demo did not start:\n{output}")
            time.sleep(0.2)
        yield DemoStack(data_dir, description)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class Execution:
    """What one cell did in a kernel: its status, its outputs, and its streams."""

    def __init__(self, status: str, outputs: list[dict]) -> None:
        self.status = status
        self.outputs = outputs

    def stream(self, name: str) -> str:
        return "".join(o["text"] for o in self.outputs if o.get("name") == name)

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")

    @property
    def result(self) -> str:
        """The text of the cell's value (``Out[n]``), or "" if it had none."""
        for output in self.outputs:
            if output["output_type"] == "execute_result":
                return output["data"].get("text/plain", "")
        return ""

    def displays(self, mime: str) -> list[str]:
        """Every display (and display update) of this MIME type, in order."""
        return [
            o["data"][mime]
            for o in self.outputs
            if o["output_type"] in ("display_data", "update_display_data", "execute_result")
            and mime in o["data"]
        ]


class IPythonKernel:
    """A real IPython kernel (ipykernel, over ZeroMQ), driven cell by cell like a notebook."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env, cwd=str(cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120, interrupt_after: str = "") -> Execution:
        """Run one cell; with ``interrupt_after``, interrupt it once that text is shown."""
        import json
        import time

        msg_id = self.client.execute(code, allow_stdin=False)
        outputs: list[dict] = []
        deadline = time.monotonic() + timeout
        interrupted = not interrupt_after
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cell did not finish in {timeout:g} s: {code[:200]!r}")
            message = self.client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind in ("stream", "display_data", "update_display_data", "execute_result",
                        "error"):  # fmt: skip
                outputs.append({"output_type": kind, **content})
                shown = json.dumps(content)
                if not interrupted and interrupt_after in shown:
                    self.manager.interrupt_kernel()
                    interrupted = True
        while (reply := self.client.get_shell_msg(timeout=timeout))["parent_header"].get(
            "msg_id"
        ) != msg_id:
            continue  # the reply to an earlier cell that timed out
        return Execution(reply["content"]["status"], outputs)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def researcher_kernel(demo_stack: DemoStack, tmp_path_factory: pytest.TempPathFactory):
    """A kernel of alice, the demo's researcher, with ``%load_ext flowblock`` run."""
    home = tmp_path_factory.mktemp("alice-home")
    kernel = IPythonKernel(demo_stack.kernel_env("alice", home), home)
    try:
        loaded = kernel.run("%load_ext flowblock")
        assert loaded.status == "ok", loaded.outputs
        yield kernel
    finally:
        kernel.close()
