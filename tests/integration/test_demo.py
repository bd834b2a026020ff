"""The README's first command: ``flowblock demo`` brings the system up and down cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from flowblock.client import Client
from flowblock.errors import EndorseError
from flowblock.executor.storage.credentials import load_credentials
from flowblock.ledger import Gateway
from flowblock.stack import read_stack_file


def test_demo_serves_the_ledger_writes_stack_json_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "flowblock", "demo", "--data-dir", str(data_dir),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (stack := read_stack_file(data_dir)) is None and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.1)
        assert stack is not None, "stack.json never appeared"
        assert "secret" not in json.dumps(stack).lower()
        # The researchers' side never learns the data side's S3 secret.
        hospital_secret = load_credentials(data_dir, "Hospital").secret_key
        assert hospital_secret not in json.dumps(stack)
        alice = stack["identities"]["alice"]
        assert (alice["org"], alice["role"]) == ("University", "researcher")
        assert stack["chaincodes"] == ["flowblock"]
        assert stack["datasets"] == ["vitals", "xray"]
        assert stack["s3"]["endpoint"].startswith("http://127.0.0.1:")
        with Gateway.connect(stack["gateway"], alice["wallet"]) as gateway:
            contract = gateway.get_network(stack["channel"]).get_contract("flowblock")
            assert isinstance(json.loads(contract.evaluate("catalogue:ListAvailableMethods")), list)
            vitals = json.loads(contract.evaluate("records:GetDataset", "vitals"))
            assert vitals["organisation"] == "Hospital"
            assert "systolic" in vitals["schema"]["columns"]
            # A researcher computes on the demo data, and gets only the aggregate.
            with Client.connect(alice["wallet"], stack["gateway"]) as client:
                result = client.compute("mean", "vitals", {"column": "systolic"}).wait(60)
            (group,) = result.value["groups"]
            assert group["count"] == 210  # the 70% of 300 patients who consented
            assert 110 < group["mean"] < 170
            # A steward imports a table into the running demo, as the README shows.
            table = tmp_path / "labs.csv"
            table.write_text("patient_id,cholesterol\npatient1,5.2\npatient2,6.1\n")
            imported = subprocess.run(
                [sys.executable, "-m", "flowblock", "data", "import", str(table),
                 "--dataset", "labs", "--data-dir", str(data_dir)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert imported.returncode == 0, imported.stderr
            assert "labs: 2 records in 1 part(s); 2 registered" in imported.stdout
            status = subprocess.run(
                [sys.executable, "-m", "flowblock", "status", "--data-dir", str(data_dir)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert "ledger   Fabric Gateway" in status.stdout
            assert status.stdout.count(": answers") == 2
            with pytest.raises(EndorseError) as refused:
                contract.submit("consent:Grant", "vitals", "org:University", "C", "x", "", "")
            assert refused.value.chaincode_status == 403
        down = subprocess.run(
            [sys.executable, "-m", "flowblock", "down", "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert down.returncode == 0, down.stderr
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Demo stopped." in output
    assert "Dataset 'vitals': 300 records in 1 part(s), 300 newly registered." in output
    assert "Dataset 'xray': 96 chest X-rays (16 real, the rest augmented)" in output
    assert "210 patients consented to research on 'vitals', 72 on 'xray'." in output
    assert read_stack_file(data_dir) is None
