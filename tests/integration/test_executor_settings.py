"""``flowblock executor`` runs from its own settings against any gateway: no stack.json."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pandas as pd

from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.ledger import GatewayPool
from flowblock.testing.ledger import DevnetProcess, serve_chaincode
from flowblock.testing.study import Study, publish_and_allow

PURPOSE = "research"


def test_the_executor_serves_a_ledger_it_is_only_told_the_address_of(
    demo_world, s3_server, tmp_path
):
    data_dir = tmp_path / "data"
    shutil.copytree(demo_world.data_dir, data_dir)
    contracts = list(flowblock_chaincode().contracts.values())
    allowed = {"methods": ["count"], "purposes": [PURPOSE], "organisations": ["University"]}
    with (
        serve_chaincode(contracts, CHAINCODE_NAME) as chaincode,
        DevnetProcess(data_dir, {CHAINCODE_NAME: chaincode.address}) as devnet,
        GatewayPool(devnet.address) as pool,
    ):
        publish_and_allow(pool, demo_world, {"auto_approve": allowed})
        frame = pd.DataFrame({"patient_id": [f"p{i:02d}" for i in range(30)], "age": range(30)})
        study = Study(pool, s3_server, demo_world, frame, consenting=25, prefix="settings")
        assert not (data_dir / "stack.json").exists()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBLOCK_")}
        executor = subprocess.Popen(
            [sys.executable, "-m", "flowblock", "executor", "--data-dir", str(data_dir),
             "--org", "Hospital", "--gateway", devnet.address,
             "--s3-endpoint", s3_server.endpoint],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            job = study.alice.compute("count", study.dataset, {}, purpose=PURPOSE)
            result = job.wait(timeout=120)
        finally:
            executor.send_signal(signal.SIGTERM)
            output, _ = executor.communicate(timeout=60)
        assert result.value["groups"] == [{"count": 25}]
        assert "flowblock executor: serving Hospital" in output
        assert executor.returncode == 0, output
