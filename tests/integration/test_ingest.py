"""Importing a table: parts in a real S3 server, every record's hash on a real devnet."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from flowblock.errors import InvalidArgument
from flowblock.executor.ingest import PART_ROWS, import_table, row_hashes
from flowblock.executor.storage.objects import ObjectStore, sha256_hex
from flowblock.identity.s3 import load_credentials
from flowblock.ledger import Gateway


def table(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "patient_id": [f"patient{n % 300:03d}" for n in range(rows)],
            "age": rng.integers(18, 90, rows),
            "sex": rng.choice(["F", "M"], rows),
            "systolic": rng.normal(128, 15, rows).round(1),
            "smoker": rng.random(rows) < 0.2,
        }
    )


@pytest.fixture
def steward(flowblock_devnet, demo_world):
    gateway = Gateway(flowblock_devnet.address, demo_world.identity("steward"), timeout=60)
    yield gateway.get_network("flowblock").get_contract("flowblock", "records")
    gateway.close()


@pytest.fixture
def store(s3_server, demo_world) -> ObjectStore:
    return ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))


def test_a_table_becomes_hashed_parts_and_records(steward, store):
    frame = table(2 * PART_ROWS + 1234)
    seen = []
    report = import_table(
        frame, "ingested", steward, store, progress=lambda done, total: seen.append(done)
    )
    assert (report.parts, report.registered, report.unchanged) == (3, len(frame), 0)
    assert seen == [PART_ROWS, 2 * PART_ROWS, len(frame)]

    partitions = json.loads(steward.evaluate("ListPartitions", "ingested", 100, ""))["partitions"]
    assert sorted(p["object_key"] for p in partitions) == sorted(report.part_keys)
    assert all(key.startswith("ingested/parts/") for key in report.part_keys)
    for partition in partitions:
        assert sha256_hex(store.get(partition["object_key"])) == partition["sha256"]

    stored = pd.read_parquet(io.BytesIO(store.get(report.part_keys[1])))
    first = json.loads(steward.evaluate("GetRecord", "ingested", stored["record_id"][0]))
    assert first["sha256"] == row_hashes(stored.iloc[:1])[0]
    assert first["object_key"] == report.part_keys[1]
    assert first["patient"] == f"{stored['patient_id'][0]}@Hospital"
    schema = json.loads(steward.evaluate("GetDataset", "ingested"))["schema"]["columns"]
    assert schema["sex"] == {"type": "category", "values": ["F", "M"]}
    assert (schema["age"], schema["systolic"], schema["smoker"]) == ("integer", "number", "boolean")


class CutShort:
    """The steward's contract, as if the import crashed after ``batches`` registrations."""

    def __init__(self, contract, batches: int) -> None:
        self.contract, self.batches = contract, batches
        self.network = contract.network

    def evaluate(self, function: str, *args, **options):
        return self.contract.evaluate(function, *args, **options)

    def submit(self, function: str, *args, **options):
        if function == "RegisterRecords":
            if not self.batches:
                raise ConnectionError("the import was cut short")
            self.batches -= 1
        return self.contract.submit(function, *args, **options)


def test_importing_again_registers_nothing_twice(steward, store):
    frame = table(1500, seed=3)
    with pytest.raises(ConnectionError):  # a run cut short after 500 records
        import_table(frame, "resumed", CutShort(steward, batches=1), store)
    report = import_table(frame, "resumed", steward, store)
    assert (report.registered, report.unchanged, report.stored) == (1000, 500, 0)
    again = import_table(frame, "resumed", steward, store)
    assert (again.registered, again.updated, again.unchanged) == (0, 0, 1500)


def test_a_table_that_does_not_fit_its_dataset_is_refused(steward, store):
    import_table(table(10), "fitted", steward, store)
    wider = table(10).assign(cholesterol=5.0)
    with pytest.raises(InvalidArgument, match="cholesterol"):
        import_table(wider, "fitted", steward, store)
    with pytest.raises(InvalidArgument, match="patient_id"):
        import_table(table(10).drop(columns="patient_id"), "fitted", steward, store)
