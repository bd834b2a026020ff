"""Imports never replace a stored object, and store nothing the ledger has not accepted.

Found from outside (issue 17, finding 3): a second file imported into a dataset wrote its
parts under the first file's keys, replacing its rows in S3 while they stayed registered,
and an import the ledger then refused (its ids belonged to other patients) had already
overwritten them. Each test here attacks that: the first file's objects must stay byte for
byte, a second file goes in only when the steward asks to append, and a refused import
leaves the bucket and the ledger exactly as they were.

The ``unit`` tests run the real records contract in-process over an in-memory bucket; the
others import through a real devnet, a real SeaweedFS and the ``flowblock`` command.
"""

from __future__ import annotations

import io
import json
from itertools import count

import pandas as pd
import pytest
from PIL import Image

from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.cli import main
from flowblock.errors import EndorseError, FlowBlockError
from flowblock.executor import ingest
from flowblock.executor.datasets import Datasets
from flowblock.executor.images import import_images
from flowblock.executor.ingest import (
    import_table,
    infer_schema,
    part_bytes,
    row_hashes,
    with_text_ids,
)
from flowblock.executor.storage.objects import ObjectStore, StorageError, sha256_hex
from flowblock.identity.s3 import load_credentials
from flowblock.ledger import Gateway, all_pages
from flowblock.ledger.collections import set_up_private_collection
from flowblock.testing.chaincode import LocalGateway, LocalLedger
from flowblock.testing.study import MemoryStore
from flowblock.vocabulary import RECORDS_FIELD

_names = count()


def vitals(patients: list[str], ids: list[str] | None = None, shift: float = 0.0) -> pd.DataFrame:
    """A table of ``patients``' blood pressure, with record ids when ``ids`` are given."""
    frame = pd.DataFrame(
        {"patient_id": patients, "systolic": [120.0 + shift + n for n in range(len(patients))]}
    )
    if ids is not None:
        frame.insert(0, "record_id", ids)
    return frame


def bucket(store) -> dict[str, str]:
    """Every object in the bucket, by key, with the hash of its bytes."""
    keys = store.list("")
    return {key: sha256_hex(data) for key, data in store.get_many(keys).items()} if keys else {}


def ledger_of(records, dataset: str) -> tuple[list[dict], list[dict]]:
    """A dataset's registered partitions and records, as the ledger holds them now."""
    partitions = all_pages(
        lambda mark: json.loads(records.evaluate("ListPartitions", dataset, 1000, mark)),
        "partitions",
    )
    entries = all_pages(
        lambda mark: json.loads(records.evaluate("ListRecords", dataset, 1000, mark)), "records"
    )
    return partitions, entries


def rows_read(contract, store, dataset: str, patients: list[str]) -> pd.DataFrame:
    """The rows the data side computes on for ``patients``, sorted by patient."""
    frame = Datasets(contract, store, "Hospital").cohort_rows(dataset, dict.fromkeys(patients))
    return frame.frame.sort_values("patient_id").reset_index(drop=True)


# -- in-process: the real records contract, an in-memory bucket -------------------------


class CountingStore(MemoryStore):
    """An in-memory bucket that counts writes and can be made to fail after ``fail_after``."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0
        self.fail_after: int | None = None

    def put(self, key: str, data: bytes) -> str:
        if self.fail_after is not None and self.puts >= self.fail_after:
            raise StorageError("the S3 server failed a request (the test cut it off).")
        self.puts += 1
        return super().put(key, data)


class Hospital:
    """The Hospital's steward on an in-process ledger, and its bucket."""

    def __init__(self, ledger: LocalLedger, steward) -> None:
        network = LocalGateway(ledger, steward).get_network("flowblock")
        self.records = network.get_contract(CHAINCODE_NAME, "records")
        self.contract = network.get_contract(CHAINCODE_NAME)
        self.store = CountingStore()

    def read(self, dataset: str, patients: list[str]) -> pd.DataFrame:
        return rows_read(self.contract, self.store, dataset, patients)


@pytest.fixture
def hospital(tmp_path, demo_world):
    ledger = LocalLedger(flowblock_chaincode(), tmp_path, name=CHAINCODE_NAME)
    yield Hospital(ledger, demo_world.identity("steward"))
    ledger.close()


@pytest.mark.unit
def test_a_file_appended_leaves_the_first_files_objects_as_they_were(hospital):
    first, second = vitals([f"a{n}" for n in range(30)]), vitals([f"b{n}" for n in range(20)])
    import_table(first, "vitals", hospital.records, hospital.store)
    before = dict(hospital.store.objects)

    report = import_table(second, "vitals", hospital.records, hospital.store, append=True)

    assert report.registered == 20
    assert {key: hospital.store.objects[key] for key in before} == before  # byte for byte
    rows = hospital.read("vitals", [*first["patient_id"], *second["patient_id"]])
    expected = pd.concat([first, second]).sort_values("patient_id").reset_index(drop=True)
    assert list(rows["patient_id"]) == list(expected["patient_id"])
    assert list(rows["systolic"]) == list(expected["systolic"])
    assert rows["record_id"].is_unique  # the second file's rows are records of their own


@pytest.mark.unit
def test_a_second_file_without_append_is_refused_and_nothing_is_stored(hospital):
    import_table(vitals([f"a{n}" for n in range(30)]), "vitals", hospital.records, hospital.store)
    bucket_before = dict(hospital.store.objects)
    ledger_before = ledger_of(hospital.records, "vitals")

    with pytest.raises(FlowBlockError) as refused:
        import_table(vitals([f"b{n}" for n in range(20)]), "vitals", hospital.records,
                     hospital.store)  # fmt: skip

    assert str(refused.value) == (
        "the dataset 'vitals' already holds records from another file; pass --append "
        "(append=True) to add this file's records to it (nothing was stored)."
    )
    assert hospital.store.objects == bucket_before
    assert ledger_of(hospital.records, "vitals") == ledger_before


@pytest.mark.unit
def test_an_import_the_ledger_refuses_leaves_bucket_and_ledger_as_they_were(hospital):
    ids = [f"r{n}" for n in range(30)]
    import_table(vitals([f"a{n}" for n in range(30)], ids), "vitals", hospital.records,
                 hospital.store)  # fmt: skip
    bucket_before = dict(hospital.store.objects)
    ledger_before = ledger_of(hospital.records, "vitals")
    # The same record ids, of other patients: the ledger refuses to move records.
    thief = vitals([f"b{n}" for n in range(30)], ids, shift=50)

    with pytest.raises(EndorseError) as refused:
        import_table(thief, "vitals", hospital.records, hospital.store, append=True)

    assert refused.value.chaincode_status == 409
    assert "row 1 would move record 'r0' to another patient" in str(refused.value)
    assert "nothing was stored" in str(refused.value)
    assert hospital.store.objects == bucket_before
    assert ledger_of(hospital.records, "vitals") == ledger_before


@pytest.mark.unit
def test_the_same_file_again_stores_and_registers_nothing(hospital):
    first, second = vitals([f"a{n}" for n in range(30)]), vitals([f"b{n}" for n in range(20)])
    import_table(first, "vitals", hospital.records, hospital.store)
    import_table(second, "vitals", hospital.records, hospital.store, append=True)
    puts, ledger_before = hospital.store.puts, ledger_of(hospital.records, "vitals")
    height = hospital.records.network.gateway.ledger.state.height

    again = [
        import_table(first, "vitals", hospital.records, hospital.store),
        import_table(first, "vitals", hospital.records, hospital.store, append=True),
        import_table(second, "vitals", hospital.records, hospital.store, append=True),
    ]

    assert [(r.registered, r.updated, r.unchanged) for r in again] == [
        (0, 0, 30), (0, 0, 30), (0, 0, 20),
    ]  # fmt: skip
    assert hospital.store.puts == puts
    assert ledger_of(hospital.records, "vitals") == ledger_before
    # Nothing to change, so nothing submitted: not even an empty transaction.
    assert hospital.records.network.gateway.ledger.state.height == height


@pytest.mark.unit
def test_an_interrupted_import_is_finished_by_running_it_again(hospital, monkeypatch):
    monkeypatch.setattr(ingest, "PART_ROWS", 10)
    frame = vitals([f"a{n}" for n in range(35)])  # four parts
    hospital.store.fail_after = 2
    with pytest.raises(StorageError):
        import_table(frame, "vitals", hospital.records, hospital.store)
    hospital.store.fail_after = None

    report = import_table(frame, "vitals", hospital.records, hospital.store)

    assert (report.parts, report.registered + report.unchanged) == (4, 35)
    assert hospital.store.puts == 4  # each part once: the rerun stored only what was missing
    rows = hospital.read("vitals", list(frame["patient_id"]))
    assert sorted(rows["systolic"]) == sorted(frame["systolic"])


@pytest.mark.unit
def test_a_dataset_stored_under_numbered_keys_is_imported_again_as_it_was(hospital):
    # Before parts were named by their hash they were numbered (vitals/part-000000.parquet);
    # the demo imports its data again at every start, which must change nothing.
    frame = vitals([f"a{n}" for n in range(30)])
    numbered = with_text_ids(frame.assign(record_id=[f"vitals-{n:08d}" for n in range(30)])
                             [["record_id", "patient_id", "systolic"]])  # fmt: skip
    records, legacy = hospital.records, "vitals/part-000000.parquet"
    records.submit("RegisterDataset", "vitals", "tabular", json.dumps(infer_schema(numbered)))
    digest = hospital.store.put(legacy, part_bytes(numbered))
    records.submit("RegisterPartition", "vitals", legacy, digest, 30)
    entries = [
        {"record_id": record_id, "patient": patient, "object_key": legacy, "sha256": row_hash}
        for record_id, patient, row_hash in zip(
            numbered["record_id"], numbered["patient_id"], row_hashes(numbered), strict=True
        )
    ]  # fmt: skip
    set_up_private_collection(records)
    records.submit(
        "RegisterRecords", "vitals", transient={RECORDS_FIELD: json.dumps(entries)},
        endorsing_organisations=["HospitalMSP"],
    )  # fmt: skip
    puts, ledger_before = hospital.store.puts, ledger_of(records, "vitals")

    again = import_table(frame, "vitals", records, hospital.store)

    assert (again.registered, again.updated, again.unchanged) == (0, 0, 30)
    assert again.part_keys == [legacy]
    assert hospital.store.puts == puts
    assert ledger_of(records, "vitals") == ledger_before


def jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16), shade).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_folder(folder, rows: list[tuple[str, str, int]], ids: list[str] | None = None):
    """A directory of images: (patient, file name, shade) each, with its manifest."""
    folder.mkdir()
    lines = ["patient_id,file,label" + (",record_id" if ids else "")]
    for index, (patient, file, shade) in enumerate(rows):
        (folder / file).write_bytes(jpeg(shade))
        lines.append(f"{patient},{file},normal" + (f",{ids[index]}" if ids else ""))
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.unit
def test_a_different_image_of_the_same_name_never_replaces_the_first(hospital, tmp_path):
    first = image_folder(tmp_path / "first", [("p1", "scan.jpeg", 10), ("p2", "other.jpeg", 60)])
    import_images(first, "scans", hospital.records, hospital.store)
    before = dict(hospital.store.objects)
    ledger_before = ledger_of(hospital.records, "scans")

    # Another patient's scan.jpeg: the ledger refuses it, and nothing is stored.
    stolen = image_folder(tmp_path / "stolen", [("p9", "scan.jpeg", 200)])
    with pytest.raises(EndorseError, match="row 1 would move record 'scan' to another patient"):
        import_images(stolen, "scans", hospital.records, hospital.store, append=True)
    # The same patient's scan.jpeg, another image: an image is never replaced.
    retaken = image_folder(tmp_path / "retaken", [("p1", "scan.jpeg", 250)])
    with pytest.raises(FlowBlockError) as refused:
        import_images(retaken, "scans", hospital.records, hospital.store, append=True)
    assert str(refused.value) == (
        "the image for record 'scan' of 'scans' is not the one registered, and an image is "
        "never replaced: give the new one a record_id of its own in manifest.csv (nothing "
        "was stored)."
    )
    assert hospital.store.objects == before
    assert ledger_of(hospital.records, "scans") == ledger_before

    # With a record id of its own it is appended, and both images stay.
    named = image_folder(tmp_path / "named", [("p1", "scan.jpeg", 250)], ids=["scan-2"])
    import_images(named, "scans", hospital.records, hospital.store, append=True)
    assert {key: hospital.store.objects[key] for key in before} == before
    read = hospital.read("scans", ["p1", "p2"])
    assert sorted(read["record_id"]) == ["other", "scan", "scan-2"]
    shown = Datasets(hospital.contract, hospital.store, "Hospital").images_of(read)
    images = dict(zip(read["record_id"], shown, strict=True))
    assert (images["scan"], images["scan-2"]) == (jpeg(10), jpeg(250))


# -- through a real devnet, a real S3 server and the flowblock command --------------------


@pytest.fixture
def steward(flowblock_devnet, demo_world):
    with Gateway(flowblock_devnet.address, demo_world.identity("steward"), timeout=60) as gate:
        network = gate.get_network("flowblock")
        yield network.get_contract(CHAINCODE_NAME, "records"), network.get_contract(CHAINCODE_NAME)


@pytest.fixture
def store(s3_server, demo_world) -> ObjectStore:
    return ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))


def data_import(flowblock_devnet, s3_server, demo_world, *args: object) -> int:
    """``flowblock data import ARGS`` as the Hospital's steward, against the test servers."""
    return main([
        "data", "import", *map(str, args), "--gateway", flowblock_devnet.address,
        "--s3-endpoint", s3_server.endpoint, "--data-dir", str(demo_world.data_dir),
    ])  # fmt: skip


def unique(what: str) -> str:
    return f"imports-{what}-{next(_names)}"


def test_the_command_appends_a_second_file_and_keeps_the_first_byte_for_byte(
    flowblock_devnet, s3_server, demo_world, steward, store, tmp_path, capsys
):
    records, contract = steward
    dataset = unique("appended")
    first = vitals([f"{dataset}-a{n}" for n in range(40)])
    second = vitals([f"{dataset}-b{n}" for n in range(25)], shift=30)
    first.to_csv(tmp_path / "first.csv", index=False)
    second.to_csv(tmp_path / "second.csv", index=False)
    assert data_import(flowblock_devnet, s3_server, demo_world, tmp_path / "first.csv",
                       "--dataset", dataset) == 0  # fmt: skip
    before = bucket(store)

    assert data_import(flowblock_devnet, s3_server, demo_world, tmp_path / "second.csv",
                       "--dataset", dataset, "--append") == 0  # fmt: skip

    assert f"{dataset}: 25 records in 1 part(s); 25 registered" in capsys.readouterr().out
    after = bucket(store)
    assert {key: after[key] for key in before} == before  # every object as it was
    rows = rows_read(contract, store, dataset, [*first["patient_id"], *second["patient_id"]])
    expected = pd.concat([first, second]).sort_values("patient_id").reset_index(drop=True)
    assert list(rows["systolic"]) == list(expected["systolic"])
    assert len(ledger_of(records, dataset)[1]) == 65


def test_the_command_refuses_a_second_file_without_append_in_one_sentence(
    flowblock_devnet, s3_server, demo_world, steward, store, tmp_path, capsys
):
    records, _ = steward
    dataset = unique("refused")
    vitals([f"{dataset}-a{n}" for n in range(40)]).to_csv(tmp_path / "first.csv", index=False)
    vitals([f"{dataset}-b{n}" for n in range(25)]).to_csv(tmp_path / "second.csv", index=False)
    assert data_import(flowblock_devnet, s3_server, demo_world, tmp_path / "first.csv",
                       "--dataset", dataset) == 0  # fmt: skip
    capsys.readouterr()
    bucket_before, ledger_before = bucket(store), ledger_of(records, dataset)

    assert data_import(flowblock_devnet, s3_server, demo_world, tmp_path / "second.csv",
                       "--dataset", dataset) == 1  # fmt: skip

    said = capsys.readouterr().err.strip()
    assert said == (
        f"flowblock: the dataset {dataset!r} already holds records from another file; pass "
        "--append (append=True) to add this file's records to it (nothing was stored)."
    )
    assert bucket(store) == bucket_before
    assert ledger_of(records, dataset) == ledger_before


def test_an_import_the_ledger_refuses_leaves_the_bucket_exactly_as_it_was(steward, store):
    records, contract = steward
    dataset = unique("stolen")
    first = vitals([f"{dataset}-a{n}" for n in range(40)])
    import_table(first, dataset, records, store)  # record ids {dataset}-00000000 …
    bucket_before, ledger_before = bucket(store), ledger_of(records, dataset)
    # A file naming the first file's records as other patients' (as generated ids did).
    thief = vitals([f"{dataset}-b{n}" for n in range(40)], shift=50)
    thief.insert(0, "record_id", [f"{dataset}-{n:08d}" for n in range(40)])

    with pytest.raises(EndorseError, match=r"would move record .* to another patient"):
        import_table(thief, dataset, records, store, append=True)

    assert bucket(store) == bucket_before  # every object listed and hashed: all as they were
    assert ledger_of(records, dataset) == ledger_before
    rows = rows_read(contract, store, dataset, list(first["patient_id"]))
    assert list(rows["systolic"]) == list(first.sort_values("patient_id")["systolic"])
