"""The README's first command: ``flowblock demo`` brings the system up and down cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from flowblock.client import Client
from flowblock.consent import grant_transient
from flowblock.errors import EndorseError
from flowblock.executor.xray import write_xray_dataset
from flowblock.identity import wallet_path
from flowblock.identity.s3 import load_credentials
from flowblock.ledger import Gateway
from flowblock.stackfile import read_stack_file


def flowblock(*arguments, data_dir) -> subprocess.CompletedProcess:
    """The ``flowblock`` command, run as a user would, on the demo's data directory."""
    return subprocess.run(
        [sys.executable, "-m", "flowblock", *map(str, arguments), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_demo_serves_the_ledger_writes_stack_json_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "flowblock", "demo", "--data-dir", str(data_dir),
         "--listen", "127.0.0.1:0", "--no-hub"],
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
        alice = stack["identities"]["alice@University"]
        assert (alice["name"], alice["org"], alice["role"]) == ("alice", "University", "researcher")
        # Names repeat across organisations; each organisation's own is there.
        admins = {
            stack["identities"][f"admin@{org}"]["wallet"] for org in ("Hospital", "University")
        }
        assert len(admins) == 2
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
                private = client.compute(
                    "mean", "vitals", {"column": "systolic", "bounds": [80, 200]}, epsilon=0.5
                ).wait(60)  # approved at once: within the demo's budget and per-request limit
                assert client.budget("vitals")["spent"] == pytest.approx(0.5)
            (group,) = result.value["groups"]
            assert group["count"] == 210  # the 70% of 300 patients who consented
            assert 110 < group["mean"] < 170
            assert private.value["dp"]["epsilon"] == 0.5
            assert 110 < private.value["groups"][0]["mean"] < 170
            # A new patient: issued a pseudonymous certificate, enrolled, then consents.
            issued = flowblock("identity", "issue", "newcomer", "--org", "Hospital", "--role",
                               "patient", data_dir=data_dir)  # fmt: skip
            assert "flowblock identity enrol newcomer --org Hospital" in issued.stdout
            enrolled = flowblock("identity", "enrol", "newcomer", data_dir=data_dir)
            assert "1 patient(s) of Hospital enrolled" in enrolled.stdout, enrolled.stderr
            newcomer_wallet = wallet_path(data_dir, "Hospital", "newcomer")
            with Client.connect(newcomer_wallet, stack["gateway"]) as newcomer:
                assert newcomer.identity.name != "newcomer"
                granted = newcomer.consent.grant("vitals", "org:University", "C", "research")
                assert granted["patient"] == "newcomer@Hospital"
                assert [g["grant_id"] for g in newcomer.consent.list()] == [granted["grant_id"]]
            # A steward imports a table into the running demo, as the README shows.
            table = tmp_path / "labs.csv"
            table.write_text("patient_id,cholesterol\npatient1,5.2\npatient2,6.1\n")
            imported = flowblock("data", "import", table, "--dataset", "labs", data_dir=data_dir)
            assert imported.returncode == 0, imported.stderr
            assert "labs: 2 records in 1 part(s); 2 registered" in imported.stdout
            # ... and a directory of images with its manifest.
            scans = write_xray_dataset(tmp_path / "scans", images=20)
            imported = flowblock("data", "import", scans, "--dataset", "scans", data_dir=data_dir)
            assert imported.returncode == 0, imported.stderr
            assert "scans: 20 records in 1 part(s); 20 registered" in imported.stdout
            assert "imported 20 of 20 records" in imported.stderr
            scans_meta = json.loads(contract.evaluate("records:GetDataset", "scans"))
            assert scans_meta["kind"] == "images"
            status = flowblock("status", data_dir=data_dir)
            assert "ledger   Fabric Gateway" in status.stdout
            assert status.stdout.count(": answers") == 2
            fields = grant_transient("vitals", "org:University", "C", "x")
            with pytest.raises(EndorseError) as refused:
                contract.submit(
                    "consent:Grant", transient=fields, endorsing_organisations=["HospitalMSP"]
                )
            assert refused.value.chaincode_status == 403
        down = flowblock("down", data_dir=data_dir)
        assert down.returncode == 0, down.stderr
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Demo stopped." in output
    assert "Dataset 'vitals': 300 records in 1 part(s), 300 newly registered." in output
    assert "Dataset 'xray': 160 chest X-rays (16 real, the rest augmented)" in output
    assert "210 patients consented to research on 'vitals', 120 on 'xray'." in output
    assert "Researchers may spend ε=5 each on 'vitals'" in output
    assert read_stack_file(data_dir) is None
