"""How the data side reads a cohort off the ledger's consent listing and answers with its
rows: verified, current, undeleted and consented (a fake ledger and store, no servers)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flowblock.executor.datasets import Datasets
from flowblock.executor.disclosure.differencing import PATIENT_HASH_COLUMN
from flowblock.executor.ingest import part_bytes, row_hashes
from flowblock.executor.storage.objects import RecordTampered
from flowblock.testing.study import MemoryStore


class RecordsLedger:
    """The records functions the data side evaluates, over parts, corrections and
    tombstones a test sets: one page each."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.partitions: list[dict] = []
        self.current: dict[str, str] = {}  # record id → the part of its current version
        self.records: dict[str, str] = {}  # record id → its registered row hash
        self.deleted: list[str] = []

    def add_part(self, object_key: str, rows: pd.DataFrame) -> None:
        sha256 = self.store.put(object_key, part_bytes(rows))
        self.partitions.append({"object_key": object_key, "sha256": sha256})
        for record_id, row_hash in zip(rows["record_id"], row_hashes(rows), strict=True):
            self.current[record_id], self.records[record_id] = object_key, row_hash

    def evaluate(self, function: str, *args) -> str:
        if function == "records:ListPartitions":
            return json.dumps({"partitions": self.partitions, "bookmark": ""})
        if function == "records:DeletedRecords":
            return json.dumps({"record_ids": self.deleted, "bookmark": ""})
        if function == "records:CurrentParts":
            return json.dumps({r: self.current[r] for r in json.loads(args[1])})
        if function == "records:GetRecord":
            return json.dumps({"sha256": self.records[args[1]]})
        raise AssertionError(f"the data side asked for {function}")


class CountingStore(MemoryStore):
    """A store that remembers which objects were fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []

    def get_many(self, keys) -> dict[str, bytes]:
        self.fetched += list(keys)
        return super().get_many(keys)


def vitals(*rows: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["record_id", "patient_id", "systolic"])


@pytest.fixture
def hospital():
    store = CountingStore()
    ledger = RecordsLedger(store)
    ledger.add_part("vitals/part-0.parquet", vitals(
        ("r1", "p1", 120.0), ("r2", "p1", 130.0), ("r3", "p2", 140.0), ("r4", "p3", 150.0),
        ("r5", "p4", 160.0),
    ))  # fmt: skip
    return ledger, store, Datasets(ledger, store, "Hospital")


def test_one_patients_grants_split_across_pages_add_up():
    pages = {
        "": {"patients": [{"patient": "p1", "records": ["r1"]},
                          {"patient": "p2", "records": None}], "bookmark": "b1"},
        "b1": {"patients": [{"patient": "p1", "records": ["r2"]},
                            {"patient": "p3", "records": ["r9"]}], "bookmark": "b2"},
        "b2": {"patients": [{"patient": "p3", "records": None},
                            {"patient": "p2", "records": ["r5"]}], "bookmark": ""},
    }  # fmt: skip

    class Consent:
        def evaluate(self, function: str, *args) -> str:
            assert function == "consent:WhoMayCompute"
            return json.dumps(pages[args[-1]])

    datasets = Datasets(Consent(), MemoryStore(), "Hospital")
    cohort = datasets.cohort({"dataset": "vitals", "requester": "alice@University",
                              "purpose": "research"})  # fmt: skip
    # Records add up; a grant on the whole dataset wins, on whichever page it comes.
    assert cohort == {"p1": ["r1", "r2"], "p2": None, "p3": None}


def test_the_rows_of_a_cohort_are_its_granted_current_undeleted_ones(hospital):
    ledger, _, datasets = hospital
    ledger.add_part("vitals/writes/1.parquet", vitals(("r2", "p1", 111.0)))  # a correction
    ledger.add_part("vitals/writes/0.parquet", vitals(("r2", "p1", 999.0)))  # older, later
    ledger.current["r2"] = "vitals/writes/1.parquet"  # the ledger's current version
    ledger.deleted = ["r3"]
    cohort = {"p1@Hospital": ["r2"], "p2@Hospital": None, "p3": None, "p9@Clinic": None}

    rows = datasets.cohort_rows("vitals", cohort)

    assert rows.dataset == "vitals" and rows.cohort == cohort
    assert list(rows.frame["record_id"]) == ["r4", "r2"]  # p1's grant; p2's r3 deleted
    assert list(rows.frame["systolic"]) == [150.0, 111.0]
    assert rows.patients == ["p1@Hospital", "p3@Hospital"]  # p2 has no row left
    assert PATIENT_HASH_COLUMN not in rows.frame.columns


def test_where_narrows_the_rows_and_their_patients(hospital):
    _, _, datasets = hospital
    everyone = dict.fromkeys(["p1", "p2", "p3", "p4"])
    rows = datasets.cohort_rows(
        "vitals", everyone, where=[("systolic", ">=", 140.0)], with_patient_hashes=True
    )
    assert list(rows.frame["record_id"]) == ["r3", "r4", "r5"]
    assert rows.patients == ["p2@Hospital", "p3@Hospital", "p4@Hospital"]
    assert rows.frame[PATIENT_HASH_COLUMN].nunique() == 3


def test_a_cached_part_is_not_fetched_again_nor_brings_a_deleted_record_back(hospital):
    ledger, store, datasets = hospital
    everyone = dict.fromkeys(["p1", "p2", "p3", "p4"])
    assert len(datasets.cohort_rows("vitals", everyone).frame) == 5
    ledger.deleted = ["r1"]
    rows = datasets.cohort_rows("vitals", everyone)
    assert store.fetched == ["vitals/part-0.parquet"]  # once
    assert "r1" not in set(rows.frame["record_id"])


def test_a_changed_part_is_refused_naming_the_record_that_changed(hospital):
    ledger, store, datasets = hospital
    (partition,) = ledger.partitions
    store.objects[partition["object_key"]] = part_bytes(vitals(
        ("r1", "p1", 120.0), ("r2", "p1", 130.0), ("r3", "p2", 41.0), ("r4", "p3", 150.0),
        ("r5", "p4", 160.0),
    ))  # fmt: skip
    with pytest.raises(RecordTampered, match=r"record r3"):
        datasets.cohort_rows("vitals", {"p2": None})
